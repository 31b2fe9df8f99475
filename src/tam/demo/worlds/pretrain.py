"""A feature-level synthetic video + comment world for the pre-training acceptance (see docs/pretraining.md).

The unlabelled videos come from the same generator and the same event directions as the labelled world of
`tam.demo.worlds.features` (same manifest, so fine-tuning accepts the pre-trained weights). Viewers "comment on
what they see": the events of each 1-s segment are read back from its features by projecting onto the
event directions, and each event draws comments made of a topic word, filler words and one emotional word:

  - image scene k at t:       topic `group(k)` (scenes 0,1 -> `sceneA`, 2,3 -> `sceneB`), emotional `emo_scene_k`
  - motion movement ±u at t:  topic `move`, emotional `emo_up` / `emo_down`
  - audio cue at t:           topic `sound`, emotional word of the movement at t (if any)
  - the segment after a cue:  topic `after`, emotional word of the scene at that segment (if any)
  - every segment:            a few comments of fillers and a generic emotional word (`emo_calm`, `emo_meh`)

The topic word narrows the emotional word down; only the video says which one it is (emotional-word
prediction needs f), and it points at a few segments (appearing-time prediction needs the segment
features). The `after` and `sound` comments tie the audio cue to the movement at it and the scene after it,
the relation the labels are made of. Written as a corpus folder of the format `tam comments prepare` makes
(segments.parquet, comments.parquet with the id columns, vocab.json); each video is one selected segment.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tam import PAPER_DIMS
from tam.comments.process import MASK, SPECIAL_TOKENS, START
from tam.demo.worlds.features import WorldSpec, _unit, generate_video
from tam.features.store import Encoder, FeatureStore, Manifest
from tam.io import atomic_write, write_json

FILLERS = [f"w{i:02d}" for i in range(24)]
TOPICS = ["sceneA", "sceneB", "move", "sound", "after"]
EMOTIONAL = [f"emo_scene{k}" for k in range(4)] + ["emo_up", "emo_down", "emo_calm", "emo_meh"]
VOCAB = list(SPECIAL_TOKENS) + EMOTIONAL + TOPICS + FILLERS


@dataclass
class CommentWorldSpec:
    n_videos: int = 600  # unlabelled videos with comments
    per_event: float = 3.0  # mean comments per event
    background: float = 1.0  # mean generic comments per segment
    heldout_fraction: float = 0.2  # the paper's 4:1 split, by video
    seed: int = 0  # the comment world's own seed (the features' directions come from the WorldSpec)


def world_dirs(spec: WorldSpec) -> tuple[dict[str, np.ndarray], dict[str, int]]:
    """The event and background directions of `tam.demo.worlds.features.make_world` for this spec (same draws)."""
    dims = dict(PAPER_DIMS)
    rng = np.random.default_rng([spec.seed, 0])
    dirs = {"scene": _unit(rng, 4, dims["image"]), "move": _unit(rng, 1, dims["motion"]),
            "cue": _unit(rng, 1, dims["audio"])}
    dirs.update({"background_" + m: _unit(rng, spec.rank, D) for m, D in dims.items()})
    return dirs, dims


def world_manifest(spec: WorldSpec) -> Manifest:
    """The manifest `make_world` writes for this spec (the identity fine-tuning checks)."""
    desc = f"synthetic world v1 (seed {spec.seed}, amp {spec.amp}, noise {spec.noise}, rank {spec.rank})"
    return Manifest(encoders={m: Encoder(name=f"synthetic-{m}", dim=D, preprocessing=desc)
                              for m, D in PAPER_DIMS.items()}, segment="synthetic segments of 1 s")


def detect_events(feats: dict[str, np.ndarray], dirs: dict[str, np.ndarray], amp: float) -> dict[str, np.ndarray]:
    """Per segment: scene id (-1 none), movement sign (+1, -1, 0 none), cue (bool), by projection > amp / 2."""
    sc = feats["image"] @ dirs["scene"].T  # [T, 4]
    mv = feats["motion"] @ dirs["move"][0]
    cue = feats["audio"] @ dirs["cue"][0]
    return {"scene": np.where(sc.max(1) > amp / 2, sc.argmax(1), -1),
            "move": np.where(np.abs(mv) > amp / 2, np.sign(mv), 0).astype(int), "cue": cue > amp / 2}


def _event_comments(ev: dict[str, np.ndarray], t: int) -> list[tuple[str, str]]:
    """(topic, emotional word) kinds of the comments segment t draws."""
    out = []
    move = {1: "emo_up", -1: "emo_down"}
    if ev["scene"][t] >= 0:
        out.append(("sceneA" if ev["scene"][t] < 2 else "sceneB", f"emo_scene{ev['scene'][t]}"))
    if ev["move"][t]:
        out.append(("move", move[ev["move"][t]]))
    if ev["cue"][t] and ev["move"][t]:
        out.append(("sound", move[ev["move"][t]]))
    if t > 0 and ev["cue"][t - 1] and ev["scene"][t] >= 0:
        out.append(("after", f"emo_scene{ev['scene'][t]}"))
    return out


def video_comments(rng: np.random.Generator, ev: dict[str, np.ndarray], cs: CommentWorldSpec):
    """Comments of one video: times and token lists (unmasked), emotional-word flags."""
    rows = []
    for t in range(len(ev["cue"])):
        kinds = [k for k in _event_comments(ev, t) for _ in range(rng.poisson(cs.per_event))]
        kinds += [(None, str(rng.choice(["emo_calm", "emo_meh"]))) for _ in range(rng.poisson(cs.background))]
        for topic, emo in kinds:
            words = [str(w) for w in rng.choice(FILLERS, size=int(rng.integers(1, 4)))]
            words.insert(int(rng.integers(0, len(words) + 1)), emo)
            if topic:
                words.insert(int(rng.integers(0, len(words) + 1)), topic)
            rows.append((t + float(rng.uniform(0, 1)), words))
    return rows


def make_comment_world(root: str | Path, spec: WorldSpec, cs: CommentWorldSpec, progress=None) -> tuple[Path, Path]:
    """Write the unlabelled store (`root/store`) and its corpus (`root/corpus`); returns both. Idempotent."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    root = Path(root)
    if (root / "corpus" / "vocab.json").is_file():
        return root / "store", root / "corpus"
    dirs, dims = world_dirs(spec)
    store = FeatureStore.create(root / "store", world_manifest(spec))
    segs, comments = [], []
    for i in range(cs.n_videos):
        rng = np.random.default_rng([spec.seed, 2, cs.seed, i])
        feats, _, T = generate_video(rng, spec, dirs, dims)
        vid = f"u{i:05d}"
        store.write(vid, feats, np.stack([np.arange(T), np.arange(T) + 1.0], axis=1).astype(np.float64))
        split = "test" if zlib.crc32(f"{cs.seed}:{vid}".encode()) % 10_000 < cs.heldout_fraction * 10_000 else "train"
        segs.append((vid, 0, 0.0, float(T), split, True))
        comments += [(vid, 0, time, words, split) for time, words in video_comments(rng, detect_events(
            feats, dirs, spec.amp), cs)]
        if progress:
            progress(i + 1, cs.n_videos)
    ids = {w: k for k, w in enumerate(VOCAB)}
    emo = set(EMOTIONAL)
    masked = [[ids[START]] + [ids[MASK] if w in emo else ids[w] for w in words] for _, _, _, words, _ in comments]
    targets = [[ids[w] for w in words if w in emo] for _, _, _, words, _ in comments]
    li = pa.list_(pa.int32())
    seg_t = pa.table({k: [s[j] for s in segs] for j, k in enumerate(["video", "index", "start", "end", "split",
                                                                     "selected"])})
    com_t = pa.table({"video": [c[0] for c in comments], "segment": pa.array([c[1] for c in comments], pa.int32()),
                      "time": [c[2] for c in comments], "split": [c[4] for c in comments],
                      "masked_ids": pa.array(masked, li), "target_ids": pa.array(targets, li)})
    out = root / "corpus"
    out.mkdir(parents=True, exist_ok=True)
    atomic_write(out / "segments.parquet", lambda p: pq.write_table(seg_t, p))
    atomic_write(out / "comments.parquet", lambda p: pq.write_table(com_t, p))
    write_json(out / "vocab.json", {"tokens": VOCAB, "counts": [0] * len(VOCAB), "min_count": 1})
    return root / "store", out


