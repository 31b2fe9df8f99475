"""`tam extract`: decode videos and write image / motion / audio features into a feature store."""

from tam.engines import add_engine_arguments

HELP = "extract image (CLIP), motion (3D ResNet) and audio (VGGish) features from video files into a store"
EXAMPLES = """\
  tam extract videos/ -o feats/ --image-weights clip-vit-base-patch32/ --motion-weights r3d50_K_200ep.pth \\
      --audio-weights vggish-10086976.pth
  tam extract a.mp4 b.mkv -o feats/ --random-init --tiny       # tests and demos: features are NOT real
  tam extract --list files.txt --root videos/ -o feats/ --shard 0/4   # one of 4 processes, one store
  tam extract videos/ -o feats/ --motion resnext101 --motion-weights resnext-101-kinetics.pth --fps 25
  tam extract ./-odd\\ name.mp4 -o feats/ --strict                  # names starting with '-': prefix ./
  tam extract /shared/videos/ -o /shared/feats/ --engine ray --actor-gpus 0.5   # docs/scaling.md
encoders (see docs/extraction.md): image clip-vit-b32 (512) | clip-vit-l14 (768);
  motion r3d50 | r3d101 | resnext101 (2048) | videomae-base (768); audio vggish (128) | ast-audioset (768);
  --tiny: clip-tiny, r3d-tiny (random init only)
"""


def add_arguments(p) -> None:
    p.add_argument("inputs", nargs="*", help="video files and/or folders (searched recursively)")
    p.add_argument("-o", "--out", required=True, help="feature store folder (created, or resumed)")
    p.add_argument("--list", default="", help="text file with one video path per line (relative to the file)")
    p.add_argument("--root", default="", help="ids of named/listed files are paths relative to this folder")
    p.add_argument("--keep-extension", action="store_true", help="keep file extensions in video ids")
    p.add_argument("--modalities", default="image,motion,audio", help="comma-separated subset to extract")
    for m, default in (("image", "clip-vit-b32"), ("motion", "r3d50"), ("audio", "vggish")):
        p.add_argument(f"--{m}", default=default, help=f"{m} encoder name (default {default})")
        p.add_argument(f"--{m}-weights", default="", help=f"{m} weights: local file/folder (or hub id / URL)")
    p.add_argument("--audio-pca", default="", help="VGGish PCA parameters (vggish_pca_params-*.pth) to apply")
    p.add_argument("--quantize", action="store_true", help="with --audio-pca: 8-bit quantise as AudioSet did")
    p.add_argument("--random-init", action="store_true", help="random encoders (seeded): NOT real features")
    p.add_argument("--tiny", action="store_true", help="small test/demo encoders (implies nothing real)")
    p.add_argument("--fps", type=float, default=16.0, help="resample frames to this rate (default 16: 1 s segments)")
    p.add_argument("--native-rate", action="store_true", help="16 consecutive native frames per segment instead")
    p.add_argument("--motion-frames", choices=("native", "grid"), default="native",
                   help="motion clips: 16 consecutive native-rate frames centred on each segment (default, as the "
                        "3D ResNets were trained) or the segment's 16 resampled frames (stores made before)")
    p.add_argument("--batch", type=int, default=16, help="segments per encoder batch (default 16)")
    p.add_argument("--workers", type=int, default=1,
                   help="decoding threads (default 1; --engine ray: decoding tasks per actor)")
    p.add_argument("--threads", type=int, default=0,
                   help="torch CPU threads; 0 = auto: cores // (1 + workers) (default 0)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--shard", default="", help="i/n: take every n-th video from the i-th (torchrun: RANK)")
    p.add_argument("--strict", action="store_true", help="stop at the first bad file")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_engine_arguments(p)
    p.add_argument("--actors", type=int, default=0,
                   help="with --engine ray: encoder actors (default and most: as many as fit beside their decoding)")
    p.add_argument("--actor-cpus", type=float, default=1,
                   help="with --engine ray: CPUs per actor, for its encoders (decoding: --workers tasks of 1 CPU)")
    p.add_argument("--actor-gpus", type=float, default=None,
                   help="with --engine ray: GPUs per actor (default 1 where the cluster has GPUs; 0.5: two share one)")


def _encoders_here(args) -> dict:
    """The encoders of `args`, built where this runs (a Ray actor: its GPU when it has one, its torch threads)."""
    import os

    from tam.encoders.cli_support import build_encoders, pick_device
    from tam.train.threads import set_threads

    set_threads(args.threads or 1)
    return build_encoders(args, pick_device(args.device, os.environ))


def _on_ray(args, jobs, options):
    from functools import partial

    from tam.engines.extraction import extract_on_ray

    print(f"{len(jobs)} video(s) -> {args.out}  [{options.policy.describe()}; Ray engine]")
    return extract_on_ray(jobs, args.out, partial(_encoders_here, args), options, args.actors, args.actor_gpus,
                          args.actor_cpus, args.address, progress=not args.no_progress)


def _check(args) -> tuple[int, int]:
    """The arguments' own errors, found before anything slow (joining a Ray cluster, importing torch); returns the
    shard (i, n)."""
    import os

    from tam import MODALITIES
    from tam.encoders.cli_support import chosen_encoders, parse_shard
    from tam.errors import TamError

    if not args.inputs and not args.list:
        raise TamError("give video files, folders or --list FILE")
    if os.path.exists(args.out) and not os.path.isdir(args.out):
        raise TamError(f"{args.out}: a file, not a feature store folder (-o/--out)")
    chosen_encoders(args.modalities, {m: getattr(args, m) for m in MODALITIES}, args.tiny)
    for name, value, least in (("batch", args.batch, 1), ("workers", args.workers, 1), ("threads", args.threads, 0),
                               ("actors", args.actors, 0), ("actor-cpus", args.actor_cpus, 0),
                               ("actor-gpus", args.actor_gpus or 0, 0)):
        if value < least:
            raise TamError(f"--{name} {value}: expected at least {least}")
    return parse_shard(args.shard, os.environ)


def run(args) -> int:
    import os

    index, count = _check(args)
    if args.engine == "ray":  # then: the actors' and decoding workers' imports overlap this process's own
        from tam.engines import ray_engine

        ray_engine.connect(args.address)
        ray_engine.warm("tam.engines.extraction", cpus=0)  # holding no CPU that the encoders' actors ask for

    from tam.encoders.cli_support import build_encoders, pick_device
    from tam.encoders.extract import ExtractOptions, find_videos, run_extraction, shard_jobs
    from tam.encoders.video_io import SegmentPolicy
    from tam.train.threads import set_threads

    set_threads(args.threads, args.workers)
    jobs = shard_jobs(find_videos(args.inputs, args.list, args.root, args.keep_extension), index, count)
    policy = SegmentPolicy(fps=args.fps, native=args.native_rate, motion=args.motion_frames)
    options = ExtractOptions(policy=policy, batch=args.batch, workers=args.workers, strict=args.strict)
    if args.engine == "ray":
        outcomes, text = _on_ray(args, jobs, options)
        print(text)
        return 1 if any(o.status == "failed" for o in outcomes) else 0
    device = pick_device(args.device, os.environ)
    encoders = build_encoders(args, device)  # random-init: the summary says once that the features are NOT real
    print(f"{len(jobs)} video(s) -> {args.out}  [{policy.describe()}; "
          + ", ".join(f"{m}: {e.name}" for m, e in encoders.items()) + f"; {device}]")
    outcomes, text = run_extraction(jobs, args.out, encoders, options, progress=not args.no_progress)
    print(text)
    return 1 if any(o.status == "failed" for o in outcomes) else 0
