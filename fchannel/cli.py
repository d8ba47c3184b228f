"""The ``fchannel`` command line.

Each subcommand lives in its own module and registers itself through a
``register(subparsers)`` function listed in ``_SUBCOMMANDS``; its handler is
stored as ``func`` on the parsed arguments and returns the exit status.
"""
from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

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
    return parser


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
