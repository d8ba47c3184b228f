"""SIGKILL the FileChannel at random instants and inside a checkpoint, a log
roll and a log deletion; reopen and check it against the model (harness.py).

``FCHANNEL_CRASH_ITERATIONS`` sets the number of kills per test (default 15
per test, 30 in all); ``FCHANNEL_CRASH_SEED`` replays a run;
``FCHANNEL_CRASH_REPORT`` names a JSON file that receives the figures.
"""
from __future__ import annotations

import json
import os
import random
import time

import pytest

from tests.crash.harness import PHASES, Harness

pytestmark = pytest.mark.crash

ITERATIONS = int(os.environ.get("FCHANNEL_CRASH_ITERATIONS", "15"))
SEED = int(os.environ.get("FCHANNEL_CRASH_SEED", "0")) or random.randrange(1, 1 << 30)


@pytest.mark.parametrize("backup", [False, True], ids=["no-backup", "backup"])
def test_kill_at_random_instants_and_inside_checkpoint_roll_and_gc(tmp_path, backup):
    seed = SEED + (1 if backup else 0)
    h = Harness(str(tmp_path), backup=backup, seed=seed)
    t0 = time.monotonic()
    try:
        for _ in range(ITERATIONS):
            h.run_once()
    finally:
        h.stats.seconds = time.monotonic() - t0
        report = os.environ.get("FCHANNEL_CRASH_REPORT")
        if report:
            entry = {"backup": backup, "seed": seed, "iterations_done": h.iteration,
                     "implementation": os.environ.get("FCHANNEL_NO_EXTENSIONS") and "pure"
                     or "compiled", **h.stats.as_dict()}
            with open(report, "a", encoding="utf-8") as f:
                f.write(json.dumps(entry) + "\n")
    print(f"seed {seed}: {json.dumps(h.stats.as_dict())}")
    assert h.stats.kills == ITERATIONS
    # each kind of instant was hit (the phases rotate; a hook that never fired
    # is reported as a miss and the kill counted as random)
    if 2 * len(PHASES) <= ITERATIONS:
        for phase in PHASES:
            assert h.stats.per_phase[phase] > 0, h.stats.as_dict()
    assert h.stats.events_verified > 0
