"""An application that ships its logs through a durable FileChannel.

Python's take on Flume's embedded agent: the application runs a small agent
in-process (a file channel and a sink, no source), and a
:class:`~fchannel.integrations.logging.ChannelHandler` puts its log records
into that agent's channel.  The agent's sink ships them on: to the ``grpc``
source of a collector agent when ``LS_COLLECTOR=host:port`` is set, else to
rolling files under ``LS_DIR/out`` (one JSON object per line).  Records
survive a crash of the application once committed (within the handler's
``flush_interval``) and a collector that is down: they wait in the channel
and go out when it is back (at least once).

Run it::

    python examples/log_shipping.py            # LS_DIR=log-shipping-data, 1000 records
    LS_COLLECTOR=127.0.0.1:4141 python examples/log_shipping.py

Settings (environment): ``LS_DIR``, ``LS_COUNT`` (records to log, default
1000), ``LS_COLLECTOR``.
"""
from __future__ import annotations

import logging
import os
import time

from fchannel.integrations.logging import ChannelHandler

from fchannel.agent import Agent

DIR = os.path.abspath(os.environ.get("LS_DIR", "log-shipping-data"))
COUNT = int(os.environ.get("LS_COUNT", "1000"))
COLLECTOR = os.environ.get("LS_COLLECTOR")


def agent_properties() -> dict[str, str]:
    props = {
        "app.channels": "logs",
        "app.sinks": "ship",
        "app.channels.logs.type": "file",
        "app.channels.logs.checkpointDir": os.path.join(DIR, "checkpoint"),
        "app.channels.logs.dataDirs": os.path.join(DIR, "data"),
        "app.channels.logs.capacity": "100000",
        "app.channels.logs.transactionCapacity": "1000",
        "app.sinks.ship.channel": "logs",
    }
    if COLLECTOR:
        host, port = COLLECTOR.rsplit(":", 1)
        props.update({"app.sinks.ship.type": "grpc", "app.sinks.ship.hostname": host,
                      "app.sinks.ship.port": port, "app.sinks.ship.batch-size": "500"})
    else:
        props.update({"app.sinks.ship.type": "file_roll",
                      "app.sinks.ship.sink.directory": os.path.join(DIR, "out"),
                      "app.sinks.ship.sink.rollInterval": "0",
                      "app.sinks.ship.sink.batchSize": "500"})
    return props


def main() -> None:
    agent = Agent.from_properties(agent_properties(), "app")
    agent.start()
    handler = ChannelHandler(agent.channels["logs"], flush_interval=0.5, on_full="drop")
    root = logging.getLogger()
    root.setLevel(logging.INFO)
    root.addHandler(handler)
    try:
        log = logging.getLogger("shop.orders")
        for i in range(COUNT):
            log.info("order %d accepted", i)
    finally:
        root.removeHandler(handler)
        handler.close()         # commits what is pending
        channel = agent.channels["logs"]
        deadline = time.monotonic() + 10
        while channel.size and time.monotonic() < deadline:
            time.sleep(0.05)    # let the sink ship the rest; what it cannot stays stored
        agent.stop()


if __name__ == "__main__":
    main()
