"""The ``fchannel`` command line.

Each subcommand lives in its own module and registers itself through a
``register(subparsers)`` function listed in ``_SUBCOMMANDS``; its handler is
stored as ``func`` on the parsed arguments and returns the exit status.
"""
from __future__ import annotations

import argparse
import importlib
import socket
import sys
from collections.abc import Iterable, Sequence
from typing import TextIO

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
    _register_send(sub)
    return parser


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
