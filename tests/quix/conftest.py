"""The Quix tests reuse the Tansu broker fixture of the Kafka integration
tests (``tests/integrations/conftest.py``): ``kafka`` gives a ``Broker`` with
``bootstrap``, ``create_topic`` and ``produce``."""
from tests.integrations.conftest import kafka, kafka_broker  # noqa: F401
