"""ChannelHandler in process: what a record becomes, flush and the committer's
interval, the full-channel policies, close, dictConfig, bad settings."""
from __future__ import annotations

import json
import logging
import logging.config
import os
import threading
import time

import pytest
from fchannel.integrations.logging import ChannelHandler

from fchannel import ChannelFullError, ConfigError, MemoryChannel
from tests.channels import open_channel, take_all
from tests.conftest import wait_for


@pytest.fixture
def logger(request):
    log = logging.getLogger(f"fchtest.{request.node.name}")
    log.propagate = False
    log.setLevel(logging.DEBUG)
    yield log
    for h in list(log.handlers):
        log.removeHandler(h)
        h.close()


def test_record_becomes_a_json_event_with_headers(tmp_path, logger):
    with open_channel(tmp_path) as ch:
        h = ChannelHandler(ch, host="web-1", headers={"app": "shop"})
        logger.addHandler(h)
        logger.warning("disk %s at %d%%", "/var", 93)
        try:
            raise ValueError("boom")
        except ValueError:
            logger.exception("failed")
        logger.info("with stack", stack_info=True)
        assert h.flush(10)
        warn, exc, stack = take_all(ch)
    body = json.loads(warn.body)
    assert body["message"] == "disk /var at 93%"
    assert body["level"] == "WARNING" and body["logger"] == logger.name
    assert body["function"] == "test_record_becomes_a_json_event_with_headers"
    assert body["process"] == os.getpid() and isinstance(body["time"], float)
    assert "exc" not in body and "formatted" not in body
    assert warn.headers == {"host": "web-1", "app": "shop", "level": "WARNING",
                            "logger": logger.name}
    e = json.loads(exc.body)
    assert e["level"] == "ERROR" and "ValueError: boom" in e["exc"] and "Traceback" in e["exc"]
    assert "test_handler.py" in json.loads(stack.body)["stack"]


def test_formatter_and_serializer(tmp_path, logger):
    with open_channel(tmp_path) as ch:
        h = ChannelHandler(ch)
        h.setFormatter(logging.Formatter("%(levelname)s|%(message)s"))
        logger.addHandler(h)
        logger.info("hello")
        assert h.flush(10)
        logger.removeHandler(h)
        h.close()
        h2 = ChannelHandler(ch, serialize=lambda r: r.getMessage().upper().encode())
        logger.addHandler(h2)
        logger.info("plain")
        assert h2.flush(10)
        a, b = take_all(ch)
    assert json.loads(a.body)["formatted"] == "INFO|hello"
    assert b.body == b"PLAIN" and b.headers["level"] == "INFO"


def test_flush_commits_everything_handed_off(tmp_path, logger):
    with open_channel(tmp_path) as ch:
        h = ChannelHandler(ch, flush_interval=3600, batch_size=1000)
        logger.addHandler(h)
        for i in range(250):
            logger.info("m%d", i)
        assert ch.size == 0 or h.pending < 250   # nothing forces a commit but flush
        assert h.flush(10)
        assert ch.size == 250 and h.committed == 250 and h.pending == 0
        assert [json.loads(e.body)["message"] for e in take_all(ch)] == \
            [f"m{i}" for i in range(250)]


def test_committer_commits_a_full_batch_and_within_the_interval(tmp_path, logger):
    with open_channel(tmp_path) as ch:
        h = ChannelHandler(ch, flush_interval=3600, batch_size=10)
        logger.addHandler(h)
        for i in range(11):
            logger.info("m%d", i)
        wait_for(lambda: ch.size == 10, 10, what="the full batch committed")
        assert h.pending == 1          # the 11th waits for its interval (an hour)
    with open_channel(tmp_path / "b") as ch:
        h = ChannelHandler(ch, flush_interval=0.1, batch_size=100)
        logger.addHandler(h)
        logger.info("lonely")
        wait_for(lambda: ch.size == 1, 10, what="the committer's interval")
        assert h.committed == 1


def test_batch_size_is_capped_by_the_transaction_capacity(tmp_path, logger):
    with open_channel(tmp_path, transaction_capacity=7) as ch:
        h = ChannelHandler(ch, batch_size=500, flush_interval=0.05)
        assert h.batch_size == 7
        logger.addHandler(h)
        for i in range(30):
            logger.info("m%d", i)
        assert h.flush(10) and ch.size == 30


def _fill(ch, n):
    from fchannel import Event
    with ch.transaction() as tx:
        tx.put_batch([Event(b"x")] * n)


def test_full_channel_drop_policy_counts_and_warns(tmp_path, logger, capfd):
    with open_channel(tmp_path, capacity=5, keep_alive=0.0) as ch:
        h = ChannelHandler(ch, capacity=3, batch_size=2, flush_interval=0.01,
                           on_full="drop", full_timeout=0.05, retry_backoff=(0.01, 0.05))
        logger.addHandler(h)
        _fill(ch, 4)                            # room for one more event
        t0 = time.monotonic()
        for i in range(20):
            logger.info("m%d", i)
        assert time.monotonic() - t0 < 10       # never blocked for long
        wait_for(lambda: h.committed + h.pending + h.dropped == 20, 10, what="accounting")
        assert h.dropped > 0 and h.failures > 0
        assert "dropped" in capfd.readouterr().err
        kept = h.committed + h.pending
        take_all(ch)                            # room again: the pending ones go in
        assert h.flush(10)
        assert h.committed == kept
        msgs = [json.loads(e.body)["message"] for e in take_all(ch)]
        assert len(msgs) + (20 - kept) == 20
        assert msgs == sorted(msgs, key=lambda m: int(m[1:]))   # order kept


