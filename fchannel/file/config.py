"""The FileChannel's settings: their defaults, Flume's property names and
units, and validation (every problem a ConfigError naming the setting and
the value)."""
from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from fchannel._config import Prop, as_bool, as_float, as_int, kwargs_from_properties
from fchannel.errors import ConfigError
from fchannel.file import format as F

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


def kwargs_from_flume(props: Mapping[str, Any]) -> dict[str, Any]:
    """FileChannel keyword arguments from Flume's properties (an unknown name
    is a ConfigError); the directories default to ``~/.fchannel``."""
    kw = kwargs_from_properties("file channel", props, PROPERTIES, ignore=frozenset({"type"}))
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
             name: Any) -> Settings:
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
    return Settings(checkpoint_dir=ckpt, data_dirs=dirs, backup_dir=backup, capacity=cap,
                    transaction_capacity=tcap, name=name, **values)
