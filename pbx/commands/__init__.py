"""Subcommands of `helpline`. Each module exposes register(subparsers) and sets func on its parsers.

A handler takes the parsed argparse.Namespace and returns an exit code.
"""
