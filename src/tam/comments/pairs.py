"""Pairing the comment corpus (`tam comments prepare`) with feature-store clips for TSC pre-training.

Each *selected* segment of `segments.parquet` (video, index, start, end, split) is a pre-training clip:
the feature rows r of the video whose span [s_r, e_r) overlaps [start, end) (e_r > start and s_r < end).
A comment at time τ belongs to row `searchsorted(s, τ, "right") - 1` of the clip, clamped to the clip:
a comment exactly on a boundary between two rows belongs to the later one (spans are half-open), one at
or after the clip's last row start (including at the clip's end) to the last row, one before the first
row start to the first row. A clip longer than T rows is cut into ceil(n / T) consecutive chunks of
near-equal length; each chunk is a clip with the comments that fall in it.

Memory: comments are held as flat numpy arrays with offsets (the Arrow list layout), never one Python
object per comment: `tokens` int32 + `tok_off` int64 (the masked comment, `[#S]` first), `targets`
int32 + `tgt_off` int64 (one id per `[#M]`, in order), `segment` int16 (row index within its clip),
and per clip `clip_off` int64 (comments of clip c are `clip_off[c]:clip_off[c+1]`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tam.comments.process import MASK, SPECIAL_TOKENS
from tam.errors import TamError, first_line
from tam.features.store import FeatureStore

MASK_ID = SPECIAL_TOKENS.index(MASK)


def clip_rows(times: np.ndarray, start: float, end: float) -> tuple[int, int]:
    """Feature rows [r0, r1) whose spans [s, e) overlap [start, end) (r0 == r1: none)."""
    times = np.asarray(times, dtype=np.float64)
    idx = np.flatnonzero((times[:, 1] > start) & (times[:, 0] < end))
    return (int(idx[0]), int(idx[-1]) + 1) if idx.size else (0, 0)


def row_of(comment_times: np.ndarray, row_starts: np.ndarray) -> np.ndarray:
    """Row index (0-based within the clip) of each comment time; boundaries go to the later row."""
    r = np.searchsorted(np.asarray(row_starts, np.float64), np.asarray(comment_times, np.float64), side="right") - 1
    return np.clip(r, 0, len(row_starts) - 1)


def chunk_starts(n: int, T: int) -> np.ndarray:
    """Starts of ceil(n / T) consecutive chunks of near-equal length covering [0, n) (plus n at the end)."""
    k = max(1, -(-n // T))
    return np.linspace(0, n, k + 1).round().astype(np.int64)


@dataclass
class TscPairs:
    """Clips (video, feature rows) and their comments as flat arrays; see the module docstring."""

    videos: list[str]  # distinct video ids; clips refer to them by index
    clip_video: np.ndarray  # int32 [C]
    clip_row0: np.ndarray  # int32 [C] first feature row of the clip
    clip_rows: np.ndarray  # int32 [C] number of rows (segments T of the clip)
    clip_train: np.ndarray  # bool [C] corpus split == "train"
    clip_off: np.ndarray  # int64 [C+1]
    tokens: np.ndarray  # int32, all comments' masked ids
    tok_off: np.ndarray  # int64 [N+1]
    targets: np.ndarray  # int32, the original ids of the masked words
    tgt_off: np.ndarray  # int64 [N+1]
    segment: np.ndarray  # int16 [N] row of the comment within its clip
    skipped: dict[str, int] = field(default_factory=dict)  # reason -> count (clips or comments)
    vocab_size: int = 0

    def __len__(self) -> int:
        return len(self.clip_video)

    @property
    def n_comments(self) -> int:
        return len(self.segment)

    def nbytes(self) -> int:
        return sum(getattr(self, k).nbytes for k in ("clip_video", "clip_row0", "clip_rows", "clip_train", "clip_off",
                                                     "tokens", "tok_off", "targets", "tgt_off", "segment"))

    def split(self, train: bool) -> np.ndarray:
        """Indices of the training (or held-out) clips."""
        return np.flatnonzero(self.clip_train == train)

    def comment(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """(masked token ids, target ids) of comment i."""
        return self.tokens[self.tok_off[i]:self.tok_off[i + 1]], self.targets[self.tgt_off[i]:self.tgt_off[i + 1]]


def _flat(column) -> tuple[np.ndarray, np.ndarray]:
    """A list<int> Arrow column -> (values int32, offsets int64), zero-based."""
    import pyarrow as pa

    col = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    off = np.asarray(col.offsets, dtype=np.int64)
    values = np.asarray(col.values, dtype=np.int32)[off[0]:off[-1]]
    return values, off - off[0]


def read_corpus(corpus: str | Path):
    """(segments table of the selected segments, comments table with the columns pairing needs, vocab)."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    corpus = Path(corpus)
    paths = {n: corpus / n for n in ("segments.parquet", "comments.parquet", "vocab.json")}
    for p in paths.values():
        if not p.is_file():
            raise TamError(f"{p}: missing (make the corpus with `tam comments prepare`)")
    try:
        segs = pq.read_table(paths["segments.parquet"], columns=["video", "index", "start", "end", "split",
                                                                  "selected"])
        cols = ["video", "segment", "time", "masked_ids", "target_ids"]
        comments = pq.read_table(paths["comments.parquet"], columns=cols)
        vocab = json.loads(paths["vocab.json"].read_text(encoding="utf-8"))["tokens"]
    except (OSError, ValueError, KeyError) as e:
        raise TamError(f"{corpus}: unreadable corpus ({str(e).splitlines()[0]})") from None
    if list(vocab[:len(SPECIAL_TOKENS)]) != list(SPECIAL_TOKENS):
        raise TamError(f"{paths['vocab.json']}: the first tokens must be {list(SPECIAL_TOKENS)}")
    return segs.filter(pc.field("selected")), comments, vocab


