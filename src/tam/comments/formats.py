"""Reading time-sync comments (danmaku) from the formats found in the wild.

Formats (chosen by file extension, JSON sniffed by content):

- Bilibili XML (`.xml`): `<d p="time,mode,size,color,timestamp,pool,user,rowid[,weight]">text</d>`,
  old 8-field and new 9-field `p`. Streamed through expat, refusing entity declarations and external
  references as defusedxml does (no entity expansion, no external entities);
  control characters that XML 1.0 forbids are stripped first; after XML decoding, HTML entities are
  unescaped once more (Bilibili double-escapes `&amp;lt;`); the old players' literal `/n` becomes a newline.
- Bilibili protobuf segments (`.pb`, `<cid>-<segment>.pb`, one file per 6-minute segment): the
  `DmSegMobileReply` message of the public bilibili API proto, decoded by the small wire-format reader
  below. Field numbers used (`bilibili.community.service.dm.v1`):
  `DmSegMobileReply.elems = 1` (repeated `DanmakuElem`); `DanmakuElem`: id=1 (int64), progress=2
  (int32, ms), mode=3, fontsize=4, color=5, midHash=6 (string), content=7 (string), ctime=8 (int64),
  weight=9, action=10, pool=11, idStr=12, attr=13. proto3 omits zero values on the wire, so a missing
  progress means time 0 and a missing mode means 0 (the API never sends 0; we read it as mode 1).
- AcFun JSON: a list of `{"c": "time,color,mode,size,user,timestamp[,id]", "m": text}`.
- niconico JSON: the legacy flat list (`vpos` in 1/100 s, `content`, `mail`), the wrapped legacy
  form (`[{"thread": ...}, {"chat": {...}}]`) and the v1 API form (`data.threads[].comments[]` with
  `vposMs`, `body`, `commands`). `ue`/`shita` commands map to Bilibili modes 5/4.
- CommentCoreLibrary's common JSON: a list of `{"stime": ms, "mode", "text"}`.
- Plain CSV (`.csv`, header `video,time,text[,mode]`) or JSONL (`.jsonl`, objects with the same
  keys), time in seconds; one file may hold many videos.

Bilibili modes 1, 4, 5, 6 are ordinary comments; 7 (positioned/advanced), 8 (script) and 9 (BAS)
are not natural language and are counted in `skipped["advanced"]`, never returned. Records without
a usable time are counted in `skipped["bad_record"]`, empty texts in `skipped["empty"]`. A file
that cannot be read at all raises `TamError` with one line naming it.
"""

from __future__ import annotations

import csv
import html
import json
import re
from array import array
from collections import Counter, deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import accumulate, chain, compress, count, repeat
from operator import not_
from pathlib import Path
from typing import Any, NamedTuple
from xml.parsers import expat

from tam.errors import TamError

ADVANCED_MODES = frozenset({7, 8, 9})
"""Bilibili modes that carry positioned text, code or BAS scripts rather than natural language."""

EXTENSIONS = (".xml", ".pb", ".json", ".csv", ".jsonl")

_XML_ILLEGAL = bytes(range(0x20)).translate(None, b"\t\n\r")


class Comment(NamedTuple):
    """One time-sync comment. `time` in seconds from the video start; `mode` in Bilibili numbering."""

    time: float
    text: str
    mode: int = 1
    pool: int = 0
    user: str = ""
    ctime: int = 0
    id: str = ""


class _Strings:
    """A column of strings packed as UTF-8 in one buffer (~1-3 bytes a character plus 8 for the offset,
    against ~60-90 bytes for a small `str` object)."""

    __slots__ = ("data", "ends")

    def __init__(self) -> None:
        self.data = bytearray()
        self.ends = array("q")

    def append(self, s: str) -> None:
        self.data += s.encode("utf-8", "surrogatepass")
        self.ends.append(len(self.data))

    def extend(self, strings: Sequence[str]) -> None:
        """`append` each of `strings` (one join and one copy; ASCII strings are encoded together)."""
        if all(map(str.isascii, strings)):
            ends = accumulate(map(len, strings), initial=len(self.data))
            data = "".join(strings).encode("ascii")
        else:
            try:
                encoded = list(map(str.encode, strings))
            except UnicodeEncodeError:  # a lone surrogate
                encoded = list(map(str.encode, strings, repeat("utf-8"), repeat("surrogatepass")))
            ends = accumulate(map(len, encoded), initial=len(self.data))
            data = b"".join(encoded)
        next(ends)
        self.ends.extend(ends)
        self.data += data

    def __getitem__(self, i: int) -> str:
        start = self.ends[i - 1] if i > 0 else 0
        return self.data[start:self.ends[i]].decode("utf-8", "surrogatepass")

    def strings(self) -> list[str]:
        """Every string, in order."""
        data, ends = memoryview(self.data), self.ends
        return [str(data[a:b], "utf-8", "surrogatepass") for a, b in zip(chain((0,), ends), ends)]