def test_full_channel_raise_policy(tmp_path, logger):
    with open_channel(tmp_path, capacity=2, keep_alive=0.0) as ch:
        h = ChannelHandler(ch, capacity=2, batch_size=1, flush_interval=0.01,
                           on_full="raise", full_timeout=0.05, retry_backoff=(0.01, 0.05))
        logger.addHandler(h)
        _fill(ch, 2)
        logger.info("a")
        logger.info("b")
        with pytest.raises(ChannelFullError, match="capacity=2"):
            logger.info("c")
        assert h.dropped == 0
        take_all(ch)
        assert h.flush(10)
        assert [json.loads(e.body)["message"] for e in take_all(ch)] == ["a", "b"]


def test_full_channel_block_policy_waits_for_room(tmp_path, logger):
    with open_channel(tmp_path, capacity=2, keep_alive=0.0) as ch:
        h = ChannelHandler(ch, capacity=1, batch_size=1, flush_interval=0.01,
                           on_full="block", full_timeout=0.0, retry_backoff=(0.01, 0.05))
        logger.addHandler(h)
        _fill(ch, 2)
        logger.info("a")                        # fills the hand-off
        done = threading.Event()

        def log_b():
            logger.info("b")
            done.set()

        t = threading.Thread(target=log_b)
        t.start()
        assert not done.wait(0.3)               # blocked while the channel is full
        take_all(ch)                            # room: a goes in, then b
        assert done.wait(10)
        t.join(10)
        assert h.flush(10) and h.dropped == 0
        assert [json.loads(e.body)["message"] for e in take_all(ch)] == ["a", "b"]


def test_close_flushes_and_owned_directory_survives_reopen(tmp_path, logger):
    h = ChannelHandler(str(tmp_path), flush_interval=3600,
                       channel_options={"checkpoint_interval": 3600})
    logger.addHandler(h)
    for i in range(5):
        logger.info("m%d", i)
    logger.removeHandler(h)
    h.close()
    h.close()                                   # idempotent
    assert h.channel.closed
    logger.info("after close")                  # not our handler any more
    with open_channel(tmp_path) as ch:
        assert [json.loads(e.body)["message"] for e in take_all(ch)] == \
            [f"m{i}" for i in range(5)]


def test_close_gives_up_after_close_timeout(tmp_path, logger):
    with open_channel(tmp_path, capacity=1, keep_alive=0.0) as ch:
        _fill(ch, 1)
        h = ChannelHandler(ch, close_timeout=0.3, flush_interval=0.01,
                           retry_backoff=(0.01, 0.05))
        logger.addHandler(h)
        logger.info("never stored")
        assert not h.flush(0.1)
        t0 = time.monotonic()
        logger.removeHandler(h)
        h.close()
        assert time.monotonic() - t0 < 5
        assert h.dropped == 1 and h.committed == 0


def test_closed_channel_drops_without_blocking(tmp_path, logger):
    ch = open_channel(tmp_path)
    h = ChannelHandler(ch, flush_interval=0.01, full_timeout=0.0)
    logger.addHandler(h)
    ch.close()
    logger.info("lost")
    assert not h.flush(10)
    wait_for(lambda: h.dropped == 1, 10, what="the record counted as dropped")
    logger.info("also lost")                    # no blocking, counted
    assert h.dropped == 2


def test_dict_config(tmp_path):
    name = "fchtest.dictconfig"
    logging.config.dictConfig({
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"short": {"format": "%(name)s: %(message)s"}},
        "handlers": {"spool": {
            "class": "fchannel.integrations.logging.ChannelHandler",
            "channel": str(tmp_path), "level": "INFO", "formatter": "short",
            "on_full": "drop", "flush_interval": 0.2, "headers": {"app": "shop"},
            "channel_options": {"capacity": 1000, "transaction_capacity": 100}}},
        "loggers": {name: {"handlers": ["spool"], "level": "DEBUG", "propagate": False}},
    })
    log = logging.getLogger(name)
    (h,) = log.handlers
    assert isinstance(h, ChannelHandler) and h.level == logging.INFO
    log.debug("filtered out")
    log.info("kept")
    log.removeHandler(h)
    h.close()
    with open_channel(tmp_path) as ch:
        (e,) = take_all(ch)
    assert json.loads(e.body)["formatted"] == f"{name}: kept"
    assert e.headers["app"] == "shop"


@pytest.mark.parametrize("kw, field", [
    ({"on_full": "wait"}, "on_full"),
    ({"capacity": 0}, "capacity"),
    ({"batch_size": True}, "batch_size"),
    ({"flush_interval": 0}, "flush_interval"),
    ({"full_timeout": -1}, "full_timeout"),
    ({"retry_backoff": (1, 0.5)}, "retry_backoff"),
    ({"headers": {"a": 1}}, "headers"),
    ({"channel_options": {"capacity": 1}}, "channel_options"),
])
def test_bad_settings_name_the_field(kw, field):
    with pytest.raises(ConfigError, match=field):
        ChannelHandler(MemoryChannel(), **kw)


def test_not_a_channel():
    with pytest.raises(ConfigError, match="channel must be"):
        ChannelHandler(42)