def _sort_comments(segs, comments):
    """Comments sorted by (video, segment, time), their keys, and the segment video ids."""
    import pyarrow as pa
    import pyarrow.compute as pc

    videos = pc.unique(segs["video"].combine_chunks()) if len(segs) else pa.array([], pa.string())
    code = np.asarray(pc.index_in(comments["video"], value_set=videos).fill_null(-1), dtype=np.int64)
    seg = np.asarray(comments["segment"], dtype=np.int64)
    time = np.asarray(comments["time"], dtype=np.float64)
    order = np.lexsort((time, seg, code))
    key = (code * (1 << 32) + seg)[order]
    return videos.to_pylist(), order, key, time[order]


def build_pairs(corpus: str | Path, store: FeatureStore, T: int, max_len: int = 32,
                id_map: dict[str, str] | None = None) -> TscPairs:
    """Pair every selected corpus segment with its video's feature rows; see the module docstring.

    `id_map` (`read_id_map`) names the store video of a corpus video whose id differs; others pair by equal ids.
    The pairs' `videos` are store ids."""
    import pyarrow.compute as pc

    segs, comments, vocab = read_corpus(corpus)
    videos, order, key, time = _sort_comments(segs, comments)
    id_map = id_map or {}
    tokens, tok_off = _flat(pc.take(comments["masked_ids"], order))
    targets, tgt_off = _flat(pc.take(comments["target_ids"], order))
    _check_masks(tokens, tok_off, tgt_off, corpus)
    vid_index = {v: i for i, v in enumerate(videos)}
    times_of = {v: np.array(store.read(id_map.get(v, v)).times) for v in videos
                if store.has(id_map.get(v, v))}  # one read per video
    skipped: dict[str, int] = {}
    clips, pieces = [], []  # (video index, row0, rows, train), per clip the comment indices and rows
    for v, idx, start, end, split in zip(*(segs[c].to_pylist() for c in ("video", "index", "start", "end", "split"))):
        k = vid_index[v] * (1 << 32) + idx
        lo, hi = np.searchsorted(key, k, "left"), np.searchsorted(key, k, "right")
        if v not in times_of:
            skipped["clips without features"] = skipped.get("clips without features", 0) + 1
            continue
        times = times_of[v]
        r0, r1 = clip_rows(times, start, end)
        if r1 == r0:
            why = "clips outside the features' time span"
            skipped[why] = skipped.get(why, 0) + 1
            continue
        rows = row_of(time[lo:hi], times[r0:r1, 0])
        bounds = chunk_starts(r1 - r0, T)
        chunk = np.searchsorted(bounds, rows, side="right") - 1
        for c in range(len(bounds) - 1):
            sel = np.flatnonzero(chunk == c)
            if not sel.size:
                skipped["clips without comments"] = skipped.get("clips without comments", 0) + 1
                continue
            clips.append((vid_index[v], r0 + bounds[c], bounds[c + 1] - bounds[c], split == "train"))
            pieces.append((lo + sel, rows[sel] - bounds[c]))
    pairs = _assemble([id_map.get(v, v) for v in videos], clips, pieces, tokens, tok_off, targets, tgt_off, max_len,
                      skipped)
    pairs.vocab_size = len(vocab)
    return pairs


