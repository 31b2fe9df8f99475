"""`tam demo`: the whole pipeline on the built-in synthetic video + danmaku world, with a report folder."""

HELP = "run the whole pipeline (comments, extraction, pre-training, fine-tuning) on a synthetic world; write a report"
EXAMPLES = """\
  tam demo                       # 360 + 420 videos, every table, 5 seeds (10 for the headline); see docs/demo.md
  tam demo --quick               # a small world, 1 seed, CTM vs concatenation; about a minute (the tests)
  tam demo --out /tmp/demo --seeds 0 1 2 3 4 --fusions ctm joint
  tam demo --features-only       # only the fusion table on the feature-level world (docs/synthetic.md)
"""


def add_arguments(p) -> None:
    p.add_argument("--out", default="out/demo", help="output folder (default out/demo); a re-run resumes")
    p.add_argument("--quick", action="store_true", help="a small, fast version (used by the tests)")
    p.add_argument("--features-only", action="store_true",
                   help="only train the fusion strategies on the feature-level world (no files, no pre-training)")
    p.add_argument("--seeds", type=int, nargs="+",
                   help="training seeds (default 0 1 2 3 4, and 0-9 for the small-label comparison; given, both)")
    p.add_argument("--fusions", nargs="+", help="fusion strategies (default all six)")
    p.add_argument("--epochs", type=int, help="fine-tuning epochs per run")
    p.add_argument("--videos", type=int, help="labelled videos in the synthetic world")
    p.add_argument("--workers", type=int, help="processes that train in parallel (default 2)")
    p.add_argument("--threads", type=int, help="torch threads per training process (default 1)")
    p.add_argument("--readouts", nargs="+", choices=["f0", "mean", "attentive"],
                   help="readouts of the small-label pre-trained vs scratch comparison (default attentive; add f0 "
                        "for the paper's readout, 20 more runs)")


def run(args) -> int:
    from tam.demo.run import DemoSpec, PipelineSpec, run_demo, run_pipeline

    if args.features_only:
        spec = DemoSpec.quick() if args.quick else DemoSpec()
    else:
        spec = PipelineSpec.quick() if args.quick else PipelineSpec()
    for key, attr in (("seeds", "seeds"), ("fusions", "fusions"), ("epochs", "epochs"), ("workers", "workers"),
                      ("threads", "threads"), ("readouts", "readouts"),
                      ("videos", "videos" if args.features_only else "labelled")):
        if getattr(args, key) is not None:
            setattr(spec, attr, getattr(args, key))
    if args.seeds is not None and not args.features_only:
        spec.small_seeds = list(args.seeds)
    (run_demo if args.features_only else run_pipeline)(args.out, spec)
    return 0
