"""The snippets that need Kafka get the Tansu broker of tests/integrations."""
from tests.integrations.conftest import kafka, kafka_broker  # noqa: F401
