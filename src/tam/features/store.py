"""The feature store: per-video, per-segment features on disk, read back through memory maps.

Format (version 1), a folder::

    <store>/manifest.json                  what made the features (see `Manifest`)
    <store>/videos/<entry>/meta.json       {"video": id, "T": T_v, "present": {m: bool}, "extra": {...}}
    <store>/videos/<entry>/times.npy       float64 [T_v, 2]: start and end of each segment, seconds
    <store>/videos/<entry>/<m>.npy         float32 [T_v, D_m] for each *present* modality m

`<entry>` is the video id made safe for a file name plus a short hash of the id (ids such as
`Fear/abc` contain `/`, and one name may sit in two class folders). An entry is written into a
temporary folder and renamed into place, so a killed writer leaves no partial entry, and several
writers (shards, torchrun ranks) can fill one store at once: each entry is one rename. A re-run
skips the ids already present (`FeatureStore.has`). Readers open the `.npy` files with
`mmap_mode="r"`, so many DataLoader workers share the page cache instead of copying arrays.

A missing modality (say, a video without an audio track) has no array and `present[m] = False`;
`read` returns zeros of the right shape for it, and the model masks it out.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from tam.errors import TamError
from tam.io import write_json
from tam.version import code_version

FORMAT_VERSION = 1


@dataclass(frozen=True)
class Encoder:
    """Identity of the frozen encoder that produced one modality's features."""

    name: str
    dim: int
    weights_sha256: str = ""  # sha256 of the weight file(s); "" for synthetic features
    preprocessing: str = ""  # e.g. "1 frame per 16-frame segment, 224 px, CLIP normalisation"
    random_init: bool = False  # True: the encoder was NOT pre-trained; features are for tests and demos only


@dataclass(frozen=True)
class Manifest:
    """What made the features of a store; a training run refuses a store whose manifest does not match."""

    encoders: dict[str, Encoder]
    segment: str = ""  # how videos are cut into segments, e.g. "16 frames at native rate"
    code_version: str = field(default_factory=code_version)
    format_version: int = FORMAT_VERSION

    @property
    def dims(self) -> dict[str, int]:
        return {m: e.dim for m, e in self.encoders.items()}

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, obj: dict) -> Manifest:
        encoders = {m: Encoder(**e) for m, e in obj["encoders"].items()}
        return cls(encoders=encoders, segment=obj.get("segment", ""), code_version=obj.get("code_version", ""),
                   format_version=obj.get("format_version", FORMAT_VERSION))

    def identity(self) -> dict:
        """The part that must match between a store and a model: per modality its encoder's name, dim, weights and
        exact preprocessing (pixels, normalisation, VGGish framing), plus the segment policy under `"segment"`
        (segment grid and which frames the motion encoder sees), so stores cut or preprocessed differently never mix.
        """
        ident: dict = {m: (e.name, e.dim, e.weights_sha256, e.preprocessing) for m, e in sorted(self.encoders.items())}
        ident["segment"] = self.segment
        return ident

    @property
    def random_init(self) -> bool:
        return any(e.random_init for e in self.encoders.values())


@dataclass
class VideoFeatures:
    """One video read from the store. Arrays are read-only memory maps (zeros for absent modalities)."""

    video: str
    features: dict[str, np.ndarray]  # m -> [T_v, D_m]
    present: dict[str, bool]
    times: np.ndarray  # [T_v, 2] start, end (s)
    extra: dict

    @property
    def T(self) -> int:
        return int(self.times.shape[0])


