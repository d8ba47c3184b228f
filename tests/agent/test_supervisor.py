"""The lifecycle supervisor: a component that fails to start or dies is logged
with its name, counted and restarted with backoff; the rest keeps running,
and the agent exits 0 when told to stop."""
from __future__ import annotations

import socket
import threading

from fchannel import Event
from fchannel.agent import BatchSink, EventDrivenSource
from fchannel.agent.agent import Agent
from fchannel.agent.properties import parse_properties
from tests.agent.helpers import free_port, http_get_json, send_lines, write_conf
from tests.conftest import wait_for


class DyingSource(EventDrivenSource):
    """Puts one event per start from its own thread, then dies (twice)."""

    starts = 0

    def configure(self, ctx):
        self.lives = ctx.integer("lives", 2)

    def start(self):
        cls = type(self)
        cls.starts += 1
        n = cls.starts

        def run():
            self.put_batch_retrying([Event(f"life {n}".encode())])
            if n <= self.lives:
                self.died(RuntimeError(f"lost the connection in life {n}"))

        self._t = threading.Thread(target=run, daemon=True)
        self._t.start()

    def stop(self):
        self._t.join(5)


class FlakySink(BatchSink):
    """Fails to start twice, then delivers into a list."""

    attempts = 0
    delivered: list[bytes] = []

    def start(self):
        type(self).attempts += 1
        if type(self).attempts <= 2:
            raise ConnectionRefusedError("target not up yet")

    def deliver(self, events):
        type(self).delivered.extend(e.body for e in events)


def test_a_dying_source_is_restarted_with_backoff_and_counted(caplog):
    DyingSource.starts = 0
    agent = Agent.from_properties(parse_properties("""
a1.sources = d
a1.channels = c1
a1.sources.d.type = tests.agent.test_supervisor.DyingSource
a1.sources.d.channels = c1
a1.channels.c1.type = memory
"""), "a1")
    agent.start()
    try:
        c = agent.sources["d"].counter
        wait_for(lambda: c.get("RestartCount") == 2 and agent.channels["c1"].size == 3, 20,
                 what="two restarts and three events")
        assert c.get("FailureCount") == 2
        with agent.channels["c1"].transaction() as tx:
            assert [e.body for e in tx.take_batch(10)] == [b"life 1", b"life 2", b"life 3"]
    finally:
        agent.stop()
    died = [r for r in caplog.records if "died" in r.getMessage()]
    assert died and died[0].name == "fchannel.source.d"
    assert "source 'd' died: lost the connection in life 1" in died[0].getMessage()


def test_a_sink_that_fails_to_start_is_retried_while_the_source_runs():
    FlakySink.attempts = 0
    FlakySink.delivered = []
    agent = Agent.from_properties(parse_properties("""
a1.sources = r1
a1.channels = c1
a1.sinks = k1
a1.sources.r1.type = seq
a1.sources.r1.totalEvents = 5
a1.sources.r1.channels = c1
a1.channels.c1.type = memory
a1.sinks.k1.type = tests.agent.test_supervisor.FlakySink
a1.sinks.k1.channel = c1
"""), "a1")
    agent.start()
    try:
        wait_for(lambda: agent.sources["r1"].counter.get("EventAcceptedCount") == 5, 10,
                 what="the source to run while the sink is down")
        wait_for(lambda: len(FlakySink.delivered) == 5, 20, what="delivery after the restart")
        c = agent.sinks["k1"].counter
        assert c.get("FailureCount") == 2 and c.get("RestartCount") == 1
    finally:
        agent.stop()


def test_agent_process_keeps_running_while_a_port_is_busy(agents, tmp_path):
    busy_port, ok_port, mport = free_port(), free_port(), free_port()
    conf = write_conf(tmp_path / "a.properties", f"""
a1.sources = busy ok
a1.channels = c1
a1.sinks = k1
a1.sources.busy.type = netcat
a1.sources.busy.bind = 127.0.0.1
a1.sources.busy.port = {busy_port}
a1.sources.busy.channels = c1
a1.sources.ok.type = netcat
a1.sources.ok.bind = 127.0.0.1
a1.sources.ok.port = {ok_port}
a1.sources.ok.channels = c1
a1.channels.c1.type = memory
a1.sinks.k1.type = logger
a1.sinks.k1.channel = c1
""")
    blocker = socket.create_server(("127.0.0.1", busy_port))
    try:
        agent = agents(conf, "a1", tmp_path, ["--monitoring-host", "127.0.0.1",
                                              "-Dflume.monitoring.type=http",
                                              f"-Dflume.monitoring.port={mport}"])
        assert "retrying: source 'busy'" in agent.output()
        assert send_lines(ok_port, [b"still served"]) == [b"OK"]
        wait_for(lambda: int(http_get_json(mport)["SOURCE.busy"]["FailureCount"]) >= 2, 20,
                 what="repeated start failures counted")
        assert "[source.busy] source 'busy' failed to start" in agent.output()
    finally:
        blocker.close()
    wait_for(lambda: http_get_json(mport)["SOURCE.busy"]["RestartCount"] == "1", 30,
             what="the source restarted once its port is free")
    assert send_lines(busy_port, [b"now served"]) == [b"OK"]
    wait_for(lambda: "now served" in agent.output(), 10, what="the line logged")
    assert agent.terminate() == 0


