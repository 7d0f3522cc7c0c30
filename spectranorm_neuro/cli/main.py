"""Entry point of the ``spectranorm-neuro`` command."""

from __future__ import annotations

import argparse
import sys

from .._version import __version__

__all__ = ["main", "build_parser"]


def build_parser() -> argparse.ArgumentParser:
    """Build the argument parser of ``spectranorm-neuro``."""
    parser = argparse.ArgumentParser(prog="spectranorm-neuro",
                                     description="Spectral normative modelling of brain maps.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit code (0 ok, 1 runtime error, 2 usage error)."""
    parser = build_parser()
    parser.parse_args(sys.argv[1:] if argv is None else argv)
    parser.print_help()
    return 0
