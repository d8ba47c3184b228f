"""Encryption at rest for the FileChannel: settings, key files and sealing.

A record's encrypted part (the event's headers and body) is *sealed* as::

    u8 alias_len | alias (UTF-8, 1..255 bytes) | 12-byte nonce | AES-GCM ciphertext + 16-byte tag

The alias names the key that sealed it, so a channel whose key ring holds
the old keys beside the active one reads what the old keys wrote (rotation).
The caller's *aad* (associated data: bytes that are authenticated, not
encrypted, e.g. the record's place) is bound to the tag.

Nonces never repeat under one key: each :class:`Sealer` draws 8 random
bytes and counts the other 4 (a u32 counter, big-endian); when the counter
wraps it draws a fresh random prefix.  Two Sealers (two processes, two
opens) collide only if they draw the same 8 random bytes.

Key files (``encryption.keyProvider.keys.<alias>.keyFile``) hold a 128, 192
or 256-bit AES key as either

* exactly 16, 24 or 32 raw bytes, or
* the same as hex text (32, 48 or 64 hex digits), or
* the same as base64 text (standard alphabet, with its ``=`` padding),

the text forms optionally followed by one newline.  A file that is entirely
hex or base64 text of a valid length is read as text.  ``fchannel keygen``
writes 64 hex digits and a newline, mode 0600.

``cryptography`` is an optional dependency (``pip install
'fchannel[encryption]'``); it is imported only when encryption is used.
"""
from __future__ import annotations

import base64
import binascii
import itertools
import logging
import os
import re
import stat
import struct
import sys
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fchannel.errors import ConfigError, CorruptionError, DecryptionError, KeyMissingError

__all__ = [
    "EncryptionSettings",
    "encryption_settings",
    "Sealer",
    "key_alias",
    "read_key_file",
    "write_key_file",
    "check_alias",
    "CIPHER_PROVIDERS",
    "KEY_PROVIDERS",
    "NONCE_SIZE",
    "TAG_SIZE",
    "MAX_ALIAS_BYTES",
    "overhead",
]

log = logging.getLogger("fchannel.file")

#: the cipher providers understood here (Flume's AESCTRNOPADDING is mapped
#: to this one by the Flume property reader, with a warning)
CIPHER_PROVIDERS = ("AESGCM",)
#: the key providers understood here (Flume's JCEKSFILE is refused)
KEY_PROVIDERS = ("KEYFILE",)
NONCE_SIZE = 12
TAG_SIZE = 16
MAX_ALIAS_BYTES = 255
KEY_SIZES = (16, 24, 32)
#: a key file larger than this is not a key file
_MAX_KEY_FILE = 4096
_NEEDS = "encryption needs `pip install 'fchannel[encryption]'`"
_BAD_ALIAS = re.compile(r"[\s,]")
_HEX = re.compile(rb"[0-9a-fA-F]+")
_B64 = re.compile(rb"[A-Za-z0-9+/]+={0,2}")


def overhead(alias: str) -> int:
    """Bytes a sealed payload adds to its plaintext under key *alias*."""
    return 1 + len(alias.encode("utf-8")) + NONCE_SIZE + TAG_SIZE


def _aesgcm() -> Any:
    """The AESGCM class of ``cryptography`` (a one-line ConfigError when the
    package is missing)."""
    try:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    except ImportError as exc:
        raise ConfigError(f"{_NEEDS} (module 'cryptography' is not installed: {exc})") \
            from None
    return AESGCM


def _invalid_tag() -> type[Exception]:
    from cryptography.exceptions import InvalidTag
    return InvalidTag


# ---- settings -----------------------------------------------------------------------

@dataclass(frozen=True)
class EncryptionSettings:
    """Validated encryption settings of one channel: the alias of the key
    that seals new records, every alias's key file (absolute paths; the
    active one and any older ones still needed to read), the cipher
    (``"AESGCM"``) and the key provider (``"KEYFILE"``)."""

    active_key: str
    keys: dict[str, str]
    cipher_provider: str = "AESGCM"
    key_provider: str = "KEYFILE"


