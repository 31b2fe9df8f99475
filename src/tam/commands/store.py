"""`tam store info`: describe a feature store (manifest, video count, segment counts, presence)."""

HELP = "describe a feature store: encoders, dims, videos, segments, missing modalities"
EXAMPLES = """\
  tam store /tmp/world/store
  tam store feats/ --list
"""


def add_arguments(p) -> None:
    p.add_argument("path", help="feature store folder")
    p.add_argument("--list", action="store_true", help="also list every video with its segment count")


def run(args) -> int:
    import numpy as np

    from tam.features.store import FeatureStore

    store = FeatureStore.open(args.path)
    m = store.manifest
    print(f"store {store.root}  (format {m.format_version}, code {m.code_version})")
    print(f"segments: {m.segment}")
    for name, e in m.encoders.items():
        flag = "  RANDOM-INIT (not real features)" if e.random_init else ""
        print(f"  {name:<8} {e.dim:>5}-d  {e.name}  sha256 {e.weights_sha256[:12] or '-'}{flag}")
    videos = store.videos()
    Ts, absent = [], {k: 0 for k in m.dims}
    for v in videos:
        f = store.read(v)
        Ts.append(f.T)
        for k, p in f.present.items():
            absent[k] += not p
        if args.list:
            print(f"  {v}  T={f.T}  missing={[k for k, p in f.present.items() if not p]}")
    if Ts:
        print(f"videos: {len(videos)}; segments per video: min {min(Ts)}, median {int(np.median(Ts))}, max {max(Ts)}")
    else:
        print("videos: 0")
    print("videos without a modality: " + ", ".join(f"{k} {n}" for k, n in absent.items()))
    return 0
