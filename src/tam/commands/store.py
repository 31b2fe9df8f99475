"""`tam store STORE`: describe a feature store (manifest, video count, segment counts, presence);
`tam store check STORE`: check every entry (meta.json, .npy headers and sizes) and list the damaged ones;
`tam store stats STORE`: per-modality feature statistics, flagging heavy-tailed, constant, duplicated dimensions."""

HELP = "describe a feature store (encoders, dims, videos, segments), `check` its entries, or `stats` its features"
EXAMPLES = """\
  tam store /tmp/world/store
  tam store feats/ --list
  tam store check feats/          # one line per damaged entry; exit 1 if any
  tam store stats feats/          # per-modality statistics; heavy-tailed, constant, duplicated dimensions
"""


def add_arguments(p) -> None:
    p.add_argument("path", nargs="+", metavar="[check|stats] STORE",
                   help="feature store folder (after `check`: check it; after `stats`: feature statistics)")
    p.add_argument("--list", action="store_true", help="also list every video with its segment count")


def run(args) -> int:
    from tam.errors import TamError

    if len(args.path) == 2 and args.path[0] == "check":
        return check(args.path[1])
    if len(args.path) == 2 and args.path[0] == "stats":
        return stats(args.path[1])
    if len(args.path) != 1:
        raise TamError(f"give one store folder (or `check STORE`), got {args.path}")
    return info(args.path[0], args.list)


def check(path: str) -> int:
    """Print one line per damaged entry and a summary; 1 if any entry is damaged."""
    from tam.features.store import FeatureStore

    store = FeatureStore.open(path)
    problems = store.check()
    for p in problems:
        print(p)
    folder = store.root / "videos"
    n = sum(not d.name.startswith(".") for d in folder.iterdir()) if folder.is_dir() else 0
    print(f"{store.root}: {n} entries checked, {len(problems)} damaged")
    return 1 if problems else 0


def stats(path: str) -> int:
    """Per-modality feature statistics over every video, and the flagged dimensions."""
    from tam.features.normalize import describe_store, format_report
    from tam.features.store import FeatureStore

    print(format_report(describe_store(FeatureStore.open(path))))
    return 0


def info(path: str, list_videos: bool) -> int:
    import numpy as np

    from tam.errors import TamError
    from tam.features.store import FeatureStore

    store = FeatureStore.open(path)
    m = store.manifest
    print(f"store {store.root}  (format {m.format_version}, code {m.code_version})")
    print(f"segments: {m.segment}")
    for name, e in m.encoders.items():
        flag = "  RANDOM-INIT (not real features)" if e.random_init else ""
        print(f"  {name:<8} {e.dim:>5}-d  {e.name}  sha256 {e.weights_sha256[:12] or '-'}{flag}")
    videos = store.videos()
    Ts, absent = [], {k: 0 for k in m.dims}
    damaged = 0
    for v in videos:
        try:
            f = store.read(v)
        except TamError as e:
            damaged += 1
            print(f"  damaged: {e}")
            continue
        Ts.append(f.T)
        for k, p in f.present.items():
            absent[k] += not p
        if list_videos:
            print(f"  {v}  T={f.T}  missing={[k for k, p in f.present.items() if not p]}")
    if Ts:
        print(f"videos: {len(videos)}; segments per video: min {min(Ts)}, median {int(np.median(Ts))}, max {max(Ts)}")
    else:
        print("videos: 0")
    print("videos without a modality: " + ", ".join(f"{k} {n}" for k, n in absent.items()))
    if damaged:
        print(f"{damaged} damaged entries; `tam store check {store.root}` lists every damaged entry")
    return 0
