"""Child-process side of the benchmarks: ``python -m benchmarks.worker TASK JSON``."""
import sys

from benchmarks.workloads import worker_main

if __name__ == "__main__":
    raise SystemExit(worker_main(sys.argv[1:]))
