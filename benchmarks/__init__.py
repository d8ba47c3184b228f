"""fchannel's comparison benchmarks: ``python -m benchmarks --help``.

- ``queues``: the queues compared (baselines, peers, fchannel) behind one interface;
- ``workloads``: the workloads (a)-(g) of issue 5;
- ``report``: the results markdown and the PNG plot;
- ``run``: the entry point; ``worker``: child processes (pure-Python build,
  SIGKILL and memory measurements).
"""
