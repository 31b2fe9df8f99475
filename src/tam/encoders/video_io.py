"""Decoding with PyAV: pick the streams, cut the video into segments, decode the audio to 16 kHz.

Segment grid (see docs/extraction.md). By default every video is cut on a fixed time grid: target frame k
(at `fps`, 16 per second) shows the last decoded frame whose presentation time is at or before k / fps, and
a segment is 16 consecutive target frames, so it lasts 16 / fps seconds (1 s at the default) in every video,
whatever its native or variable frame rate; the per-second time-sync comments line up with it. The image
encoder sees the segment's middle target frame (index 8). `native=True` instead cuts segments of 16
consecutive decoded frames (durations then vary between videos).

Motion frames. The 3D ResNets were trained on 16 *consecutive* frames at the video's native rate, so by
default (`motion="native"`) the motion encoder gets, for each segment of the grid, the 16 consecutive
decoded frames centred on the segment's midpoint, as the reference's temporal centre crop takes them: with
n frames before the midpoint, frames n - 8 .. n + 7, shifted to stay inside the video, and looped (0, 1, ..,
m - 1, 0, 1, ..) when the whole video has m < 16 frames. At 30 fps a clip spans 0.53 s of its 1 s segment;
below 16 fps it spans more than the segment. `motion="grid"` gives the segment's own 16 resampled frames
(the rule of stores made before this one).

Geometry and colour, as the reference processors do it: each frame is converted to RGB at full size
(`frame.to_ndarray(format="rgb24")`, what PyAV and torchvision give), stretched to its display aspect when
its pixels are not square (PIL bicubic to width round(w * SAR), height kept), rotated for display (display
matrix), then resized with PIL so that the shorter side is the encoder's size (long side truncated:
`int(size * long / short)`, as transformers' `get_resize_output_image_size` and 3D-ResNets' `Scale`), and
centre-cropped with the reference's offset rule: `(side - size) // 2` for transformers' `center_crop`
(CLIP, VideoMAE) or `int(round((side - size) / 2))` for 3D-ResNets' `CenterCrop`. The filter is the
encoder's (`FrameSizes`): bicubic for CLIP, bilinear for VideoMAE and the 3D ResNets.

Times are seconds from the container's start time (what a player shows). The last, partial segment is kept
(padded by repeating its last frame) when it holds at least half a segment, or when it is the only one.
Packets that fail to decode are skipped and counted; a target frame shown more than max(3 frame intervals,
0.25 s) after its source frame's time stands in for lost frames, and the segments where at least half the
frames are such stand-ins are listed as `frozen`.
"""

from __future__ import annotations

import bisect
import math
import os
import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import av
import numpy as np

from tam.errors import TamError

SEGMENT_FRAMES = 16
AUDIO_RATE = 16000
EXTENSION_FORMATS = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska", ".webm": "webm",
                     ".avi": "avi", ".flv": "flv", ".ogv": "ogg", ".ogg": "ogg", ".ts": "mpegts", ".mpg": "mpeg",
                     ".mpeg": "mpeg", ".wmv": "asf", ".3gp": "3gp"}
VIDEO_EXTENSIONS = frozenset(EXTENSION_FORMATS)


MOTION_RULES = ("native", "grid")


@dataclass(frozen=True)
class SegmentPolicy:
    """How a video is cut into segments (`frames` at `fps`, or at the native rate) and which frames motion sees."""

    frames: int = SEGMENT_FRAMES
    fps: float = 16.0
    native: bool = False
    motion: str = "native"  # fixed-rate grid only: "native" consecutive decoded frames, or the "grid" frames

    def __post_init__(self):
        if self.motion not in MOTION_RULES:
            raise TamError(f"motion frames {self.motion!r}: choose from {MOTION_RULES}")

    @property
    def native_motion(self) -> bool:
        """Whether motion clips are picked from the decoded frames instead of the segment's grid frames."""
        return not self.native and self.motion == "native"

    def describe(self) -> str:
        if self.native:
            return f"{self.frames} consecutive frames at the native frame rate"
        grid = f"{self.frames} frames at {self.fps:g} fps resampled by timestamps ({self.frames / self.fps:g} s)"
        if self.motion == "grid":
            return grid
        return f"{grid}; motion: {self.frames} consecutive native-rate frames centred on each segment's midpoint"

    @classmethod
    def parse(cls, text: str) -> SegmentPolicy | None:
        """The policy whose `describe()` is `text`, or None."""
        native = re.fullmatch(r"(\d+) consecutive frames at the native frame rate", text)
        if native:
            policy = cls(frames=int(native.group(1)), native=True)
        else:
            fixed = re.match(r"(\d+) frames at ([0-9.e+-]+) fps resampled by timestamps", text)
            if not fixed:
                return None
            motion = "native" if "; motion: " in text else "grid"
            policy = cls(frames=int(fixed.group(1)), fps=float(fixed.group(2)), motion=motion)
        return policy if policy.describe() == text else None