class Comments(Sequence):
    """The comments of one video, stored by column: times as float64, mode/pool as int32, ctime as int64
    (an integer out of range is kept aside, exactly), texts, users and ids as packed UTF-8. ~40-60 bytes a
    comment instead of ~350 for a list of `Comment` tuples. Reads as a sequence of `Comment` (equal to a
    list holding the same comments); `time(i)` and `text(i)` give one field without building the tuple."""

    def __init__(self, comments: Iterable[Comment] = ()) -> None:
        self.times = array("d")
        self._ints = (array("i"), array("i"), array("q"))  # mode, pool, ctime
        self._big: dict[tuple[int, int], int] = {}
        self._strs = (_Strings(), _Strings(), _Strings())  # text, user, id
        for c in comments:
            self.append(c)

    def append(self, c: Comment) -> None:
        """Add one comment at the end."""
        n = len(self.times)
        for k, (col, v) in enumerate(zip(self._ints, (c.mode, c.pool, c.ctime))):
            try:
                col.append(v)
            except OverflowError:
                col.append(0)
                self._big[(k, n)] = v
        for col, v in zip(self._strs, (c.text, c.user, c.id)):
            col.append(v)
        self.times.append(c.time)

    def extend(self, comments: Sequence[Comment]) -> None:
        """`append` each of `comments`, column by column (integers out of range: one at a time)."""
        if comments:
            self.extend_columns(*zip(*comments))

    def extend_columns(self, times: Sequence[float], texts: Sequence[str], modes: Sequence[int],
                       pools: Sequence[int], users: Sequence[str], ctimes: Sequence[int], ids: Sequence[str]) -> None:
        """`extend` with the comments given as columns of equal length (the fields of `Comment`, in order)."""
        if not times:
            return
        try:
            ints = (array("i", modes), array("i", pools), array("q", ctimes))
        except OverflowError:
            for c in zip(times, texts, modes, pools, users, ctimes, ids):
                self.append(Comment._make(c))
            return
        for col, vals in zip(self._ints, ints):
            col.extend(vals)
        for col, strs in zip(self._strs, (texts, users, ids)):
            col.extend(strs)
        self.times.extend(times)

    def time(self, i: int) -> float:
        return self.times[i]

    def text(self, i: int) -> str:
        return self._strs[0][i]

    def texts(self) -> list[str]:
        """Every comment's text, in order (`text(i)` for each i)."""
        return self._strs[0].strings()

    def __len__(self) -> int:
        return len(self.times)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        n = len(self.times)
        if not -n <= i < n:
            raise IndexError("comment index out of range")
        i %= n
        mode, pool, ctime = (self._big.get((k, i), col[i]) for k, col in enumerate(self._ints))
        text, user, id_ = (col[i] for col in self._strs)
        return Comment(self.times[i], text, mode, pool, user, ctime, id_)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, (Comments, list, tuple)):
            return len(self) == len(other) and all(a == b for a, b in zip(self, other))
        return NotImplemented

    __hash__ = None  # mutable

    def __repr__(self) -> str:
        return f"Comments({list(self)!r})" if len(self) <= 20 else f"Comments(<{len(self)} comments>)"


@dataclass(frozen=True)
class ReadLimits:
    """Size caps applied while reading. A source over `max_file_mb` is refused in one line; a comment over
    `max_comment_chars` characters is dropped before any further work (`skipped["too_long"]`); comments
    of one video beyond `max_comments` are dropped (`skipped["over_limit"]`)."""

    max_file_mb: float = 1024.0
    max_comment_chars: int = 1000
    max_comments: int = 5_000_000


@dataclass
class VideoComments:
    """The comments of one video read from one source (a file, or a video's protobuf segments)."""

    video: str
    source: str
    format: str
    comments: Comments = field(default_factory=Comments)
    skipped: Counter = field(default_factory=Counter)
    limits: ReadLimits = field(default_factory=ReadLimits, repr=False)

    def add_many(self, comments: Iterable[Comment | None]) -> None:
        """`add` each of `comments`, a None counting as a bad record (the kept ones are stored together:
        faster)."""
        keep: list[Comment] = []
        skipped, n = self.skipped, len(self.comments)
        max_chars, max_n = self.limits.max_comment_chars, self.limits.max_comments
        for c in comments:
            if c is None:
                skipped["bad_record"] += 1
            elif c.mode in ADVANCED_MODES:
                skipped["advanced"] += 1
            elif not c.text.strip():
                skipped["empty"] += 1
            elif len(c.text) > max_chars:
                skipped["too_long"] += 1
            elif n >= max_n:
                skipped["over_limit"] += 1
            else:
                keep.append(c)
                n += 1
                if len(keep) == _ADD_BATCH:
                    self.comments.extend(keep)
                    keep = []
        self.comments.extend(keep)

    def add(self, c: Comment) -> None:
        """Keep `c` unless it is an advanced/script comment, empty, too long or over the count limit
        (then count it)."""
        if c.mode in ADVANCED_MODES:
            self.skipped["advanced"] += 1
        elif not c.text.strip():
            self.skipped["empty"] += 1
        elif len(c.text) > self.limits.max_comment_chars:
            self.skipped["too_long"] += 1
        elif len(self.comments) >= self.limits.max_comments:
            self.skipped["over_limit"] += 1
        else:
            self.comments.append(c)


