"""The confluent-kafka and aiokafka spoolers under SIGKILL, as
test_kafka_crash.py does for kafka-python (its scenarios, run for these
clients): killed five times (in the window between the channel commit and the
Kafka commit, and at random moments while spooling), the channel ends up with
every message exactly once in partition order; two spoolers in one group, one
killed, together hold everything."""
from __future__ import annotations

import os

import pytest

from tests.integrations.test_kafka_crash import sigkill_rounds, two_spoolers_one_killed

pytestmark = pytest.mark.crash

CLIENTS = ["confluent", "aiokafka"]


@pytest.mark.parametrize("client", CLIENTS)
def test_sigkill_spooler_five_times_exactly_once(client, kafka, tmp_path):
    """Five spooling processes (``FCHANNEL_SPOOL_KILLS``) are SIGKILLed: odd
    rounds exactly between the channel commit and the Kafka commit, even
    rounds at a random moment while they spool; new messages arrive before each round. A last process
    spools the rest: the channel holds every message once, in partition
    order, and the marks are at the end of every partition."""
    # FCHANNEL_SPOOL_KILLS=50 (say) runs a longer variant
    sigkill_rounds(client, kafka, tmp_path, parts=3, chunk=450,
                   rounds=int(os.environ.get("FCHANNEL_SPOOL_KILLS", "5")))


@pytest.mark.parametrize("client", CLIENTS)
def test_two_spoolers_one_killed_union_holds_everything(client, kafka, tmp_path):
    """Two spooling processes with their own channels in one group split the
    partitions; A is SIGKILLed mid-stream and B takes its partitions over.
    The union of both channels holds every message; each channel alone has
    no duplicate and keeps partition order."""
    two_spoolers_one_killed(client, kafka, tmp_path)
