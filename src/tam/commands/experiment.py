"""`tam experiment`: a grid of runs from YAML: run it (parallel, resumable), list its commands, collect it."""

from __future__ import annotations

import argparse

from tam.engines import add_engine_arguments

HELP = "a grid of runs (fusion x modalities x pre-training x labelled videos x seed ...): run, list, collect"
EXAMPLES = """\
  tam experiment run configs/experiments/timing.yaml --jobs 2     # world, then the runs; re-run resumes
  tam experiment list configs/experiments/timing.yaml > jobs.sh   # one command per run, for any scheduler
  tam experiment run grid.yaml --engine ray --address HEAD:6379   # each run a Ray task (docs/scaling.md)
  tam experiment collect configs/experiments/timing.yaml          # curves, tables, claims (YES/NO), report
See docs/experiments.md for the grid format."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="experiment_command", metavar="SUBCOMMAND", required=True)
    for name, help in (("run", "run every unfinished run (pre-training steps first), N processes at a time"),
                       ("list", "print one self-contained shell command per pre-training step and run"),
                       ("collect", "learning curves, the results table with 95% CIs, the claims, an HTML report")):
        p = sub.add_parser(name, help=help.replace("%", "%%"), description=help, epilog="examples:\n" + EXAMPLES,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        p.add_argument("grid", help="grid YAML (docs/experiments.md)")
        if name == "run":
            p.add_argument("--jobs", type=int, default=0, help="parallel runs (default: the grid's `jobs`, else 2); "
                           "each uses train.threads torch threads (the runner sets 1 unless the grid sets it)")
            add_engine_arguments(p)
        if name == "list":
            p.add_argument("--prefix", default="tam", help="how to call tam in the commands (e.g. 'python -m tam')")
        if name == "collect":
            p.add_argument("--out", help="report folder (default: OUT/report of the grid)")


def run(args: argparse.Namespace) -> int:
    from tam.experiment.grid import load_grid

    grid = load_grid(args.grid)
    return {"run": _run, "list": _list, "collect": _collect}[args.experiment_command](grid, args)


def _run(grid, args) -> int:
    from tam.experiment.run import run_grid

    if args.engine == "ray":  # the workers import the runner while this process makes the world
        from tam.engines import ray_engine

        ray_engine.connect(args.address)
        ray_engine.warm("tam.experiment.run")
    s = run_grid(grid, args.jobs or grid.jobs, engine=args.engine, address=args.address)
    print(f"{len(s.done)} run(s) done, {len(s.skipped)} already finished (skipped), {len(s.failed)} failed")
    for name, err in s.failed.items():
        print(f"  failed: {name}: {err}")
    print(f"next: tam experiment collect {args.grid}")
    return 1 if s.failed else 0


def _list(grid, args) -> int:
    from tam.experiment.run import list_commands

    print("\n".join(list_commands(grid, args.prefix)))
    return 0


def _collect(grid, args) -> int:
    from tam.experiment.collect import claim_rows, collect, diagnostics, main_table, problems
    from tam.report.document import _md_block

    doc, c, paths = collect(grid, args.out)
    print(_md_block(main_table(c)) + "\n")
    claims, _ = claim_rows(c)
    if claims.rows:
        print(_md_block(claims) + "\n")
    print(_md_block(diagnostics(c)) + "\n")
    failed, missing = problems(c)
    for x in failed:
        print(f"failed: {x}")
    if missing:
        more = " ..." if len(missing) > 10 else ""
        print(f"missing ({len(missing)} not run yet): " + ", ".join(missing[:10]) + more)
    print(f"report: {paths['html']} ({paths['md'].name}, curves.png, runs.csv beside it)")
    return 0