@dataclass(frozen=True)
class Source:
    """A unit of input: `paths` (one file, or several protobuf segments of one video) in `format`."""

    format: str
    paths: tuple[Path, ...]

    @property
    def name(self) -> str:
        return str(self.paths[0]) if len(self.paths) == 1 else f"{self.paths[0].parent}/{self.paths[0].stem}*"


def unescape(text: str) -> str:
    """Undo HTML/XML entities left after XML decoding (double-escaped `&amp;lt;` -> `<`)."""
    return html.unescape(text) if "&" in text else text


# ---------------------------------------------------------------- Bilibili XML

def read_bilibili_xml(path: str | Path, limits: ReadLimits | None = None) -> VideoComments:
    """Read a Bilibili XML file (8- or 9-field `p`); video id = the file stem. Streamed in 1 MB chunks."""
    path = Path(path)
    limits = limits or ReadLimits()
    _check_size(path, limits)
    out = VideoComments(video=path.stem, source=str(path), format="bilibili-xml", limits=limits)
    try:
        data = _small_xml(path)
        found = None if data is None else _plain_found(data)
        if found is not None:
            _PlainAdder(out).add(*found)
        else:
            records = _iter_xml(path, limits.max_comment_chars, False) if data is None else _stream_records(
                data, limits.max_comment_chars)
            _add_records(out, records)
    except _UnsafeXml as e:
        raise TamError(f"{path}: refused unsafe XML ({e})") from None
    except expat.ExpatError as e:
        raise TamError(f"{path}: not well-formed XML ({e})") from None
    return out


_ADD_BATCH = 8192
"""Comments handed to `VideoComments.add_many` at a time (memory: one batch of `Comment` tuples)."""
_PLAIN_XML_MAX_BYTES = 8 * 2**20
_PLAIN_D = re.compile(r'<d p="([^"&<\t\n\r]*)">([^<]*)</d>')
_ANY_D = re.compile(r"<d[\s/>]")
_XML_ENTITIES = (("&lt;", "<"), ("&gt;", ">"), ("&quot;", '"'), ("&apos;", "'"), ("&amp;", "&"))


def _add_records(out: VideoComments, records: Iterable[tuple[str, str, int]]) -> None:
    """Add the (p, text, length of the text) `records` to `out` one `Comment` at a time (the reference
    behaviour; `_PlainAdder` gives the same comments and counters, counted in the same order)."""
    limits, batch = out.limits, []
    for p, text, size in records:
        c = _bilibili_p(p, text)
        if c is None:
            out.skipped["bad_record"] += 1
        elif size > limits.max_comment_chars and c.mode not in ADVANCED_MODES:
            out.skipped["too_long"] += 1
        else:
            batch.append(c)
            if len(batch) >= _ADD_BATCH:
                out.add_many(batch)
                batch = []
    out.add_many(batch)


_PLAIN_CHUNK = 4096
"""Records of the fast path read together (`_ADD_BATCH` is a multiple: a chunk never spans two batches)."""