# ---------------------------------------------------------------- which corpus videos have features

def read_id_map(path: str | Path) -> dict[str, str]:
    """A CSV `comments_id,video_id`: the feature-store id of each corpus video whose id differs."""
    import csv

    path = Path(path)
    try:
        with path.open(encoding="utf-8-sig", newline="") as f:
            reader = csv.DictReader(f)
            if not {"comments_id", "video_id"} <= set(reader.fieldnames or []):
                raise TamError(f"{path}: an id map needs the header comments_id,video_id "
                               f"(got {','.join(reader.fieldnames or []) or 'an empty file'})")
            rows = [((r["comments_id"] or "").strip(), (r["video_id"] or "").strip()) for r in reader]
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise TamError(f"{path}: cannot read the id map ({type(e).__name__}: {first_line(e)})") from None
    out: dict[str, str] = {}
    for n, (c, v) in enumerate(rows, 2):
        if not c or not v or out.get(c, v) != v:
            raise TamError(f"{path}: line {n}: need one non-empty video_id per comments_id (got {c!r} -> {v!r})")
        out[c] = v
    return out


def corpus_segments(corpus: str | Path) -> dict[str, list]:
    """The corpus's selected segments as columns video, split, start, end."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    path = Path(corpus) / "segments.parquet"
    if not path.is_file():
        raise TamError(f"{path}: missing (make the corpus with `tam comments prepare`)")
    try:
        t = pq.read_table(path, columns=["video", "split", "start", "end", "selected"])
    except (OSError, ValueError, KeyError) as e:
        raise TamError(f"{path}: unreadable corpus table ({first_line(e)})") from None
    return t.filter(pc.field("selected")).select(["video", "split", "start", "end"]).to_pydict()


def pairing(corpus: str | Path, store: FeatureStore, id_map: dict[str, str] | None = None) -> dict:
    """How many corpus videos have features (per split), how many selected segments fall inside their features'
    time span, unpaired examples from each side, and the map that pairing a corpus id with the store id whose last
    path part (without extension) equals it would give."""
    id_map = id_map or {}
    segs = corpus_segments(corpus)
    have = set(store.videos())
    by_split: dict[str, set] = {"train": set(), "held-out": set()}
    for v, split in zip(segs["video"], segs["split"]):
        by_split["train" if split == "train" else "held-out"].add(v)
    paired = {k: sum(id_map.get(v, v) in have for v in vs) for k, vs in by_split.items()}
    wanted = {id_map.get(v, v) for vs in by_split.values() for v in vs} & have
    ends = {v: float(np.asarray(store.read(v).times)[:, 1].max()) for v in wanted}
    inside = sum(ends.get(id_map.get(v, v), -1.0) > start for v, start in zip(segs["video"], segs["start"]))
    late = sum(id_map.get(v, v) in ends for v in segs["video"]) - inside
    lonely = sorted({v for vs in by_split.values() for v in vs if id_map.get(v, v) not in have})
    stems: dict[str, list[str]] = {}
    for s in sorted(have - wanted):
        stems.setdefault(Path(s).stem, []).append(s)
    suggested = {v: stems[v][0] for v in lonely if len(stems.get(v, [])) == 1}
    return {"corpus": {k: len(v) for k, v in by_split.items()}, "paired": paired, "store_videos": len(have),
            "segments": len(segs["video"]), "segments_inside": int(inside), "segments_late": int(late),
            "corpus_only": lonely,
            "store_only": sorted(have - wanted), "suggested_map": suggested}


def pairing_text(r: dict, corpus: str, store: str, id_map: str = "", examples: int = 5) -> str:
    """The pairing report as lines: counts, then examples from each side when some corpus videos are unpaired."""
    def few(ids: list[str]) -> str:
        return ", ".join(ids[:examples]) + (f" (+{len(ids) - examples} more)" if len(ids) > examples else "")

    c, p = r["corpus"], r["paired"]
    lines = [f"corpus {corpus}: {c['train'] + c['held-out']} videos with selected segments "
             f"(train {c['train']}, held-out {c['held-out']}); store {store}: {r['store_videos']} videos; "
             f"id map: {id_map or 'none (equal ids pair)'}",
             f"paired: train {p['train']} of {c['train']}, held-out {p['held-out']} of {c['held-out']} videos; "
             f"{r['segments_inside']} of {r['segments']} selected segments start inside their video's features"]
    if r["segments_late"]:
        lines.append(f"{r['segments_late']} selected segments start after their video's features end: are the "
                     "comments of a longer video (a wrong pairing), or were the features cut short?")
    if r["corpus_only"]:
        lines += [f"corpus ids without features: {few(r['corpus_only'])}",
                  f"store ids without comments:  {few(r['store_only']) or 'none'}"]
        if r["suggested_map"]:
            lines.append(f"{len(r['suggested_map'])} corpus id(s) equal the last part of a store id (e.g. "
                         + ", ".join(f"{a} -> {b}" for a, b in list(r["suggested_map"].items())[:3])
                         + "): --write-id-map FILE writes them as an id map")
        else:
            lines.append("ids pair when equal: name the comment files as the videos (the corpus id is the comment "
                         "file's name), or map them with a CSV comments_id,video_id passed as --id-map")
    return "\n".join(lines)


def _check_masks(tokens: np.ndarray, tok_off: np.ndarray, tgt_off: np.ndarray, corpus) -> None:
    starts = np.minimum(tok_off[:-1], max(len(tokens) - 1, 0))
    n_mask = np.add.reduceat((tokens == MASK_ID).astype(np.int64), starts) if len(tokens) else np.zeros(len(starts))
    n_mask = np.where(np.diff(tok_off) > 0, n_mask, 0)
    bad = np.flatnonzero(n_mask != np.diff(tgt_off))
    if bad.size:
        raise TamError(f"{corpus}/comments.parquet: {bad.size} comments have a different number of [#M] tokens "
                       f"and targets (first: row {int(bad[0])} of the sorted table)")


def _gather(values: np.ndarray, off: np.ndarray, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Ragged rows `idx` of (values, off) -> new (values, off), vectorised."""
    lens = (off[idx + 1] - off[idx]).astype(np.int64)
    new_off = np.concatenate([[0], np.cumsum(lens)]).astype(np.int64)
    src = np.repeat(off[idx] - new_off[:-1], lens) + np.arange(new_off[-1], dtype=np.int64)
    return values[src], new_off


