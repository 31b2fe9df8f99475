"""Decoding with PyAV: pick the streams, cut the video into 16-frame segments, decode the audio to 16 kHz.

Frame-rate policy (see docs/extraction.md). By default every video is resampled *by timestamps* to a fixed
rate (`fps`, 16 frames per second): target frame k shows the last decoded frame whose presentation time is
at or before k / fps. A segment is 16 consecutive target frames, so it lasts 16 / fps seconds (1 s at the
default) in every video, whatever its native or variable frame rate; the paper's 16-frame clips for the 3D
CNN and the per-second time-sync comments then line up. `native=True` instead takes 16 consecutive decoded
frames per segment (durations then vary between videos and within variable-frame-rate ones).

Times are seconds from the container's start time (what a player shows). The last, partial segment is kept
(padded by repeating its last frame) when it holds at least half a segment, or when it is the only one.

Per frame the decoder applies the display rotation (display matrix), the sample aspect ratio (non-square
pixels) and converts any pixel format (10-bit, 4:4:4, ...) to RGB; it scales the shorter display side to
the encoder's size and crops the centre. Packets that fail to decode are skipped and counted; a target frame
shown more than max(3 frame intervals, 0.25 s) after its source frame's time stands in for lost frames, and
the segments where at least half the frames are such stand-ins are listed as `frozen`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
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


@dataclass(frozen=True)
class SegmentPolicy:
    """How a video is cut into segments: `frames` consecutive frames at `fps` (or at the native rate)."""

    frames: int = SEGMENT_FRAMES
    fps: float = 16.0
    native: bool = False

    def describe(self) -> str:
        if self.native:
            return f"{self.frames} consecutive frames at the native frame rate"
        return f"{self.frames} frames at {self.fps:g} fps resampled by timestamps ({self.frames / self.fps:g} s)"


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
    """Square crop sizes the encoders want (0 = not wanted)."""

    motion: int = 112
    image: int = 224


def _scaled_size(width: int, height: int, sar: float, short: int) -> tuple[int, int]:
    """Size (pre-rotation) to scale a coded frame to so that its shorter *display* side is `short`."""
    dw, dh = width * sar, float(height)
    s = short / min(dw, dh)
    return max(short, round(dw * s)), max(short, round(dh * s))


def frame_to_crop(frame, short: int, rotation: int, sar: float, interpolation: str) -> np.ndarray:
    """RGB uint8 [short, short, 3]: scale the shorter display side to `short`, rotate for display, crop the centre."""
    w, h = _scaled_size(frame.width, frame.height, sar, short)
    rgb = frame.reformat(width=w, height=h, format="rgb24", interpolation=interpolation).to_ndarray()
    k = (round(rotation / 90) % 4) if rotation else 0
    if k:
        rgb = np.rot90(rgb, k)
    H, W = rgb.shape[:2]
    top, left = (H - short) // 2, (W - short) // 2
    return np.ascontiguousarray(rgb[top:top + short, left:left + short])


class _SegmentBuilder:
    """Collects target frames into segments and hands out runs of `chunk` segments."""

    def __init__(self, policy: SegmentPolicy, sizes: FrameSizes, chunk: int):
        self.policy, self.sizes, self.chunk = policy, sizes, chunk
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
        if self.sizes.motion:
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

    def take(self, final: bool) -> Segments | None:
        """Hand out closed segments in runs of `chunk`; the last one waits for its end time unless `final`."""
        ready = len(self.done) if final else len(self.done) - 1
        if ready <= 0 or (not final and ready < self.chunk):
            return None
        segs, self.done = self.done[:ready], self.done[ready:]
        times = np.array([[s[0], s[1]] for s in segs], dtype=np.float64)
        motion = np.stack([np.stack(s[2]) for s in segs]) if self.sizes.motion else None
        image = np.stack([s[3] for s in segs]) if self.sizes.image else None
        frozen = [self.emitted + i for i, s in enumerate(segs) if 2 * s[4] >= self.policy.frames]
        out = Segments(self.emitted, times, motion, image, frozen)
        self.emitted += len(segs)
        return out


def iter_segments(path: str | os.PathLike, info: MediaInfo, policy: SegmentPolicy = SegmentPolicy(),
                  sizes: FrameSizes = FrameSizes(), chunk: int = 16) -> Iterator[Segments]:
    """Decode the default video stream and yield runs of up to `chunk` consecutive segments.

    Raises `TamError` when the file has no video stream or not a single frame decodes.
    """
    with open_media(path, info) as container:
        stream = pick_video_stream(container)
        if stream is None:
            raise TamError(f"{path}: no video stream")
        stream.thread_type = "AUTO"
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

    def crops_of(frame, want_image: bool) -> dict:
        if cache.get("frame") is not frame:
            cache.clear()
            cache["frame"] = frame
        out = {}
        for key, size, interp, wanted in (("motion", sizes.motion, "BILINEAR", bool(sizes.motion)),
                                          ("image", sizes.image, "BICUBIC", want_image)):
            if wanted and key not in cache:
                cache[key] = frame_to_crop(frame, size, info.rotation, sar, interp)
            if wanted:
                out[key] = cache[key]
        return out

    def emit(frame, t: float, stale: bool) -> None:
        builder.add(crops_of(frame, builder.wants_image()), t, stale)

    for frame in _frames(container, stream, info, "video"):
        t = frame.time - origin if frame.time is not None else (last_t + 1.0 / rate)
        if t <= last_t:  # a timestamp going backwards: drop the frame
            continue
        if prev is None:
            info.rotation = int(frame.rotation or 0)
        if policy.native:
            emit(frame, t, t - last_t > gap)
        else:
            while prev is not None and k * step < t - 1e-6:  # targets before this frame show the previous one
                emit(prev, k * step, k * step - prev_t > gap)
                k += 1
        prev, prev_t, last_t = frame, t, t
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
    seg = builder.take(final=True)
    if seg is not None:
        yield seg