class _PlainAdder:
    """Adds the records of `_plain_found` to `out` exactly as `_add_records` would (the same comments, the
    same counters, created in the same order), a chunk of records at a time without a `Comment` each: the
    numbers of `p` are converted a column at a time (`_p_columns`) and, when the chunk holds no bad record
    and no over-long text, its texts are decoded and filtered a column at a time (`_columns`); otherwise
    one record at a time (`_rows`)."""

    def __init__(self, out: VideoComments) -> None:
        self.out, self.skipped = out, out.skipped
        self.max_chars, self.max_n = out.limits.max_comment_chars, out.limits.max_comments
        self.n_kept, self.in_batch = len(out.comments), 0  # comments kept; records in `_add_records`'s batch
        self.pending: dict[str, int] = {}  # add_many's counts of the current batch, in order of first occurrence

    def add(self, ps: list[str], raws: list[str]) -> None:
        i = 0
        while i < len(ps):
            j = i + min(_PLAIN_CHUNK, _ADD_BATCH - self.in_batch)  # a chunk ends where a batch may end
            cols, good = _p_columns(ps[i:j])
            if not (good and self._columns(cols, raws[i:j])):
                self._rows(cols, raws[i:j])
            i = j
        self._flush()

    def _columns(self, cols: tuple[list, ...], raws: list[str]) -> bool:
        """Add a chunk of good records (every `p` read), a column at a time; False (nothing done) when a
        text is over `max_chars`."""
        adv = list(map(ADVANCED_MODES.__contains__, cols[1]))
        rows = list(compress(range(len(adv)), map(not_, adv)))
        texts = list(compress(raws, map(not_, adv)))
        if texts and max(map(len, texts)) > self.max_chars:  # decoding never makes a text longer: below, none is
            return False  # (maybe) counted on reading (`_add_records`): record by record
        texts = [unescape(_xml_text(t)).replace("/n", "\n") if "&" in t or "\r" in t or "/n" in t else t
                 for t in texts]
        if texts and max(map(len, texts)) > self.max_chars:
            return False
        blank = [not t or t.isspace() for t in texts]  # = not t.strip() (the same whitespace)
        keep = list(compress(rows, map(not_, blank)))
        texts = list(compress(texts, map(not_, blank)))
        over = max(0, len(keep) - (self.max_n - self.n_kept))
        firsts = [(adv.index(True), "advanced") if True in adv else None,
                  (rows[blank.index(True)], "empty") if True in blank else None,
                  (keep[len(keep) - over], "over_limit") if over else None]
        for _, key in sorted(f for f in firsts if f):
            self.pending.setdefault(key, 0)
        self._count("advanced", adv.count(True))
        self._count("empty", blank.count(True))
        self._count("over_limit", over)
        if over:
            del keep[len(keep) - over:], texts[len(texts) - over:]
        _store(self.out, cols, keep, texts)
        self.n_kept += len(keep)
        self.in_batch += len(adv)
        if self.in_batch == _ADD_BATCH:
            self._flush()
        return True

    def _rows(self, cols: tuple[list, ...], raws: list[str]) -> None:
        """Add a chunk one record at a time (mode None: a bad record)."""
        skipped, keep, texts = self.skipped, [], []
        for i, mode, raw in zip(count(), cols[1], raws):
            if mode is None:
                skipped["bad_record"] += 1
                continue
            if mode in ADVANCED_MODES:
                self._count("advanced")
            else:
                raw = _xml_text(raw)
                if len(raw) > self.max_chars:
                    skipped["too_long"] += 1
                    continue
                raw = unescape(raw).replace("/n", "\n")
                if not raw.strip():
                    self._count("empty")
                elif len(raw) > self.max_chars:
                    self._count("too_long")
                elif self.n_kept >= self.max_n:
                    self._count("over_limit")
                else:
                    keep.append(i)
                    texts.append(raw)
                    self.n_kept += 1
            self.in_batch += 1
            if self.in_batch == _ADD_BATCH:
                self._flush()
        _store(self.out, cols, keep, texts)

    def _count(self, key: str, n: int = 1) -> None:
        if n:
            self.pending[key] = self.pending.get(key, 0) + n

    def _flush(self) -> None:
        """Count the batch's skips (where `_add_records` calls add_many)."""
        for key, n in self.pending.items():
            if n:
                self.skipped[key] += n
        self.pending, self.in_batch = {}, 0


_BAD_P = (0.0, None, 0, 0, "", "")


def _p_columns(ps: Sequence[str]) -> tuple[tuple[list, ...], bool]:
    """(times, modes, pools, ctimes, users, ids) of the `p` attributes `ps`, each as `_p_fields` reads it
    (mode None: a bad record; a ctime may be left as a string of at most 15 ASCII digits, which `int` reads
    as `int(float(...))` does), and whether all were read. When every `p` has the same number (at least 8)
    of fields, each column is converted at once with the same `float`/`int` calls; if any of them fails (or
    a time is NaN or negative), the records are read one at a time, so every odd one keeps its behaviour."""
    n, s = len(ps), ps[0].count(",") + 1
    joined = ",\n".join(ps)  # when no p holds "\n", it marks where each p (but the first) starts
    flat = joined.split(",")
    if s >= 8 and len(flat) == s * n and "".join(flat[s::s]).count("\n") == joined.count("\n") == n - 1:
        try:
            times = list(map(float, flat[0::s]))  # float("\n" + x) = float(x), both failing alike
            if min(times) >= 0.0 and (total := sum(times)) == total:  # no NaN, none negative
                ctimes = flat[4::s]
                digits = "".join(ctimes)
                if not (digits.isascii() and digits.isdigit() and "" not in ctimes and max(map(len, ctimes)) <= 15):
                    ctimes = list(map(int, map(float, ctimes)))
                return (times, _ints(flat[1::s]), _ints(flat[5::s]), ctimes, flat[6::s], flat[7::s]), True
        except (ValueError, OverflowError):
            pass
    fields = [_p_fields(p) or _BAD_P for p in ps]
    return tuple(map(list, zip(*fields))), _BAD_P not in fields


def _store(out: VideoComments, cols: tuple[list, ...], keep: list[int], texts: list[str]) -> None:
    """Store the records `keep` (indices into the columns of `_p_columns`) with their `texts`."""
    if keep:
        times, modes, pools, ctimes, users, ids = (list(map(col.__getitem__, keep)) for col in cols)
        out.comments.extend_columns(times, texts, modes, pools, users, list(map(int, ctimes)), ids)


def _ints(strings: list[str]) -> list[int]:
    """`int` of each of `strings` (few distinct ones: each converted once)."""
    values = {s: int(s) for s in set(strings)}
    return list(map(values.__getitem__, strings))


_XML_REF = re.compile(r"&(?:(lt|gt|amp|quot|apos)|#x([0-9a-fA-F]+)|#([0-9]+));")
_XML_NAMED = {"lt": "<", "gt": ">", "amp": "&", "quot": '"', "apos": "'"}


