"""The `tam` command line: thin wrappers that parse arguments and call the library.

Each command is a module in `tam.commands` with `HELP` (one line), `EXAMPLES` and
`add_arguments(parser)` / `run(args) -> int`. Modules keep heavy imports (torch, av) inside `run`,
so `tam --help` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from tam import __version__
from tam.errors import TamError

COMMANDS = {
    # name: module in tam.commands
    "demo": "demo",
    "train": "train",
    "evaluate": "evaluate",
    "synth": "synth",
    "store": "store",
    "extract": "extract",
    "comments": "comments",
    "dataset": "dataset",
    "collect": "collect",
    "pretrain": "pretrain",
    "predict": "predict",
    "export": "export",
    "experiment": "experiment",
    "tune": "tune",
    "serve": "serve",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tam", description="Temporal-Aware Multimodal affective video content analysis.",
        epilog="Run `tam COMMAND --help` for a command's options and examples.")
    parser.add_argument("--version", action="version", version=f"tam {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")
    for name, module in COMMANDS.items():
        mod = importlib.import_module(f"tam.commands.{module}")
        p = sub.add_parser(name, help=mod.HELP, description=mod.HELP, epilog="examples:\n" + mod.EXAMPLES,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    try:
        return int(args._run(args) or 0)
    except TamError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