def check_alias(field: str, alias: Any) -> str:
    """*alias* if it is a usable key alias (a non-empty str of at most 255
    UTF-8 bytes, without whitespace or commas), else a ConfigError naming
    *field* and the value."""
    if not isinstance(alias, str) or not alias:
        raise ConfigError(f"{field} must be a non-empty key alias (str), got {alias!r}")
    try:
        n = len(alias.encode("utf-8"))
    except UnicodeEncodeError:
        raise ConfigError(f"{field} must be valid Unicode text, got {alias!r}") from None
    if n > MAX_ALIAS_BYTES:
        raise ConfigError(f"{field} must be at most {MAX_ALIAS_BYTES} bytes of UTF-8, "
                          f"got {n} bytes ({alias!r})")
    if _BAD_ALIAS.search(alias):
        raise ConfigError(f"{field} must not contain whitespace or commas, got {alias!r}")
    return alias


def _key_path(field: str, value: Any) -> str:
    if isinstance(value, bytes) or not isinstance(value, (str, os.PathLike)):
        raise ConfigError(f"{field} must be the path of a key file (str), got {value!r}")
    text = os.fspath(value)
    if not isinstance(text, str) or not text.strip():
        raise ConfigError(f"{field} must be the path of a key file (str), got {value!r}")
    return os.path.abspath(os.path.expanduser(text.strip()))


