"""Log files built in memory for codec tests: records encoded into a buffer,
finalized and laid out in blocks as the channel writes them."""
from __future__ import annotations

import struct
import zlib

from fchannel.file import format as F
from fchannel.file.log import encode_log_header


def log_bytes(codec, buf: bytearray, file_id: int = 1, first_woid: int = 1) -> bytes:
    """A whole log file (header and blocks) holding the records of *buf*."""
    codec.finalize(buf, 0, first_woid)
    framed, end, _count, _last, _si = codec.frame(
        buf, 0, F.LOG_HEADER_SIZE, F.MAX_FILE_SIZE, file_id, 0, [], 0, [])
    assert end == len(buf)
    return encode_log_header(file_id, first_woid) + bytes(framed)


def reseal_header(data: bytearray, pos: int) -> None:
    """Give the record header at *pos* a valid crc again after editing it."""
    struct.pack_into("<I", data, pos + F.HEADER_CRC_OFFSET,
                     zlib.crc32(data[pos:pos + F.HEADER_CRC_OFFSET]))
