"""Bounds and errors of the record codec and the transaction, on both builds
(issue 14, point 7)."""
from __future__ import annotations

import os
import struct
import sys
import threading
import time

import pytest

import fchannel
from fchannel import Event, FileChannel, TransactionError
from fchannel._compat import codec
from fchannel.file import format as F
from tests.logbytes import log_bytes, reseal_header


def test_take_batch_of_sys_maxsize_is_refused_past_transaction_capacity(tmp_path):
    ch = FileChannel(tmp_path / "ck", [tmp_path / "d"], capacity=100, transaction_capacity=10,
                     minimum_required_space=0)
    try:
        with ch.transaction() as tx:
            tx.put_batch([Event(b"%d" % i) for i in range(10)])
        tx = ch.transaction()
        tx.begin()
        assert tx.take() is not None
        with pytest.raises(TransactionError, match="transaction_capacity=10"):
            tx.take_batch(sys.maxsize)
        tx.rollback()
        tx.close()
        assert ch.size == 10
    finally:
        ch.close()


def test_a_damaged_length_never_allocates_more_than_the_file_holds(tmp_path):
    # one put record whose length field claims nearly 4 GiB, at the end of a
    # file, in a header whose crc was made to match (a header crc protects
    # the length; this is the case where the crc cannot tell)
    buf = bytearray()
    codec.encode_put(buf, 1, Event(b"x" * 5000))
    data = bytearray(log_bytes(codec, buf))
    struct.pack_into("<I", data, F.LOG_HEADER_SIZE + 4, 0xFFFFFF00)
    reseal_header(data, F.LOG_HEADER_SIZE)
    path = tmp_path / "log"
    path.write_bytes(bytes(data))
    fd = os.open(path, os.O_RDONLY)
    try:
        assert codec.read_events(fd, [F.LOG_HEADER_SIZE]) == [None]
    finally:
        os.close(fd)


@pytest.mark.skipif(not fchannel.COMPILED, reason="the GIL is a property of the compiled scan")
def test_scan_releases_the_gil_while_it_checks_records():
    buf = bytearray()
    codec.encode_puts(buf, 1, [Event(b"y" * 400)] * 300_000, [])
    data = log_bytes(codec, buf)
    stamps: list[float] = []
    stop = threading.Event()

    def tick():
        while not stop.is_set() and len(stamps) < 10_000_000:
            stamps.append(time.perf_counter())
            time.sleep(0)

    t = threading.Thread(target=tick)
    t.start()
    try:
        t0 = time.perf_counter()
        recs, end, damage = codec.scan(data, 0, -1, 1)
        t1 = time.perf_counter()
    finally:
        stop.set()
        t.join(10)
    assert len(recs) == 5 * 300_000 and end == len(data) and damage == []
    # with the GIL held for the whole scan, no stamp could fall inside it
    margin = (t1 - t0) / 4
    assert any(t0 + margin < s < t1 - margin for s in stamps), (t1 - t0)


def test_pwrite_that_makes_no_progress_is_an_error_not_a_spin(monkeypatch, tmp_path):
    from fchannel.file import _codec_py  # the compiled loop checks r == 0 in C
    monkeypatch.setattr(os, "pwrite", lambda fd, data, off: 0)
    fd = os.open(tmp_path / "f", os.O_RDWR | os.O_CREAT)
    try:
        with pytest.raises(OSError):
            _codec_py.pwrite_all(fd, b"abc", 0)
    finally:
        os.close(fd)
