"""The `tam` command line: thin wrappers that parse arguments and call the library.

Each command is a module in `tam.commands` with `HELP` (one line), `EXAMPLES` and
`add_arguments(parser)` / `run(args) -> int`. Modules keep heavy imports (torch, av) inside `run`,
so `tam --help` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import os
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


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors: `tam train: error: ... (see `tam train --help`)`, exit 2."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
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
    args, extra = parser.parse_known_args(argv)
    if extra:
        _unrecognized(parser, args, extra)
    if args.command is None:
        parser.print_help()
        return 0
    try:
        code = int(args._run(args) or 0)
        sys.stdout.flush()  # a closed pipe (`tam store feats | head`) shows here, not at interpreter exit
        return code
    except TamError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader went away: stop quietly, as `cat` does
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except OSError as e:  # a file no check named (missing, unreadable, a folder): still one line naming it
        if e.filename is None:
            raise
        print(f"error: {e.filename}: {e.strerror or type(e).__name__}", file=sys.stderr)
        return 2


def _unrecognized(parser: argparse.ArgumentParser, args: argparse.Namespace, extra: list[str]) -> None:
    """Exit with one line; `--set model.d 32` (a space instead of `=`) says how to write it."""
    for item in getattr(args, "overrides", None) or []:
        if "=" not in item:
            parser.exit(2, f"tam {args.command}: error: --set {item}: write SECTION.KEY=VALUE with no spaces, "
                           f"e.g. --set {item}={extra[0]}\n")
    prog = f"tam {args.command}" if args.command else "tam"
    parser.exit(2, f"{prog}: error: unrecognized arguments: {' '.join(extra)} (see `{prog} --help`)\n")


if __name__ == "__main__":
    sys.exit(main())
