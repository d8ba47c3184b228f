"""The FileChannel's settings: their defaults, Flume's property names and
units, and validation (every problem a ConfigError naming the setting and
the value)."""
from __future__ import annotations

import difflib
import logging
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from fchannel._config import Prop, as_bool, as_float, as_int, kwargs_from_properties
from fchannel.errors import ConfigError
from fchannel.file import format as F
from fchannel.file.crypto import EncryptionSettings, check_alias, encryption_settings

log = logging.getLogger("fchannel.file")

#: the smallest max_file_size that holds a header and a small record
MIN_FILE_SIZE = F.LOG_HEADER_SIZE + 2 * F.RECORD_HEADER_SIZE + 64

_DEFAULT_HOME = os.path.join("~", ".fchannel", "file-channel")


def _ms(name: str, value: Any) -> float:
    return as_float(name, value, strictly_positive=True) / 1000.0


def _seconds(name: str, value: Any) -> float:
    return as_float(name, value, minimum=0)


def _seconds_positive(name: str, value: Any) -> float:
    return as_float(name, value, strictly_positive=True)


def _dir_list(name: str, value: Any) -> list[str]:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{name} must be a comma-separated list of directories, got {value!r}")
    return [p.strip() for p in value.split(",") if p.strip()]


def _dir(name: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{name} must be a directory path, got {value!r}")
    return value.strip()


#: Flume's file channel properties, with their units converted
PROPERTIES = {
    "checkpointDir": Prop("checkpoint_dir", _dir),
    "dataDirs": Prop("data_dirs", _dir_list),
    "useDualCheckpoints": Prop("_use_dual", as_bool),
    "backupCheckpointDir": Prop("backup_checkpoint_dir", _dir),
    "transactionCapacity": Prop("transaction_capacity", lambda n, v: as_int(n, v, minimum=1)),
    "capacity": Prop("capacity", lambda n, v: as_int(n, v, minimum=1)),
    "checkpointInterval": Prop("checkpoint_interval", _ms),
    "maxFileSize": Prop("max_file_size", lambda n, v: as_int(n, v, minimum=0)),
    "minimumRequiredSpace": Prop("minimum_required_space", lambda n, v: as_int(n, v, minimum=0)),
    "keep-alive": Prop("keep_alive", _seconds),
    "checkpointOnClose": Prop("checkpoint_on_close", as_bool),
    "fsyncPerTransaction": Prop("fsync_per_transaction", as_bool),
    "fsyncInterval": Prop("fsync_interval", _seconds_positive),
    "use-fast-replay": Prop("use_fast_replay", as_bool),
}


# ---- encryption.* (Flume's names; a key-file provider instead of Java keystores) ----

_ENC = "encryption."
_ACTIVE = "encryption.activeKey"
_CIPHER = "encryption.cipherProvider"
_PROVIDER = "encryption.keyProvider"
_KEYS = "encryption.keyProvider.keys"
_KEYFILE = re.compile(r"encryption\.keyProvider\.keys\.(.+)\.keyFile")
_PASSWORDFILE = re.compile(r"encryption\.keyProvider\.keys\.(.+)\.passwordFile")
_KEYSTORE = ("encryption.keyProvider.keyStoreFile",
             "encryption.keyProvider.keyStorePasswordFile")
_warned: set[str] = set()
#: the encryption property names, for "did you mean"
ENCRYPTION_PROPERTIES = (_ACTIVE, _CIPHER, _PROVIDER, _KEYS,
                         "encryption.keyProvider.keys.<alias>.keyFile")
_USE_KEYFILE = (f"use {_PROVIDER} = KEYFILE with {_KEYS} = <aliases> and "
                f"{_KEYS}.<alias>.keyFile = <path of a key file> (`fchannel keygen PATH` "
                "makes one)")


def _did_you_mean(key: str) -> str:
    cands = [c for c in ENCRYPTION_PROPERTIES if "<" not in c]
    # a misspelt keyFile property: compare against the pattern with its alias
    parts = key.split(".")
    if len(parts) >= 5:
        cands.append(".".join(parts[:3] + [parts[3], "keyFile"]))
    lower = {c.lower(): c for c in cands}
    found = [lower[key.lower()]] if key.lower() in lower else \
        difflib.get_close_matches(key, cands, n=2, cutoff=0.75)
    return ("; did you mean " + " or ".join(found) + "?") if found else ""


def _str_value(key: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{key} must be a non-empty string, got {value!r}")
    return value.strip()


def encryption_from_flume(props: Mapping[str, Any]) -> EncryptionSettings | None:
    """The channel's EncryptionSettings from Flume's ``encryption.*``
    properties of *props* (other names are ignored), None when there are
    none.  Every problem is reported at once, each naming the property and
    its value."""
    enc = {k: v for k, v in props.items() if isinstance(k, str) and k.startswith(_ENC)}
    if not enc:
        return None
    problems: list[str] = []
    active: str | None = None
    listed: list[str] | None = None
    files: dict[str, str] = {}
    for key, value in enc.items():
        try:
            if key == _ACTIVE:
                active = check_alias(key, _str_value(key, value))
            elif key == _CIPHER:
                name = _str_value(key, value).upper()
                if name == "AESCTRNOPADDING":
                    if name in _warned:   # once, though the agent reads its config twice
                        continue
                    _warned.add(name)
                    log.warning("%s = %r: AES-GCM, an authenticated cipher, is used instead "
                                "(fchannel's encrypted logs are not byte-compatible with "
                                "Flume's anyway)", key, value)
                elif name != "AESGCM":
                    raise ConfigError(f"{key} must be AESGCM (or Flume's AESCTRNOPADDING, "
                                      f"which is read as AESGCM), got {value!r}")
            elif key == _PROVIDER:
                name = _str_value(key, value).upper()
                if name == "JCEKSFILE":
                    raise ConfigError(f"{key} = {value!r}: Java keystores cannot be read "
                                      f"here; {_USE_KEYFILE}")
                if name != "KEYFILE":
                    raise ConfigError(f"{key} must be KEYFILE, got {value!r}")
            elif key == _KEYS:
                text = _str_value(key, value)
                listed = [a for a in re.split(r"[\s,]+", text) if a]
                for a in listed:
                    check_alias(f"{key} (alias {a!r})", a)
            elif key in _KEYSTORE or _PASSWORDFILE.fullmatch(key):
                raise ConfigError(f"{key} = {value!r}: Java keystores and their password "
                                  f"files cannot be read here; {_USE_KEYFILE}")
            elif (m := _KEYFILE.fullmatch(key)) is not None:
                alias = check_alias(f"{key} (alias)", m.group(1))
                files[alias] = _str_value(key, value)
            else:
                raise ConfigError(f"unknown file channel property {key!r} (value {value!r})"
                                  + _did_you_mean(key) + "; known encryption properties: "
                                  + ", ".join(ENCRYPTION_PROPERTIES))
        except ConfigError as exc:
            problems.append(str(exc))
    if problems:
        raise ConfigError("; ".join(problems))
    if listed is None:
        listed = list(files)
    for a in listed:
        if a not in files:
            problems.append(f"{_KEYS} lists key {a!r} but {_KEYS}.{a}.keyFile is not set")
    for a in files:
        if a not in listed:
            problems.append(f"{_KEYS}.{a}.keyFile is set but {_KEYS} "
                            f"({enc.get(_KEYS)!r}) does not list {a!r}")
    if not files and not listed:
        problems.append(f"encryption is configured but no key is: set {_KEYS} and "
                        f"{_KEYS}.<alias>.keyFile")
    if active is None:
        problems.append(f"{_ACTIVE} is missing (the alias of the key that encrypts new "
                        "records)")
    elif files and active not in files:
        problems.append(f"{_ACTIVE} = {active!r} is not one of the keys "
                        f"({', '.join(map(repr, listed))}); add {_KEYS}.{active}.keyFile")
    if problems:
        raise ConfigError("; ".join(problems))
    assert active is not None
    return encryption_settings({"active_key": active, "keys": files,
                                "cipher_provider": "AESGCM", "key_provider": "KEYFILE"})


def kwargs_from_flume(props: Mapping[str, Any]) -> dict[str, Any]:
    """FileChannel keyword arguments from Flume's properties (an unknown name
    is a ConfigError); the directories default to ``~/.fchannel``.  Flume's
    ``encryption.*`` properties give the ``encryption`` argument."""
    if not isinstance(props, Mapping):
        raise ConfigError(f"file channel properties must be a mapping, "
                          f"got {type(props).__name__}")
    problems: list[str] = []
    plain = {k: v for k, v in props.items()
             if not (isinstance(k, str) and k.startswith(_ENC))}
    kw: dict[str, Any] = {}
    try:
        kw = kwargs_from_properties("file channel", plain, PROPERTIES,
                                    ignore=frozenset({"type"}))
    except ConfigError as exc:
        problems.append(str(exc))
    try:
        enc = encryption_from_flume(props)
    except ConfigError as exc:
        problems.append(str(exc))
    if problems:
        raise ConfigError("; ".join(problems))
    if enc is not None:
        kw["encryption"] = enc
    dual = kw.pop("_use_dual", False)
    backup = kw.pop("backup_checkpoint_dir", None)
    if dual:
        if not backup:
            raise ConfigError("useDualCheckpoints is true but backupCheckpointDir is not set")
        kw["backup_checkpoint_dir"] = backup
    kw.setdefault("checkpoint_dir", os.path.join(_DEFAULT_HOME, "checkpoint"))
    kw.setdefault("data_dirs", [os.path.join(_DEFAULT_HOME, "data")])
    return kw


@dataclass
class Settings:
    """Validated settings of one FileChannel (paths absolute, sizes bytes,
    intervals seconds)."""

    checkpoint_dir: str
    data_dirs: list[str]
    backup_dir: str | None
    capacity: int
    transaction_capacity: int
    checkpoint_interval: float
    max_file_size: int
    minimum_required_space: int
    keep_alive: float
    fsync_per_transaction: bool
    fsync_interval: float
    checkpoint_on_close: bool
    use_fast_replay: bool
    name: str
    encryption: EncryptionSettings | None = None

    @property
    def all_dirs(self) -> list[str]:
        return [self.checkpoint_dir, *self.data_dirs,
                *([self.backup_dir] if self.backup_dir else [])]


def _path(field: str, value: Any) -> str:
    if isinstance(value, bytes) or not isinstance(value, (str, os.PathLike)) \
            or not os.fspath(value):
        raise ConfigError(f"{field} must be a directory path, got {value!r}")
    return os.path.abspath(os.path.expanduser(os.fspath(value)))


def validate(checkpoint_dir: Any, data_dirs: Any, capacity: Any, transaction_capacity: Any,
             checkpoint_interval: Any, max_file_size: Any, minimum_required_space: Any,
             keep_alive: Any, backup_checkpoint_dir: Any, fsync_per_transaction: Any,
             fsync_interval: Any, checkpoint_on_close: Any, use_fast_replay: Any,
             name: Any, encryption: Any = None) -> Settings:
    """Check every setting (see FileChannel) and return them as Settings."""
    ckpt = _path("checkpoint_dir", checkpoint_dir)
    if isinstance(data_dirs, (bytes, bytearray)):
        raise ConfigError(f"data_dirs must be a path or a non-empty list of paths, "
                          f"got {data_dirs!r}")
    if isinstance(data_dirs, (str, os.PathLike)):
        data_dirs = [data_dirs]
    if not isinstance(data_dirs, Sequence) or not data_dirs:
        raise ConfigError(f"data_dirs must be a path or a non-empty list of paths, "
                          f"got {data_dirs!r}")
    dirs = [_path("data_dirs", d) for d in data_dirs]
    backup = (None if backup_checkpoint_dir is None
              else _path("backup_checkpoint_dir", backup_checkpoint_dir))
    everything = [ckpt, *dirs]
    if backup is not None:
        if backup == ckpt:
            raise ConfigError(f"backup_checkpoint_dir ({backup_checkpoint_dir!r}) must differ "
                              f"from checkpoint_dir ({checkpoint_dir!r})")
        everything.append(backup)
    seen: set[str] = set()
    for d in everything:
        if d in seen:
            raise ConfigError(f"directory {d!r} is used twice (checkpoint_dir, data_dirs and "
                              "backup_checkpoint_dir must all differ)")
        seen.add(d)
    cap = as_int("capacity", capacity, minimum=1)
    tcap = as_int("transaction_capacity", transaction_capacity, minimum=1)
    if tcap > cap:
        raise ConfigError(f"transaction_capacity ({transaction_capacity!r}) must not exceed "
                          f"capacity ({capacity!r})")
    values: dict[str, Any] = dict(
        checkpoint_interval=as_float("checkpoint_interval", checkpoint_interval,
                                     strictly_positive=True),
        max_file_size=as_int("max_file_size", max_file_size, minimum=MIN_FILE_SIZE,
                             maximum=F.MAX_FILE_SIZE),
        minimum_required_space=as_int("minimum_required_space", minimum_required_space,
                                      minimum=0),
        keep_alive=as_float("keep_alive", keep_alive, minimum=0),
        fsync_per_transaction=as_bool("fsync_per_transaction", fsync_per_transaction),
        fsync_interval=as_float("fsync_interval", fsync_interval, strictly_positive=True),
        checkpoint_on_close=as_bool("checkpoint_on_close", checkpoint_on_close),
        use_fast_replay=as_bool("use_fast_replay", use_fast_replay))
    if not isinstance(name, str) or not name:
        raise ConfigError(f"name must be a non-empty str, got {name!r}")
    enc = encryption_settings(encryption)
    return Settings(checkpoint_dir=ckpt, data_dirs=dirs, backup_dir=backup, capacity=cap,
                    transaction_capacity=tcap, name=name, encryption=enc, **values)
