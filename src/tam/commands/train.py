"""`tam train`: fit a model on a feature store + labels table (one or N processes under torchrun)."""

HELP = "train and evaluate a fusion model on a feature store and a labels CSV"
EXAMPLES = """\
  tam train --config configs/ve8.yaml --run-dir runs/out/ve8-ctm-s01
  tam train --config configs/ve8.yaml --run-dir runs/out/x --set model.fusion=joint --set optim.epochs=10
  tam train --store feats/ --labels labels.csv --run-dir runs/out/tiny --set model.d=64 --set model.layers=2
  torchrun --nproc_per_node=2 -m tam train --config configs/ve8.yaml --run-dir runs/out/ddp   # 2 processes
  tam train --group runs/out/experiments/timing/groups/G/group.json   # several seeds in one process
A killed run resumes from its last epoch when started again with the same --run-dir and config.
""" + """A group file ({"runs": [{"config", "overrides", "run_dir"}, ...]}, written by `tam experiment run`) trains runs
that differ only in seed in one process (tam.train.multiseed; docs/training.md, "Several seeds in one process").
"""


def add_arguments(p) -> None:
    p.add_argument("--config", help="YAML config (sections model/data/optim/train); defaults = the paper's")
    p.add_argument("--store", help="feature store folder (overrides data.store)")
    p.add_argument("--labels", help="labels CSV (overrides data.labels)")
    p.add_argument("--run-dir", help="output folder (created; resumed if it holds last.pt)")
    p.add_argument("--group", help="a group file of runs to train in one process (instead of --run-dir)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override a config value (repeatable)")
    p.add_argument("--threads", type=int, help="torch CPU threads (train.threads; default 0 = auto: "
                                               "cores // (1 + train.num_workers))")


def run(args) -> int:
    from tam.config import load_config
    from tam.errors import TamError
    from tam.train.loop import fit

    if args.group:
        from tam.train.multiseed import main
        return main([args.group])
    if not args.run_dir:
        raise TamError("tam train: give --run-dir (or --group)")

    overrides = list(args.overrides)
    if args.store:
        overrides.append(f"data.store={args.store}")
    if args.labels:
        overrides.append(f"data.labels={args.labels}")
    if args.threads is not None:
        overrides.append(f"train.threads={args.threads}")
    cfg = load_config(args.config, overrides)
    results = fit(cfg, args.run_dir)
    from tam.train.distributed import Dist
    if Dist().main:
        from tam.train.loop import results_table
        print(results_table(results, warnings=False))  # fit printed each warning once
    return 0