def _choice(field: str, value: Any, allowed: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value.strip().upper() not in allowed:
        raise ConfigError(f"{field} must be {' or '.join(allowed)}, got {value!r}")
    return value.strip().upper()


def encryption_settings(value: Any) -> EncryptionSettings | None:
    """The validated :class:`EncryptionSettings` for the FileChannel's
    ``encryption`` argument: None (no encryption), an EncryptionSettings,
    or a mapping with ``active_key``, ``keys`` (alias -> key file path) and
    optionally ``cipher_provider`` ("AESGCM") and ``key_provider``
    ("KEYFILE").  Every problem is a ConfigError naming the field and the
    value; a missing ``cryptography`` is one too."""
    if value is None:
        return None
    if isinstance(value, EncryptionSettings):
        value = {"active_key": value.active_key, "keys": value.keys,
                 "cipher_provider": value.cipher_provider,
                 "key_provider": value.key_provider}
    if not isinstance(value, Mapping):
        raise ConfigError(f"encryption must be None, an EncryptionSettings or a mapping "
                          f"(active_key, keys), got {value!r}")
    known = ("active_key", "keys", "cipher_provider", "key_provider")
    unknown = [k for k in value if k not in known]
    if unknown:
        raise ConfigError(f"encryption: unknown field(s) {', '.join(map(repr, unknown))} "
                          f"(known: {', '.join(known)})")
    for req in ("active_key", "keys"):
        if req not in value:
            raise ConfigError(f"encryption[{req!r}] is missing (encryption needs "
                              "active_key and keys)")
    keys_in = value["keys"]
    if not isinstance(keys_in, Mapping) or not keys_in:
        raise ConfigError("encryption['keys'] must be a non-empty mapping of key alias to "
                          f"key file path, got {keys_in!r}")
    keys: dict[str, str] = {}
    for alias, path in keys_in.items():
        check_alias("encryption['keys'] alias", alias)
        keys[alias] = _key_path(f"encryption['keys'][{alias!r}]", path)
    active = check_alias("encryption['active_key']", value["active_key"])
    if active not in keys:
        raise ConfigError(f"encryption['active_key'] is {active!r}, which is not one of the "
                          f"keys ({', '.join(map(repr, keys))})")
    cipher = _choice("encryption['cipher_provider']",
                     value.get("cipher_provider", "AESGCM"), CIPHER_PROVIDERS)
    provider = _choice("encryption['key_provider']",
                       value.get("key_provider", "KEYFILE"), KEY_PROVIDERS)
    _aesgcm()   # a missing cryptography is a configuration problem, found now
    return EncryptionSettings(active_key=active, keys=keys, cipher_provider=cipher,
                              key_provider=provider)


# ---- key files -----------------------------------------------------------------------

_warned_modes: set[str] = set()
_warned_lock = threading.Lock()


def _parse_key(data: bytes) -> bytes | None:
    """The key in a key file's bytes, or None when they are no key."""
    text = data
    if text.endswith(b"\r\n"):
        text = text[:-2]
    elif text.endswith(b"\n"):
        text = text[:-1]
    if len(text) in (32, 48, 64) and _HEX.fullmatch(text):
        return bytes.fromhex(text.decode("ascii"))
    if len(text) in (24, 32, 44) and _B64.fullmatch(text):
        try:
            key = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            key = b""
        if len(key) in KEY_SIZES:
            return key
    if len(data) in KEY_SIZES:
        return data
    return None


def read_key_file(path: str, alias: str = "", where: str = "") -> bytes:
    """The AES key in the key file *path* (see the module docstring for the
    forms it may take).  A missing, unreadable or malformed file is a
    ConfigError naming the alias, the file and what is wrong (*where* says
    which setting gave the path).  A file that group or others may read is
    logged as a warning, once per file."""
    what = f"key {alias!r} " if alias else "key "
    setting = f" ({where})" if where else ""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise ConfigError(f"encryption {what}file {path!r}{setting} does not exist; make one "
                          "with `fchannel keygen PATH`") from None
    except IsADirectoryError:
        raise ConfigError(f"encryption {what}file {path!r}{setting} is a directory, "
                          "not a key file") from None
    except OSError as exc:
        raise ConfigError(f"encryption {what}file {path!r}{setting} cannot be read: "
                          f"{exc.strerror or exc}") from None
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise ConfigError(f"encryption {what}file {path!r}{setting} is a directory, "
                              "not a key file")
        chunks = []
        total = 0
        while total <= _MAX_KEY_FILE:
            b = os.read(fd, _MAX_KEY_FILE + 1 - total)
            if not b:
                break
            chunks.append(b)
            total += len(b)
        data = b"".join(chunks)
    except OSError as exc:
        raise ConfigError(f"encryption {what}file {path!r}{setting} cannot be read: "
                          f"{exc.strerror or exc}") from None
    finally:
        os.close(fd)
    key = _parse_key(data) if len(data) <= _MAX_KEY_FILE else None
    if key is None:
        size = f"more than {_MAX_KEY_FILE}" if len(data) > _MAX_KEY_FILE else str(len(data))
        raise ConfigError(
            f"encryption {what}file {path!r}{setting} holds no AES key ({size} bytes): a key "
            "file holds 16, 24 or 32 raw bytes, or that many as hex or base64 text "
            "(optionally followed by a newline); make one with `fchannel keygen PATH`")
    if st.st_mode & 0o077 and stat.S_ISREG(st.st_mode):
        with _warned_lock:
            first = path not in _warned_modes
            _warned_modes.add(path)
        if first:
            log.warning("encryption %sfile %s can be read by group or others (mode %s); "
                        "`chmod 600` it", what, path, oct(stat.S_IMODE(st.st_mode)))
    return key


def write_key_file(path: str | os.PathLike[str], size: int = 32) -> None:
    """Write a new random AES key of *size* bytes to *path* as hex text and a
    newline, mode 0600; an existing file is never overwritten
    (FileExistsError).  Missing parent directories are made (mode 0700).
    The file and its directory are synced."""
    if size not in KEY_SIZES:
        raise ConfigError(f"key size must be 16, 24 or 32 bytes, got {size!r}")
    path = os.fspath(path)
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        os.makedirs(parent, mode=0o700, exist_ok=True)
    key = os.urandom(size)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0),
                 0o600)
    try:
        os.fchmod(fd, 0o600)   # whatever the umask
        data = key.hex().encode("ascii") + b"\n"
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        os.unlink(path)
        raise
    os.close(fd)
    dfd = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


# ---- sealing --------------------------------------------------------------------------