# ---------------------------------------------------------------- acceptance: pre-trained vs not

@dataclass
class AcceptanceSpec:
    labelled: int = 400  # labelled videos in all
    test_fraction: float = 0.7  # of them held out for the test: few labelled training videos
    unlabelled: int = 1200  # videos with comments for pre-training
    seeds: tuple[int, ...] = (0, 1, 2)
    d: int = 64
    layers: int = 2
    heads: int = 4
    T: int = 16
    decoder_layers: int = 1  # a deeper decoder can relate cue and scene itself, leaving the fusion less to learn
    pretrain_epochs: int = 15
    finetune_epochs: int = 15
    lr: float = 1e-3  # pre-training lr, and the fine-tuning lr of both arms (fusion and head alike)
    batch_size: int = 16
    workers: int = 2  # runs in parallel, one CPU thread each


def acceptance_configs(spec: AcceptanceSpec, root: Path, seed: int):
    """(pre-training config, fine-tuning config without and with the pre-trained fusion) for one seed."""
    from tam.config import DataConfig, ModelConfig, OptimConfig, RunConfig, TrainConfig
    from tam.demo.worlds.features import CLASSES
    from tam.train.pretrain import DecoderConfig, LossConfig, PretrainConfig, PretrainDataConfig

    model = ModelConfig(d=spec.d, layers=spec.layers, heads=spec.heads, T=spec.T, dropout=0.1)
    train = TrainConfig(seed=seed, num_workers=0, device="cpu", progress=False)
    pre = PretrainConfig(model=model, decoder=DecoderConfig(layers=spec.decoder_layers, heads=spec.heads),
                         data=PretrainDataConfig(store=str(root / "unlabelled" / "store"),
                                                 corpus=str(root / "unlabelled" / "corpus"), comments_per_clip=32),
                         loss=LossConfig(), train=train,
                         optim=OptimConfig(optimizer="adam", lr=spec.lr, weight_decay=0.0, batch_size=spec.batch_size,
                                           epochs=spec.pretrain_epochs))
    fine = RunConfig(model=model, data=DataConfig(store=str(root / "labelled" / "store"),
                                                  labels=str(root / "labelled" / "labels.csv"), classes=list(CLASSES)),
                     optim=OptimConfig(lr=spec.lr, batch_size=spec.batch_size, epochs=spec.finetune_epochs),
                     train=train)
    init = str(root / "runs" / f"pretrain-seed{seed}" / "pretrained.safetensors")
    with_pre = RunConfig(model=model, data=fine.data, optim=OptimConfig(
        lr=spec.lr, fusion_lr=spec.lr, batch_size=spec.batch_size, epochs=spec.finetune_epochs),
        train=TrainConfig(seed=seed, num_workers=0, device="cpu", progress=False, init_from=init))
    return pre, fine, with_pre


