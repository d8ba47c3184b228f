from tests.agent.helpers import agents  # noqa: F401 - the fixture
