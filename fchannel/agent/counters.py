"""Per-component counters with Flume's names.

Each source, sink and channel has one counter group, reported by the HTTP
monitor as Flume does (``/metrics``: ``{"SOURCE.r1": {"Type": "SOURCE",
"EventReceivedCount": "12", ...}}``) and in Prometheus text.
"""
from __future__ import annotations

import threading
import time
from typing import Any

SOURCE_COUNTERS = (
    "EventReceivedCount", "EventAcceptedCount",
    "AppendReceivedCount", "AppendAcceptedCount",
    "AppendBatchReceivedCount", "AppendBatchAcceptedCount",
    "OpenConnectionCount", "ChannelWriteFail", "EventReadFail", "GenericProcessingFail",
    "FailureCount", "RestartCount",   # fchannel's: the lifecycle supervisor's
)

SINK_COUNTERS = (
    "ConnectionCreatedCount", "ConnectionClosedCount", "ConnectionFailedCount",
    "BatchEmptyCount", "BatchUnderflowCount", "BatchCompleteCount",
    "EventDrainAttemptCount", "EventDrainSuccessCount", "EventWriteFail", "ChannelReadFail",
    "FailureCount", "RestartCount",   # fchannel's: the lifecycle supervisor's
)

# channel counters are read from the channel's own ``counters`` mapping
CHANNEL_COUNTERS = {
    "ChannelSize": "channel_size",
    "ChannelCapacity": "channel_capacity",
    "ChannelFillPercentage": "channel_fill_percentage",
    "EventPutAttemptCount": "event_put_attempt_count",
    "EventPutSuccessCount": "event_put_success_count",
    "EventTakeAttemptCount": "event_take_attempt_count",
    "EventTakeSuccessCount": "event_take_success_count",
}

# gauges (not monotonic) for the Prometheus exposition
GAUGES = frozenset({"ChannelSize", "ChannelCapacity", "ChannelFillPercentage",
                    "OpenConnectionCount", "StartTime", "StopTime"})


class CounterGroup:
    """Thread-safe named counters of one component, plus start/stop times (ms)."""

    def __init__(self, kind: str, name: str, names: tuple[str, ...]) -> None:
        self.kind = kind          # SOURCE, SINK or CHANNEL
        self.name = name
        self._lock = threading.Lock()
        self._values: dict[str, int] = dict.fromkeys(names, 0)
        self.start_time = 0
        self.stop_time = 0

    def add(self, counter: str, n: int = 1) -> None:
        with self._lock:
            self._values[counter] = self._values.get(counter, 0) + n

    def set(self, counter: str, value: int) -> None:
        with self._lock:
            self._values[counter] = value

    def get(self, counter: str) -> int:
        with self._lock:
            return self._values.get(counter, 0)

    def started(self) -> None:
        self.start_time = int(time.time() * 1000)
        self.stop_time = 0

    def stopped(self) -> None:
        self.stop_time = int(time.time() * 1000)

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            out: dict[str, Any] = dict(self._values)
        out["StartTime"] = self.start_time
        out["StopTime"] = self.stop_time
        return out


def source_counters(name: str) -> CounterGroup:
    return CounterGroup("SOURCE", name, SOURCE_COUNTERS)


def sink_counters(name: str) -> CounterGroup:
    return CounterGroup("SINK", name, SINK_COUNTERS)


class ChannelCounterView:
    """Flume's channel counter names over a channel's ``counters`` mapping."""

    kind = "CHANNEL"

    def __init__(self, name: str, channel: Any) -> None:
        self.name = name
        self.channel = channel
        self.start_time = 0
        self.stop_time = 0

    def started(self) -> None:
        self.start_time = int(time.time() * 1000)

    def stopped(self) -> None:
        self.stop_time = int(time.time() * 1000)

    def snapshot(self) -> dict[str, Any]:
        raw = dict(self.channel.counters)
        out: dict[str, Any] = {}
        for flume, ours in CHANNEL_COUNTERS.items():
            if ours in raw:
                out[flume] = raw[ours]
        if "ChannelFillPercentage" not in out:
            out["ChannelFillPercentage"] = getattr(self.channel, "fill_percentage", 0.0)
        # whatever else the channel reports (e.g. checkpoint or corruption counts)
        for ours, value in raw.items():
            if ours not in CHANNEL_COUNTERS.values() and isinstance(value, (int, float)):
                out["".join(p.capitalize() for p in ours.split("_"))] = value
        out["StartTime"] = self.start_time
        out["StopTime"] = self.stop_time
        return out
