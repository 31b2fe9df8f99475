"""`tam tune`: hyper-parameter search on the validation split (Optuna: TPE, median pruning, resumable storage)."""

HELP = "search hyper-parameters on the validation split (Optuna); write the best config, plots and a summary"
EXAMPLES = """\
  tam tune --config configs/ve8/ctm-image-motion-audio.yaml --space configs/tune/space.yaml --study-dir runs/tune/ve8
  tam tune --store feats/ --labels labels.csv --space configs/tune/space.yaml --study-dir runs/tune/x \\
      --set model.d=64 --set model.layers=2 --set optim.epochs=4 --trials 20 --jobs 2
  tam train --config runs/tune/x/best.yaml --run-dir runs/out/x-best      # scores the test split once
  tam tune ... --storage postgresql://user:pw@host/db --study-name ve8      # one study shared by several machines
Trials never read the test split. A killed study resumes when started again with the same --study-dir:
finished trials are kept, interrupted ones re-queued; a study made with another space or data is refused.
"""


def add_arguments(p) -> None:
    p.add_argument("--config", help="base YAML config (sections model/data/optim/train); defaults = the paper's")
    p.add_argument("--store", help="feature store folder (overrides data.store)")
    p.add_argument("--labels", help="labels CSV (overrides data.labels)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override a base config value (repeatable)")
    p.add_argument("--space", required=True, help="search space YAML: `section.field: {type: float|int|categorical,"
                                                  " low, high, log, step, choices}`")
    p.add_argument("--study-dir", required=True, help="output folder: study.db, trials/, best.yaml, plots")
    p.add_argument("--trials", type=int, default=20, help="trials in the study, counting finished ones (default 20)")
    p.add_argument("--jobs", type=int, default=1, help="processes running trials in parallel (default 1)")
    p.add_argument("--threads", type=int, default=1, help="torch threads per process (default 1)")
    p.add_argument("--seed", type=int, default=0, help="sampler seed (default 0)")
    p.add_argument("--startup-trials", type=int, default=10,
                   help="the first trials are sampled at random and never pruned (default 10)")
    p.add_argument("--storage", default="", help="RDB URL shared by several machines (default: sqlite study.db)")
    p.add_argument("--study-name", default="tam-tune", help="study name inside the storage (default tam-tune)")
    p.add_argument("--final", action="store_true", help="then train best.yaml into STUDY_DIR/final and score test")


def run(args) -> int:
    from tam.config import load_config
    from tam.errors import TamError
    from tam.train.tune import TuneOptions, final_run, load_space, tune

    if args.trials < 1 or args.jobs < 1 or args.threads < 1:
        raise TamError("--trials, --jobs and --threads must be at least 1")
    overrides = list(args.overrides)
    if args.store:
        overrides.append(f"data.store={args.store}")
    if args.labels:
        overrides.append(f"data.labels={args.labels}")
    base = load_config(args.config, overrides)
    space = load_space(args.space, base)
    opts = TuneOptions(study_dir=args.study_dir, trials=args.trials, jobs=args.jobs, seed=args.seed,
                       storage=args.storage, study_name=args.study_name, startup=args.startup_trials,
                       threads=args.threads)
    summary = tune(base, space, opts)
    drawn = [f for f in summary["plots"].values() if f.endswith(".png")] + (["best.yaml"] if summary["best"] else [])
    print(f"study folder: {args.study_dir} (trials.csv, summary.md, {', '.join(drawn)})")
    if args.final:
        from tam.train.loop import results_table

        print(results_table(final_run(args.study_dir), warnings=False))  # fit printed them
    return 0
