"""The ``fchannel`` command line.

Each subcommand lives in its own module and registers itself through a
``register(subparsers)`` function listed in ``_SUBCOMMANDS``; its handler is
stored as ``func`` on the parsed arguments and returns the exit status.
"""
from __future__ import annotations

import argparse
import functools
import importlib
import os
import socket
import sys
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TextIO

import fchannel

# module paths whose register(subparsers) adds a subcommand
_SUBCOMMANDS: list[str] = [
    "fchannel.file.tools",
    "fchannel.agent.command",
    "fchannel.bench",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fchannel",
        description="Durable transactional file channel: tools and agent runtime.",
    )
    impl = "compiled" if fchannel.COMPILED else "pure Python"
    parser.add_argument("--version", action="version",
                        version=f"fchannel {fchannel.__version__} ({impl})")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for path in _SUBCOMMANDS:
        importlib.import_module(path).register(sub)
    _add_key_option(sub)
    _register_send(sub)
    _register_keygen(sub)
    return parser


# ---- --key ALIAS=PATH for the tools that read an encrypted channel -----------------

def _add_key_option(subparsers: argparse._SubParsersAction) -> None:
    """``fchannel inspect`` and ``check`` take ``--key ALIAS=PATH`` (repeatable):
    the keys of an encrypted channel.  The handler finds the Sealer built from
    them as ``args.sealer`` (None without ``--key``)."""
    for name in ("inspect", "check"):
        p = subparsers.choices.get(name)
        if p is None:
            continue
        p.add_argument("--key", action="append", default=[], metavar="ALIAS=PATH",
                       help="a key of an encrypted channel: its alias and its key file "
                            "(repeat for every key its logs were written with)")
        p.set_defaults(func=_with_keys(p.get_default("func"), name))


def sealer_from_key_options(values: Sequence[str]) -> Any:
    """A reading Sealer from ``--key ALIAS=PATH`` values (None when there are
    none); a bad value is a ConfigError naming the option and the value."""
    from fchannel.errors import ConfigError
    if not values:
        return None
    from fchannel.file.crypto import Sealer, check_alias, read_key_file
    keys: dict[str, bytes] = {}
    for value in values:
        alias, sep, path = value.partition("=")
        alias = alias.strip()
        if not sep or not alias or not path.strip():
            raise ConfigError(f"--key must be ALIAS=PATH, got {value!r}")
        check_alias(f"--key {value!r}: the alias", alias)
        if alias in keys:
            raise ConfigError(f"--key {value!r}: alias {alias!r} is given twice")
        keys[alias] = read_key_file(os.path.abspath(os.path.expanduser(path.strip())),
                                    alias, f"--key {value}")
    return Sealer.for_reading(keys)


def _with_keys(func: Callable[[argparse.Namespace], int], command: str,
               ) -> Callable[[argparse.Namespace], int]:
    @functools.wraps(func)
    def run(args: argparse.Namespace) -> int:
        from fchannel.errors import ConfigError
        try:
            args.sealer = sealer_from_key_options(args.key)
        except ConfigError as exc:
            print(f"fchannel {command}: {exc}", file=sys.stderr)
            return 2
        return func(args)
    return run


# ---- fchannel keygen: a new key file --------------------------------------------------

def _register_keygen(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "keygen", help="write a new random AES key file for channel encryption",
        description="Write a new random AES key to PATH (as hex text, mode 0600) for "
                    "encryption.keyProvider.keys.<alias>.keyFile. An existing file is "
                    "never overwritten.")
    p.add_argument("path", metavar="PATH")
    p.add_argument("--bits", type=int, choices=(128, 192, 256), default=256,
                   help="key size (256)")
    p.set_defaults(func=_keygen_main)


def _keygen_main(args: argparse.Namespace) -> int:
    from fchannel.file.crypto import write_key_file
    try:
        write_key_file(args.path, args.bits // 8)
    except FileExistsError:
        print(f"fchannel keygen: {args.path} exists; not overwritten (a key file that "
              "wrote a channel's logs is needed to read them)", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"fchannel keygen: {args.path}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    print(f"wrote a new {args.bits}-bit key to {args.path} (mode 0600); keep a copy: the "
          "logs it encrypts cannot be read without it")
    return 0


# ---- fchannel send: a netcat client for machines without nc -----------------------

def _register_send(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "send", help="send lines to a netcat source (like nc)",
        description="Send each LINE (or, without LINEs, each line of standard input) to a "
                    "netcat source at HOST:PORT and print its answer (OK once the event "
                    "is committed). Exit status 1 if the source answers anything else.")
    p.add_argument("address", metavar="HOST:PORT")
    p.add_argument("lines", metavar="LINE", nargs="*", help="lines to send")
    p.add_argument("--no-ack", dest="ack", action="store_false",
                   help="do not wait for answers (a source with ack-every-event = false)")
    p.add_argument("--timeout", type=float, default=30.0,
                   help="seconds to wait for the connection and for each answer (30)")
    p.set_defaults(func=_send_main)


def _parse_address(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"address must be HOST:PORT, got {text!r}")
    return host.strip("[]"), int(port)


def send_lines(address: str, lines: Iterable[bytes], ack: bool = True,
               timeout: float = 30.0, out: TextIO | None = None) -> int:
    """Send *lines* (without their newline) to a netcat source; with *ack*, wait
    for the answer to each and write it to *out* (a text stream). Returns the
    number of lines not answered ``OK``."""
    host, port = _parse_address(address)
    failed = 0
    with socket.create_connection((host, port), timeout=timeout) as conn:
        replies = conn.makefile("rb")
        for line in lines:
            conn.sendall(line.rstrip(b"\r\n") + b"\n")
            if not ack:
                continue
            answer = replies.readline()
            if not answer:
                raise ConnectionError(f"{address} closed the connection")
            text = answer.decode("utf-8", "replace").rstrip("\r\n")
            if text != "OK":
                failed += 1
            if out is not None:
                print(text, file=out, flush=True)
    return failed


def _send_main(args: argparse.Namespace) -> int:
    if args.lines:
        lines: Iterable[bytes] = [s.encode() for s in args.lines]
    else:
        lines = iter(sys.stdin.buffer.readline, b"")
    try:
        failed = send_lines(args.address, lines, args.ack, args.timeout, sys.stdout)
    except ValueError as exc:
        print(f"fchannel send: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"fchannel send: {args.address}: {exc}", file=sys.stderr)
        return 1
    return 1 if failed else 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help(sys.stderr)
        return 2
    return int(func(args) or 0)


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
