"""Reading time-sync comments (danmaku) from the formats found in the wild.

Formats (chosen by file extension, JSON sniffed by content):

- Bilibili XML (`.xml`): `<d p="time,mode,size,color,timestamp,pool,user,rowid[,weight]">text</d>`,
  old 8-field and new 9-field `p`. Parsed with defusedxml (no entity expansion, no external entities);
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
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

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


@dataclass
class VideoComments:
    """The comments of one video read from one source (a file, or a video's protobuf segments)."""

    video: str
    source: str
    format: str
    comments: list[Comment] = field(default_factory=list)
    skipped: Counter = field(default_factory=Counter)

    def add(self, c: Comment) -> None:
        """Keep `c` unless it is an advanced/script comment or empty (then count it)."""
        if c.mode in ADVANCED_MODES:
            self.skipped["advanced"] += 1
        elif not c.text.strip():
            self.skipped["empty"] += 1
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

def read_bilibili_xml(path: str | Path) -> VideoComments:
    """Read a Bilibili XML file (8- or 9-field `p`); video id = the file stem."""
    import defusedxml.ElementTree as DET
    from defusedxml import DefusedXmlException

    path = Path(path)
    data = _read_bytes(path).translate(None, _XML_ILLEGAL)
    try:
        root = DET.fromstring(data)
    except DefusedXmlException as e:
        raise TamError(f"{path}: refused unsafe XML ({type(e).__name__})") from None
    except Exception as e:  # xml.etree.ElementTree.ParseError and friends
        raise TamError(f"{path}: not well-formed XML ({e})") from None
    out = VideoComments(video=path.stem, source=str(path), format="bilibili-xml")
    for d in root.iter("d"):
        c = _bilibili_p(d.get("p", ""), d.text or "")
        if c is None:
            out.skipped["bad_record"] += 1
        else:
            out.add(c)
    return out


def _bilibili_p(p: str, text: str) -> Comment | None:
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
    text = unescape(text).replace("/n", "\n")
    return Comment(t, text, mode, pool, f[6] if len(f) > 6 else "", ctime, f[7] if len(f) > 7 else "")


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


def decode_danmaku_elem(buf: bytes) -> Comment:
    """Decode one `DanmakuElem` (field numbers in the module docstring)."""
    f: dict[int, Any] = {}
    for num, _wt, val in iter_fields(buf):
        f[num] = val
    content = f.get(7, b"").decode("utf-8")
    mode = _signed64(f.get(3, 1)) or 1
    id_str = f[12].decode("ascii", "replace") if 12 in f else str(f.get(1, ""))
    return Comment(_signed64(f.get(2, 0)) / 1000.0, unescape(content), mode, _signed64(f.get(11, 0)),
                   f.get(6, b"").decode("utf-8", "replace"), _signed64(f.get(8, 0)), id_str)


def decode_dm_seg(buf: bytes) -> list[Comment]:
    """Decode a `DmSegMobileReply` message into its comments (all modes, in wire order)."""
    return [decode_danmaku_elem(val) for num, wt, val in iter_fields(buf) if num == 1 and wt == 2]


def read_bilibili_protobuf(paths: Iterable[str | Path]) -> VideoComments:
    """Read the protobuf segment files of one video; video id = the `<cid>` of `<cid>-<seg>.pb`."""
    paths = sorted((Path(p) for p in paths), key=_segment_number)
    out = VideoComments(video=_pb_video(paths[0]), source=str(paths[0].parent / (_pb_video(paths[0]) + "-*.pb")),
                        format="bilibili-protobuf")
    for p in paths:
        try:
            comments = decode_dm_seg(_read_bytes(p))
        except (ValueError, IndexError, UnicodeDecodeError) as e:
            raise TamError(f"{p}: not a Bilibili DmSegMobileReply protobuf ({e or 'truncated'})") from None
        for c in comments:
            out.add(c)
    return out


def _pb_video(p: Path) -> str:
    stem, sep, seg = p.stem.rpartition("-")
    return stem if sep and seg.isdigit() else p.stem


def _segment_number(p: Path) -> tuple[str, int]:
    seg = p.stem.rpartition("-")[2]
    return (_pb_video(p), int(seg) if seg.isdigit() else 0)


# ---------------------------------------------------------------- JSON formats

def read_json(path: str | Path) -> VideoComments:
    """Read an AcFun, niconico or CommentCoreLibrary JSON file (sniffed by its keys)."""
    path = Path(path)
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
    out = VideoComments(video=path.stem, source=str(path), format=fmt)
    parse = _JSON_RECORD[fmt]
    for item in items:
        c = parse(item) if isinstance(item, dict) else None
        if c is None:
            out.skipped["bad_record"] += 1
        else:
            out.add(c)
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

def read_table(path: str | Path) -> list[VideoComments]:
    """Read a plain CSV (header `video,time,text[,mode]`) or JSONL file: one entry per video, in file order."""
    path = Path(path)
    try:
        text = _read_bytes(path).decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise TamError(f"{path}: not UTF-8 text ({e})") from None
    rows = _jsonl_rows(path, text) if path.suffix == ".jsonl" else _csv_rows(path, text)
    videos: dict[str, VideoComments] = {}
    for row in rows:
        vid = str(row.get("video") or "").strip()
        if not vid:
            raise TamError(f"{path}: a row has no video id")
        v = videos.get(vid) or videos.setdefault(vid, VideoComments(vid, str(path), "table"))
        try:
            t, mode = float(row["time"]), int(row.get("mode") or 1)
        except (KeyError, TypeError, ValueError):
            v.skipped["bad_record"] += 1
            continue
        if not (t >= 0):
            v.skipped["bad_record"] += 1
            continue
        v.add(Comment(t, unescape(str(row.get("text") or "")), mode))
    return list(videos.values())


def _csv_rows(path: Path, text: str) -> Iterator[dict]:
    reader = csv.DictReader(text.splitlines())
    missing = {"video", "time", "text"} - set(reader.fieldnames or [])
    if missing:
        raise TamError(f"{path}: CSV header lacks column(s) {sorted(missing)} (need video,time,text)")
    return iter(reader)


def _jsonl_rows(path: Path, text: str) -> Iterator[dict]:
    for n, line in enumerate(text.splitlines(), 1):
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


def read_source(source: Source) -> list[VideoComments]:
    """Read one source; a CSV/JSONL source can give several videos. Raises TamError naming the file."""
    if source.format == "bilibili-xml":
        return [read_bilibili_xml(source.paths[0])]
    if source.format == "bilibili-protobuf":
        return [read_bilibili_protobuf(source.paths)]
    if source.format == "json":
        return [read_json(source.paths[0])]
    return read_table(source.paths[0])


def read_danmaku(path: str | Path) -> list[VideoComments]:
    """Read one file of any supported format (convenience for a single path)."""
    return [v for s in discover([path]) for v in read_source(s)]


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as e:
        raise TamError(f"{path}: cannot read ({e.strerror or e})") from None
