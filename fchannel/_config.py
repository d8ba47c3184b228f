"""Validation of settings and Flume-style properties.

Every failure is a :class:`~fchannel.errors.ConfigError` whose message names
the setting (or property) and the offending value.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from fchannel.errors import ConfigError

_TRUE = {"true", "yes", "1", "on"}
_FALSE = {"false", "no", "0", "off"}


def as_bool(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise ConfigError(f"{name} must be a boolean (true/false), got {value!r}")


def as_int(name: str, value: Any, *, minimum: int | None = None,
           maximum: int | None = None) -> int:
    if isinstance(value, bool):
        raise ConfigError(f"{name} must be an integer, got {value!r}")
    if isinstance(value, int):
        out = value
    elif isinstance(value, str):
        try:
            out = int(value.strip())
        except ValueError:
            raise ConfigError(f"{name} must be an integer, got {value!r}") from None
    elif isinstance(value, float) and value.is_integer():
        out = int(value)
    else:
        raise ConfigError(f"{name} must be an integer, got {value!r}")
    if minimum is not None and out < minimum:
        raise ConfigError(f"{name} must be >= {minimum}, got {value!r}")
    if maximum is not None and out > maximum:
        raise ConfigError(f"{name} must be <= {maximum}, got {value!r}")
    return out


def as_float(name: str, value: Any, *, minimum: float | None = None,
             strictly_positive: bool = False) -> float:
    if isinstance(value, bool):
        raise ConfigError(f"{name} must be a number, got {value!r}")
    try:
        out = float(value.strip() if isinstance(value, str) else value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(out):
        raise ConfigError(f"{name} must be a finite number, got {value!r}")
    if strictly_positive and out <= 0:
        raise ConfigError(f"{name} must be > 0, got {value!r}")
    if minimum is not None and out < minimum:
        raise ConfigError(f"{name} must be >= {minimum}, got {value!r}")
    return out


@dataclass(frozen=True)
class Prop:
    """A Flume property: its keyword argument and how to convert its value."""

    kwarg: str
    convert: Callable[[str, Any], Any]


def kwargs_from_properties(kind: str, props: Mapping[str, Any],
                           spec: Mapping[str, Prop],
                           ignore: frozenset[str] = frozenset()) -> dict[str, Any]:
    """Turn Flume properties into constructor keyword arguments.

    Unknown names are an error (a typo is caught, not ignored); every problem
    is reported at once.
    """
    if not isinstance(props, Mapping):
        raise ConfigError(f"{kind} properties must be a mapping, got {type(props).__name__}")
    out: dict[str, Any] = {}
    problems: list[str] = []
    for key, value in props.items():
        if key in ignore:
            continue
        prop = spec.get(key)
        if prop is None:
            known = ", ".join(sorted(spec))
            problems.append(f"unknown {kind} property {key!r} (value {value!r}); known: {known}")
            continue
        try:
            out[prop.kwarg] = prop.convert(key, value)
        except ConfigError as exc:
            problems.append(str(exc))
    if problems:
        raise ConfigError("; ".join(problems))
    return out
