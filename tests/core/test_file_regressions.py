"""Regression tests for bugs the reliability suites (tests/crash,
tests/corruption, tests/fuzz, tests/stress) found in the FileChannel.  Each
names the bug it pins."""
from __future__ import annotations

import threading

from fchannel.file import format as F
from fchannel.file.log import LogFile, read_log_meta


def test_concurrent_log_meta_writes_do_not_collide(tmp_path):
    """Bug: the checkpointer and a log roll wrote the same ``log-N.meta``
    through the same ``.tmp`` name at once; one rename failed (the checkpoint
    failed) and the meta could end up with the older state (closed=False)."""
    path = str(tmp_path / "log-7")
    open(path, "wb").close()
    info = LogFile(7, 0, path, created_woid=1, last_woid=0, closed=False)
    errors = []

    def writer(close_at):
        try:
            for k in range(300):
                if k == close_at:
                    info.last_woid = 99
                    info.closed = True
                info.write_meta()
        except Exception as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in (150, 10**9)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    meta = read_log_meta(path, 7)
    assert meta.closed and meta.last_write_order_id == 99
    assert not (tmp_path / ("log-7" + F.META_SUFFIX + ".tmp")).exists()