@dataclass
class Segments:
    """A run of consecutive segments of one video, as the encoders want them."""

    start: int  # index of the first segment in the video
    times: np.ndarray  # float64 [n, 2] start, end (s)
    motion: np.ndarray | None  # uint8 [n, frames, S_m, S_m, 3]
    image: np.ndarray | None  # uint8 [n, S_i, S_i, 3]: the middle frame of each segment
    frozen: list[int] = field(default_factory=list)  # segments whose frames mostly repeat a frame before a gap


@dataclass
class MediaInfo:
    """What the decoder found and did; `notes` are one-line remarks about odd input."""

    path: Path
    format: str = ""
    video: str = ""  # e.g. "h264 640x360 30 fps"
    audio: str = ""
    rotation: int = 0
    decode_errors: int = 0
    notes: list[str] = field(default_factory=list)


# ---- opening -----------------------------------------------------------------------------------------
def open_media(path: str | os.PathLike, info: MediaInfo | None = None) -> av.container.InputContainer:
    """Open a file with PyAV, turning every failure into a one-line `TamError` naming the file."""
    path = Path(path)
    if not path.is_file():
        raise TamError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise TamError(f"{path}: empty file (0 bytes)")
    try:
        container = av.open(str(path), mode="r", metadata_errors="ignore")
    except (av.FFmpegError, EOFError, OSError, ValueError) as e:
        raise TamError(f"{path}: cannot open as a media file ({_reason(e)})") from None
    if info is not None:
        info.format = container.format.name
        expected = EXTENSION_FORMATS.get(path.suffix.lower())
        note = f"extension {path.suffix} but the container is {container.format.name}; decoded by content"
        if expected and expected not in container.format.name.split(",") and note not in info.notes:
            info.notes.append(note)
    return container


def _reason(e: BaseException) -> str:
    text = getattr(e, "strerror", None) or str(e) or type(e).__name__
    return text.splitlines()[0][:200]


def pick_video_stream(container) -> av.video.stream.VideoStream | None:
    """The default video stream: cover images (attached pictures) are skipped; `default` disposition wins."""
    streams = [s for s in container.streams.video if not s.disposition & av.stream.Disposition.attached_pic]
    return _default_first(streams)


def pick_audio_stream(container) -> av.audio.stream.AudioStream | None:
    """The default audio stream (the one marked `default`, else the first)."""
    return _default_first(list(container.streams.audio))


def _default_first(streams):
    if not streams:
        return None
    marked = [s for s in streams if s.disposition & av.stream.Disposition.default]
    return (marked or streams)[0]


def _origin(container) -> float:
    return container.start_time / 1e6 if container.start_time is not None else 0.0


# ---- audio -----------------------------------------------------------------------------------------
def decode_audio(path: str | os.PathLike, info: MediaInfo) -> np.ndarray | None:
    """The default audio stream as float32 mono at 16 kHz, sample 0 at time 0; None when there is no audio.

    Channels are averaged (as VGGish does); the stream's start offset is honoured (zeros before it).
    """
    with open_media(path) as container:
        stream = pick_audio_stream(container)
        if stream is None:
            return None
        info.audio = f"{stream.codec_context.name} {stream.codec_context.sample_rate} Hz ch={stream.channels}"
        resampler = av.AudioResampler(format="fltp", rate=AUDIO_RATE)
        chunks, first_time = [], None
        for frame in _frames(container, stream, info, "audio"):
            if first_time is None and frame.time is not None:
                first_time = frame.time - _origin(container)
            try:
                converted = resampler.resample(frame)
            except ValueError:  # the stream changed its layout or rate mid-way: start a new resampler
                resampler = av.AudioResampler(format="fltp", rate=AUDIO_RATE)
                converted = resampler.resample(frame)
            chunks += [out.to_ndarray().mean(axis=0) for out in converted]
        for out in resampler.resample(None):
            chunks.append(out.to_ndarray().mean(axis=0))
    if not chunks:
        info.notes.append("audio stream has no decodable samples; audio marked absent")
        return None
    wave = np.concatenate(chunks).astype(np.float32)
    shift = int(round((first_time or 0.0) * AUDIO_RATE))
    if shift > 0:
        wave = np.concatenate([np.zeros(shift, np.float32), wave])
    elif shift < 0:
        wave = wave[-shift:]
    return wave


