"""`tam synth features`: write the built-in synthetic world (features + labels) to a folder."""

HELP = "generate the built-in synthetic world (feature store + labels CSV)"
EXAMPLES = """\
  tam synth --out /tmp/world                 # 600 videos, seed 0
  tam synth --out /tmp/world --videos 2000 --seed 3
"""


def add_arguments(p) -> None:
    p.add_argument("--out", required=True, help="output folder (store/ and labels.csv are written inside)")
    p.add_argument("--videos", type=int, default=600, help="number of videos (default 600)")
    p.add_argument("--seed", type=int, default=0, help="world seed (default 0)")


def run(args) -> int:
    from tqdm import tqdm

    from tam.demo.worlds.features import WorldSpec, make_world

    bar = tqdm(total=args.videos, desc="videos")
    store, labels = make_world(args.out, WorldSpec(n_videos=args.videos, seed=args.seed),
                               progress=lambda i, n: bar.update(1))
    bar.close()
    print(f"feature store: {store}\nlabels:        {labels}")
    return 0