def _prefix(sealed: Any, where: str) -> tuple[bytes, int]:
    """The alias bytes of *sealed* and the offset of its nonce (CorruptionError
    when the prefix is short or malformed)."""
    n = len(sealed)
    if n == 0:
        raise CorruptionError(f"{where}: encrypted payload is empty (no key alias)")
    alen = sealed[0]
    if alen == 0:
        raise CorruptionError(f"{where}: encrypted payload names an empty key alias")
    start = 1 + alen
    if n < start + NONCE_SIZE + TAG_SIZE:
        raise CorruptionError(
            f"{where}: encrypted payload is too short ({n} bytes; its {alen}-byte key alias, "
            f"nonce and tag need at least {start + NONCE_SIZE + TAG_SIZE})")
    return bytes(sealed[1:start]), start


def _alias_text(raw: bytes, where: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise CorruptionError(f"{where}: encrypted payload's key alias is not UTF-8 "
                              f"({raw!r})") from None


def _as_bytes_view(sealed: Any) -> Any:
    if isinstance(sealed, (bytes, bytearray)):
        return sealed
    mv = memoryview(sealed)
    if mv.ndim != 1 or mv.format not in ("B", "b", "c") or not mv.c_contiguous:
        return mv.tobytes()
    if mv.format != "B":
        return mv.cast("B")
    return mv


def key_alias(sealed: Any, where: str = "encrypted payload") -> str:
    """The alias of the key that sealed *sealed* (CorruptionError if its
    prefix is malformed)."""
    raw, _ = _prefix(_as_bytes_view(sealed), where)
    return _alias_text(raw, where)


class Sealer:
    """Seals and opens payloads with AES-GCM under a ring of keys.

    :meth:`seal` uses the active key; :meth:`open` uses the key the sealed
    payload names.  Safe to share between threads."""

    __slots__ = ("channel", "active", "_ciphers", "_head", "_encrypt", "_lock",
                 "_nonces", "_locked", "_pack_nonce", "_invalid_tag")

    def __init__(self, keys: Mapping[str, bytes], active: str | None = None,
                 channel: str = "") -> None:
        aesgcm = _aesgcm()
        if not isinstance(keys, Mapping):
            raise ConfigError(f"keys must be a mapping of alias to key bytes, got {keys!r}")
        self.channel = channel
        self._ciphers: dict[bytes, Any] = {}
        for alias, key in keys.items():
            check_alias("key alias", alias)
            if not isinstance(key, (bytes, bytearray)) or len(key) not in KEY_SIZES:
                size = len(key) if isinstance(key, (bytes, bytearray)) else type(key).__name__
                raise ConfigError(f"key {alias!r} must be 16, 24 or 32 bytes, got {size}")
            self._ciphers[alias.encode("utf-8")] = aesgcm(bytes(key))
        self._invalid_tag = _invalid_tag()
        self._lock = threading.Lock()
        # (random prefix, counter): replaced as one object when the counter wraps
        self._nonces = (os.urandom(8), itertools.count())
        # next() on an itertools.count is atomic while a GIL runs (a C call that
        # never releases it; once enabled, the GIL stays); a free-threaded run
        # takes the lock
        self._locked = not getattr(sys, "_is_gil_enabled", lambda: True)()
        self._pack_nonce = struct.Struct(">8sI").pack
        self.active = active
        if active is None:
            self._head = b""
            self._encrypt = None
        else:
            check_alias("active key", active)
            raw = active.encode("utf-8")
            if raw not in self._ciphers:
                raise ConfigError(f"active key {active!r} is not one of the keys "
                                  f"({', '.join(map(repr, keys))})")
            self._head = bytes((len(raw),)) + raw
            self._encrypt = self._ciphers[raw].encrypt

    @classmethod
    def from_settings(cls, settings: EncryptionSettings, channel: str) -> Sealer:
        """A Sealer with every key of *settings* read from its key file (a
        ConfigError naming the alias, the file and the problem otherwise)."""
        keys = {}
        for alias, path in settings.keys.items():
            where = f"encryption.keyProvider.keys.{alias}.keyFile"
            try:
                keys[alias] = read_key_file(path, alias, where)
            except ConfigError as exc:
                raise ConfigError(f"channel {channel!r}: {exc}") from None
        return cls(keys, settings.active_key, channel)

    @classmethod
    def for_reading(cls, keys: Mapping[str, bytes]) -> Sealer:
        """A Sealer that only opens (tools: ``fchannel inspect --key``)."""
        return cls(keys, None)

    @property
    def aliases(self) -> list[str]:
        return [a.decode("utf-8") for a in self._ciphers]

    def _wrap(self, spent: Any) -> tuple[bytes, int]:
        """A fresh prefix and its first counter value, once *spent* (the
        counter that passed 2**32 - 1) is used up; threads that saw it spent
        take values of the new one."""
        with self._lock:
            if self._nonces[1] is spent:
                self._nonces = (os.urandom(8), itertools.count())
            prefix, counter = self._nonces
            c = next(counter)
        if c > 0xFFFFFFFF:   # pragma: no cover - 2**32 seals while waiting for the lock
            return self._wrap(counter)
        return prefix, c

    def seal(self, plaintext: bytes, aad: bytes) -> bytes:
        """*plaintext* encrypted and authenticated (with *aad*) under the
        active key: ``alias_len | alias | nonce | ciphertext+tag``."""
        encrypt = self._encrypt
        if encrypt is None:
            raise ConfigError("this Sealer has no active key (made for reading); it cannot "
                              "seal")
        # the nonce: 8 random bytes drawn per Sealer (again when the counter
        # wraps) and a u32 counter, so none repeats under this key
        if self._locked:
            with self._lock:
                prefix, counter = self._nonces
                c = next(counter)
                if c > 0xFFFFFFFF:
                    self._nonces = (os.urandom(8), itertools.count(1))
                    prefix, c = self._nonces[0], 0
        else:
            prefix, counter = self._nonces
            c = next(counter)
            if c > 0xFFFFFFFF:
                prefix, c = self._wrap(counter)
        nonce = self._pack_nonce(prefix, c)
        return b"".join((self._head, nonce, encrypt(nonce, plaintext, aad)))

    def open(self, sealed: Any, aad: bytes, where: str) -> bytes:
        """The plaintext of *sealed* (bytes or a memoryview).  A short or
        malformed prefix is a CorruptionError, an alias not in the ring a
        KeyMissingError, a failed tag a DecryptionError; each names *where*."""
        if type(sealed) is not bytes and not (
                type(sealed) is memoryview and sealed.format == "B" and sealed.ndim == 1
                and sealed.c_contiguous):
            sealed = _as_bytes_view(sealed)
        n = len(sealed)
        # the usual case inline (this is on the read path); _prefix says what is wrong
        start = 1 + sealed[0] if n else 0
        if start < 2 or n < start + NONCE_SIZE + TAG_SIZE:
            _prefix(sealed, where)   # raises, saying what is wrong
        raw = bytes(sealed[1:start])
        cipher = self._ciphers.get(raw)
        if cipher is None:
            alias = _alias_text(raw, where)
            known = ", ".join(repr(a) for a in self.aliases) or "none"
            raise KeyMissingError(
                f"{where}: sealed with key {alias!r}, which is not in the key ring "
                f"(keys: {known}); add it with encryption.keyProvider.keys.{alias}.keyFile "
                "(and list it in encryption.keyProvider.keys)")
        nonce_end = start + NONCE_SIZE
        try:
            return cipher.decrypt(sealed[start:nonce_end], sealed[nonce_end:], aad)  # type: ignore[no-any-return]
        except self._invalid_tag:
            alias = _alias_text(raw, where)
            raise DecryptionError(
                f"{where}: cannot decrypt with key {alias!r}: the key material given for "
                f"{alias!r} differs from the key that wrote this record (its checksum "
                "passed, so the bytes are as written); give the original key file for "
                f"{alias!r}") from None
