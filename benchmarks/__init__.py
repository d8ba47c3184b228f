"""fchannel's comparison benchmarks: ``python -m benchmarks --help``.

- ``queues``: the queues compared (baselines, peers, fchannel) behind one interface;
- ``workloads``: the workloads (a)-(h) of issues 5 and 15;
- ``report``: the results markdown and the PNG plot;
- ``run``: the entry point; ``worker``: child processes (pure-Python build,
  SIGKILL and memory measurements).
"""
