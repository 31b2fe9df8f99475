"""`tam predict`: a trained model on new videos -> predictions (JSON lines + CSV), timelines, an HTML report."""

HELP = "predict the evoked emotion of videos with a trained model: per video, per segment, with an HTML report"
EXAMPLES = """\
  tam predict a.mp4 b.mkv --model runs/ve8 --image-weights clip-vit-base-patch32/ \\
      --motion-weights r3d50_K_200ep.pth --audio-weights vggish-10086976.pth -o preds/ --report preds/report
  tam predict videos/ --model runs/ve8 -o preds/ --cache feats/        # keep features: a re-run skips them
  tam predict --features feats/ --model runs/ve8 -o preds/             # every video of an existing store
  tam predict --features feats/ vid1 vid2 --model runs/liris --timeline occlusion
  tam predict a.mp4 --model runs/ft --words runs/pre -o preds/ --report preds/r   # + predicted viewer words
  tam predict a.mp4 --model my-lab/ve8-ctm --runtime onnx -o preds/   # a `tam export` model by Hub id, onnxruntime
outputs: OUT/predictions.jsonl (one JSON object per video), OUT/predictions.csv; see docs/predict.md
"""


def add_arguments(p) -> None:
    p.add_argument("inputs", nargs="*", help="video files and/or folders (with --features: video ids, default all)")
    p.add_argument("--model", required=True, help="a `tam train` run directory, a `tam export` folder or a Hub repo id "
                   "(ORG/NAME; with HF_HUB_OFFLINE=1 from the local cache)")
    p.add_argument("-o", "--out", default="predictions", help="output folder (default ./predictions)")
    p.add_argument("--features", default="", help="predict from this feature store instead of decoding videos")
    p.add_argument("--cache", default="", help="feature store for the extracted features (re-runs skip them)")
    for m in ("image", "motion", "audio"):
        p.add_argument(f"--{m}-weights", default="", help=f"{m} encoder weights (local file/folder)")
    p.add_argument("--audio-pca", default="", help="VGGish PCA parameters, when the model's features used them")
    p.add_argument("--timeline", default="auto", choices=["auto", "token", "occlusion"],
                   help="per-segment timeline: head on each segment token, or occlusion (default auto)")
    p.add_argument("--words", default="", help="a `tam pretrain` run directory: add the predicted viewer-words track")
    p.add_argument("--vocab", default="", help="with --words: the corpus's vocab.json (default: from its config.yaml)")
    p.add_argument("--report", default="", help="write a PNG and an HTML page per video and index.html here")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--runtime", default="torch", choices=["torch", "onnx"],
                   help="run the fusion + head in PyTorch or onnxruntime (an exported folder's model.onnx)")
    p.add_argument("--batch", type=int, default=8, help="windows per forward pass (default 8)")
    p.add_argument("--workers", type=int, default=1, help="decoding threads (default 1)")
    p.add_argument("--threads", type=int, default=0,
                   help="torch CPU threads; 0 = auto: cores // (1 + workers) (default 0)")
    p.add_argument("--strict", action="store_true", help="stop at the first bad file")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def run(args) -> int:
    import time

    from tam.errors import TamError
    from tam.infer.pipeline import predict, summary, write_outputs
    from tam.train.threads import set_threads

    set_threads(args.threads, args.workers)
    if not args.inputs and not args.features:
        raise TamError("give video files or folders, or --features STORE")
    if args.features and args.inputs:
        _check_ids(args.features, args.inputs)
    t0 = time.perf_counter()
    weights = {m: getattr(args, f"{m}_weights") for m in ("image", "motion", "audio") if getattr(args, f"{m}_weights")}
    results = predict(args.inputs, args.model, features=args.features, cache=args.cache, weights=weights,
                      audio_pca=args.audio_pca, device=args.device, timeline=args.timeline, words=args.words,
                      vocab=args.vocab, report=args.report, runtime=args.runtime,
                      progress=not args.no_progress, strict=args.strict, batch=args.batch, workers=args.workers)
    jsonl, table = write_outputs(results, args.out)
    print(summary(results, time.perf_counter() - t0))
    print(f"wrote {jsonl} and {table}")
    return 1 if any(r["status"] != "ok" for r in results) else 0


def _check_ids(store_path: str, ids: list[str]) -> None:
    """With --features, ids none of which is in the store are a typo, not a batch of failures."""
    from tam.errors import TamError
    from tam.features.store import FeatureStore

    store = FeatureStore.open(store_path)
    if not any(store.has(v) for v in ids):
        raise TamError(f"{store_path}: none of the videos {', '.join(ids[:3])} is in the store (its ids e.g. "
                       f"{', '.join(store.videos()[:3]) or 'none'}; `tam store {store_path} --list` lists them)")
