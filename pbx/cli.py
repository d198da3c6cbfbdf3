"""The `helpline` command: one subcommand module per concern under pbx/commands/."""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from collections.abc import Sequence

import pbx.commands


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="helpline", description="Telephony backend for anonymous helplines."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    # Each module in pbx/commands defines register(subparsers); its parsers set func=handler.
    # Modules named _like_this are helpers the commands share.
    for info in sorted(pkgutil.iter_modules(pbx.commands.__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"pbx.commands.{info.name}")
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    code = args.func(args)
    sys.exit(int(code or 0))


if __name__ == "__main__":  # python -m pbx.cli, for a checkout whose venv has no `helpline` script
    main()
