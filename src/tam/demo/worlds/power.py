"""Synthetic worlds with power: one feature-level world per claim of the paper, each with a known answer.

Every world writes a feature store (modalities `image` and `audio`, small dims so that grids of many runs
fit a laptop) and a labels CSV with `n_train` training rows (the pool `tam experiment` subsamples) and
`n_test` test rows (>= 1,000 by default). The expectations are written in docs/synthetic.md ("Worlds with
power") and were written there before any run.

Per video: T segments (uniform in [min_segments, max_segments]); per modality a background that drifts in
a `rank`-dimensional subspace plus Gaussian noise (σ = `noise`); events are unit directions orthogonal to
the background subspace, added with amplitude `amp` at one segment (easy to detect: projection `amp` against
noise σ). The worlds:

  - timing   (claim c: cross-modal, cross-segment relations). One image flash at t_i, one audio beep at
             t_a = t_i + o. Label `in_time` when o = 2 (the beep two segments after the flash), `off_time`
             when o is 0 or 4 (equally often). t_i is uniform in [0, T - 5] for every class.
  - order    (within-modality order). Image events A and B at two distinct segments; audio has one beep at
             a random segment (no information). Label `a_first` / `b_first`.
  - cooccur  (same-segment co-occurrence). Two image flashes and two audio beeps at distinct segments of
             their own modality; label `together` when one beep falls on a flash's segment, `apart` when
             none does.
  - pretrain (claim b: pre-training). 4 image scenes of 4 distinct kinds (out of 5) at distinct segments and
             one audio cue at one of them; the label is the kind of the scene at the cue (5 classes).
             `make_pretrain_corpus` writes unlabelled videos of the same world whose comments sit at the cued
             segment and carry the word of its scene (`emo_scene{k}`), plus generic chatter everywhere.

`oracle(world, feats, dirs, amp)` reads a video's events back by projection and applies the rule; the tests
check that it recovers every label.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tam.features.store import Encoder, FeatureStore, Manifest
from tam.io import atomic_write, write_json, write_text

WORLDS = ("timing", "order", "cooccur", "pretrain")
CLASSES = {"timing": ["in_time", "off_time"], "order": ["a_first", "b_first"], "cooccur": ["together", "apart"],
           "pretrain": [f"scene{k}" for k in range(5)]}
EVENTS = {"timing": {"image": 1, "audio": 1}, "order": {"image": 2, "audio": 1},
          "cooccur": {"image": 1, "audio": 1}, "pretrain": {"image": 5, "audio": 1}}


@dataclass
class PowerSpec:
    world: str = "timing"
    n_train: int = 400  # labelled training rows (the engine carves validation from them)
    n_test: int = 1000
    min_segments: int = 10
    max_segments: int = 16
    dims: dict[str, int] = field(default_factory=lambda: {"image": 32, "audio": 32})
    amp: float = 3.0
    noise: float = 0.3
    rank: int = 8
    seed: int = 0

    def describe(self) -> str:
        """The part of the spec the features depend on (the store's identity; not the number of videos)."""
        return (f"power world {self.world} v1 (seed {self.seed}, dims {self.dims}, amp {self.amp}, "
                f"noise {self.noise}, rank {self.rank})")


def world_dirs(spec: PowerSpec) -> dict[str, np.ndarray]:
    """Per modality: `bg_<m>` [rank, D] background directions and `<m>` [K, D] event directions, orthonormal."""
    if spec.world not in WORLDS:
        from tam.errors import TamError
        raise TamError(f"unknown world {spec.world!r}; one of {WORLDS}")
    rng = np.random.default_rng([spec.seed, zlib.crc32(spec.world.encode()), 0])
    dirs = {}
    for m, D in spec.dims.items():
        k = EVENTS[spec.world][m]
        q, _ = np.linalg.qr(rng.standard_normal((D, spec.rank + k)))
        dirs["bg_" + m], dirs[m] = q[:, :spec.rank].T, q[:, spec.rank:].T
    return dirs


def _background(rng: np.random.Generator, T: int, spec: PowerSpec, dirs: dict) -> dict[str, np.ndarray]:
    out = {}
    for m, D in spec.dims.items():
        z = np.cumsum(rng.standard_normal((T, spec.rank)) * 0.3, axis=0) + rng.standard_normal(spec.rank)
        out[m] = z @ dirs["bg_" + m] + spec.noise * rng.standard_normal((T, D))
    return out


def _plan(world: str, rng: np.random.Generator, T: int) -> tuple[dict, int]:
    """Where the events go ({modality: [(segment, event index)]}) and the label index."""
    if world == "timing":
        y = int(rng.integers(2))
        o = 2 if y == 0 else int(rng.choice([0, 4]))
        t = int(rng.integers(0, T - 4))
        return {"image": [(t, 0)], "audio": [(t + o, 0)]}, y
    if world == "order":
        ta, tb = (int(x) for x in rng.choice(T, size=2, replace=False))
        return {"image": [(ta, 0), (tb, 1)], "audio": [(int(rng.integers(T)), 0)]}, int(tb < ta)
    if world == "cooccur":
        y = int(rng.integers(2))
        img = [int(x) for x in rng.choice(T, size=2, replace=False)]
        rest = [t for t in range(T) if t not in img]
        aud = [img[0], int(rng.choice(rest))] if y == 0 else [int(x) for x in rng.choice(rest, size=2, replace=False)]
        return {"image": [(t, 0) for t in img], "audio": [(t, 0) for t in aud]}, y
    seg = [int(x) for x in rng.choice(T, size=4, replace=False)]
    kinds = [int(x) for x in rng.choice(5, size=4, replace=False)]
    cue = int(rng.integers(4))
    return {"image": list(zip(seg, kinds)), "audio": [(seg[cue], 0)]}, kinds[cue]


def generate_video(rng: np.random.Generator, spec: PowerSpec, dirs: dict) -> tuple[dict, int, dict]:
    """One video: features {m: float32 [T, D_m]}, its label index, and its plan (events per modality)."""
    T = int(rng.integers(spec.min_segments, spec.max_segments + 1))
    feats = _background(rng, T, spec, dirs)
    plan, y = _plan(spec.world, rng, T)
    for m, events in plan.items():
        for t, k in events:
            feats[m][t] += spec.amp * dirs[m][k]
    return {m: a.astype(np.float32) for m, a in feats.items()}, y, plan


def detect(feats: dict[str, np.ndarray], dirs: dict, amp: float) -> dict[str, list[tuple[int, int]]]:
    """Events read back by projection onto the event directions: {m: [(segment, event index)]}, sorted."""
    out = {}
    for m in dirs:
        if m.startswith("bg_"):
            continue
        proj = feats[m] @ dirs[m].T  # [T, K]
        out[m] = sorted((int(t), int(k)) for t, k in zip(*np.nonzero(proj > amp / 2)))
    return out


def oracle(world: str, feats: dict[str, np.ndarray], dirs: dict, amp: float) -> int:
    """The label by the world's rule, from the detected events (the tests check it matches every label)."""
    ev = detect(feats, dirs, amp)
    img, aud = ev["image"], ev["audio"]
    if world == "timing":
        return 0 if aud[0][0] - img[0][0] == 2 else 1
    if world == "order":
        pos = {k: t for t, k in img}
        return int(pos[1] < pos[0])
    if world == "cooccur":
        return 0 if {t for t, _ in img} & {t for t, _ in aud} else 1
    return next(k for t, k in img if t == aud[0][0])


def manifest(spec: PowerSpec) -> Manifest:
    return Manifest(encoders={m: Encoder(name=f"synthetic-{m}", dim=D, preprocessing=spec.describe())
                              for m, D in spec.dims.items()}, segment="synthetic segments of 1 s")


def _times(T: int) -> np.ndarray:
    return np.stack([np.arange(T), np.arange(T) + 1.0], axis=1)


def make_power_world(root: str | Path, spec: PowerSpec, progress=None) -> tuple[Path, Path]:
    """Write `root/store` and `root/labels.csv` (test rows first, then training rows). Idempotent."""
    dirs = world_dirs(spec)
    return write_labelled_world(root, spec, manifest(spec), CLASSES[spec.world],
                                lambda rng: generate_video(rng, spec, dirs), progress)


def write_labelled_world(root: str | Path, spec, store_manifest: Manifest, classes: list[str], generate,
                         progress=None) -> tuple[Path, Path]:
    """The store and labels CSV of a feature-level world: `spec.n_test` test rows, then `spec.n_train` training rows,
    video i drawn by `generate(rng)` -> (features, label index, plan) from its own rng [spec.seed, 1, i], so a killed
    writer resumes with the same videos. Idempotent once `labels.csv` exists."""
    root = Path(root)
    labels = root / "labels.csv"
    if labels.is_file():
        return root / "store", labels
    store = FeatureStore.create(root / "store", store_manifest)
    rows = ["video,label,split"]
    n = spec.n_test + spec.n_train
    for i in range(n):
        vid = f"{spec.world[0]}{i:05d}"
        feats, y, plan = generate(np.random.default_rng([spec.seed, 1, i]))
        if not store.has(vid):  # a killed writer resumes; the draw is per video, so the same
            store.write(vid, feats, _times(len(feats["image"])), extra={"label": classes[y], "plan": plan})
        rows.append(f"{vid},{classes[y]},{'test' if i < spec.n_test else 'train'}")
        if progress:
            progress(i + 1, n)
    write_json(root / "world.json", {"spec": vars(spec), "classes": classes})
    write_text(labels, "\n".join(rows) + "\n")
    return root / "store", labels


# ---------------------------------------------------------------- the pre-training corpus


@dataclass
class CorpusSpec:
    n_videos: int = 600  # unlabelled videos with comments
    at_cue: float = 4.0  # mean comments at the cued segment, each with the word of its scene
    # mean generic comments per segment (emo_calm / emo_meh). 0.7 in the first run made the chatter words the
    # most frequent and capped EWP top-1 near 0.65 (a coin flip on chatter) against a 0.37 baseline: see docs
    chatter: float = 0.2
    heldout_fraction: float = 0.2
    seed: int = 0


FILLERS = [f"w{i:02d}" for i in range(16)]
EMOTIONAL = [f"emo_scene{k}" for k in range(5)] + ["emo_calm", "emo_meh"]


def corpus_vocab() -> list[str]:
    from tam.comments.process import SPECIAL_TOKENS
    return list(SPECIAL_TOKENS) + EMOTIONAL + ["sound"] + FILLERS


def _comments(rng: np.random.Generator, plan: dict, T: int, cs: CorpusSpec) -> list[tuple[float, list[str]]]:
    t_cue = plan["audio"][0][0]
    kind = next(k for t, k in plan["image"] if t == t_cue)
    return comment_rows(rng, T, lambda t: [("sound", f"emo_scene{kind}")] * int(rng.poisson(cs.at_cue))
                        if t == t_cue else [], cs.chatter)


def comment_rows(rng: np.random.Generator, T: int, reactions, chatter: float) -> list[tuple[float, list[str]]]:
    """(time, words) of one video's comments: at each segment t the (topic or None, emotional word) pairs
    `reactions(t)` draws, then Poisson(`chatter`) calm / meh comments; each with 1-3 filler words around them."""
    rows = []
    for t in range(T):
        kinds = reactions(t)
        kinds += [(None, str(rng.choice(["emo_calm", "emo_meh"]))) for _ in range(rng.poisson(chatter))]
        for topic, emo in kinds:
            w = [str(x) for x in rng.choice(FILLERS, size=int(rng.integers(1, 4)))]
            w.insert(int(rng.integers(0, len(w) + 1)), emo)
            if topic:
                w.insert(int(rng.integers(0, len(w) + 1)), topic)
            rows.append((t + float(rng.uniform(0, 1)), w))
    return rows


def make_pretrain_corpus(root: str | Path, spec: PowerSpec, cs: CorpusSpec, progress=None) -> tuple[Path, Path]:
    """Unlabelled videos of the pre-training world (`root/store`, same manifest as the labelled store) and their
    comment corpus (`root/corpus`, the format of `tam comments prepare`). Idempotent."""
    root = Path(root)
    if (root / "corpus" / "vocab.json").is_file():
        return root / "store", root / "corpus"
    if spec.world != "pretrain":
        from tam.errors import TamError
        raise TamError(f"a comment corpus exists only for the pretrain world, not {spec.world!r}")
    dirs = world_dirs(spec)
    return write_unlabelled_world(root, spec, cs, manifest(spec), lambda rng: generate_video(rng, spec, dirs),
                                  lambda rng, plan, y, T: _comments(rng, plan, T, cs), corpus_vocab(), EMOTIONAL,
                                  progress)


def write_unlabelled_world(root: str | Path, spec, cs, store_manifest: Manifest, generate, comments,
                           vocab: list[str], emotional: list[str], progress=None,
                           corpora: tuple[int, ...] = ()) -> tuple[Path, Path]:
    """`cs.n_videos` unlabelled videos (`root/store`; video i drawn by `generate(rng)` -> (features, label, plan) from
    its own rng [spec.seed, 2, cs.seed, i]) and their comments, `comments(rng, plan, label, T)` -> (time, words), as a
    corpus (`root/corpus`; `root/corpus-<n>` of the first n videos for each n of `corpora`); a video is held out when
    the hash of its name falls under `cs.heldout_fraction`. Idempotent once `root/corpus/vocab.json` exists."""
    root = Path(root)
    if (root / "corpus" / "vocab.json").is_file():
        return root / "store", root / "corpus"
    store = FeatureStore.create(root / "store", store_manifest)
    segs, rows, ends = [], [], {}
    for i in range(cs.n_videos):
        rng = np.random.default_rng([spec.seed, 2, cs.seed, i])
        feats, y, plan = generate(rng)
        T, vid = len(feats["image"]), f"u{i:05d}"
        store.write(vid, feats, _times(T))
        split = "test" if zlib.crc32(f"{cs.seed}:{vid}".encode()) % 10_000 < cs.heldout_fraction * 10_000 else "train"
        segs.append((vid, 0, 0.0, float(T), split, True))
        rows += [(vid, time, words, split) for time, words in comments(rng, plan, y, T)]
        ends[i + 1] = len(rows)
        if progress:
            progress(i + 1, cs.n_videos)
    for n in corpora:
        if n < cs.n_videos:
            write_corpus(root / f"corpus-{n}", segs[:n], rows[:ends[n]], vocab, emotional)
    return root / "store", write_corpus(root / "corpus", segs, rows, vocab, emotional)


def write_corpus(out: Path, segs: list, comments: list, vocab: list[str], emotional: list[str]) -> Path:
    """A corpus folder in the format of `tam comments prepare` (every video one selected segment): segments
    (video, index, start, end, split, selected), comments (video, time, words, split), emotional words masked."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from tam.comments.process import MASK, START

    ids, emo = {w: k for k, w in enumerate(vocab)}, set(emotional)
    li = pa.list_(pa.int32())
    seg_t = pa.table({k: [s[j] for s in segs] for j, k in enumerate(["video", "index", "start", "end", "split",
                                                                     "selected"])})
    com_t = pa.table({
        "video": [c[0] for c in comments], "segment": pa.array([0] * len(comments), pa.int32()),
        "time": [c[1] for c in comments], "split": [c[3] for c in comments],
        "masked_ids": pa.array([[ids[START]] + [ids[MASK] if w in emo else ids[w] for w in c[2]] for c in comments],
                               li),
        "target_ids": pa.array([[ids[w] for w in c[2] if w in emo] for c in comments], li)})
    out.mkdir(parents=True, exist_ok=True)
    atomic_write(out / "segments.parquet", lambda p: pq.write_table(seg_t, p))
    atomic_write(out / "comments.parquet", lambda p: pq.write_table(com_t, p))
    write_json(out / "vocab.json", {"tokens": vocab, "counts": [0] * len(vocab), "min_count": 1})
    return out