class WrongChannelSource(EventDrivenSource):
    """Finds at start that its channel cannot serve it: a configuration problem."""

    def start(self):
        from fchannel import ConfigError
        raise ConfigError(f"source {self.name!r} needs a file channel")


def test_a_config_error_found_at_start_is_a_configuration_problem(agents, tmp_path):
    conf = write_conf(tmp_path / "a.properties", """
a1.sources = w
a1.channels = c1
a1.sinks = k1
a1.sources.w.type = tests.agent.test_supervisor.WrongChannelSource
a1.sources.w.channels = c1
a1.channels.c1.type = memory
a1.sinks.k1.type = null
a1.sinks.k1.channel = c1
""")
    agent = agents(conf, "a1", tmp_path, wait_started=False)
    assert agent.proc.wait(30) == 2
    out = agent.output()
    assert "configuration problem" in out and "source 'w' needs a file channel" in out
    assert "[sink.k1] stopped" in out          # what had started was stopped
    assert "restarting" not in out


class NoPermissionSink(BatchSink):
    def start(self):
        raise PermissionError(13, "Permission denied", "/var/spool/out")


def test_a_permission_problem_at_start_is_named_so(caplog):
    agent = Agent.from_properties(parse_properties("""
a1.channels = c1
a1.sinks = k1
a1.channels.c1.type = memory
a1.sinks.k1.type = tests.agent.test_supervisor.NoPermissionSink
a1.sinks.k1.channel = c1
"""), "a1")
    agent.start()
    agent.stop()
    msgs = [r.getMessage() for r in caplog.records if r.name == "fchannel.sink.k1"]
    assert any("sink 'k1' failed to start (permission problem): [Errno 13] Permission denied"
               in m for m in msgs), msgs


def test_kafka_source_with_its_broker_unreachable_does_not_stop_the_agent(agents, tmp_path):
    """The issue's case: a kafka source whose broker is down fails to start;
    the agent keeps serving its other source and retries the kafka one."""
    nc_port, dead_port, mport = free_port(), free_port(), free_port()
    conf = write_conf(tmp_path / "k.properties", f"""
a1.sources = k nc
a1.channels = c1 c2
a1.sinks = k1
a1.sources.k.type = kafka
a1.sources.k.channels = c1
a1.sources.k.kafka.bootstrap.servers = 127.0.0.1:{dead_port}
a1.sources.k.kafka.topics = orders,payments
a1.sources.k.kafka.consumer.api.version.auto.timeout.ms = 500
a1.sources.nc.type = netcat
a1.sources.nc.bind = 127.0.0.1
a1.sources.nc.port = {nc_port}
a1.sources.nc.channels = c2
a1.channels.c1.type = file
a1.channels.c1.checkpointDir = ./c1/cp
a1.channels.c1.dataDirs = ./c1/data
a1.channels.c1.minimumRequiredSpace = 0
a1.channels.c2.type = memory
a1.sinks.k1.type = logger
a1.sinks.k1.channel = c2
""")
    agent = agents(conf, "a1", tmp_path, ["--monitoring-host", "127.0.0.1",
                                          "--monitoring", "http", "--port", str(mport)])
    assert "source 'k' failed to start" in agent.output()
    assert send_lines(nc_port, [b"served meanwhile"]) == [b"OK"]
    wait_for(lambda: "served meanwhile" in agent.output(), 10, what="the line logged")
    wait_for(lambda: int(http_get_json(mport)["SOURCE.k"]["FailureCount"]) >= 2, 30,
             what="the kafka source retried")
    assert agent.proc.poll() is None
    assert agent.terminate() == 0


class SlowStartSource(EventDrivenSource):
    """Its start blocks until the test lets it go (a broker that does not answer)."""

    release = threading.Event()

    def start(self):
        if not type(self).release.wait(30):
            raise TimeoutError("never released")


def test_a_slow_start_holds_up_no_other_source():
    SlowStartSource.release.clear()
    port = free_port()
    agent = Agent.from_properties(parse_properties(f"""
a1.sources = slow nc
a1.channels = c1
a1.sources.slow.type = tests.agent.test_supervisor.SlowStartSource
a1.sources.slow.channels = c1
a1.sources.nc.type = netcat
a1.sources.nc.bind = 127.0.0.1
a1.sources.nc.port = {port}
a1.sources.nc.channels = c1
a1.channels.c1.type = memory
"""), "a1")
    starter = threading.Thread(target=agent.start, daemon=True)
    starter.start()
    try:
        # nc serves while slow is still starting
        wait_for(lambda: _accepts(port), 10, what="the netcat source to listen")
        assert send_lines(port, [b"not held up"]) == [b"OK"]
        assert starter.is_alive()                 # slow's start is still under way
    finally:
        SlowStartSource.release.set()
        starter.join(30)
        agent.stop()
    assert agent.channels["c1"].size == 1


def _accepts(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False