def _xml_text(raw: str) -> str:
    """The character data of `raw`, the text of an element of a well-formed document (checked by expat), as
    expat gives it: line ends normalised, then the five predefined entities and character references decoded."""
    if "\r" in raw:
        raw = raw.replace("\r\n", "\n").replace("\r", "\n")
    if "&#" in raw:
        return _XML_REF.sub(_xml_ref, raw)
    if "&" in raw:
        for entity, char in _XML_ENTITIES:  # &amp; last: the same as one pass
            raw = raw.replace(entity, char)
    return raw


def _xml_ref(m: re.Match) -> str:
    name, hex_code, code = m.groups()
    return _XML_NAMED[name] if name else chr(int(hex_code, 16) if hex_code else int(code))


def _xml_records(path: Path, max_chars: int, plain: bool = True) -> list[tuple[str, str, int]]:
    """(p, text, length of the text) of every `<d>` element, in document order (a list; see `_iter_xml`)."""
    return list(_iter_xml(path, max_chars, plain))


def _iter_xml(path: Path, max_chars: int, plain: bool = True) -> Iterator[tuple[str, str, int]]:
    """(p, text, length of the text) of every `<d>` element, in document order.

    A file of at most 8 MB is checked by expat first (well-formedness, no entities) and, when it is plain
    (UTF-8, every `<d>` written `<d p="...">text</d>`, no CDATA, comment, processing instruction or
    namespace outside the `<d>` elements), its elements are cut out by a regular expression: the same records
    as the streaming reader (`plain=False`, tested), ~3x faster. Anything else is streamed through
    `_DanmakuXml` in 1 MB chunks."""
    data = _small_xml(path) if plain else None
    if data is not None:
        found = _plain_found(data)
        yield from _stream_records(data, max_chars) if found is None else _plain_records(*found, max_chars)
        return
    try:
        reader = _DanmakuXml(max_chars)
        with path.open("rb") as f:
            while chunk := f.read(1 << 20):
                reader.parser.Parse(chunk.translate(None, _XML_ILLEGAL), False)
                yield from reader.closed()  # memory: the comments of one chunk, not of the file
            reader.parser.Parse(b"", True)
        yield from reader.closed()
    except OSError as e:
        raise TamError(f"{path}: cannot read ({e.strerror or e})") from None


def _small_xml(path: Path) -> bytes | None:
    """A file of at most `_PLAIN_XML_MAX_BYTES`: its bytes without the control characters XML forbids,
    checked by expat (well-formed, no entity declaration or external reference); None for a larger file."""
    try:
        if path.stat().st_size > _PLAIN_XML_MAX_BYTES:
            return None
        data = path.read_bytes().translate(None, _XML_ILLEGAL)
    except OSError as e:
        raise TamError(f"{path}: cannot read ({e.strerror or e})") from None
    _DanmakuXml(0, elements=False).parser.Parse(data, True)
    return data


def _stream_records(data: bytes, max_chars: int) -> list[tuple[str, str, int]]:
    """The records of a whole document `data` read by `_DanmakuXml`."""
    reader = _DanmakuXml(max_chars)
    reader.parser.Parse(data, True)
    return list(reader.closed())


def _plain_found(data: bytes) -> tuple[list[str], list[str]] | None:
    """(the p attributes, the raw texts) of the `<d>` elements of a plain well-formed document (see
    `_iter_xml`), else None. "<" is in no `p` and no raw text: the markup outside the matches is all the rest."""
    head = data[:200].lower()
    if b"encoding=" in head and not any(e in head for e in (b"'utf-8'", b'"utf-8"', b"'utf8'", b'"utf8"')):
        return None
    try:
        parts = _PLAIN_D.split(data.decode("utf-8"))
    except UnicodeDecodeError:
        return None
    rest = "\0".join(parts[0::3])  # NUL: in no XML document
    if "<!" in rest or "xmlns" in rest or rest.count("<?") > 1 or _ANY_D.search(rest):
        return None
    return parts[1::3], parts[2::3]


def _plain_records(ps: list[str], raws: list[str], max_chars: int) -> list[tuple[str, str, int]]:
    """The records of `_plain_found`: the text decoded (`_xml_text`), "" when over `max_chars`."""
    out = []
    for p, raw in zip(ps, raws):
        raw = _xml_text(raw)
        n = len(raw)
        out.append((p, raw if n <= max_chars else "", n))
    return out


class _UnsafeXml(Exception):
    """An entity declaration or an external reference (named like defusedxml's exceptions)."""


