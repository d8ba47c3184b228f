"""The one definition of fchannel's on-disk format (see docs/FORMAT.md).

Both the compiled codec (``_codec.pyx``) and its pure twin (``_codec_py.py``)
take their constants from here.  All integers are little-endian.
"""
from __future__ import annotations

import struct

# ---- log files: log-N ------------------------------------------------------
LOG_MAGIC = b"FCLG"
#: the version new log files are written in; the reader also reads the older ones
LOG_VERSION = 2
LOG_VERSIONS = (1, 2)
#: magic, version, reserved, file id, created write-order id, crc32, reserved
LOG_HEADER = struct.Struct("<4sHHQQII")
LOG_HEADER_SIZE = LOG_HEADER.size  # 32

# ---- blocks (version 2) -----------------------------------------------------------
#: a log file is a sequence of blocks; every block but the first starts with a
#: block header, the anchor resync resumes at (docs/FORMAT.md, "Blocks")
BLOCK_SIZE = 32768
BLOCK_MAGIC = 0xB1FC            # bytes FC B1 on disk
#: magic u16, continuation u16 (bytes of a record begun in an earlier block
#: that fill the start of this one), crc32 u32 of BLOCK_CRC_INPUT
BLOCK_HEADER = struct.Struct("<HHI")
BLOCK_HEADER_SIZE = BLOCK_HEADER.size  # 8
#: what a block header's crc covers: magic, continuation, file id, block index
BLOCK_CRC_INPUT = struct.Struct("<HHQQ")

# ---- records -----------------------------------------------------------------
RECORD_MAGIC = 0x1AFC           # bytes FC 1A on disk
REC_PUT = 1
REC_TAKE = 2                    # version 1 only (version 2 names takes in the commit)
REC_COMMIT = 3
REC_ROLLBACK = 4
RECORD_TYPES = {REC_PUT: "put", REC_TAKE: "take", REC_COMMIT: "commit",
                REC_ROLLBACK: "rollback"}
#: version 2: magic u16, type u8, flags u8, length u32 (whole record, header
#: included, block headers not), prev u32 (bytes from the start of the
#: previous record of the file to this one's, 0 for the first), transaction id
#: u64, write-order id u64, crc32 of the payload u32, crc32 of header bytes
#: [0:32] u32
RECORD_HEADER = struct.Struct("<HBBIIQQII")
RECORD_HEADER_SIZE = RECORD_HEADER.size  # 36
PREV_OFFSET = 8
TXN_OFFSET = 12
WOID_OFFSET = 20
BODY_CRC_OFFSET = 28
HEADER_CRC_OFFSET = 32
#: flags: the payload of a put is sealed (encrypted; docs/FORMAT.md, "Encryption")
FLAG_SEALED = 1
#: a record is never larger than this (the length field is a u32)
MAX_RECORD_SIZE = 0xFFFFFFFF
#: a varint (LEB128) is at most this long
VARINT_MAX = 10

COMMIT_PUTS = 1
COMMIT_TAKES = 2

# ---- records of version 1 (read only) ------------------------------------------------
#: magic u16, type u8, flags u8, length u32 (whole record), crc32 u32,
#: transaction id u64, write-order id u64
RECORD_HEADER_V1 = struct.Struct("<HBBIIQQ")
RECORD_HEADER_SIZE_V1 = RECORD_HEADER_V1.size  # 28
#: the crc covers bytes [0:CRC_OFFSET_V1] and [CRC_END_V1:length]
CRC_OFFSET_V1 = 8
CRC_END_V1 = 12

# ---- scan results ----------------------------------------------------------------
#: ``scan`` returns its records flattened into one int64 array, REC_FIELDS per
#: record: type, transaction id, write-order id, offset in the file, and aux
#: (the pointer of a take; ``kind | has_marks << 8 | count << 16`` of a commit;
#: the flags of a put; else 0).  A version 2 take commit names its pointers
#: itself: scan gives one take row per pointer (with the commit's ids and
#: offset) before the commit's row, as version 1's take records read.
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
