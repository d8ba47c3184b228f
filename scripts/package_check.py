"""What the sdist and the wheel hold (run by scripts/package_smoke.sh).

usage: package_check.py SDIST WHEEL

The sdist must carry the Cython, type-stub and protobuf sources and the
LICENSE, and no generated C (it is built from scratch); the wheel must carry
the LICENSE and the compiled extensions, stripped (no .symtab or .debug_*
section), and no .c/.pyx sources.
"""
from __future__ import annotations

import io
import struct
import sys
import tarfile
import zipfile


def elf_sections(data: bytes) -> list[str]:
    """Section names of a 64-bit little-endian ELF file."""
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        raise ValueError("not a 64-bit little-endian ELF file")
    shoff, = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x3A)
    headers = [struct.unpack_from("<IIQQQQ", data, shoff + i * shentsize) for i in range(shnum)]
    str_off, str_size = headers[shstrndx][4], headers[shstrndx][5]
    names = data[str_off:str_off + str_size]
    return [names[h[0]:names.index(b"\0", h[0])].decode() for h in headers]


def main(sdist: str, wheel: str) -> int:
    problems = []
    with tarfile.open(sdist) as t:
        names = [n.split("/", 1)[1] for n in t.getnames() if "/" in n]
    for need in ("LICENSE", "setup.py", "fchannel/_event.py", "fchannel/_event.pxd",
                 "fchannel/file/_codec.pyx", "fchannel/file/_codec.pyi", "fchannel/file/_crc32.h",
                 "fchannel/file/_queue.pyx", "fchannel/file/_queue.pyi",
                 "fchannel/file/fchannel.proto", "fchannel/rpc/fchannel_rpc.proto"):
        if need not in names:
            problems.append(f"sdist lacks {need}")
    problems += [f"sdist holds generated {n}" for n in names if n.endswith(".c")]

    with zipfile.ZipFile(wheel) as z:
        infos = z.infolist()
        wnames = [i.filename for i in infos]
        if not any(n.endswith(".dist-info/licenses/LICENSE") for n in wnames):
            problems.append("wheel lacks the LICENSE")
        problems += [f"wheel holds source {n}" for n in wnames if n.endswith((".c", ".pyx"))]
        exts = [n for n in wnames if n.endswith(".so")]
        if len(exts) != 3:
            problems.append(f"wheel has {len(exts)} extensions, expected 3: {exts}")
        for n in exts:
            sections = elf_sections(z.read(n))
            extra = [s for s in sections if s == ".symtab" or s.startswith(".debug")]
            if extra:
                problems.append(f"{n} is not stripped: {extra}")
        size = sum(i.file_size for i in infos)
    for p in problems:
        print("package check FAILED:", p, file=sys.stderr)
    if not problems:
        print(f"package check passed: sdist {len(names)} files; wheel {len(wnames)} files, "
              f"{size / 1e6:.2f} MB unpacked, extensions stripped")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.stdout = io.TextIOWrapper(sys.stdout.buffer, line_buffering=True)
    raise SystemExit(main(*sys.argv[1:]))