class _DanmakuXml:
    """A streaming expat reader of `<d p="...">text</d>` elements (any depth, document order).

    Like ElementTree's `d.text`, a comment's text is the character data before the element's first child.
    Entity declarations and external references are refused (as defusedxml does); text beyond
    `max_chars` is not kept (only its length is counted)."""

    def __init__(self, max_chars: int, elements: bool = True) -> None:
        self.records: deque[list] = deque()  # [p, text parts, length, closed], not yet handed out
        self.open: list[list] = []  # the open <d> records; the last collects text while `collecting`
        self.collecting = False
        self.max_chars = max_chars
        self.parser = expat.ParserCreate(None, "}")  # namespaced tags become "uri}name", as in ElementTree
        if elements:  # else: only check well-formedness and refuse entities
            self.parser.buffer_text = True
            self.parser.buffer_size = 1 << 16
            self.parser.StartElementHandler = self.start
            self.parser.EndElementHandler = self.end
            self.parser.CharacterDataHandler = self.data
        self.parser.EntityDeclHandler = self.entity
        self.parser.UnparsedEntityDeclHandler = self.entity
        self.parser.ExternalEntityRefHandler = self.external

    def start(self, name: str, attrs: dict) -> None:
        self.collecting = name == "d"
        if name == "d":
            rec = [attrs.get("p", ""), [], 0, False]
            self.records.append(rec)
            self.open.append(rec)

    def end(self, name: str) -> None:
        self.collecting = False
        if name == "d":
            self.open.pop()[3] = True

    def data(self, text: str) -> None:
        if self.collecting:
            rec = self.open[-1]
            rec[2] += len(text)
            if rec[2] <= self.max_chars:
                rec[1].append(text)

    def closed(self) -> Iterator[tuple[str, str, int]]:
        """Hand out (and forget) the records read so far whose element is closed, in document order."""
        records = self.records
        while records and records[0][3]:
            p, parts, n, _ = records.popleft()
            yield p, "".join(parts) if n <= self.max_chars else "", n

    def entity(self, name: str, *args) -> None:
        raise _UnsafeXml("EntitiesForbidden")

    def external(self, *args) -> None:
        raise _UnsafeXml("ExternalReferenceForbidden")


def _p_fields(p: str) -> tuple[float, int, int, int, str, str] | None:
    """(time, mode, pool, ctime, user, id) of a Bilibili `p` attribute; None when it has no usable time."""
    f = p.split(",")
    try:
        t = float(f[0])
        mode = int(f[1]) if len(f) > 1 else 1
        pool = int(f[5]) if len(f) > 5 else 0
        ctime = int(float(f[4])) if len(f) > 4 else 0
    except ValueError:
        return None
    if t != t or t < 0:  # NaN or negative
        return None
    return t, mode, pool, ctime, f[6] if len(f) > 6 else "", f[7] if len(f) > 7 else ""


def _bilibili_p(p: str, text: str) -> Comment | None:
    fields = _p_fields(p)
    if fields is None:
        return None
    t, mode, pool, ctime, user, id_ = fields
    if mode not in ADVANCED_MODES:  # advanced/script text is dropped: not worth decoding
        text = unescape(text).replace("/n", "\n")
    return Comment(t, text, mode, pool, user, ctime, id_)


# ---------------------------------------------------------------- Bilibili protobuf

def _varint(buf: bytes, i: int) -> tuple[int, int]:
    """Decode a base-128 varint at `buf[i:]`; return (value, next index)."""
    shift = result = 0
    while True:
        b = buf[i]
        i += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result, i
        shift += 7
        if shift > 63:
            raise ValueError("varint too long")


def iter_fields(buf: bytes) -> Iterator[tuple[int, int, Any]]:
    """Yield (field number, wire type, value) of one protobuf message: varints as int, length-delimited
    fields as bytes, fixed64/fixed32 as raw bytes. Raises ValueError on truncated or invalid input."""
    i, n = 0, len(buf)
    while i < n:
        key, i = _varint(buf, i)
        num, wt = key >> 3, key & 7
        if wt == 0:
            val, i = _varint(buf, i)
        elif wt == 2:
            size, i = _varint(buf, i)
            if i + size > n:
                raise ValueError("truncated length-delimited field")
            val, i = buf[i:i + size], i + size
        elif wt in (1, 5):
            size = 8 if wt == 1 else 4
            if i + size > n:
                raise ValueError("truncated fixed field")
            val, i = buf[i:i + size], i + size
        else:
            raise ValueError(f"unsupported wire type {wt}")
        if num == 0:
            raise ValueError("field number 0")
        yield num, wt, val


def _signed64(v: int) -> int:
    return v - (1 << 64) if v >= 1 << 63 else v


_ELEM_WIRE_TYPES = {**dict.fromkeys((1, 2, 3, 4, 5, 8, 9, 11, 13), 0), **dict.fromkeys((6, 7, 10, 12), 2)}
"""The wire type of each `DanmakuElem` field read (0 varint, 2 length-delimited); another one is an error."""


def decode_danmaku_elem(buf: bytes) -> Comment:
    """Decode one `DanmakuElem` (field numbers in the module docstring)."""
    f: dict[int, Any] = {}
    for num, wt, val in iter_fields(buf):
        if _ELEM_WIRE_TYPES.get(num, wt) != wt:
            raise ValueError(f"DanmakuElem field {num} has wire type {wt}")
        f[num] = val
    content = f.get(7, b"").decode("utf-8")
    mode = _signed64(f.get(3, 1)) or 1
    id_str = f[12].decode("ascii", "replace") if 12 in f else str(f.get(1, ""))
    return Comment(_signed64(f.get(2, 0)) / 1000.0, unescape(content), mode, _signed64(f.get(11, 0)),
                   f.get(6, b"").decode("utf-8", "replace"), _signed64(f.get(8, 0)), id_str)


