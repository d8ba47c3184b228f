"""Flume's configuration file format: Java ``.properties``.

``parse_properties`` reads the text the way ``java.util.Properties.load``
does (``key = value``, ``key: value`` or ``key value``; ``#`` and ``!``
comments; a trailing backslash continues a line; ``\\t \\n \\r \\f \\uXXXX``
escapes), so a file written for ``flume-ng agent`` reads the same here.
The last assignment of a key wins, as in Java.

:class:`Context` is a view of the properties under one prefix (for example
``a1.sources.r1.``).  Its typed getters never raise: a bad or missing value is
recorded as a problem naming the full key and the value, and the caller
reports every problem at once.
"""
from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from fchannel._config import as_bool, as_float, as_int
from fchannel.errors import ConfigError

__all__ = ["Context", "parse_properties", "load_properties"]

_ESCAPES = {"t": "\t", "n": "\n", "r": "\r", "f": "\f"}


def _logical_lines(text: str) -> Iterable[tuple[int, str]]:
    """Join continued lines; yield (first line number, logical line)."""
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        start = i
        line = lines[i].lstrip(" \t\f")
        i += 1
        if not line or line[0] in "#!":
            continue
        while _ends_with_continuation(line) and i < len(lines):
            line = line[:-1] + lines[i].lstrip(" \t\f")
            i += 1
        if _ends_with_continuation(line):  # a backslash on the last line of the file
            line = line[:-1]
        yield start + 1, line


def _ends_with_continuation(line: str) -> bool:
    n = len(line) - len(line.rstrip("\\"))
    return n % 2 == 1


def _unescape(s: str, lineno: int) -> str:
    out: list[str] = []
    i = 0
    while i < len(s):
        c = s[i]
        if c != "\\":
            out.append(c)
            i += 1
            continue
        i += 1
        if i >= len(s):
            break
        c = s[i]
        if c == "u":
            digits = s[i + 1:i + 5]
            if len(digits) != 4 or not all(d in "0123456789abcdefABCDEF" for d in digits):
                raise ConfigError(f"line {lineno}: malformed \\uXXXX escape {s[i - 1:i + 5]!r}")
            out.append(chr(int(digits, 16)))
            i += 5
            continue
        out.append(_ESCAPES.get(c, c))
        i += 1
    return "".join(out)


def parse_properties(text: str) -> dict[str, str]:
    """Parse Java properties text into an ordered dict (last assignment wins)."""
    props: dict[str, str] = {}
    for lineno, line in _logical_lines(text):
        # the key ends at the first unescaped '=', ':' or whitespace
        i = 0
        n = len(line)
        while i < n:
            c = line[i]
            if c == "\\":
                i += 2
                continue
            if c in "=: \t\f":
                break
            i += 1
        raw_key = line[:i]
        j = i
        while j < n and line[j] in " \t\f":
            j += 1
        if j < n and line[j] in "=:":
            j += 1
            while j < n and line[j] in " \t\f":
                j += 1
        props[_unescape(raw_key, lineno)] = _unescape(line[j:], lineno)
    return props


