"""Synchrony worlds for TSC pre-training that teaches timing, and transfers (docs/pretraining.md, issue 21 item 2).

Feature level, modalities `image` and `audio` (32 dims each). Per video: one image flash at t_i and one audio beep
at t_a = t_i + o, on a background that drifts in a low-rank subspace plus Gaussian noise (as the worlds of
`tam.demo.worlds.power`). The label is a cross-modal timing relation: `sync` when the beep lands on the flash or
within one segment of it (o in {-1, 0, +1}), `off` when it is 2 to 4 segments away on either side (o in {±2, ±3,
±4}), equally often. No single modality says which: the flash and the beep are each at a uniform position.

  - `sync` world (A): T in [10, 16]; its labelled videos (`labels.csv`: sync / off) and its unlabelled videos with
    comments (`make_sync_corpus`): viewers comment on the flash, and what they say depends on the timing, in A's
    own vocabulary: `flash` + `emo_together` when the sound lands on it, `flash` + `emo_lagging` otherwise (and
    `bang` + the same word at the beep), plus generic chatter (`emo_calm`, `emo_meh`) anywhere.
  - `valence` world (B, the transfer target): the same encoders (event directions, manifest), other videos:
    shorter (T in [6, 10]), another background subspace, rank 12, noise 0.5, faster drift; no comments; classes
    `pleasant` (the timing is in sync) and `unpleasant` (off), which are no comment words.

Both worlds' event directions come from the encoder seed and are orthogonal to both backgrounds; the manifest
names the encoders only, so a fusion pre-trained on A's videos fine-tunes on B's store.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tam.demo.worlds.power import comment_rows, write_labelled_world, write_unlabelled_world
from tam.errors import TamError
from tam.features.store import Encoder, FeatureStore, Manifest

SYNC_WORLDS = ("sync", "valence")
CLASSES = {"sync": ["sync", "off"], "valence": ["pleasant", "unpleasant"]}
OFFSETS = {0: (-1, 0, 1), 1: (-4, -3, -2, 2, 3, 4)}  # label index -> beep offsets o = t_a - t_i
BACKGROUND = {  # world -> (first background direction, rank, noise, drift step, min T, max T)
    "sync": (0, 8, 0.3, 0.3, 10, 16), "valence": (8, 12, 0.5, 0.5, 6, 10)}


@dataclass
class SyncSpec:
    world: str = "sync"
    n_train: int = 400  # labelled training rows (the pool `tam experiment` subsamples)
    n_test: int = 1000
    dims: dict[str, int] = field(default_factory=lambda: {"image": 32, "audio": 32})
    amp: float = 3.0
    seed: int = 0  # the encoders' seed (event and background directions) and the videos' draws

    def describe(self) -> str:
        """The encoders' identity: shared by both worlds, so fine-tuning on B accepts a fusion pre-trained on A."""
        return f"synchrony encoders v1 (seed {self.seed}, dims {self.dims}, amp {self.amp})"


def sync_dirs(spec: SyncSpec) -> dict[str, np.ndarray]:
    """Per modality: one event direction `<m>` [1, D] and 20 background directions `bg_<m>`, orthonormal."""
    if spec.world not in SYNC_WORLDS:
        raise TamError(f"unknown synchrony world {spec.world!r}; one of {SYNC_WORLDS}")
    rng = np.random.default_rng([spec.seed, zlib.crc32(b"sync-encoders"), 0])
    dirs = {}
    for m, D in spec.dims.items():
        q, _ = np.linalg.qr(rng.standard_normal((D, 21)))
        dirs["bg_" + m], dirs[m] = q[:, :20].T, q[:, 20:].T
    return dirs


def generate_sync_video(rng: np.random.Generator, spec: SyncSpec, dirs: dict) -> tuple[dict, int, dict]:
    """One video: features {m: float32 [T, D]}, its label index, and its plan {"image": t_i, "audio": t_a}."""
    b0, rank, noise, drift, t_min, t_max = BACKGROUND[spec.world]
    T = int(rng.integers(t_min, t_max + 1))
    y = int(rng.integers(2))
    o = int(rng.choice(OFFSETS[y]))
    t_i = int(rng.integers(max(0, -o), T - max(0, o)))
    plan = {"image": t_i, "audio": t_i + o}
    feats = {}
    for m, D in spec.dims.items():
        z = np.cumsum(rng.standard_normal((T, rank)) * drift, axis=0) + rng.standard_normal(rank)
        x = z @ dirs["bg_" + m][b0:b0 + rank] + noise * rng.standard_normal((T, D))
        x[plan[m]] += spec.amp * dirs[m][0]
        feats[m] = x.astype(np.float32)
    return feats, y, plan


def sync_oracle(feats: dict[str, np.ndarray], dirs: dict, amp: float) -> int:
    """The label by the rule, from the events read back by projection (the tests check it on every video)."""
    t = {m: int(np.argmax(feats[m] @ dirs[m][0])) for m in ("image", "audio")}
    return 0 if abs(t["audio"] - t["image"]) <= 1 else 1


def sync_manifest(spec: SyncSpec) -> Manifest:
    return Manifest(encoders={m: Encoder(name=f"synthetic-{m}", dim=D, preprocessing=spec.describe())
                              for m, D in spec.dims.items()}, segment="synthetic segments of 1 s")


def make_sync_world(root: str | Path, spec: SyncSpec, progress=None) -> tuple[Path, Path]:
    """Write `root/store` and `root/labels.csv` (test rows first, then training rows). Idempotent."""
    dirs = sync_dirs(spec)
    return write_labelled_world(root, spec, sync_manifest(spec), CLASSES[spec.world],
                                lambda rng: generate_sync_video(rng, spec, dirs), progress)