def _job(args) -> dict:
    kind, cfg, run_dir = args
    import torch

    torch.set_num_threads(1)
    if kind == "pretrain":
        from tam.train.pretrain import pretrain
        return pretrain(cfg, run_dir, log=lambda s: None)
    from tam.train.loop import fit
    return fit(cfg, run_dir, log=lambda s: None)


def _pool_map(jobs: list, workers: int) -> list:
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    if workers <= 1:
        return [_job(j) for j in jobs]
    with ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn")) as pool:
        return list(pool.map(_job, jobs))


def run_acceptance(out: str | Path, spec: AcceptanceSpec, log=print) -> dict:
    """Worlds, then per seed: pre-train; fine-tune with and without it. Returns the comparison (see docs)."""
    from tam.demo.worlds.features import make_world

    out = Path(out)
    world = WorldSpec(n_videos=spec.labelled, min_segments=6, max_segments=spec.T, test_fraction=spec.test_fraction)
    make_world(out / "labelled", world)
    make_comment_world(out / "unlabelled", WorldSpec(min_segments=6, max_segments=spec.T),
                       CommentWorldSpec(n_videos=spec.unlabelled))
    cfgs = {s: acceptance_configs(spec, out, s) for s in spec.seeds}
    log(f"pre-training {len(spec.seeds)} seeds on {spec.unlabelled} unlabelled videos")
    pre = _pool_map([("pretrain", cfgs[s][0], out / "runs" / f"pretrain-seed{s}") for s in spec.seeds], spec.workers)
    log("fine-tuning with and without pre-training")
    jobs = [("fit", cfgs[s][k], out / "runs" / f"{name}-seed{s}") for s in spec.seeds
            for k, name in ((1, "scratch"), (2, "pretrained"))]
    fits = _pool_map(jobs, spec.workers)
    acc = {name: [r["test"]["accuracy"] for r, (_, _, p) in zip(fits, jobs) if p.name.startswith(name)]
           for name in ("scratch", "pretrained")}
    return {"seeds": list(spec.seeds), "accuracy": acc, "pretrain": pre, "spec": vars(spec) | {"seeds": spec.seeds}}


def acceptance_table(r: dict) -> str:
    """The printed comparison: fine-tuned test accuracy per seed, mean ± std, the gain against the spread."""
    a, b = np.array(r["accuracy"]["scratch"]), np.array(r["accuracy"]["pretrained"])
    gain, spread = float(b.mean() - a.mean()), float(max(a.std(ddof=1), b.std(ddof=1)) if len(a) > 1 else np.nan)
    lines = ["| fine-tuned from | " + " | ".join(f"seed {s}" for s in r["seeds"]) + " | mean ± std |",
             "|---|" + "---:|" * (len(r["seeds"]) + 1)]
    for name, v in (("no pre-training", a), ("TSC pre-training", b)):
        lines.append(f"| {name} | " + " | ".join(f"{x:.3f}" for x in v) + f" | {v.mean():.3f} ± {v.std(ddof=1):.3f} |")
    lines.append(f"\ngain {gain:+.3f} vs seed spread (largest std) {spread:.3f}: "
                 f"{'PASS' if gain > spread else 'FAIL'} (pre-training beats the spread between seeds)")
    lines.append("\nheld-out pre-training metrics per seed:")
    lines.append("| seed | EWP top-1 (most frequent) | EWP top-5 (5 most frequent) | ATP top-1 (chance) |")
    lines.append("|---|---:|---:|---:|")
    for s, p in zip(r["seeds"], r["pretrain"]):
        h, bl = p["heldout"], p["baseline"]
        lines.append(f"| {s} | {h['ewp_top1']:.3f} ({bl['ewp_top1']:.3f}) | {h['ewp_top5']:.3f} "
                     f"({bl['ewp_top5']:.3f}) | {h['atp_top1']:.3f} ({h['atp_chance']:.3f}) |")
    return "\n".join(lines)