def load_properties(path: str) -> dict[str, str]:
    """Read a properties file (UTF-8, as Flume 1.x reads it with -Dfile.encoding)."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as exc:
        raise ConfigError(f"cannot read configuration file {path!r}: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"configuration file {path!r} is not UTF-8: {exc}") from None
    return parse_properties(text)


_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")

ENV_RESOLVER = "org.apache.flume.node.EnvVarResolverProperties"


def resolve_env(props: Mapping[str, str], environ: Mapping[str, str]) -> dict[str, str]:
    """Flume's EnvVarResolverProperties: ``${NAME}`` in a value becomes the
    environment variable NAME; a reference to an unset variable is an error
    naming the key."""
    out: dict[str, str] = {}
    missing: list[str] = []
    for k, v in props.items():
        def sub(m: re.Match[str], key: str = k) -> str:
            name = m.group(1)
            if name not in environ:
                missing.append(f"{key} = {props[key]!r}: environment variable {name} is not set")
                return m.group(0)
            return environ[name]
        out[k] = _ENV_REF.sub(sub, v)
    if missing:
        raise ConfigError("; ".join(missing))
    return out


# Flume's ${env:NAME} and ${sys:NAME} lookups (1.10+), with an optional
# ":-default" as in the commons-text substitutor Flume uses
_LOOKUP = re.compile(r"\$\{(env|sys):([^}:]+?)(?::-([^}]*))?\}")


def resolve_lookups(props: Mapping[str, str], environ: Mapping[str, str],
                    system: Mapping[str, str], prefix: str = "") -> tuple[dict[str, str],
                                                                          list[str]]:
    """Replace ``${env:NAME}`` (environment variable) and ``${sys:NAME}``
    (a ``-DNAME=value`` given to the agent command) in the values of the keys
    under *prefix*, as Flume 1.10 does; ``${env:NAME:-default}`` gives a
    default.  Returns the new properties and one problem per unresolved
    reference, naming the key and its value."""
    out: dict[str, str] = {}
    problems: list[str] = []
    for k, v in props.items():
        if "${" not in v or not k.startswith(prefix):
            out[k] = v
            continue

        def sub(m: re.Match[str], key: str = k, raw: str = v) -> str:
            kind, name, default = m.group(1), m.group(2), m.group(3)
            table = environ if kind == "env" else system
            if name in table:
                return table[name]
            if default is not None:
                return default
            what = ("environment variable" if kind == "env"
                    else "system property (give it with -D" + name + "=...)")
            problems.append(f"{key} = {raw!r}: {what} {name} is not set")
            return m.group(0)
        out[k] = _LOOKUP.sub(sub, v)
    return out, problems


_SPLIT = re.compile(r"[\s,]+")


def split_names(value: str) -> list[str]:
    """Flume's component lists are separated by whitespace, its list-valued
    properties (``kafka.topics``, ``dataDirs``, ...) by commas: both work."""
    return [v for v in _SPLIT.split(value.strip()) if v]


def close_matches(word: str, candidates: Iterable[str]) -> list[str]:
    """Likely intended spellings of *word* among *candidates* (for "did you mean")."""
    import difflib
    cands = [c for c in candidates if c != word]
    lower = {c.lower(): c for c in cands}
    if word.lower() in lower:  # a difference of case only
        return [lower[word.lower()]]
    return difflib.get_close_matches(word, cands, n=2, cutoff=0.75)


def did_you_mean(word: str, candidates: Iterable[str], prefix: str = "") -> str:
    found = close_matches(word, candidates)
    if not found:
        return ""
    return "; did you mean " + " or ".join(prefix + f for f in found) + "?"


class Context:
    """The properties of one component (keys relative to ``prefix``).

    Typed getters record problems in the shared ``problems`` list instead of
    raising, returning the default so configuration can go on and find the
    next problem.  ``used`` collects every key asked for, so the agent can
    warn about the rest (a typo usually).
    """

    def __init__(self, props: Mapping[str, str], prefix: str = "",
                 problems: list[str] | None = None, owner: str = "") -> None:
        self.prefix = prefix
        self.owner = owner
        self.problems: list[str] = [] if problems is None else problems
        self._props = dict(props)
        self.used: set[str] = set()

    # ---- raw access -------------------------------------------------------
    def key(self, name: str) -> str:
        """The full property name, as written in the file."""
        return self.prefix + name

    def __contains__(self, name: object) -> bool:
        return name in self._props

    def keys(self) -> list[str]:
        return list(self._props)

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._props))

    def as_dict(self) -> dict[str, str]:
        return dict(self._props)

    def problem(self, name: str | None, message: str) -> None:
        """Record a problem about property *name* (None: the component as a whole)."""
        if name is None:
            where = self.prefix.rstrip(".") or self.owner
            self.problems.append(f"{where}: {message}")
        elif name in self._props:
            self.problems.append(f"{self.key(name)} = {self._props[name]!r}: {message}")
        else:
            self.problems.append(f"{self.key(name)}: {message}")

    def sub(self, prefix: str) -> Context:
        """The properties under ``prefix`` (e.g. ``"selector."``), sharing problems."""
        inner = {k[len(prefix):]: v for k, v in self._props.items() if k.startswith(prefix)}
        for k in self._props:
            if k.startswith(prefix):
                self.used.add(k)
        return Context(inner, self.prefix + prefix, self.problems, self.owner)

    def _missing(self, name: str) -> None:
        what = f" (required by {self.owner})" if self.owner else ""
        hint = did_you_mean(name, [k for k in self._props if k not in self.used],
                            self.prefix)
        self.problems.append(f"{self.key(name)} is missing{what}{hint}")

    def suggest(self, name: str) -> str:
        """"; did you mean <prefix>X?" for an unread key *name* close to a key
        the component asked for, or ''."""
        return did_you_mean(name, [k for k in self.used if k not in self._props], self.prefix)

    # ---- typed getters ----------------------------------------------------
    def get(self, name: str, default: Any = None) -> Any:
        self.used.add(name)
        value = self._props.get(name)
        if value is None:
            return default
        return value

    def string(self, name: str, default: str | None = None, *, required: bool = False,
               choices: Iterable[str] | None = None) -> str | None:
        self.used.add(name)
        value = self._props.get(name)
        if value is None or (required and not value.strip()):
            if required:
                self._missing(name)
            return default
        if choices is not None:
            allowed = list(choices)
            if value.strip().lower() not in [c.lower() for c in allowed]:
                self.problem(name, "must be one of " + ", ".join(allowed))
                return default
            value = value.strip()
        return value

    def _typed(self, name: str, default: Any, convert: Any, required: bool) -> Any:
        self.used.add(name)
        value = self._props.get(name)
        if value is None or not value.strip():
            if required:
                self._missing(name)
            return default
        try:
            return convert(self.key(name), value)
        except ConfigError as exc:
            self.problems.append(str(exc))
            return default

    def integer(self, name: str, default: int | None = None, *, required: bool = False,
                minimum: int | None = None, maximum: int | None = None) -> Any:
        return self._typed(name, default,
                           lambda k, v: as_int(k, v, minimum=minimum, maximum=maximum), required)

    def number(self, name: str, default: float | None = None, *, required: bool = False,
               minimum: float | None = None) -> Any:
        return self._typed(name, default, lambda k, v: as_float(k, v, minimum=minimum), required)

    def boolean(self, name: str, default: bool = False) -> bool:
        return bool(self._typed(name, default, as_bool, False))

    def names(self, name: str, *, required: bool = False) -> list[str]:
        value = self.string(name, None, required=required)
        return split_names(value) if value else []

    def regex(self, name: str, default: str | None = None, *, required: bool = False,
              flags: int = 0) -> re.Pattern[str] | None:
        value = self.string(name, default, required=required)
        if value is None:
            return None
        try:
            return re.compile(java_regex(value), flags)
        except re.error as exc:
            self.problem(name, f"not a valid regular expression ({exc})")
            return None

    def unused(self) -> list[str]:
        return [k for k in self._props if k not in self.used]


def java_regex(pattern: str) -> str:
    """Translate the few java.util.regex spellings Python spells differently."""
    # possessive quantifiers and atomic groups exist in Python 3.11+; named groups differ
    return re.sub(r"\(\?<([A-Za-z][A-Za-z0-9]*)>", r"(?P<\1>", pattern)


def java_replacement(repl: str) -> str:
    """Translate a Java replaceAll replacement (``$1``, ``${name}``, ``\\$``)
    to Python's ``re.sub`` syntax."""
    out: list[str] = []
    i = 0
    while i < len(repl):
        c = repl[i]
        if c == "\\" and i + 1 < len(repl):
            nxt = repl[i + 1]
            out.append("\\\\" if nxt == "\\" else nxt)
            i += 2
        elif c == "$" and i + 1 < len(repl) and repl[i + 1] == "{":
            end = repl.find("}", i)
            if end < 0:
                raise ConfigError(f"replacement {repl!r}: unterminated ${{name}}")
            out.append(f"\\g<{repl[i + 2:end]}>")
            i = end + 1
        elif c == "$" and i + 1 < len(repl) and repl[i + 1].isdigit():
            j = i + 1
            while j < len(repl) and repl[j].isdigit():
                j += 1
            out.append(f"\\g<{repl[i + 1:j]}>")
            i = j
        else:
            out.append(c)
            i += 1
    return "".join(out)
