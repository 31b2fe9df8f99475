"""`tam demo`: train and compare the paper's fusion strategies on the built-in synthetic world."""

HELP = "run the fusion strategies of Table 2 on the built-in synthetic world and print the table"
EXAMPLES = """\
  tam demo                       # 800 videos, 6 fusions x 3 seeds; under 10 minutes on 2 CPU cores
  tam demo --quick               # 400 videos, CTM vs simple concatenation, 1 seed; about a minute
  tam demo --out /tmp/demo --seeds 0 1 2 3 4 --fusions ctm joint
"""


def add_arguments(p) -> None:
    p.add_argument("--out", default="out/demo", help="output folder (default out/demo)")
    p.add_argument("--quick", action="store_true", help="a small, fast version (used by the tests)")
    p.add_argument("--seeds", type=int, nargs="+", help="training seeds (default 0 1 2)")
    p.add_argument("--fusions", nargs="+", help="fusion strategies (default all six)")
    p.add_argument("--epochs", type=int, help="training epochs per run")
    p.add_argument("--videos", type=int, help="videos in the synthetic world")


def run(args) -> int:
    from tam.demo import DemoSpec, run_demo

    spec = DemoSpec.quick() if args.quick else DemoSpec()
    for key in ("seeds", "fusions", "epochs", "videos"):
        if getattr(args, key) is not None:
            setattr(spec, key, getattr(args, key))
    run_demo(args.out, spec)
    return 0
