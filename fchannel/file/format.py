"""The one definition of fchannel's on-disk format (see docs/FORMAT.md).

Both the compiled codec (``_codec.pyx``) and its pure twin (``_codec_py.py``)
take their constants from here.  All integers are little-endian.
"""
from __future__ import annotations

import struct

# ---- log files: log-N ------------------------------------------------------
LOG_MAGIC = b"FCLG"
LOG_VERSION = 1
#: magic, version, reserved, file id, created write-order id, crc32, reserved
LOG_HEADER = struct.Struct("<4sHHQQII")
LOG_HEADER_SIZE = LOG_HEADER.size  # 32

# ---- records -----------------------------------------------------------------
RECORD_MAGIC = 0x1AFC           # bytes FC 1A on disk
REC_PUT = 1
REC_TAKE = 2
REC_COMMIT = 3
REC_ROLLBACK = 4
RECORD_TYPES = {REC_PUT: "put", REC_TAKE: "take", REC_COMMIT: "commit",
                REC_ROLLBACK: "rollback"}
#: magic u16, type u8, flags u8, length u32 (whole record), crc32 u32,
#: transaction id u64, write-order id u64
RECORD_HEADER = struct.Struct("<HBBIIQQ")
RECORD_HEADER_SIZE = RECORD_HEADER.size  # 28
#: the crc covers bytes [0:CRC_OFFSET] and [CRC_END:length]
CRC_OFFSET = 8
CRC_END = 12
WOID_OFFSET = 20
#: a record is never larger than this (the length field is a u32)
MAX_RECORD_SIZE = 0xFFFFFFFF

COMMIT_PUTS = 1
COMMIT_TAKES = 2

# ---- scan results ----------------------------------------------------------------
#: ``scan`` returns its records flattened into one int64 array, REC_FIELDS per
#: record: type, transaction id, write-order id, offset in the file, and aux
#: (the pointer of a take; ``kind | has_marks << 8 | count << 16`` of a commit; else 0).
#: Read them as ``recs[i + REC_WOID]`` for i in range(0, len(recs), REC_FIELDS).
REC_FIELDS = 5
REC_TYPE, REC_TXN, REC_WOID, REC_OFFSET, REC_AUX = range(REC_FIELDS)

# ---- reading events by pointer -------------------------------------------------------
#: events whose offsets lie within this span are fetched with one pread
SPAN_LIMIT = 1 << 20
#: read this much past the last offset of a span (the last record's length)
READ_AHEAD = 1 << 12

# ---- event pointers ------------------------------------------------------------
MAX_FILE_SIZE = 0xFFFFFFFF      # offsets must fit in the low 32 bits of a pointer
MAX_FILE_ID = 0x7FFFFFFF        # pointers are signed int64


def make_pointer(file_id: int, offset: int) -> int:
    return (file_id << 32) | offset


def pointer_file(ptr: int) -> int:
    return ptr >> 32


def pointer_offset(ptr: int) -> int:
    return ptr & 0xFFFFFFFF


# ---- checkpoint file (memory-mapped) ---------------------------------------------
CHECKPOINT_MAGIC = b"FCCP"
CHECKPOINT_VERSION = 1
#: magic, version, reserved, capacity, write-order id, size, head, marker,
#: ring crc32, header crc32, reserved
CHECKPOINT_HEADER = struct.Struct("<4sHHQQQQQIIQ")
CHECKPOINT_HEADER_SIZE = CHECKPOINT_HEADER.size  # 64
CHECKPOINT_MARKER_OFFSET = 40
CHECKPOINT_COMPLETE = int.from_bytes(b"COMPLETE", "little")
CHECKPOINT_INCOMPLETE = 0
SLOT_SIZE = 8

# ---- framed protobuf files ---------------------------------------------------------
#: magic, payload length, crc32 of payload
FRAME = struct.Struct("<4sII")
FRAME_SIZE = FRAME.size  # 12
CHECKPOINT_META_MAGIC = b"FCMT"
INFLIGHT_PUTS_MAGIC = b"FCIP"
INFLIGHT_TAKES_MAGIC = b"FCIT"
LOG_META_MAGIC = b"FCLM"

# ---- file names ----------------------------------------------------------------------
CHECKPOINT_FILE = "checkpoint"
CHECKPOINT_META_FILE = "checkpoint.meta"
INFLIGHT_PUTS_FILE = "inflightputs"
INFLIGHT_TAKES_FILE = "inflighttakes"
BACKUP_COMPLETE_FILE = "backupComplete"
GC_JOURNAL_FILE = "gc-pending"
LOCK_FILE = "in_use.lock"
LOG_PREFIX = "log-"
META_SUFFIX = ".meta"
