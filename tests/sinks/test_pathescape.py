"""Flume's path escapes, rounding and time zones."""
from __future__ import annotations

import pytest

from fchannel.errors import ConfigError
from fchannel.sinks._pathescape import ROUND_UNITS, PathTemplate, load_zone

UTC = load_zone("UTC")
# 2023-11-14 22:13:20.123 UTC, a Tuesday
TS = 1_700_000_000_123


def render(tpl: str, headers=None, ts=TS, tz=UTC, round_ms=0) -> str:
    return PathTemplate(tpl, time_zone=tz, round_ms=round_ms).render(headers or {}, ts)


def test_time_escapes_utc():
    assert render("/d/%Y/%m/%d/%H%M%S") == "/d/2023/11/14/221320"
    assert render("%y %e %n %k %I %p %j %D") == "23 14 11 22 10 PM 318 11/14/23"
    assert render("%a %A %b %B") == "Tue Tuesday Nov November"
    assert render("%c") == "Tue Nov 14 22:13:20 2023"
    assert render("%s %t %z") == "1700000000 1700000000123 +0000"


def test_header_and_literal_percent():
    assert render("s3://b/%{topic}/p=%{partition}/%%x", {"topic": "t1", "partition": "3"}) \
        == "s3://b/t1/p=3/%x"
    assert render("/x/%{missing}/y", {}) == "/x//y"   # Flume: a missing header is ''


def test_time_zone():
    tz = load_zone("America/New_York")
    assert render("%Y-%m-%d %H %z", tz=tz) == "2023-11-14 17 -0500"
    with pytest.raises(ConfigError, match="time zone"):
        load_zone("Mars/Olympus")


@pytest.mark.parametrize("unit,value,expect", [
    ("second", 10, "22:13:20"), ("minute", 5, "22:10:00"), ("minute", 15, "22:00:00"),
    ("hour", 3, "21:00:00"), ("hour", 1, "22:00:00"), ("day", 1, "00:00:00")])
def test_round_down(unit, value, expect):
    assert render("%H:%M:%S", round_ms=ROUND_UNITS[unit] * value) == expect


def test_round_down_in_a_half_hour_zone():
    tz = load_zone("Asia/Kolkata")   # +05:30: 03:43:20 local
    assert render("%H:%M", tz=tz, round_ms=ROUND_UNITS["hour"]) == "03:00"


def test_bad_escapes_are_config_errors():
    with pytest.raises(ConfigError, match="unknown escape %Q"):
        PathTemplate("/x/%Q")
    with pytest.raises(ConfigError, match="unterminated"):
        PathTemplate("/x/%{topic")
    with pytest.raises(ConfigError, match="%\\[nope\\]"):
        PathTemplate("/x/%[nope]")


def test_host_escapes_and_glob():
    import socket
    assert PathTemplate("/x/%[localhost]").render({}) == "/x/" + socket.gethostname()
    t = PathTemplate("s3://b/%{topic}/%Y-%m-%d/[x]")
    assert t.glob() == "s3://b/*/*-*-*/[[]x[]]"
    assert not t.constant and t.needs_time and t.headers == ["topic"]