def _assemble(videos, clips, pieces, tokens, tok_off, targets, tgt_off, max_len, skipped) -> TscPairs:
    idx = np.concatenate([p[0] for p in pieces]).astype(np.int64) if pieces else np.zeros(0, np.int64)
    seg = np.concatenate([p[1] for p in pieces]) if pieces else np.zeros(0, np.int64)
    counts = np.array([len(p[0]) for p in pieces], dtype=np.int64)
    clip_of = np.repeat(np.arange(len(pieces)), counts)
    ok = np.diff(tok_off)[idx] <= max_len
    if (~ok).any():
        skipped[f"comments longer than {max_len} tokens"] = int((~ok).sum())
    idx, seg, clip_of = idx[ok], seg[ok], clip_of[ok]
    tok, toff = _gather(tokens, tok_off, idx)
    tgt, goff = _gather(targets, tgt_off, idx)
    arr = np.array(clips, dtype=np.int64).reshape(-1, 4)
    clip_off = np.concatenate([[0], np.cumsum(np.bincount(clip_of, minlength=len(clips)))]).astype(np.int64)
    return TscPairs(videos, arr[:, 0].astype(np.int32), arr[:, 1].astype(np.int32), arr[:, 2].astype(np.int32),
                    arr[:, 3].astype(bool), clip_off, tok, toff, tgt, goff, seg.astype(np.int16), skipped)


