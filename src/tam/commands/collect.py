"""`tam collect`: run directories -> one of the paper's tables (markdown and CSV), filling only what was run."""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "Collect run directories (results.json) into the layout of the paper's Table 1, 2, 5 or 6."
EXAMPLES = """\
  tam collect runs/out/table1 --table 1 --out runs/out/table1      # writes table1.md and table1.csv
  tam collect runs/out/ve8 runs/out/yf6 --table 2 --out t2 --paper # add the published numbers in their own columns
  tam collect old_runs/ --table 1 --dataset ve8 --out t1           # runs whose labels file name does not say"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("runs", nargs="+", metavar="RUN_DIR", help="run directories or folders holding them")
    parser.add_argument("--table", type=int, required=True, choices=[1, 2, 5, 6])
    parser.add_argument("--out", required=True, help="output path stem: writes STEM.md and STEM.csv")
    parser.add_argument("--paper", action="store_true", help="add the paper's published numbers, labelled as such")
    parser.add_argument("--dataset", default="", help="force the dataset of every run: ve8, yf6, "
                        "mediaeval2015_valence, mediaeval2015_arousal or mediaeval2016")


def run(args: argparse.Namespace) -> int:
    from tam.errors import TamError
    from tam.eval.protocols import build_table, collect_runs, to_csv, to_markdown
    from tam.io import write_text

    runs, skipped = collect_runs(args.runs, args.dataset)
    if not runs and not skipped:
        raise TamError(f"no results.json under {' '.join(args.runs)}")
    result = build_table(args.table, runs, skipped)
    out = Path(args.out)
    stem = out.with_suffix("") if out.suffix in (".md", ".csv") else out
    md = to_markdown(result, args.paper)
    write_text(stem.with_name(stem.name + ".md"), md)
    write_text(stem.with_name(stem.name + ".csv"), to_csv(result, args.paper))
    print(md)
    print(f"{len(runs)} run(s) read, {result.n_runs} placed, {len(skipped)} skipped -> {stem}.md, {stem}.csv")
    return 0
