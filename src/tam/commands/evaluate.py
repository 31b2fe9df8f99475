"""`tam evaluate`: score a trained run's best model on a labels CSV (e.g. another test list)."""

HELP = "evaluate a trained run directory on a feature store and labels CSV"
EXAMPLES = """\
  tam evaluate --run-dir runs/out/ve8-ctm-s01 --store feats/ --labels test.csv
  tam evaluate --run-dir runs/out/tiny --store feats/ --labels labels.csv --split test --out scores.json
  tam evaluate --model my-lab/ve8-ctm --store feats/ --labels test.csv      # an exported model, by folder or repo id
"""


def add_arguments(p) -> None:
    p.add_argument("--run-dir", "--model", dest="run_dir", required=True,
                   help="a run directory (best.safetensors + best.json), a `tam export` folder or a Hub repo id")
    p.add_argument("--store", required=True, help="feature store folder")
    p.add_argument("--labels", required=True, help="labels CSV")
    p.add_argument("--split", default="", help="only rows of this split (train/val/test); default all rows")
    p.add_argument("--out", help="write the metrics as JSON here")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads; 0 = auto (all cores) (default 0)")


def run(args) -> int:
    from tam.eval.evaluate import evaluate_run, format_metrics
    from tam.io import write_json
    from tam.train.threads import set_threads

    set_threads(args.threads)
    metrics = evaluate_run(args.run_dir, args.store, args.labels, args.split or None)
    print(format_metrics(metrics, args.run_dir, args.split or None))
    if args.out:
        write_json(args.out, metrics)
    return 0