def _frames(container, stream, info: MediaInfo, kind: str) -> Iterator:
    """Decoded frames of one stream; bad packets are skipped and counted, a truncated file ends the stream."""
    bad = 0
    try:
        for packet in container.demux(stream):
            try:
                yield from packet.decode()
            except (av.FFmpegError, ValueError):
                bad += 1
    except (av.FFmpegError, EOFError, OSError) as e:
        info.notes.append(f"{kind} stream ends early ({_reason(e)}); kept what decoded")
    if bad:
        info.decode_errors += bad
        info.notes.append(f"{bad} {kind} packet(s) failed to decode; skipped")


# ---- video -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class FrameSizes:
    """Square input sizes the encoders want (0 = not wanted), with each reference's filter and crop offset."""

    motion: int = 112
    image: int = 224
    motion_resample: str = "bilinear"  # PIL filter: bilinear | bicubic
    motion_offset: str = "round"  # crop offset: floor (transformers) | round (3D-ResNets)
    image_resample: str = "bicubic"
    image_offset: str = "floor"


RESAMPLE = {"bilinear": 2, "bicubic": 3}  # PIL.Image.Resampling.BILINEAR / BICUBIC
OFFSETS = ("floor", "round")


_LOCAL = threading.local()


def to_rgb24(frame):
    """The frame converted to full-size RGB, as `frame.reformat(format="rgb24")` converts it, pixel for pixel, by
    this thread's own converter: `frame.reformat` builds a new FFmpeg scaler (with its threads) for every frame,
    0.5-0.8 ms of CPU on the demo's 64 x 64 frames against 0.01 ms for a kept one (the converter keeps its scaler
    while the frames' size and format stay the same)."""
    from av.video.reformatter import VideoReformatter

    if not hasattr(_LOCAL, "rgb"):
        _LOCAL.rgb = VideoReformatter()
    return _LOCAL.rgb.reformat(frame, format="rgb24", threads=1)


def display_image(frame, rotation: int, sar: float):
    """The frame as a player shows it, a PIL RGB image: full-size RGB, display aspect, display rotation."""
    from PIL import Image

    k = (round(rotation / 90) % 4) if rotation else 0
    converted = to_rgb24(frame)
    if sar == 1.0 and not k:  # the common case: PIL copies the converted plane once, no numpy round trip
        plane = converted.planes[0]
        return Image.frombuffer("RGB", (converted.width, converted.height), plane, "raw", "RGB", plane.line_size, 1)
    rgb = converted.to_ndarray()
    if sar != 1.0:
        h, w = rgb.shape[:2]
        rgb = np.asarray(Image.fromarray(rgb).resize((max(1, round(w * sar)), h), RESAMPLE["bicubic"]))
    if k:
        rgb = np.ascontiguousarray(np.rot90(rgb, k))
    return Image.fromarray(rgb)


def resized_size(width: int, height: int, short: int) -> tuple[int, int]:
    """(w, h) with the shorter side `short` and the long side truncated, as the reference processors do."""
    if width <= height:
        return short, int(short * height / width)
    return int(short * width / height), short


def square_crop(image, size: int, resample: str = "bilinear", offset: str = "floor") -> np.ndarray:
    """uint8 [size, size, 3]: shorter side to `size` with PIL (`resample`), then the centre crop (`offset` rule)."""
    w, h = resized_size(image.width, image.height, size)
    if (w, h) != image.size:
        image = image.resize((w, h), RESAMPLE[resample])
    if offset == "round":
        left, top = int(round((w - size) / 2)), int(round((h - size) / 2))
    else:
        left, top = (w - size) // 2, (h - size) // 2
    return np.asarray(image)[top:top + size, left:left + size].copy()


def frame_to_crop(frame, size: int, rotation: int, sar: float, resample: str = "bilinear",
                  offset: str = "floor") -> np.ndarray:
    """RGB uint8 [size, size, 3] of a decoded frame: `display_image`, then `square_crop`."""
    return square_crop(display_image(frame, rotation, sar), size, resample, offset)