def entry_name(video: str) -> str:
    """File-system-safe, collision-free folder name for a video id."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", video).strip("._")[:80] or "video"
    return f"{safe}-{hashlib.sha1(video.encode('utf-8')).hexdigest()[:10]}"


class FeatureStore:
    """Create or open a store; write and read videos. See the module docstring for the format."""

    def __init__(self, root: str | os.PathLike, manifest: Manifest):
        self.root = Path(root)
        self.manifest = manifest
        self._videos = self.root / "videos"
        self._open: dict[str, VideoFeatures] = {}  # checked entries already mapped (entries never change in place)

    OPEN_LIMIT = 8192  # videos kept mapped per store object (each costs a few memory maps, not their data)

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_open": {}}  # a pickled memmap carries its data: loader workers map their own

    # ---- opening -------------------------------------------------------------------------------
    @classmethod
    def create(cls, root: str | os.PathLike, manifest: Manifest) -> FeatureStore:
        """Create a store, or open an existing one after checking that its manifest matches."""
        root = Path(root)
        path = root / "manifest.json"
        if path.exists():
            store = cls.open(root)
            if store.manifest.identity() != manifest.identity():
                raise TamError(f"{path}: the store was made by other encoders {store.manifest.identity()}; "
                               f"refusing to add features from {manifest.identity()} (use a new folder)")
            return store
        (root / "videos").mkdir(parents=True, exist_ok=True)
        write_json(path, manifest.to_json())
        return cls(root, manifest)

    @classmethod
    def open(cls, root: str | os.PathLike) -> FeatureStore:
        path = Path(root) / "manifest.json"
        if not path.is_file():
            raise TamError(f"{root}: not a feature store (no manifest.json)")
        try:
            manifest = Manifest.from_json(json.loads(path.read_text(encoding="utf-8")))
        except (ValueError, KeyError, TypeError, AttributeError, RecursionError) as e:
            raise TamError(f"{path}: unreadable manifest ({type(e).__name__}: {str(e)[:120]})".replace("\n", " ")) \
                from None
        if not all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in manifest.dims.values()):
            raise TamError(f"{path}: encoder dims must be positive integers, got {manifest.dims}")
        if manifest.format_version != FORMAT_VERSION:
            raise TamError(f"{path}: format version {manifest.format_version}, this tam reads {FORMAT_VERSION}")
        return cls(root, manifest)

    # ---- writing -------------------------------------------------------------------------------
    def write(self, video: str, features: dict[str, np.ndarray | None], times: np.ndarray,
              extra: dict | None = None, overwrite: bool = False) -> None:
        """Validate and atomically write one video. `features[m] = None` marks modality m absent.

        Raises `TamError` naming the video for wrong dims, NaN/Inf, T_v = 0 or mismatched lengths.
        """
        arrays, present = self._validate(video, features, times)
        final = self._videos / entry_name(video)
        if final.exists() and not overwrite:
            return
        self._videos.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=self._videos))
        try:
            for m, a in arrays.items():
                np.save(tmp / f"{m}.npy", a)
            np.save(tmp / "times.npy", np.asarray(times, dtype=np.float64))
            meta = {"video": video, "T": int(len(times)), "present": present, "extra": extra or {}}
            (tmp / "meta.json").write_text(json.dumps(meta, ensure_ascii=False), encoding="utf-8")
            if final.exists():  # overwrite: move the old entry away first, then rename the new one in
                trash = Path(tempfile.mkdtemp(prefix=".old-", dir=self._videos))
                os.replace(final, trash / "x")
                shutil.rmtree(trash, ignore_errors=True)
            os.replace(tmp, final)
            self._open.pop(video, None)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise

    def _validate(self, video: str, features: dict[str, np.ndarray | None], times: np.ndarray):
        dims = self.manifest.dims
        unknown = set(features) - set(dims)
        if unknown:
            raise TamError(f"video {video!r}: modalities {sorted(unknown)} are not in the store's manifest "
                           f"{sorted(dims)}")
        times = np.asarray(times, dtype=np.float64)
        if times.ndim != 2 or times.shape[1] != 2:
            raise TamError(f"video {video!r}: segment times must be [T, 2] (start, end), got {list(times.shape)}")
        T = times.shape[0]
        if T == 0:
            raise TamError(f"video {video!r}: no segments (T_v = 0)")
        if not np.all(np.isfinite(times)):
            raise TamError(f"video {video!r}: segment times contain NaN/Inf")
        arrays, present = {}, {}
        for m, D in dims.items():
            a = features.get(m)
            present[m] = a is not None
            if a is None:
                continue
            a = np.asarray(a, dtype=np.float32)
            if a.ndim != 2 or a.shape[1] != D:
                raise TamError(f"video {video!r}: {m} features must be [T, {D}], got {list(a.shape)}")
            if a.shape[0] != T:
                raise TamError(f"video {video!r}: {m} has {a.shape[0]} segments but the times list {T}")
            if not np.all(np.isfinite(a)):
                raise TamError(f"video {video!r}: {m} features contain NaN or Inf")
            arrays[m] = a
        if not arrays:
            raise TamError(f"video {video!r}: no modality present")
        return arrays, present

    # ---- reading -------------------------------------------------------------------------------
    def has(self, video: str) -> bool:
        return (self._videos / entry_name(video) / "meta.json").is_file()

    def videos(self) -> list[str]:
        """Ids of all complete entries, sorted."""
        out = []
        if self._videos.is_dir():
            for d in self._videos.iterdir():
                if not d.name.startswith(".") and (d / "meta.json").is_file():
                    try:  # an unreadable entry is not listed; `check` names it
                        out.append(self._entry_meta(d)["video"])
                    except TamError:
                        continue
        return sorted(out)

    def __len__(self) -> int:
        return len(self.videos())

    def fingerprint(self, videos: Iterable[str]) -> str:
        """A digest of this store (folder, encoders) and of the entries of `videos` as they are now: keys caches of
        values computed from those entries (an entry is replaced only by renaming a new folder in, so its
        meta.json's inode, size and modification time change with it; a missing entry counts as missing)."""
        h = hashlib.sha256(f"{self.root.resolve()}|{self.manifest.identity()!r}".encode())
        for v in videos:
            try:
                st = os.stat(self._videos / entry_name(v) / "meta.json")
                h.update(f"{v}\0{st.st_ino}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
            except FileNotFoundError:
                h.update(f"{v}\0-\n".encode())
        return h.hexdigest()

    def read(self, video: str) -> VideoFeatures:
        """One video's features as read-only memory maps; a damaged entry is a TamError naming video and file.

        An entry is checked and mapped once per store object; later reads return the same maps (an entry is
        written once, atomically, and replaced only through this object's `write(..., overwrite=True)`)."""
        v = self._open.get(video)
        if v is None:
            v = self._read(video)
            if len(self._open) >= self.OPEN_LIMIT:
                self._open.pop(next(iter(self._open)))
            self._open[video] = v
        return v

    def _read(self, video: str) -> VideoFeatures:
        d = self._videos / entry_name(video)
        if not (d / "meta.json").is_file():
            raise TamError(f"{self.root}: no features for video {video!r}")
        meta = self._entry_meta(d, video)
        T = meta["T"]
        feats = {}
        for m, D in self.manifest.dims.items():
            if meta["present"].get(m, False):
                feats[m] = _load_npy(d / f"{m}.npy", np.float32, (T, D), video)
            else:
                feats[m] = np.zeros((T, D), dtype=np.float32)
        times = _load_npy(d / "times.npy", np.float64, (T, 2), video)
        present = {m: bool(meta["present"].get(m, False)) for m in self.manifest.dims}
        return VideoFeatures(video, feats, present, times, meta.get("extra", {}))

    def check_matches(self, expected: Manifest | dict, what: str) -> None:
        """Refuse features made by other encoders than `what` (a model or a config) expects."""
        ident = expected.identity() if isinstance(expected, Manifest) else expected
        ident = {m: tuple(v) if isinstance(v, (list, tuple)) else v for m, v in ident.items()}
        if self.manifest.identity() != ident:
            raise TamError(f"{self.root}: features were made by {self.manifest.identity()}, "
                           f"but {what} expects {ident}")

    # ---- checking ------------------------------------------------------------------------------
    def check(self, videos: Iterable[str] | None = None) -> list[str]:
        """One line per damaged entry of `videos` (default: every entry), naming the video and the file.

        Reads each meta.json and the headers of its `.npy` files only, comparing dtypes, shapes and file
        sizes, so a truncated or corrupt entry is found without loading any features. Videos without an
        entry are not problems here (callers skip them as "no features").
        """
        if videos is None:
            dirs = sorted(d for d in self._videos.iterdir() if not d.name.startswith(".")) \
                if self._videos.is_dir() else []
            return [p for d in dirs if (p := self._check_entry(d, None))]
        return [p for v in videos if v not in self._open and (d := self._videos / entry_name(v)).exists()
                and (p := self._check_entry(d, v))]

    def require_valid(self, videos: Iterable[str]) -> None:
        """Raise one TamError (the first problem and a count) if any entry of `videos` is damaged."""
        problems = self.check(videos)
        if problems:
            more = f" (and {len(problems) - 1} more damaged entries; see `tam store check {self.root}`)" \
                if len(problems) > 1 else ""
            raise TamError(problems[0] + more)

    def _check_entry(self, d: Path, video: str | None) -> str:
        try:
            meta = self._entry_meta(d, video)
            T, video = meta["T"], meta["video"]
            npy_header(d / "times.npy", np.float64, (T, 2), video)
            for m, D in self.manifest.dims.items():
                if meta["present"].get(m, False):
                    npy_header(d / f"{m}.npy", np.float32, (T, D), video)
        except TamError as e:
            return str(e)
        return ""

    def _entry_meta(self, d: Path, video: str | None = None) -> dict:
        """The checked meta.json of entry folder `d` (of `video`, when known)."""
        path = d / "meta.json"
        who = f"video {video!r}: " if video is not None else f"entry {d.name}: "
        try:
            raw = path.read_bytes()[:META_LIMIT + 1]
            meta = json.loads(raw.decode("utf-8")) if len(raw) <= META_LIMIT else None
        except FileNotFoundError:
            raise TamError(f"{who}{path}: missing (incomplete entry)") from None
        except (OSError, UnicodeDecodeError, ValueError, RecursionError):
            raise TamError(f"{who}{path}: unreadable (not UTF-8 JSON)") from None
        if not isinstance(meta, dict) or not isinstance(meta.get("video"), str):
            raise TamError(f"{who}{path}: not an entry description (no video id)")
        who = f"video {video if video is not None else meta['video']!r}: "
        if entry_name(meta["video"]) != d.name or (video is not None and meta["video"] != video):
            raise TamError(f"{who}{path}: the entry folder {d.name} belongs to another video id")
        T, present = meta.get("T"), meta.get("present")
        if not isinstance(T, int) or isinstance(T, bool) or T < 1:
            raise TamError(f"{who}{path}: T must be a positive integer, got {str(T)[:40]}")
        if not isinstance(present, dict) or not all(isinstance(p, bool) for p in present.values()) \
                or not any(present.get(m) for m in self.manifest.dims):
            raise TamError(f"{who}{path}: 'present' must map modalities to true/false, one of "
                           f"{sorted(self.manifest.dims)} true")
        if not isinstance(meta.get("extra", {}), dict):
            raise TamError(f"{who}{path}: 'extra' must be an object")
        return meta


META_LIMIT = 1 << 20


# the header numpy's writer produces for a C-order array of a simple dtype, parsed without ast.literal_eval
_PLAIN_HEADER = re.compile(rb"\{'descr': '([<>|][a-z][0-9]{1,2})', 'fortran_order': (False|True), "
                           rb"'shape': \(((?:[0-9]{1,18}, )*[0-9]{0,18},?)\), \} *\n")


def _plain_header(head: bytes) -> tuple[tuple[int, ...], bool, np.dtype] | None:
    """(shape, fortran_order, dtype) of a v1.0 header in numpy's own layout, else None (numpy parses it)."""
    if len(head) < 10 or head[:8] != b"\x93NUMPY\x01\x00":
        return None
    n = int.from_bytes(head[8:10], "little")
    m = _PLAIN_HEADER.fullmatch(head[10:10 + n])
    if m is None or 10 + n > len(head):
        return None
    shape = tuple(int(x) for x in m.group(3).decode().replace(",", " ").split())
    return shape, m.group(2) == b"True", np.dtype(m.group(1).decode())


def npy_header(path: Path, dtype, shape: tuple[int, ...], video: str) -> int:
    """Check a `.npy` file's header (dtype, shape) and its size against the data it promises; returns the
    offset of the data. Reads the header only."""
    try:
        size = path.stat().st_size
        with path.open("rb") as f:
            head = f.read(256)
            plain = _plain_header(head)
            if plain is not None:
                (got, fortran, dt), offset = plain, 10 + int.from_bytes(head[8:10], "little")
            else:
                f.seek(0)
                version = np.lib.format.read_magic(f)
                if version == (1, 0):
                    got, fortran, dt = np.lib.format.read_array_header_1_0(f)
                elif version == (2, 0):
                    got, fortran, dt = np.lib.format.read_array_header_2_0(f)
                else:
                    raise ValueError(f"unsupported .npy version {version}")
                offset = f.tell()
    except FileNotFoundError:
        raise TamError(f"video {video!r}: {path}: missing") from None
    except Exception as e:  # noqa: BLE001 - numpy's header parser raises ValueError, SyntaxError, TokenError, ...
        raise TamError(f"video {video!r}: {path}: not a readable .npy file "
                       f"({(str(e).splitlines() or [''])[0][:100]})") from None
    if dt != np.dtype(dtype) or tuple(got) != tuple(shape) or fortran:
        raise TamError(f"video {video!r}: {path}: holds {dt} {list(got)}, expected {np.dtype(dtype)} {list(shape)}")
    need = offset + int(np.prod(shape)) * np.dtype(dtype).itemsize
    if size != need:
        raise TamError(f"video {video!r}: {path}: {size} bytes, its header promises {need} (truncated or damaged)")
    return offset


def _load_npy(path: Path, dtype, shape: tuple[int, ...], video: str) -> np.ndarray:
    """A read-only memory map of a checked `.npy` file (header and size checked first)."""
    offset = npy_header(path, dtype, shape, video)
    try:
        return np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape)
    except (OSError, ValueError) as e:
        raise TamError(f"video {video!r}: {path}: cannot map ({e})") from None