# ---------------------------------------------------------------- dataset and batches

@dataclass
class PretrainBatch:
    x: dict  # m -> [B, T, D_m]
    valid: object  # [B, T] bool
    present: object  # [B, M] bool
    tokens: object  # [N, S] masked comment ids ([#S] first), 0 = [PAD]
    token_valid: object  # [N, S] bool
    word_targets: object  # [N, S] original id at each [#M], IGNORE (-100) elsewhere
    clip: object  # [N] which clip of the batch each comment belongs to
    segment: object  # [N] 0-based segment of the comment within its clip

    def to(self, device) -> PretrainBatch:
        return PretrainBatch({m: v.to(device, non_blocking=True) for m, v in self.x.items()},
                             *(getattr(self, k).to(device) for k in ("valid", "present", "tokens", "token_valid",
                                                                    "word_targets", "clip", "segment")))


class PretrainDataset:
    """Items are (clip, epoch): the clip's features and up to `max_comments` of its comments, drawn with a
    seeded generator of (seed, epoch, clip); `max_comments = 0` keeps them all (evaluation)."""

    def __init__(self, store: FeatureStore, pairs: TscPairs, clips: np.ndarray, modalities: list[str],
                 max_comments: int = 0, seed: int = 0):
        self.store, self.pairs, self.clips, self.modalities = store, pairs, clips, modalities
        self.max_comments, self.seed = max_comments, seed

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, item: tuple[int, int]):
        import torch

        i, epoch = item
        p, c = self.pairs, int(self.clips[i])
        v = self.store.read(p.videos[p.clip_video[c]])
        r0, n = int(p.clip_row0[c]), int(p.clip_rows[c])
        x = {m: torch.from_numpy(np.array(v.features[m][r0:r0 + n], dtype=np.float32)) for m in self.modalities}
        present = torch.tensor([v.present[m] for m in self.modalities])
        ids = np.arange(p.clip_off[c], p.clip_off[c + 1])
        if self.max_comments and len(ids) > self.max_comments:
            rng = np.random.default_rng([self.seed, epoch, c])
            ids = np.sort(rng.choice(ids, self.max_comments, replace=False))
        return x, present, [p.comment(j) for j in ids], p.segment[ids].astype(np.int64)


def pretrain_collate(items) -> PretrainBatch:
    """Pad clips to the longest clip and comments to the longest comment of the batch."""
    import torch

    from tam.features.clips import collate
    from tam.objectives.pretrain import IGNORE

    base = collate([(x, present, torch.zeros(()), 0) for x, present, _, _ in items])
    comments = [c for it in items for c in it[2]]
    N, S = len(comments), max((len(t) for t, _ in comments), default=1)
    tokens = np.zeros((N, S), np.int64)
    targets = np.full((N, S), IGNORE, np.int64)
    for n, (tok, tgt) in enumerate(comments):
        tokens[n, :len(tok)] = tok
        targets[n, np.flatnonzero(tok == MASK_ID)] = tgt
    clip = np.repeat(np.arange(len(items)), [len(it[2]) for it in items])
    segment = np.concatenate([it[3] for it in items]) if items else np.zeros(0, np.int64)
    tokens_t = torch.from_numpy(tokens)
    return PretrainBatch(base.x, base.valid, base.present, tokens_t, tokens_t != 0, torch.from_numpy(targets),
                         torch.from_numpy(clip), torch.from_numpy(segment))
