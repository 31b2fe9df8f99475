"""`prepare_corpus`: danmaku files -> Parquet comment and segment tables, vocabulary and stats report.

Two passes over the output folder:
1. Per source (a file, or one video's protobuf segments), in worker processes: read, then
   `tam.comments.process.process_video` for each video; write `parts/<key>.comments.arrow` (Arrow IPC)
   and, last, `parts/<key>.json` (the done marker, with the counts and the source's segment table).
   A re-run skips every source whose marker matches the file sizes, times, the lexicon file and the
   settings. A malformed source is reported in one line and skipped; the others go on. The workers
   (spawned, `concurrent.futures`) start while the parent reads the lexicon; small sources go to them in
   groups (`_groups`, largest first), whose comments are scored in one call; a worker that dies stops
   the job with one line instead of hanging it (`_in_pool`), keeping every source already done.
2. Finalize (streamed in chunks of `CHUNK_ROWS` rows): the first source of a video id wins (later ones are
   reported as duplicates); videos are split train/test by a hash of their id; the N most negative and
   N most positive segments are selected; the vocabulary counts the training split's selected comments;
   `comments.parquet` holds the kept comments of the selected segments with token ids, `segments.parquet`
   every segment with `selected` and `polarity`; `stats.json` the counts after each filter.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing as mp
import re
import shutil
import time
import zlib
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tam.comments.formats import ReadLimits, Source, discover, read_source
from tam.comments.process import (
    FILTER_STAGES,
    MASKINGS,
    SPECIAL_TOKENS,
    UNK,
    FilterSettings,
    LexiconTokenizer,
    process_video,
)
from tam.errors import TamError
from tam.io import atomic_write, cached_json, write_json, write_text


@dataclass
class CorpusSettings:
    """Everything that changes the per-video parts (a change re-does them)."""

    lexicon: str = ""
    scorer: str = "fast"
    masking: str = "emotion"
    seed: int = 0
    durations: str = ""  # "" = last comment; a CSV (video,duration) or a folder of video files
    filters: FilterSettings = field(default_factory=FilterSettings)
    limits: ReadLimits = field(default_factory=ReadLimits)

    def digest(self) -> str:
        return hashlib.sha1(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:12]


# ---------------------------------------------------------------- durations

VIDEO_EXTENSIONS = (".mp4", ".mkv", ".flv", ".webm", ".avi", ".mov", ".m4v", ".ts")


class Durations:
    """Video durations: from a CSV `video,duration` table, from video files in a folder (PyAV), or None
    (the caller then uses the last comment's time)."""

    def __init__(self, spec: str = "") -> None:
        self.table: dict[str, float] = {}
        self.files: dict[str, Path] = {}
        if not spec:
            return
        p = Path(spec)
        if p.is_dir():
            self.files = {f.stem: f for f in sorted(p.rglob("*")) if f.suffix.lower() in VIDEO_EXTENSIONS}
        elif p.is_file():
            self.table = _read_duration_table(p)
        else:
            raise TamError(f"{p}: durations source not found (a CSV video,duration or a folder of videos)")

    def get(self, video: str) -> float | None:
        if video in self.table:
            return self.table[video]
        if video in self.files:
            return probe_duration(self.files[video])
        return None


def _read_duration_table(path: Path) -> dict[str, float]:
    import csv

    with path.open(encoding="utf-8-sig", newline="") as f:
        reader = csv.DictReader(f)
        if not {"video", "duration"} <= set(reader.fieldnames or []):
            raise TamError(f"{path}: durations CSV needs the columns video,duration")
        out = {}
        for n, row in enumerate(reader, 2):
            try:
                out[row["video"].strip()] = float(row["duration"])
            except (TypeError, ValueError):
                raise TamError(f"{path}: line {n}: duration {row.get('duration')!r} is not a number") from None
        return out


def probe_duration(path: Path) -> float:
    """Duration in seconds of a video file (container duration, else the longest stream)."""
    import av

    try:
        with av.open(str(path)) as c:
            if c.duration:
                return c.duration / 1_000_000
            ds = [float(s.duration * s.time_base) for s in c.streams if s.duration and s.time_base]
    except (av.FFmpegError, OSError) as e:
        raise TamError(f"{path}: cannot read the video duration ({e})") from None
    if not ds:
        raise TamError(f"{path}: the video has no duration")
    return max(ds)


# ---------------------------------------------------------------- pass 1: per source

_CTX: dict = {}


PARTS_FORMAT = "arrow-ipc-1/lexicon-tokens/segments-in-marker"
"""Part tables are Arrow IPC files (fast to write and to map back), the segments columns are in the marker;
part of every marker's fingerprint."""


def _init_worker(settings: CorpusSettings, out_dir: str, preload_jieba: bool = True) -> None:
    import pyarrow  # noqa: F401  (imported once, while the parent loads the lexicon)
    import rjieba  # loads its default dictionary

    from tam.comments.sentiment import make_scorer

    _CTX.update(settings=settings, out=Path(out_dir), scorer=make_scorer(settings.scorer),
                durations=Durations(settings.durations))
    if preload_jieba:  # the lexicon-aware tokeniser's dictionary, edited once the lexicon is read: in a worker
        # process (nothing else cuts there) rjieba's default dictionary itself, rather than a second copy
        # (~0.14 s and ~60 MB a worker)
        _CTX["jieba"] = getattr(rjieba, "_DEFAULT_JIEBA", None) or rjieba.Jieba()


def _warm() -> None:
    """A no-op task: submitting one per worker starts the workers before the lexicon is ready."""


def _pool_task(sources: list[Source], lexicon_file: str) -> list[dict]:
    """`process_sources` in a worker; the lexicon is read (once) from the JSON the parent wrote."""
    if _CTX.get("lexicon_file") != lexicon_file:
        try:
            lex = json.loads(Path(lexicon_file).read_text(encoding="utf-8"))
            lex["table"], lex["pos"], lex["edits"]  # noqa: B018  (all present)
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise TamError(f"{lexicon_file}: unreadable ({type(e).__name__}: {e}); delete it and re-run") from None
        _CTX.update(lexicon={w: tuple(v) for w, v in lex["table"].items()}, lexicon_file=lexicon_file,
                    tokenizer=LexiconTokenizer(lex["pos"], lex["edits"], _CTX.pop("jieba", None)))
    return process_sources(sources)


def process_group(settings: CorpusSettings, out_dir: str, lexicon_file: str, sources: list[Source]) -> list[dict]:
    """`process_sources` for one group (`_groups`) in any process (the engines map it: `tam.engines`): the worker
    context is set up on the process's first group of these settings."""
    if _CTX.get("key") != (settings, out_dir):
        _CTX.clear()
        _init_worker(settings, out_dir)
        _CTX["key"] = (settings, out_dir)
    return _pool_task(sources, lexicon_file)


def part_key(source: Source) -> str:
    """A file-name-safe unique key for a source."""
    stem = re.sub(r"[^\w.-]", "_", source.paths[0].stem)[:60]
    return f"{stem}-{hashlib.sha1(source.name.encode()).hexdigest()[:10]}"


def _fingerprint(source: Source, settings: CorpusSettings) -> list:
    stats = [[str(p), p.stat().st_size, p.stat().st_mtime_ns] for p in source.paths]
    # lists, so that it compares equal after a JSON round trip
    return [settings.digest(), stats, PARTS_FORMAT, _lexicon_stat(settings)]


def _lexicon_stat(settings: CorpusSettings) -> list:
    """Size and modification time of the lexicon file: editing it in place re-does the parts."""
    st = Path(settings.lexicon).stat()
    return [st.st_size, st.st_mtime_ns]


def process_sources(sources: Sequence[Source]) -> list[dict]:
    """Pass 1 for a few sources (in a worker): their summaries; never raises for bad input. The comments of all
    the sources to (re)do are scored together (`Prescored`): one scorer call instead of one per video."""
    ctx, out, todo = _CTX, [], []
    for source in sources:
        key = part_key(source)
        marker = ctx["out"] / "parts" / f"{key}.json"
        try:
            fp = _fingerprint(source, ctx["settings"])
            done = _read_marker(marker)
            if done.get("fingerprint") == fp:
                out.append({**done, "resumed": True})
            else:
                todo.append((source, key, fp, read_source(source, ctx["settings"].limits), marker))
        except Exception as e:  # a file that trips an unforeseen case must not stop the batch
            out.append(_failed(source, key, e))
    scorer = ctx["scorer"]
    if len(todo) > 1 and hasattr(scorer, "score_many"):
        scorer = Prescored(scorer, [t for *_, videos, _ in todo for v in videos for t in v.comments.texts()])
    for source, key, fp, videos, marker in todo:
        try:
            out.append(_write_parts(source, key, fp, videos, marker, scorer))
        except Exception as e:
            out.append(_failed(source, key, e))
    return out


def _failed(source: Source, key: str, e: Exception) -> dict:
    """The summary of a source that could not be read or processed."""
    error = str(e) if isinstance(e, (TamError, OSError)) else \
        f"{source.name}: unexpected {type(e).__name__}: {e}".replace("\n", " ")
    return {"source": source.name, "key": key, "error": error, "videos": []}


class Prescored:
    """A scorer with `score_many` whose scores of `texts` are computed at once, in one `score_many` call (its
    cost per call is ~2 ms, that of ~300 short comments): equal to scoring them in any other batches, since a
    text's score does not depend on the others. Texts not given are scored by `scorer`."""

    def __init__(self, scorer, texts: Sequence[str]) -> None:
        unique = list(dict.fromkeys(texts))
        self.scorer, self.scores = scorer, dict(zip(unique, scorer.score_many(unique).tolist()))

    def score_many(self, texts: Sequence[str]):
        import numpy as np

        scores = list(map(self.scores.get, texts))
        return self.scorer.score_many(texts) if None in scores else np.array(scores, dtype=np.float64)

    def __call__(self, text: str) -> float:
        return float(self.score_many([text])[0])


def _read_marker(marker: Path) -> dict:
    try:
        return json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def _write_parts(source: Source, key: str, fp: list, videos: list, marker: Path, scorer: Callable) -> dict:
    import pyarrow as pa

    ctx, st = _CTX, _CTX["settings"]
    segments: dict[str, list] = {c: [] for c in SEGMENT_SCHEMA.names}
    summary = []

    def write_comments(p: Path) -> None:  # the kept comments go to the file chunk by chunk, as they come
        with pa.OSFile(str(p), "wb") as f, pa.ipc.new_file(f, COMMENT_SCHEMA) as w:
            for v in videos:
                vc = process_video(v.video, v.comments, ctx["durations"].get(v.video), ctx["lexicon"],
                                   scorer, st.filters, st.masking, st.seed, ctx["tokenizer"],
                                   emit=lambda cols: w.write_table(pa.table(cols, schema=COMMENT_SCHEMA)))
                for c, values in segments.items():
                    values += vc.segments[c]
                summary.append({"video": v.video, "format": v.format, "comments": len(v.comments),
                                "skipped": dict(v.skipped), "segments": vc.n_segments})

    parts = ctx["out"] / "parts"
    atomic_write(parts / f"{key}.comments.arrow", write_comments)
    pa.default_memory_pool().release_unused()
    done = {"source": source.name, "key": key, "fingerprint": fp, "error": None, "videos": summary,
            "segments": segments}
    write_text(marker, json.dumps(done, ensure_ascii=False, separators=(",", ":")))  # floats: repr, exact
    return done


def _schemas():
    import pyarrow as pa

    ls = pa.list_(pa.string())
    comments = pa.schema([("video", pa.string()), ("segment", pa.int32()), ("time", pa.float64()),
                          ("text", pa.string()), ("sentiment", pa.float32()), ("tokens", ls),
                          ("emotion_words", ls), ("emotion_categories", ls), ("emotion_majors", ls),
                          ("masked", ls), ("mask_positions", pa.list_(pa.int16())), ("targets", ls)])
    segments = pa.schema([("video", pa.string()), ("index", pa.int32()), ("start", pa.float64()),
                          ("end", pa.float64()), ("count", pa.int32()), ("sentiment", pa.float64()),
                          ("n_lexicon", pa.int32()), ("n_length", pa.int32()), ("n_chars", pa.int32()),
                          ("n_kept", pa.int32())])
    return comments, segments


COMMENT_SCHEMA, SEGMENT_SCHEMA = _schemas()


def _concat(tables: list, schema):
    import pyarrow as pa

    return pa.concat_tables(tables) if tables else schema.empty_table()


def _write_arrow(path: Path, table) -> None:
    import pyarrow as pa

    def write(p: Path) -> None:
        with pa.OSFile(str(p), "wb") as f, pa.ipc.new_file(f, table.schema) as w:
            w.write_table(table)

    atomic_write(path, write)


def segments_table(summary: dict):
    """The segment table of a source's summary (its `segments` columns; a table already made is returned)."""
    import pyarrow as pa

    cols = summary["segments"]
    return cols if isinstance(cols, pa.Table) else pa.table(cols, schema=SEGMENT_SCHEMA)


# ---------------------------------------------------------------- pass 2: finalize

def video_split(video: str, test_fraction: float, seed: int) -> str:
    """'test' for a deterministic `test_fraction` of video ids (CRC32 of seed:video), else 'train'."""
    return "test" if zlib.crc32(f"{seed}:{video}".encode()) % 10_000 < test_fraction * 10_000 else "train"


def select_segments(sentiment: Sequence[float], keys: Sequence[tuple], n: int) -> list[str]:
    """'negative' for the n lowest, 'positive' for the n highest, '' otherwise (ties broken by key).
    With fewer than 2n segments, the lower half (rounded up) is negative, the rest positive."""
    order = sorted(range(len(keys)), key=lambda i: (sentiment[i], keys[i]))
    n_pos = min(n, len(keys) // 2)
    n_neg = min(n, len(keys) - n_pos)
    out = [""] * len(keys)
    for i in order[:n_neg]:
        out[i] = "negative"
    for i in order[len(order) - n_pos:]:
        out[i] = "positive"
    return out


def finalize(out_dir: Path, summaries: list[dict], n_per_polarity: int, test_fraction: float, seed: int,
             min_count: int = 1) -> dict:
    """Merge the parts of successful sources into the final tables; return the stats report.

    Streamed in chunks of whole parts (`CHUNK_ROWS` rows or so; a large part in pieces): one pass keeps
    the comments of the selected segments, spilled to a temporary Arrow file, and counts the training
    split's tokens; a second turns the spill into `comments.parquet` with token ids."""
    import pyarrow.parquet as pq

    ok = sorted((s for s in summaries if not s.get("error")), key=lambda s: s["source"])
    owner, duplicates = {}, []
    for s in ok:
        for v in s["videos"]:
            if v["video"] in owner:
                duplicates.append(f"{v['video']}: in {s['source']}, already read from {owner[v['video']][1]}")
            else:
                owner[v["video"]] = (s["key"], s["source"])
    segs = _merge_segments(ok, owner, n_per_polarity, test_fraction, seed)
    atomic_write(out_dir / "segments.parquet", lambda p: pq.write_table(segs, p, compression="zstd"))
    spill = out_dir / "parts" / "finalize-selected.arrow.tmp"
    try:
        counts = _select_comments(out_dir, ok, owner, segs, spill)
        vocab = vocab_from_counts(counts, min_count)
        write_json(out_dir / "vocab.json", {"tokens": vocab["tokens"], "counts": vocab["counts"],
                                            "min_count": min_count, "specials": list(SPECIAL_TOKENS)})
        n_written = _write_comments(out_dir, spill, vocab["tokens"])
    finally:
        spill.unlink(missing_ok=True)
    return _stats(summaries, segs, duplicates, len(vocab["tokens"]), n_written, n_per_polarity)


def _foreign(s: dict, owner: dict) -> list[str]:
    """The videos of summary `s` already read from another source (duplicates: not this part's)."""
    return sorted(v["video"] for v in s["videos"] if owner[v["video"]][0] != s["key"])


def _without(t, videos: list[str]):
    """Table `t` without the rows of `videos`."""
    import pyarrow as pa
    import pyarrow.compute as pc

    return t.filter(pc.invert(pc.is_in(t["video"], value_set=pa.array(videos, pa.string())))) if videos else t


def _merge_segments(ok: list, owner: dict, n: int, test_fraction: float, seed: int):
    import pyarrow as pa
    import pyarrow.compute as pc

    tables = [_without(segments_table(s), _foreign(s, owner)) for s in ok]
    segs = _concat(tables, SEGMENT_SCHEMA)
    videos = segs["video"].to_pylist()
    keys = list(zip(videos, segs["index"].to_pylist()))
    polarity = select_segments(segs["sentiment"].to_pylist(), keys, n)
    segs = segs.append_column("split", pa.array([video_split(v, test_fraction, seed) for v in videos], pa.string()))
    segs = segs.append_column("polarity", pa.array(polarity, pa.string()))
    return segs.append_column("selected", pc.not_equal(segs["polarity"], ""))


CHUNK_ROWS = 16_384
"""Finalize works on the parts' comments about this many rows at a time (whole parts together, a large part
in pieces of whole record batches: memory, since a part can hold a whole 40 MB file's comments), and writes
`comments.parquet` in row groups of about this many selected rows."""


def _chunks(out_dir: Path, ok: list, owner: dict):
    """The parts' comment rows (only the videos each part owns), in source order, as tables of about
    `CHUNK_ROWS` rows."""
    import pyarrow as pa

    pieces, rows = [], 0
    for s in ok:
        foreign = _foreign(s, owner)
        for t in _part_pieces(out_dir / "parts" / f"{s['key']}.comments.arrow"):
            pieces.append(_without(t, foreign))
            rows += pieces[-1].num_rows
            if rows >= CHUNK_ROWS:
                yield pa.concat_tables(pieces)
                pieces, rows = [], 0
    if rows:
        yield pa.concat_tables(pieces)


def _part_pieces(path: Path):
    """A part's comment table in pieces (at least one, maybe empty), read rather than mapped, so that
    the memory of a piece is freed once it is written."""
    import pyarrow as pa

    pool = pa.default_memory_pool()
    with pa.OSFile(str(path)) as f:
        reader = pa.ipc.open_file(f)
        batches, rows, n = [], 0, reader.num_record_batches
        for b in range(n):
            if not batches:
                pool.release_unused()  # hand the pieces already written back to the system (mimalloc keeps them)
            batches.append(reader.get_batch(b))
            rows += batches[-1].num_rows
            if rows >= CHUNK_ROWS and b < n - 1:
                yield pa.Table.from_batches(batches, reader.schema)
                batches, rows = [], 0
        yield pa.Table.from_batches(batches, reader.schema)


def _select_comments(out_dir: Path, ok: list, owner: dict, segs, spill: Path) -> Counter:
    """Write the comments of the selected segments, with their split, to the Arrow file `spill`; return the
    token counts of the training split's ones. A comment's segment is found by its row in `segs` (its video's
    first row plus its segment index), so no Python work is done per comment."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    first_row: dict[str, int] = {}
    for r, (v, i) in enumerate(zip(segs["video"].to_pylist(), segs["index"].to_pylist())):
        first_row.setdefault(v, r - i)
    selected = segs["selected"].to_numpy(zero_copy_only=False)
    split = segs["split"].combine_chunks()
    train = pc.equal(split, "train").to_numpy(zero_copy_only=False)
    counts: Counter = Counter()
    schema = COMMENT_SCHEMA.append(pa.field("split", pa.string()))
    with pa.OSFile(str(spill), "wb") as f, pa.ipc.new_file(f, schema) as w:
        for t in _chunks(out_dir, ok, owner):
            videos = pc.unique(t["video"])
            first = np.array([first_row[v] for v in videos.to_pylist()], dtype=np.int64)
            row = first[pc.index_in(t["video"], value_set=videos).to_numpy()] + t["segment"].to_numpy()
            keep = selected[row]
            row = row[keep]
            t = t.filter(keep).append_column("split", split.take(row))
            if t.num_rows:
                w.write_table(t)
                _count_tokens(counts, t.filter(train[row]))
    return counts


def _count_tokens(counts: Counter, table) -> None:
    """Add the tokens of `table` (a list<string> column `tokens`) to `counts`."""
    import pyarrow.compute as pc

    vc = pc.value_counts(pc.list_flatten(table["tokens"]))
    counts.update(dict(zip(vc.field("values").to_pylist(), vc.field("counts").to_pylist())))


def vocab_from_counts(counts: Counter, min_count: int = 1) -> dict[str, list]:
    """Vocabulary: the special tokens, then tokens seen >= min_count times, by count then text."""
    items = sorted(((w, c) for w, c in counts.items() if c >= min_count and w not in SPECIAL_TOKENS),
                   key=lambda wc: (-wc[1], wc[0]))
    return {"tokens": list(SPECIAL_TOKENS) + [w for w, _ in items], "counts": [0] * 4 + [c for _, c in items]}


def build_vocab(tables: Iterable, min_count: int = 1) -> dict[str, list]:
    """`vocab_from_counts` over the tokens of `tables` (each with a list<string> column `tokens`)."""
    counts: Counter = Counter()
    for t in tables:
        _count_tokens(counts, t)
    return vocab_from_counts(counts, min_count)


def token_ids(column, vocab):
    """A list<string> column -> list<int32> of vocabulary ids ([UNK] for unknown), same offsets."""
    import pyarrow as pa
    import pyarrow.compute as pc

    column = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    ids = pc.index_in(column.values, value_set=vocab).fill_null(SPECIAL_TOKENS.index(UNK)).cast(pa.int32())
    return pa.ListArray.from_arrays(column.offsets, ids)


def _write_comments(out_dir: Path, spill: Path, vocab_tokens: list[str]) -> int:
    """`comments.parquet` from the spill of `_select_comments`, in row groups of about `CHUNK_ROWS` rows."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    vocab = pa.array(vocab_tokens, pa.string())
    written = 0

    def flush(w, batches: list) -> None:
        nonlocal written
        t = pa.Table.from_batches(batches)
        for name in ("tokens", "masked", "targets"):
            t = t.append_column(f"{name.rstrip('s')}_ids", token_ids(t[name], vocab))
        w.write_table(t.select(COMMENT_SCHEMA_OUT.names).cast(COMMENT_SCHEMA_OUT))
        written += t.num_rows

    def write(path: Path) -> None:
        with pq.ParquetWriter(path, COMMENT_SCHEMA_OUT, compression="zstd") as w, pa.OSFile(str(spill)) as f:
            reader = pa.ipc.open_file(f)
            batches, rows = [], 0
            for b in range(reader.num_record_batches):
                batches.append(reader.get_batch(b))
                rows += batches[-1].num_rows
                if rows >= CHUNK_ROWS:
                    flush(w, batches)
                    batches, rows = [], 0
            if rows:
                flush(w, batches)

    atomic_write(out_dir / "comments.parquet", write)
    return written


def _out_schema():
    import pyarrow as pa

    li = pa.list_(pa.int32())
    return pa.schema(list(COMMENT_SCHEMA) + [pa.field("split", pa.string()), pa.field("token_ids", li),
                                             pa.field("masked_ids", li), pa.field("target_ids", li)])


COMMENT_SCHEMA_OUT = _out_schema()


def _stats(summaries: list[dict], segs, duplicates: list[str], vocab_size: int, n_written: int, n: int) -> dict:
    import pyarrow.compute as pc

    skipped: Counter = Counter()
    parsed = videos = empty_videos = 0
    for s in summaries:
        for v in s["videos"]:
            skipped.update(v["skipped"])
            parsed += v["comments"]
            videos += 1
            empty_videos += v["comments"] == 0
    sel = segs.filter(segs["selected"])
    stage = {name: {"all": int(pc.sum(segs[c]).as_py() or 0), "selected": int(pc.sum(sel[c]).as_py() or 0)}
             for name, c in zip(("comments", "with emotional word", "3-15 words", "allowed characters only",
                                 "no repeat within 1 s"), FILTER_STAGES)}
    return {"sources": len(summaries), "sources_failed": sorted(s["error"] for s in summaries
                                                               if s.get("error")),  # same on every engine
            "sources_resumed": sum(bool(s.get("resumed")) for s in summaries),
            "videos": videos, "videos_without_comments": empty_videos, "duplicate_videos": duplicates,
            "comments_parsed": parsed, "comments_skipped": dict(skipped), "segments": segs.num_rows,
            "segments_selected": {"negative": int(pc.sum(pc.equal(segs["polarity"], "negative")).as_py() or 0),
                                  "positive": int(pc.sum(pc.equal(segs["polarity"], "positive")).as_py() or 0),
                                  "per_polarity_requested": n},
            "filters": stage, "comments_written": n_written, "vocab_size": vocab_size,
            "warnings": _warnings(sel, n_written, vocab_size)}


def _warnings(sel, n_written: int, vocab_size: int) -> list[str]:
    """What makes a corpus useless for pre-training: no comment kept, or none in the training split."""
    import pyarrow.compute as pc

    if not n_written:
        return ["no comment passed the filters: nothing to pre-train on (see the counts above: lexicon, "
                "lengths, characters)"]
    if vocab_size > len(SPECIAL_TOKENS):
        return []
    held = len(pc.unique(sel["video"])) if sel.num_rows else 0
    return [f"the vocabulary holds only the {len(SPECIAL_TOKENS)} special tokens: every selected segment "
            f"({sel.num_rows}, from {held} video(s)) is in the held-out split, so pre-training would learn nothing; "
            "add videos, raise --n or lower --test-fraction"]


# ---------------------------------------------------------------- driver

def lexicon_table(path: str) -> dict[str, tuple[str, str]]:
    """word -> (minor category, major category) of its primary sense ('' when the lexicon has none)."""
    return _lexicon_tables(path)[0]


def _lexicon_tables(path: str, cache: bool = True) -> tuple[dict[str, tuple[str, str]], dict[str, str | None]]:
    """`lexicon_table(path)` and word -> part of speech of its primary sense (for the tokeniser).

    With `cache`, the two tables of a lexicon file read before (the same bytes, read by the same
    `tam.comments.lexicon` code) come from `cache_dir()/lexicon-<digest>.json` (`tam.io.cached_json`: ~0.05 s
    against ~1 s for the DUTIR workbook)."""
    from tam.comments import lexicon

    file = Path(path)
    if not cache or not file.is_file():
        return _read_lexicon_tables(file)
    digest = hashlib.sha256(file.read_bytes() + LEXICON_CACHE_FORMAT.encode()
                            + Path(lexicon.__file__).read_bytes()).hexdigest()
    return cached_json("lexicon", digest, lambda: _read_lexicon_tables(file),
                       lambda v: ({w: (c, m) for w, (c, m) in v[0].items()}, dict(v[1])))


def _tokenizer_edits(pos: dict[str, str | None]) -> list[tuple[str, int]]:
    """`LexiconTokenizer(pos).edits`, cached (`tam.io.cached_json`) by a digest of `pos`, rjieba's version and
    the code that computes them: the workers then replay the edits (~5 ms) instead of each computing them
    (~0.1 s)."""
    from importlib.metadata import version

    from tam.comments import process

    digest = hashlib.sha256(json.dumps(pos, sort_keys=True, ensure_ascii=False).encode() + version("rjieba").encode()
                            + Path(process.__file__).read_bytes()).hexdigest()
    return cached_json("tokenizer-edits", digest, lambda: LexiconTokenizer(pos).edits,
                       lambda v: [(w, int(f)) for w, f in v])


LEXICON_CACHE_FORMAT = "tam-lexicon-tables-1"
"""Part of the lexicon cache key: change it when `_read_lexicon_tables` derives its tables differently."""


def _read_lexicon_tables(path: Path) -> tuple[dict[str, tuple[str, str]], dict[str, str | None]]:
    from tam.comments import lexicon

    lex = lexicon.load_lexicon(path)
    return ({w: (s[0].category or "", s[0].major or "") for w, s in lex.entries.items()},
            {w: s[0].pos for w, s in lex.entries.items()})


def prepare_corpus(inputs: Sequence[str | Path], out_dir: str | Path, lexicon: str, n_per_polarity: int = 8000,
                   durations: str = "", scorer: str = "fast", masking: str = "emotion", workers: int = 2,
                   test_fraction: float = 0.2, seed: int = 0, filters: FilterSettings | None = None,
                   progress: bool = True, limits: ReadLimits | None = None, engine: str = "local",
                   address: str = "") -> dict:
    """Build the corpus in `out_dir` (see the module docstring); return the stats report (also in stats.json).

    `limits` caps file and comment sizes (`ReadLimits`); what they cut is counted in `comments_skipped`
    (`too_long`, `over_limit`) and `sources_failed` (files over the size limit). `engine` "ray" runs the
    per-source work on the Ray cluster at `address` (`tam.engines`; `workers` is then unused): the same files."""
    _refuse_in_spawned_child()
    if masking not in MASKINGS:
        raise TamError(f"unknown masking {masking!r} (choose from {sorted(MASKINGS)})")
    t0 = time.perf_counter()
    out = Path(out_dir)
    sources = discover(inputs)
    if not sources:
        raise TamError(f"no danmaku files found in {', '.join(map(str, inputs))}")
    _check_lexicon(lexicon)
    settings = CorpusSettings(str(Path(lexicon).resolve()), scorer, masking, seed, durations,
                              filters or FilterSettings(), limits or ReadLimits())
    Durations(durations)  # fail early on a bad durations source
    fresh = not out.exists()
    try:
        summaries, t_lexicon = _run_sources(sources, settings, lexicon, out, workers, progress, engine, address)
    except TamError:
        if fresh and not any((out / "parts").glob("*.json")):  # e.g. an unreadable lexicon: leave nothing behind
            shutil.rmtree(out, ignore_errors=True)
        raise
    t2 = time.perf_counter()
    stats = finalize(out, summaries, n_per_polarity, test_fraction, seed)
    stats["seconds_by_step"] = {"lexicon": round(t_lexicon, 2), "videos": round(t2 - t0 - t_lexicon, 2),
                                "finalize": round(time.perf_counter() - t2, 2)}
    stats["settings"] = {**asdict(settings), "n_per_polarity": n_per_polarity, "test_fraction": test_fraction}
    stats["seconds"] = round(time.perf_counter() - t0, 2)
    write_json(out / "stats.json", stats)
    return stats


def _check_lexicon(path: str) -> None:
    """Refuse a missing lexicon, or one of an unknown type, before anything is written."""
    file = Path(path)
    if not file.is_file():
        raise TamError(f"{path}: lexicon file not found (--lexicon: the DUTIR .xlsx/.csv or a .txt word list)")
    if file.suffix.lower() not in (".xlsx", ".csv", ".txt"):
        raise TamError(f"{path}: unknown lexicon type {file.suffix!r} (expected .xlsx, .csv or .txt)")


def _run_sources(sources: list[Source], settings: CorpusSettings, lexicon: str, out: Path, workers: int,
                 progress: bool, engine: str = "local", address: str = "") -> tuple[list[dict], float]:
    """Pass 1 over every source; returns the summaries and the seconds spent loading the lexicon.

    With workers, the pool starts first, so that the workers' imports overlap the parent's lexicon load."""
    from tqdm import tqdm

    (out / "parts").mkdir(parents=True, exist_ok=True)
    bar = tqdm(total=len(sources), unit="file", desc="comments", disable=not progress)
    summaries: list[dict] = []
    timer = {"lexicon": 0.0}

    def load_lexicon() -> tuple[dict, dict]:
        t0 = time.perf_counter()
        table, pos = _lexicon_tables(lexicon)
        timer["lexicon"] = time.perf_counter() - t0
        return table, pos

    def collect(results: Iterable[dict]) -> None:
        for s in results:
            if s.get("error"):
                tqdm.write(f"skipped {s['error']}")
            else:  # held as a table until finalize (Python lists take ~5x the memory)
                s["segments"] = segments_table(s)
            summaries.append(s)
            bar.update(1)

    try:
        if engine == "ray":
            collect(_on_ray(sources, settings, out, address, load_lexicon))
        elif workers <= 1:
            table, pos = load_lexicon()
            _init_worker(settings, str(out), preload_jieba=False)
            _CTX.update(lexicon=table, tokenizer=LexiconTokenizer(pos, _tokenizer_edits(pos)), lexicon_file=None)
            collect(s for group in _groups(sources) for s in process_sources(group))
        else:
            collect(_in_pool(sources, settings, out, workers, load_lexicon, summaries))
    finally:
        bar.close()
    return summaries, timer["lexicon"]


def _in_pool(sources: list[Source], settings: CorpusSettings, out: Path, workers: int, load_lexicon: Callable,
             summaries: list[dict]) -> Iterable[dict]:
    """Run `process_sources` over `sources` (in `_groups`) in spawned worker processes; yield the summaries as
    they come.

    A worker that dies (killed, out of memory, or refusing to start, see `_refuse_in_spawned_child`) breaks
    the pool: the others are stopped and a one-line TamError says so; every source done so far keeps its
    parts, so a re-run resumes."""
    from concurrent.futures import ProcessPoolExecutor, as_completed
    from concurrent.futures.process import BrokenProcessPool

    pool = ProcessPoolExecutor(workers, mp.get_context("spawn"), initializer=_init_worker,
                               initargs=(settings, str(out)))

    def submit(fn: Callable, *args):
        try:
            return pool.submit(fn, *args)
        except (ValueError, OSError) as e:  # starting a worker failed: when one dies while another is being
            # spawned, the executor can close pipes under the spawn ("bad value(s) in fds_to_keep")
            raise BrokenProcessPool(f"a worker could not be started ({e})") from None

    try:
        for _ in range(workers):
            submit(_warm)
        lexicon_file = _lexicon_file(settings, out, load_lexicon)
        futures = [submit(_pool_task, group, str(lexicon_file)) for group in _groups(sources)]
        for f in as_completed(futures):
            yield from f.result()
    except BrokenProcessPool:
        _stop(pool, broken=True)
        raise TamError(f"a comment worker process died after {len(summaries)} of {len(sources)} sources (killed, "
                       "out of memory, or prepare_corpus called from a script without an "
                       "`if __name__ == \"__main__\":` guard, which spawned workers re-run): guard the call or "
                       "free memory, then re-run to resume (sources done so far are kept), or use workers=1") from None
    finally:
        _stop(pool)


def _lexicon_file(settings: CorpusSettings, out: Path, load_lexicon: Callable) -> Path:
    """The lexicon tables and tokeniser edits as the workers read them: written once into `out/parts` (a re-run
    reuses the lexicon read by the last one)."""
    stat = hashlib.sha1(json.dumps([_lexicon_stat(settings), PARTS_FORMAT, "table+pos+edits"]).encode())
    lexicon_file = out / "parts" / f"lexicon-{settings.digest()}-{stat.hexdigest()[:8]}.json"
    if not lexicon_file.is_file():
        table, pos = load_lexicon()
        write_json(lexicon_file, {"table": table, "pos": pos, "edits": _tokenizer_edits(pos)})
    return lexicon_file


def _on_ray(sources: list[Source], settings: CorpusSettings, out: Path, address: str,
            load_lexicon: Callable) -> Iterable[dict]:
    """`process_group` over `_groups(sources)` on Ray, a few groups per task (`ray_engine.map_chunks`, weighed by
    their bytes: ~15 tasks per CPU rather than one per group); a group that failed on every try gives one failed
    summary per source. Each group is still processed alone: the same parts as the local engine."""
    from tam.engines import ray_engine

    ray_engine.connect(address)
    groups, lexicon_file = _groups(sources), str(_lexicon_file(settings, out, load_lexicon))
    items = [(settings, str(out), lexicon_file, g) for g in groups]
    weights = [max(1, sum(map(_size, g))) for g in groups]
    for i, result in ray_engine.map_chunks(process_group, items, weights):
        if isinstance(result, ray_engine.Failure):
            result = [_failed(s, part_key(s), TamError(f"{s.name}: {result.message}")) for s in groups[i]]
        yield from result


def _groups(sources: list[Source]) -> list[list[Source]]:
    """The sources as the pool's tasks, largest first, so that the last tasks to finish are small and no worker
    waits long for another at the end (the parts and the output do not depend on the order): a source of
    `GROUP_BYTES` or more alone, smaller ones together up to about `GROUP_BYTES` of files in all."""
    groups, room = [], 0  # room < GROUP_BYTES: a source of GROUP_BYTES or more always starts a group
    for source, size in sorted(((s, _size(s)) for s in sources), key=lambda sz: -sz[1]):
        if size > room:
            groups.append([source])
            room = max(GROUP_BYTES - size, 0)
        else:
            groups[-1].append(source)
            room -= size
    return groups


GROUP_BYTES = 1 << 20
"""Sources smaller than this go to a worker together (`_groups`), up to about this many bytes of files: one
task for many small files, and their comments scored in one call (`Prescored`); the comments of one group are
held at once (a few MB)."""


def _size(source: Source) -> int:
    """Bytes of a source's files (0 when unreadable)."""
    try:
        return sum(p.stat().st_size for p in source.paths)
    except OSError:
        return 0


def _stop(pool, broken: bool = False) -> None:
    """Shut the pool down, first terminating any worker still alive when it is `broken` (or the executor says
    so): when a worker dies while another is being spawned, the executor can miss the new one, which would
    then wait for work forever (and its join with it)."""
    if broken or getattr(pool, "_broken", False):
        for p in list((getattr(pool, "_processes", None) or {}).values()):
            if p.is_alive():
                p.terminate()
    pool.shutdown(wait=True, cancel_futures=True)


def _refuse_in_spawned_child() -> None:
    """Stop at once when a spawned worker is re-importing a script that calls prepare_corpus unguarded.

    With the spawn start method each worker imports the parent's `__main__`; without an
    `if __name__ == "__main__":` guard that import calls prepare_corpus again, which would start workers of
    its own. Exiting here (one line on stderr) makes the worker die, which the parent reports."""
    if getattr(mp.current_process(), "_inheriting", False):  # what multiprocessing itself checks
        raise SystemExit("tam: prepare_corpus was called while a worker process was starting: the calling "
                         "script needs an `if __name__ == \"__main__\":` guard")


def format_summary(stats: dict) -> str:
    """A readable table of the stats report."""
    rows = [("sources (failed / resumed)", f"{stats['sources']} ({len(stats['sources_failed'])} / "
                                          f"{stats['sources_resumed']})"),
            ("videos (without comments)", f"{stats['videos']} ({stats['videos_without_comments']})"),
            ("duplicate videos skipped", str(len(stats["duplicate_videos"]))),
            ("comments parsed", str(stats["comments_parsed"]))]
    rows += [(f"  skipped: {k}", str(v)) for k, v in sorted(stats["comments_skipped"].items())]
    sel = stats["segments_selected"]
    rows += [("segments (selected neg / pos)", f"{stats['segments']} ({sel['negative']} / {sel['positive']})")]
    rows += [(f"after: {k}", f"{v['all']} all, {v['selected']} in selected") for k, v in stats["filters"].items()]
    rows += [("comments written", str(stats["comments_written"])), ("vocabulary", str(stats["vocab_size"])),
             ("seconds", str(stats.get("seconds", "")))]
    width = max(len(r[0]) for r in rows)
    lines = [f"{a.ljust(width)}  {b}" for a, b in rows]
    lines += [f"failed: {f}" for f in stats["sources_failed"]]
    lines += [f"warning: {w}" for w in stats.get("warnings", [])]
    return "\n".join(lines)
