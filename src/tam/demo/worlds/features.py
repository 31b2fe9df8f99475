"""A seeded synthetic world of videos given directly as features at the paper's dims (image 512, motion
2048, audio 128), whose labels need temporal *and* cross-modal structure. See docs/synthetic.md.

Each video has T_v segments of background: a slowly drifting mixture of `rank` fixed directions per
modality (real encoder features also live near a low-dimensional subspace) plus Gaussian noise (σ =
`noise` per dimension). Into it go *events*: a fixed direction of the modality's feature space, added
with amplitude `amp` (the background mixture has unit scale per direction).

  - audio: one **cue** (direction c) at a random segment t*.
  - image: one of 4 **scenes** (directions s_0..s_3) at t* + 1, the segment after the cue; plus 2-3
    distractor scenes of random kinds at other segments.
  - motion: a **movement** ±u at t*; plus 2-3 distractor movements of random signs at other segments.

label = 2 · (scene right after the cue) + (movement sign at the cue): 8 classes.

No single modality suffices (the image stream holds several scenes and does not know which one follows
the cue; the motion stream holds several movements; audio holds only the time), and an order-blind model
fails (it cannot tell the scene *after* the cue from the distractors). A fusion has to relate segment t*
of audio to segment t* of motion and to segment t* + 1 of image: a cross-modal relation across time.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tam import PAPER_DIMS
from tam.features.store import Encoder, FeatureStore, Manifest
from tam.io import write_text

CLASSES = [f"scene{s}_{'up' if m else 'down'}" for s in range(4) for m in (1, 0)]


@dataclass
class WorldSpec:
    n_videos: int = 600
    min_segments: int = 12
    max_segments: int = 40
    amp: float = 3.0  # event amplitude
    noise: float = 0.05  # isotropic noise σ per dimension
    rank: int = 16  # background directions per modality
    distractors: tuple[int, int] = (1, 2)  # min, max distractor events per stream
    lag: int = 1  # the scene that counts comes this many segments after the cue
    test_fraction: float = 1 / 3
    seed: int = 0


def _unit(rng: np.random.Generator, k: int, D: int) -> np.ndarray:
    v = rng.standard_normal((k, D))
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def generate_video(rng: np.random.Generator, spec: WorldSpec, dirs: dict[str, np.ndarray], dims: dict[str, int]):
    """One video: features per modality [T_v, D_m] and its label index."""
    T = int(rng.integers(spec.min_segments, spec.max_segments + 1))
    feats = {}
    for m, D in dims.items():
        z = np.cumsum(rng.standard_normal((T, spec.rank)) * 0.3, axis=0) + rng.standard_normal(spec.rank)
        feats[m] = z @ dirs["background_" + m] + spec.noise * rng.standard_normal((T, D))
    t_cue = int(rng.integers(0, T - spec.lag))  # leaves room for the scene at t* + lag
    scene, sign = int(rng.integers(4)), int(rng.integers(2))
    others = [t for t in range(T) if t not in (t_cue, t_cue + spec.lag)]
    feats["audio"][t_cue] += spec.amp * dirs["cue"][0]
    feats["image"][t_cue + spec.lag] += spec.amp * dirs["scene"][scene]
    feats["motion"][t_cue] += spec.amp * (1 if sign else -1) * dirs["move"][0]
    lo, hi = spec.distractors
    for t in rng.choice(others, size=min(len(others), int(rng.integers(lo, hi + 1))), replace=False):
        feats["image"][t] += spec.amp * dirs["scene"][int(rng.integers(4))]
    for t in rng.choice(others, size=min(len(others), int(rng.integers(lo, hi + 1))), replace=False):
        feats["motion"][t] += spec.amp * (1 if rng.integers(2) else -1) * dirs["move"][0]
    return {m: a.astype(np.float32) for m, a in feats.items()}, 2 * scene + sign, T


def make_world(root: str | Path, spec: WorldSpec | None = None, progress=None) -> tuple[Path, Path]:
    """Write the world's feature store and labels CSV under `root`; returns (store, labels). Idempotent."""
    root, spec = Path(root), spec or WorldSpec()
    dims = dict(PAPER_DIMS)
    rng = np.random.default_rng([spec.seed, 0])
    dirs = {"scene": _unit(rng, 4, dims["image"]), "move": _unit(rng, 1, dims["motion"]),
            "cue": _unit(rng, 1, dims["audio"])}
    dirs.update({"background_" + m: _unit(rng, spec.rank, D) for m, D in dims.items()})
    desc = f"synthetic world v1 (seed {spec.seed}, amp {spec.amp}, noise {spec.noise}, rank {spec.rank})"
    manifest = Manifest(encoders={m: Encoder(name=f"synthetic-{m}", dim=D, preprocessing=desc)
                                  for m, D in dims.items()}, segment="synthetic segments of 1 s")
    store = FeatureStore.create(root / "store", manifest)
    rows = ["video,label,split"]
    n_test = int(round(spec.test_fraction * spec.n_videos))
    for i in range(spec.n_videos):
        feats, label, T = generate_video(np.random.default_rng([spec.seed, 1, i]), spec, dirs, dims)
        vid = f"v{i:05d}"
        times = np.stack([np.arange(T), np.arange(T) + 1.0], axis=1)
        store.write(vid, feats, times, extra={"label": CLASSES[label]})
        rows.append(f"{vid},{CLASSES[label]},{'test' if i < n_test else 'train'}")
        if progress:
            progress(i + 1, spec.n_videos)
    labels = root / "labels.csv"
    write_text(labels, "\n".join(rows) + "\n")
    return root / "store", labels