class _NativeClips:
    """The decoded frames kept for motion clips: `frames` consecutive ones centred on each segment's midpoint."""

    def __init__(self, frames: int, crop: Callable):
        self.F, self.crop = frames, crop
        self.times: list[float] = []
        self.buf: list = []  # [frame, crop or None]
        self.first = 0  # video index of buf[0]

    def add(self, frame, t: float) -> None:
        self.times.append(t)
        self.buf.append([frame, None])

    @property
    def seen(self) -> int:
        return self.first + len(self.buf)

    def start(self, centre: float, final: bool) -> int | None:
        """Index of the clip's first frame, or None while later frames are still needed to decide it."""
        before = self.first + bisect.bisect_left(self.times, centre - 1e-9)
        start = max(before - self.F // 2, 0)
        if final:
            return max(min(start, self.seen - self.F), 0)
        return start if self.seen >= start + self.F else None

    def clip(self, start: int) -> np.ndarray:
        """[F, S, S, 3]: frames start .. start + F - 1, looped when the video has fewer."""
        index = list(range(start, min(start + self.F, self.seen)))
        index = (index * self.F)[:self.F]
        out = []
        for i in index:
            item = self.buf[i - self.first]
            if item[1] is None:
                item[1] = self.crop(item[0])
            out.append(item[1])
        return np.stack(out)

    def drop_before(self, index: int) -> None:
        """Forget frames no later clip can use."""
        n = min(max(index - self.first, 0), len(self.buf))
        del self.buf[:n], self.times[:n]
        self.first += n


class _SegmentBuilder:
    """Collects target frames into segments and hands out runs of `chunk` segments."""

    def __init__(self, policy: SegmentPolicy, sizes: FrameSizes, chunk: int):
        self.policy, self.sizes, self.chunk = policy, sizes, chunk
        self.grid_motion = bool(sizes.motion) and not policy.native_motion  # motion from the segment's frames
        self.count = 0  # frames in the open segment
        self.motion: list[np.ndarray] = []
        self.image: np.ndarray | None = None
        self.stale = 0  # frames of the open segment shown long after their time (the frames between were lost)
        self.done: list[list] = []  # closed segments: [start, end or None, motion, image, stale count]
        self.emitted = 0  # segments handed out so far

    def wants_image(self) -> bool:
        """Whether the next frame is the open segment's middle frame (the one the image encoder sees)."""
        return bool(self.sizes.image) and self.count == self.policy.frames // 2

    def add(self, crops: dict, t: float, stale: bool) -> None:
        if self.count == 0:
            self.start = t
            if self.done and self.done[-1][1] is None:
                self.done[-1][1] = t  # a segment ends where the next one starts
        self.stale += stale
        if self.grid_motion:
            self.motion.append(crops["motion"])
        if self.wants_image():
            self.image = crops["image"]
        self.count += 1
        if self.count == self.policy.frames:
            self._close(None)

    def _close(self, end: float | None) -> None:
        self.done.append([self.start, end, self.motion, self.image, self.stale])
        self.count, self.motion, self.image, self.stale = 0, [], None, 0

    def finish(self, end: float, last_crops) -> None:
        """Close the trailing partial segment (kept if >= half a segment or the only one); set the last end."""
        F = self.policy.frames
        if self.done and self.done[-1][1] is None:
            self.done[-1][1] = self.start if self.count else end
        if self.count and (self.count >= F // 2 or (not self.done and not self.emitted)):
            for _ in range(F - self.count):
                self.add(last_crops(self.wants_image()), end, False)
            self.done[-1][1] = end

    def fill_motion(self, clips: _NativeClips, final: bool) -> None:
        """Cut the motion clips of closed segments whose frames are decided; forget frames no clip needs."""
        for seg in self.done:
            if isinstance(seg[2], np.ndarray):
                continue
            if seg[1] is None and not final:
                break
            start = clips.start((seg[0] + seg[1]) / 2, final)
            if start is None:
                break
            seg[2] = clips.clip(start)
            clips.drop_before(start)
        waiting = [seg[0] for seg in self.done if not isinstance(seg[2], np.ndarray)]
        earliest = waiting[0] if waiting else (self.start if self.count else None)
        if earliest is not None:  # a clip starts at most F frames before its segment (F at the video's end)
            clips.drop_before(clips.first + bisect.bisect_left(clips.times, earliest - 1e-9) - clips.F)

    def take(self, final: bool) -> Segments | None:
        """Hand out closed segments in runs of `chunk`; the last one waits for its end time unless `final`."""
        ready = len(self.done) if final else len(self.done) - 1
        if self.sizes.motion and not self.grid_motion:  # only segments whose motion clip is cut
            ready = min(ready, next((i for i, s in enumerate(self.done) if not isinstance(s[2], np.ndarray)),
                                    len(self.done)))
        if ready <= 0 or (not final and ready < self.chunk):
            return None
        segs, self.done = self.done[:ready], self.done[ready:]
        times = np.array([[s[0], s[1]] for s in segs], dtype=np.float64)
        motion = np.stack([np.asarray(s[2]) if isinstance(s[2], np.ndarray) else np.stack(s[2]) for s in segs]) \
            if self.sizes.motion else None
        image = np.stack([s[3] for s in segs]) if self.sizes.image else None
        frozen = [self.emitted + i for i, s in enumerate(segs) if 2 * s[4] >= self.policy.frames]
        out = Segments(self.emitted, times, motion, image, frozen)
        self.emitted += len(segs)
        return out


def iter_segments(path: str | os.PathLike, info: MediaInfo, policy: SegmentPolicy = SegmentPolicy(),
                  sizes: FrameSizes = FrameSizes(), chunk: int = 16, threads: int = 0) -> Iterator[Segments]:
    """Decode the default video stream and yield runs of up to `chunk` consecutive segments.

    `threads` caps FFmpeg's decoding threads (0 = FFmpeg's choice: one per core and one more); the frames are
    the same whatever the count. Raises `TamError` when the file has no video stream or not a single frame decodes.
    """
    with open_media(path, info) as container:
        stream = pick_video_stream(container)
        if stream is None:
            raise TamError(f"{path}: no video stream")
        stream.thread_type = "AUTO"
        if threads > 0:
            stream.codec_context.thread_count = threads
        cc = stream.codec_context
        rate = float(stream.average_rate or stream.guessed_rate or 25)
        info.video = f"{cc.name} {cc.width}x{cc.height} {rate:.3g} fps {cc.pix_fmt or ''}".strip()
        sar = float(cc.sample_aspect_ratio) if cc.sample_aspect_ratio else 1.0
        if sar != 1.0:
            info.notes.append(f"non-square pixels (SAR {cc.sample_aspect_ratio}); scaled to display aspect")
        builder = _SegmentBuilder(policy, sizes, chunk)
        yield from _run(container, stream, info, policy, sizes, builder, sar, rate)
        if info.rotation:
            info.notes.append(f"display rotation {info.rotation} degrees applied")


def _run(container, stream, info, policy, sizes, builder, sar, rate) -> Iterator[Segments]:
    origin = _origin(container)
    step = 1.0 / policy.fps
    gap = max(3.0 / rate, 0.25)  # a frame shown this long after its own time stands in for lost frames
    k = 0  # next target frame (fixed-rate mode)
    prev = None  # the previous decoded frame
    prev_t = last_t = -math.inf
    cache: dict = {}

    def crop(frame, key: str) -> np.ndarray:
        size, resample, offset = {"motion": (sizes.motion, sizes.motion_resample, sizes.motion_offset),
                                  "image": (sizes.image, sizes.image_resample, sizes.image_offset)}[key]
        return frame_to_crop(frame, size, info.rotation, sar, resample, offset)

    def crops_of(frame, want_image: bool) -> dict:
        if cache.get("frame") is not frame:
            cache.clear()
            cache["frame"] = frame
        out = {}
        for key, wanted in (("motion", builder.grid_motion), ("image", want_image)):
            if wanted and key not in cache:
                cache[key] = crop(frame, key)
            if wanted:
                out[key] = cache[key]
        return out

    def emit(frame, t: float, stale: bool) -> None:
        builder.add(crops_of(frame, builder.wants_image()), t, stale)

    clips = _NativeClips(policy.frames, lambda f: crop(f, "motion")) if sizes.motion and policy.native_motion \
        else None
    for frame in _frames(container, stream, info, "video"):
        t = frame.time - origin if frame.time is not None else (last_t + 1.0 / rate)
        if t <= last_t:  # a timestamp going backwards: drop the frame
            continue
        if prev is None:
            info.rotation = int(frame.rotation or 0)
        if clips is not None:
            clips.add(frame, t)
        if policy.native:
            emit(frame, t, t - last_t > gap)
        else:
            while prev is not None and k * step < t - 1e-6:  # targets before this frame show the previous one
                emit(prev, k * step, k * step - prev_t > gap)
                k += 1
        prev, prev_t, last_t = frame, t, t
        if clips is not None:
            builder.fill_motion(clips, final=False)
        seg = builder.take(final=False)
        if seg is not None:
            yield seg
    if prev is None:
        raise TamError(f"{info.path}: no video frame could be decoded")
    end = last_t + (float(prev.duration * prev.time_base) if prev.duration and prev.time_base else 1.0 / rate)
    if not policy.native:
        while k == 0 or k * step < end - 1e-6:
            emit(prev, k * step, False)
            k += 1
    builder.finish(end, lambda want_image: crops_of(prev, want_image))
    if clips is not None:
        builder.fill_motion(clips, final=True)
    seg = builder.take(final=True)
    if seg is not None:
        yield seg
