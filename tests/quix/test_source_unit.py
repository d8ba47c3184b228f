"""FileChannelSource's take/produce/commit step with a stand-in producer:
the take commits only after the producer delivered everything; a failed or
timed-out delivery rolls it back, so the same events come again, in order."""
from __future__ import annotations

import pytest
from fchannel.integrations.quix import FileChannelSource
from quixstreams.checkpointing.exceptions import CheckpointProducerTimeout

from fchannel import ConfigError, Event, FileChannel


class FakeProducer:
    """Records produce() calls; flush() reports *undelivered* messages left
    (or raises *error*)."""

    def __init__(self, undelivered: int = 0, error: Exception | None = None) -> None:
        self.sent: list[dict] = []
        self.undelivered = undelivered
        self.error = error

    def produce(self, topic, value=None, key=None, headers=None, partition=None,
                timestamp=None, **kw):
        self.sent.append(dict(topic=topic, value=value, key=key, headers=headers,
                              timestamp=timestamp))

    def flush(self, timeout=None):
        if self.error is not None:
            raise self.error
        return self.undelivered


def make(tmp_path, producer, **kw):
    src = FileChannelSource("spooled", str(tmp_path / "ckpt"), str(tmp_path / "data"),
                            channel_options={"checkpoint_interval": 3600,
                                             "transaction_capacity": 100}, **kw)
    src.configure(topic=src.default_topic(), producer=producer)
    return src


def fill(tmp_path, n):
    with FileChannel(str(tmp_path / "ckpt"), str(tmp_path / "data"),
                     transaction_capacity=100) as ch, ch.transaction() as tx:
        tx.put_batch([Event(b"v%d" % i, {"key": f"k{i}", "timestamp": str(1000 + i),
                                          "x": "y"}) for i in range(n)])


def open_channel(tmp_path):
    return FileChannel(str(tmp_path / "ckpt"), str(tmp_path / "data"),
                       transaction_capacity=100)


def test_take_commits_after_delivery(tmp_path):
    fill(tmp_path, 7)
    p = FakeProducer()
    src = make(tmp_path, p, batch_size=5)
    with open_channel(tmp_path) as ch:
        assert src.deliver_once(ch) == 5
        assert ch.size == 2
        assert src.deliver_once(ch) == 2 and src.deliver_once(ch) == 0
        assert ch.size == 0 and src.delivered == 7
    assert [m["value"] for m in p.sent] == [b"v%d" % i for i in range(7)]
    m = p.sent[3]
    assert m["topic"] == "spooled" and m["key"] == b"k3" and m["timestamp"] == 1003
    assert ("x", "y") in m["headers"]


@pytest.mark.parametrize("producer, error", [
    (FakeProducer(undelivered=1), CheckpointProducerTimeout),
    (FakeProducer(error=RuntimeError("broker gone")), RuntimeError),
])
def test_undelivered_batch_is_rolled_back(tmp_path, producer, error):
    fill(tmp_path, 3)
    src = make(tmp_path, producer)
    with open_channel(tmp_path) as ch:
        with pytest.raises(error):
            src.deliver_once(ch)
        assert ch.size == 3                    # the take was rolled back
        ok = FakeProducer()
        src.configure(topic=src.default_topic(), producer=ok)
        assert src.deliver_once(ch) == 3
        assert [m["value"] for m in ok.sent] == [b"v0", b"v1", b"v2"]   # same order


def test_bad_settings_name_the_field(tmp_path):
    with pytest.raises(ConfigError, match="batch_size"):
        FileChannelSource("s", "a", "b", batch_size=0)
    with pytest.raises(ConfigError, match="idle"):
        FileChannelSource("s", "a", "b", idle=-1)
    with pytest.raises(ConfigError, match="flush_timeout"):
        FileChannelSource("s", "a", "b", flush_timeout=0)