def decode_dm_seg(buf: bytes) -> list[Comment]:
    """Decode a `DmSegMobileReply` message into its comments (all modes, in wire order)."""
    return [decode_danmaku_elem(val) for num, wt, val in iter_fields(buf) if num == 1 and wt == 2]


def read_bilibili_protobuf(paths: Iterable[str | Path], limits: ReadLimits | None = None) -> VideoComments:
    """Read the protobuf segment files of one video; video id = the `<cid>` of `<cid>-<seg>.pb`."""
    paths = sorted((Path(p) for p in paths), key=_segment_number)
    limits = limits or ReadLimits()
    out = VideoComments(video=_pb_video(paths[0]), source=str(paths[0].parent / (_pb_video(paths[0]) + "-*.pb")),
                        format="bilibili-protobuf", limits=limits)
    for p in paths:
        _check_size(p, limits)
        try:
            comments = decode_dm_seg(_read_bytes(p))
        except (ValueError, IndexError, UnicodeDecodeError) as e:
            raise TamError(f"{p}: not a Bilibili DmSegMobileReply protobuf ({e or 'truncated'})") from None
        out.add_many(comments)
    return out


def _pb_video(p: Path) -> str:
    stem, sep, seg = p.stem.rpartition("-")
    return stem if sep and seg.isdigit() else p.stem


def _segment_number(p: Path) -> tuple[str, int]:
    seg = p.stem.rpartition("-")[2]
    return (_pb_video(p), int(seg) if seg.isdigit() else 0)


# ---------------------------------------------------------------- JSON formats

