"""`tam synth features`: write the built-in synthetic world (features + labels) to a folder."""

HELP = "generate the built-in synthetic world (feature store + labels CSV)"
EXAMPLES = """\
  tam synth --out /tmp/world                 # 600 videos, seed 0
  tam synth --out /tmp/world --videos 2000 --seed 3
  tam synth --out /tmp/timing --world timing  # a world with power (docs/synthetic.md): 400 train + 1,000 test
  tam synth --out /tmp/pre --world pretrain --unlabelled 600   # + unlabelled videos and their comment corpus
  tam synth --out /tmp/sync --world sync --unlabelled 1000 --corpora 100,300   # timing comments (docs/pretraining.md)
  tam synth --out /tmp/valence --world valence   # the transfer target: same encoders, other videos, no comments
"""


def add_arguments(p) -> None:
    p.add_argument("--out", required=True, help="output folder (store/ and labels.csv are written inside)")
    p.add_argument("--videos", type=int, default=600, help="number of videos (default 600)")
    p.add_argument("--seed", type=int, default=0, help="world seed (default 0)")
    p.add_argument("--world", default="features",
                   choices=["features", "timing", "order", "cooccur", "pretrain", "sync", "valence"],
                   help="features (default: the demo's world) or a world with power (see docs/synthetic.md)")
    p.add_argument("--train", type=int, default=400, help="worlds with power: training rows (default 400)")
    p.add_argument("--test", type=int, default=1000, help="worlds with power: test rows (default 1000)")
    p.add_argument("--unlabelled", type=int, default=600, help="pretrain world: unlabelled videos with comments")
    p.add_argument("--corpora", default="", help="sync world: also corpora of the first n unlabelled videos "
                   "(comma-separated n; folders unlabelled/corpus-<n>)")


def run(args) -> int:
    from tqdm import tqdm

    from tam.demo.worlds.features import WorldSpec, make_world

    if args.world in ("sync", "valence"):
        return _sync(args)
    if args.world != "features":
        return _power(args)
    bar = tqdm(total=args.videos, desc="videos")
    store, labels = make_world(args.out, WorldSpec(n_videos=args.videos, seed=args.seed),
                               progress=lambda i, n: bar.update(1))
    bar.close()
    print(f"feature store: {store}\nlabels:        {labels}")
    return 0


def _power(args) -> int:
    from tqdm import tqdm

    from tam.demo.worlds.power import CorpusSpec, PowerSpec, make_power_world, make_pretrain_corpus

    spec = PowerSpec(world=args.world, n_train=args.train, n_test=args.test, seed=args.seed)
    with tqdm(total=args.train + args.test, desc=f"{args.world} videos") as bar:
        store, labels = make_power_world(args.out, spec, progress=lambda i, n: bar.update(1))
    print(f"feature store: {store}\nlabels:        {labels}")
    if args.world == "pretrain":
        with tqdm(total=args.unlabelled, desc="unlabelled videos") as bar:
            ustore, corpus = make_pretrain_corpus(f"{args.out}/unlabelled", spec, CorpusSpec(n_videos=args.unlabelled),
                                                  progress=lambda i, n: bar.update(1))
        print(f"unlabelled:    {ustore}\ncorpus:        {corpus}")
    return 0


def _sync(args) -> int:
    from tqdm import tqdm

    from tam.demo.worlds.sync import SyncCorpusSpec, SyncSpec, make_sync_corpus, make_sync_world

    spec = SyncSpec(world=args.world, n_train=args.train, n_test=args.test, seed=args.seed)
    with tqdm(total=args.train + args.test, desc=f"{args.world} videos") as bar:
        store, labels = make_sync_world(args.out, spec, progress=lambda i, n: bar.update(1))
    print(f"feature store: {store}\nlabels:        {labels}")
    if args.world == "sync":
        cs = SyncCorpusSpec(n_videos=args.unlabelled, corpora=tuple(int(n) for n in args.corpora.split(",") if n))
        with tqdm(total=args.unlabelled, desc="unlabelled videos") as bar:
            ustore, corpus = make_sync_corpus(f"{args.out}/unlabelled", spec, cs, progress=lambda i, n: bar.update(1))
        print(f"unlabelled:    {ustore}\ncorpus:        {corpus}")
    return 0