# ---------------------------------------------------------------- world A's unlabelled videos and comments


@dataclass
class SyncCorpusSpec:
    n_videos: int = 1000  # unlabelled videos of world A in the store
    corpora: tuple[int, ...] = ()  # also corpora of the first n videos (`corpus-<n>`), for learning curves
    at_flash: float = 4.0  # mean comments at the flash's segment
    at_beep: float = 2.0  # mean comments at the beep's segment
    chatter: float = 0.2  # mean generic comments per segment
    heldout_fraction: float = 0.2
    seed: int = 0


FILLERS = [f"w{i:02d}" for i in range(16)]
EMOTIONAL = ["emo_together", "emo_lagging", "emo_calm", "emo_meh"]
TOPICS = ["flash", "bang"]


def sync_vocab() -> list[str]:
    from tam.comments.process import SPECIAL_TOKENS
    return list(SPECIAL_TOKENS) + EMOTIONAL + TOPICS + FILLERS


def sync_comments(rng: np.random.Generator, plan: dict, y: int, T: int, cs: SyncCorpusSpec) -> list:
    """(time, words) of one video's comments: the timing decides the word at the flash and at the beep."""
    emo = "emo_together" if y == 0 else "emo_lagging"

    def reactions(t: int) -> list:
        kinds = [("flash", emo)] * int(rng.poisson(cs.at_flash)) if t == plan["image"] else []
        return kinds + ([("bang", emo)] * int(rng.poisson(cs.at_beep)) if t == plan["audio"] else [])

    return comment_rows(rng, T, reactions, cs.chatter)


def make_sync_corpus(root: str | Path, spec: SyncSpec, cs: SyncCorpusSpec, progress=None) -> tuple[Path, Path]:
    """World A's unlabelled videos (`root/store`, the labelled store's manifest) and their comments (`root/corpus`;
    `root/corpus-<n>` for each n of `cs.corpora`: the first n videos). Idempotent."""
    root = Path(root)
    if (root / "corpus" / "vocab.json").is_file():
        return root / "store", root / "corpus"
    if spec.world != "sync":
        raise TamError(f"comments exist only for the sync world (A), not {spec.world!r}")
    dirs = sync_dirs(spec)
    return write_unlabelled_world(root, spec, cs, sync_manifest(spec), lambda rng: generate_sync_video(rng, spec, dirs),
                                  lambda rng, plan, y, T: sync_comments(rng, plan, y, T, cs), sync_vocab(), EMOTIONAL,
                                  progress, cs.corpora)


# ---------------------------------------------------------------- diagnostics: is the timing in the fusion's output?


def _fused(model, store: FeatureStore, videos: list[str], T: int) -> tuple[np.ndarray, np.ndarray]:
    """f [N, T+1, d] and valid [N, T+1] of the model's (frozen) fusion over the videos."""
    import torch

    from tam.features.clips import ClipDataset, collate

    ds = ClipDataset(store, videos, np.zeros(len(videos)), model.modalities, T, train=False)
    fs, vs = [], []
    model.eval()
    with torch.no_grad():
        for i in range(0, len(videos), 64):
            b = collate([ds[(j, 0)] for j in range(i, min(i + 64, len(videos)))])
            fo = model.fusion(model.norm(b.x, b.valid), b.valid, b.present)
            fs.append(fo.f.float())
            vs.append(fo.valid)
    return torch.cat(fs).numpy(), torch.cat(vs).numpy()


def probe_timing(checkpoint: str | Path, world_root: str | Path, world: str, pretrained: bool = True,
                 n_train: int = 400, seed: int = 0) -> dict[str, float]:
    """Linear-probe test accuracy (logistic regression on `n_train` training videos, the world's test videos) of the
    frozen fusion's f^0, f at the flash segment, and the mean of f over segments: the fusion of `checkpoint`
    (its model section and feature statistics), or the same model at random init (`pretrained=False`)."""
    import torch
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from tam.config import ModelConfig, from_dict
    from tam.datasets.labels import read_labels
    from tam.io import read_json
    from tam.models.model import build_model
    from tam.train.loop import init_fusion

    root, checkpoint = Path(world_root), Path(checkpoint)
    store = FeatureStore.open(root / "store")
    cfg = from_dict(ModelConfig, read_json(checkpoint.with_suffix(".json"))["model"], "model")
    torch.manual_seed(seed)
    model = build_model(cfg, store.manifest.dims, 2)
    from safetensors.torch import load_file
    model.norm.load_state_dict({k[5:]: v for k, v in load_file(str(checkpoint)).items() if k.startswith("norm.")})
    if pretrained:
        init_fusion(model, str(checkpoint), store)
    lab = read_labels(str(root / "labels.csv"), "classification", CLASSES[world])
    dirs = sync_dirs(SyncSpec(world=world))
    views = {}
    for split, limit in (("train", n_train), ("test", None)):
        idx = [i for i, s in enumerate(lab.split) if s == split][:limit]
        vids = [lab.videos[i] for i in idx]
        f, valid = _fused(model, store, vids, cfg.T)
        t = np.array([int(np.argmax(store.read(v).features["image"] @ dirs["image"][0])) for v in vids]) + 1
        n = np.arange(len(vids))
        mean = (f[:, 1:] * valid[:, 1:, None]).sum(1) / valid[:, 1:].sum(1, keepdims=True)
        views[split] = ({"f0": f[:, 0], "f at the flash": f[n, t], "mean of f": mean}, lab.targets[idx])
    out = {}
    for k in views["train"][0]:
        clf = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=2000))
        clf.fit(views["train"][0][k], views["train"][1])
        out[k] = float((clf.predict(views["test"][0][k]) == views["test"][1]).mean())
    return out