def read_json(path: str | Path, limits: ReadLimits | None = None) -> VideoComments:
    """Read an AcFun, niconico or CommentCoreLibrary JSON file (sniffed by its keys)."""
    path = Path(path)
    limits = limits or ReadLimits()
    _check_size(path, limits)
    try:
        data = json.loads(_read_bytes(path).decode("utf-8-sig"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise TamError(f"{path}: not valid JSON ({e})") from None
    if isinstance(data, dict) and isinstance(data.get("data"), dict) and "threads" in data["data"]:
        items, fmt = [c for t in data["data"]["threads"] for c in t.get("comments", [])], "niconico"
    elif isinstance(data, list):
        items = [x["chat"] if isinstance(x, dict) and "chat" in x else x for x in data
                 if not (isinstance(x, dict) and len(x) == 1 and "chat" not in x)]  # drop {"thread": ...}
        fmt = _sniff_json(items)
    else:
        raise TamError(f"{path}: JSON is neither a comment list nor a niconico v1 response")
    if fmt is None:
        raise TamError(f"{path}: JSON records look like no known danmaku format (AcFun, niconico, CCL)")
    out = VideoComments(video=path.stem, source=str(path), format=fmt, limits=limits)
    parse = _JSON_RECORD[fmt]
    out.add_many(parse(item) if isinstance(item, dict) else None for item in items)
    return out


def _sniff_json(items: list) -> str | None:
    first = next((x for x in items if isinstance(x, dict)), None)
    if first is None:
        return "acfun" if not items else None
    if "c" in first and "m" in first:
        return "acfun"
    if "vpos" in first or "vposMs" in first or ("content" in first and "date" in first):
        return "niconico"
    if "stime" in first or ("text" in first and "mode" in first):
        return "ccl"
    return None


def _acfun(item: dict) -> Comment | None:
    f = str(item.get("c", "")).split(",")
    try:
        t, mode = float(f[0]), int(f[2]) if len(f) > 2 else 1
        ctime = int(float(f[5])) if len(f) > 5 else 0
    except ValueError:
        return None
    if not (t >= 0):
        return None
    return Comment(t, unescape(str(item.get("m", ""))), mode, 0, f[4] if len(f) > 4 else "", ctime,
                   f[6] if len(f) > 6 else "")


_NICO_MODES = {"ue": 5, "shita": 4}


def _niconico(item: dict) -> Comment | None:
    try:
        t = item["vposMs"] / 1000.0 if "vposMs" in item else item["vpos"] / 100.0
    except (KeyError, TypeError):
        return None
    if not (t >= 0):
        return None
    mail = item.get("commands", item.get("mail", []))
    mail = mail.split() if isinstance(mail, str) else mail or []
    mode = next((_NICO_MODES[m] for m in mail if m in _NICO_MODES), 1)
    text = str(item.get("body", item.get("content", "")) or "")
    return Comment(float(t), unescape(text), mode, 1 if item.get("owner") else 0, str(item.get("user_id", "")),
                   int(item.get("date", 0) or 0), str(item.get("id", item.get("no", ""))))


def _ccl(item: dict) -> Comment | None:
    try:
        t, mode = float(item["stime"]) / 1000.0, int(item.get("mode", 1))
    except (KeyError, TypeError, ValueError):
        return None
    if not (t >= 0):
        return None
    return Comment(t, unescape(str(item.get("text", ""))), mode)


_JSON_RECORD = {"acfun": _acfun, "niconico": _niconico, "ccl": _ccl}


# ---------------------------------------------------------------- plain CSV / JSONL

def read_table(path: str | Path, limits: ReadLimits | None = None) -> list[VideoComments]:
    """Read a plain CSV (header `video,time,text[,mode]`) or JSONL file: one entry per video, in file order.
    Streamed line by line (CSV quoting rules: a quoted field may hold newlines)."""
    path = Path(path)
    limits = limits or ReadLimits()
    _check_size(path, limits)
    videos: dict[str, VideoComments] = {}
    try:
        with path.open(encoding="utf-8-sig", newline="") as f:
            rows = _jsonl_rows(path, f) if path.suffix == ".jsonl" else _csv_rows(path, f)
            _add_rows(path, rows, videos, limits)
    except UnicodeDecodeError as e:
        raise TamError(f"{path}: not UTF-8 text ({e})") from None
    except OSError as e:
        raise TamError(f"{path}: cannot read ({e.strerror or e})") from None
    except csv.Error as e:
        raise TamError(f"{path}: not a readable CSV ({e})") from None
    return list(videos.values())


def _add_rows(path: Path, rows: Iterable[dict], videos: dict[str, VideoComments], limits: ReadLimits) -> None:
    for row in rows:
        vid = str(row.get("video") or "").strip()
        if not vid:
            raise TamError(f"{path}: a row has no video id")
        v = videos.get(vid) or videos.setdefault(vid, VideoComments(vid, str(path), "table", limits=limits))
        try:
            t, mode = float(row["time"]), int(row.get("mode") or 1)
        except (KeyError, TypeError, ValueError):
            v.skipped["bad_record"] += 1
            continue
        if not (t >= 0):
            v.skipped["bad_record"] += 1
            continue
        v.add(Comment(t, unescape(str(row.get("text") or "")), mode))


def _csv_rows(path: Path, lines: Iterable[str]) -> Iterator[dict]:
    reader = csv.DictReader(lines)
    missing = {"video", "time", "text"} - set(reader.fieldnames or [])
    if missing:
        raise TamError(f"{path}: CSV header lacks column(s) {sorted(missing)} (need video,time,text)")
    return iter(reader)


def _jsonl_rows(path: Path, lines: Iterable[str]) -> Iterator[dict]:
    for n, line in enumerate(lines, 1):
        if line.strip():
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise TamError(f"{path}: line {n} is not JSON ({e})") from None
            if not isinstance(row, dict):
                raise TamError(f"{path}: line {n} is not a JSON object")
            yield row


# ---------------------------------------------------------------- discovery

def discover(inputs: Iterable[str | Path]) -> list[Source]:
    """Files and folders (searched recursively) -> sources, protobuf segments grouped per video, sorted."""
    files: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            files += sorted(f for f in p.rglob("*") if f.suffix.lower() in EXTENSIONS and f.is_file())
        elif p.is_file():
            files.append(p)
        else:
            raise TamError(f"{p}: no such file or folder")
    pb: dict[tuple[Path, str], list[Path]] = {}
    sources = []
    for f in dict.fromkeys(files):
        ext = f.suffix.lower()
        if ext == ".pb":
            pb.setdefault((f.parent, _pb_video(f)), []).append(f)
        elif ext in EXTENSIONS:
            sources.append(Source({".xml": "bilibili-xml", ".json": "json"}.get(ext, "table"), (f,)))
        else:
            raise TamError(f"{f}: unknown danmaku file type {ext!r} (expected one of {', '.join(EXTENSIONS)})")
    sources += [Source("bilibili-protobuf", tuple(sorted(v, key=_segment_number))) for v in pb.values()]
    return sorted(sources, key=lambda s: str(s.paths[0]))


def read_source(source: Source, limits: ReadLimits | None = None) -> list[VideoComments]:
    """Read one source; a CSV/JSONL source can give several videos. Raises TamError naming the file."""
    if source.format == "bilibili-xml":
        return [read_bilibili_xml(source.paths[0], limits)]
    if source.format == "bilibili-protobuf":
        return [read_bilibili_protobuf(source.paths, limits)]
    if source.format == "json":
        return [read_json(source.paths[0], limits)]
    return read_table(source.paths[0], limits)


def read_danmaku(path: str | Path, limits: ReadLimits | None = None) -> list[VideoComments]:
    """Read one file of any supported format (convenience for a single path)."""
    return [v for s in discover([path]) for v in read_source(s, limits)]


def _check_size(path: Path, limits: ReadLimits) -> None:
    try:
        size = path.stat().st_size
    except OSError as e:
        raise TamError(f"{path}: cannot read ({e.strerror or e})") from None
    if size > limits.max_file_mb * 2**20:
        raise TamError(f"{path}: {size / 2**20:.1f} MB is over the {limits.max_file_mb:g} MB limit per file "
                       "(raise it with --max-file-mb)")


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as e:
        raise TamError(f"{path}: cannot read ({e.strerror or e})") from None
