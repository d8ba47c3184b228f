"""The ``hdfs`` sink into S3 (moto's server on loopback, through s3fs)."""
from __future__ import annotations

import pytest

from fchannel.agent import EventDeliveryError, Status
from fchannel.sinks._serializers import read_back
from tests.sinks.helpers import channel, drain, kafka_events, make_sink, put

TS = 1_700_000_000_123


def s3_props(endpoint, bucket: str, **kw: str) -> dict[str, str]:
    props = {"hdfs.path": f"s3://{bucket}/logs/%{{topic}}/%Y%m%d", "hdfs.rollInterval": "0",
             "hdfs.rollSize": "0", "hdfs.rollCount": "10", "hdfs.timeZone": "UTC",
             **endpoint.props()}
    props.update(kw)
    return props


def test_objects_appear_whole_at_commit_and_takes_wait_for_them(s3_endpoint, tmp_path):
    b = s3_endpoint.bucket()
    ch = channel()
    s = make_sink(ch, **s3_props(s3_endpoint, b, **{"hdfs.spoolDir": str(tmp_path)}))
    assert s.held_mode   # an object store: nothing is durable before the upload
    put(ch, kafka_events("t", 0, range(15)))
    drain(s)
    (key,) = s3_endpoint.keys(b)
    assert key.startswith("logs/t/20231114/FlumeData.") and not key.endswith(".tmp")
    assert len(s._held) == 1 and list(tmp_path.iterdir())   # 5 events spooled, take held
    s.stop()
    keys = s3_endpoint.keys(b)
    assert len(keys) == 2 and not s._held and not list(tmp_path.iterdir())
    got = b"".join(s3_endpoint.get(b, k) for k in keys).splitlines()
    assert sorted(got) == sorted(b"t-0-%d" % o for o in range(15))


@pytest.mark.parametrize("serializer,codec", [("json", "gzip"), ("avro_event", "zstd"),
                                              ("parquet", "snappy"), ("text", "zstd")])
def test_serializers_into_s3(s3_endpoint, serializer, codec):
    b = s3_endpoint.bucket()
    ch = channel()
    s = make_sink(ch, **s3_props(s3_endpoint, b, serializer=serializer,
                                 **{"hdfs.codeC": codec, "hdfs.rollCount": "0"}))
    evs = kafka_events("t", 1, range(30))
    put(ch, evs)
    drain(s)
    s.stop()
    (key,) = s3_endpoint.keys(b)
    got = read_back(s3_endpoint.get(b, key), serializer,
                    codec if serializer in ("json", "text") else "none")
    assert [body for _, body in got] == [e.body for e in evs]
    if serializer != "text":
        assert [h for h, _ in got] == [e.headers for e in evs]


def test_a_failing_store_rolls_back_and_loses_nothing(s3_endpoint):
    b = s3_endpoint.bucket()
    ch = channel()
    s = make_sink(ch, **s3_props(s3_endpoint, b + "-missing", **{"hdfs.rollCount": "5",
                                                                "hdfs.batchSize": "8"}))
    put(ch, kafka_events("t", 0, range(12)))
    with pytest.raises(EventDeliveryError):
        s.process()        # the first full file cannot be uploaded: no such bucket
    assert ch.size == 12 and not s._held
    s3_endpoint.client.create_bucket(Bucket=b + "-missing")
    drain(s)
    s.stop()
    keys = s3_endpoint.keys(b + "-missing")
    got = b"".join(s3_endpoint.get(b + "-missing", k) for k in keys).splitlines()
    assert sorted(got) == sorted(b"t-0-%d" % o for o in range(12))


def test_exactly_once_on_s3_conditional_create_and_restart(s3_endpoint):
    b = s3_endpoint.bucket()
    props = s3_props(s3_endpoint, b, **{"hdfs.exactlyOnce": "true", "hdfs.batchSize": "4"})
    ch = channel()
    s = make_sink(ch, **props)
    put(ch, kafka_events("t", 2, range(25)))
    drain(s)
    s.stop()
    keys = s3_endpoint.keys(b)
    assert [k.rsplit("/", 1)[1] for k in keys] == [
        "t+2+%020d+%020d" % r for r in [(0, 9), (10, 19), (20, 24)]]
    s2 = make_sink(ch, **props)
    assert s2.process() is Status.BACKOFF      # nothing to take; has read what is stored
    assert s2._committed == {("t", 2): 24}
    # meanwhile a rival stores 25..34 under the same name: it is kept, not replaced
    rival = keys[0].rsplit("/", 1)[0] + "/t+2+%020d+%020d" % (25, 34)
    s3_endpoint.client.put_object(Bucket=b, Key=rival, Body=b"RIVAL")
    put(ch, kafka_events("t", 2, range(20, 35)))   # a replay from 20, then 25..34
    drain(s2)
    s2.stop()
    assert s3_endpoint.get(b, rival) == b"RIVAL"
    assert len(s3_endpoint.keys(b)) == 4
    # a third run learns 34 from the names and stores only what is new
    s3 = make_sink(ch, **props)
    put(ch, kafka_events("t", 2, range(30, 40)))
    assert s3.process() is Status.READY
    assert s3._committed == {("t", 2): 34}
    drain(s3)
    s3.stop()
    names = [k.rsplit("/", 1)[1] for k in s3_endpoint.keys(b)]
    assert names[-1] == "t+2+%020d+%020d" % (35, 39)
