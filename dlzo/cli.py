"""The ``dlzo`` command line: ``dlzo <command> --help`` for each command.

Every command lives in ``dlzo/commands/<name>.py`` with ``add_parser(subparsers)`` and ``run(args)``.
User errors print one sentence (``error: ...``) and exit with status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from .errors import DlzoError

COMMANDS = ["outliers", "eval", "train", "sweep", "bench", "notebooks"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dlzo",
        description="Dominant-Layer ZO: find the first activation-outlier layer of an LLM and fine-tune it "
        "with zeroth-order (MeZO) updates.",
    )
    sub = parser.add_subparsers(dest="command", metavar="command")
    for name in COMMANDS:
        module = importlib.import_module(f"dlzo.commands.{name}")
        module.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    try:
        return int(args.func(args) or 0)
    except DlzoError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader went away (``dlzo sweep ... --list | head``): stop quietly
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # so the interpreter's final flush of stdout cannot fail too
        return 141


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
