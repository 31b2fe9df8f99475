"""Fixtures for the encoder tests: videos written with PyAV with a colour change and a tone onset at known times."""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

SHARED = Path(__file__).resolve().parents[2] / ".." / "shared"
REALDATA = SHARED / "realdata" / "video"

RED, BLUE = (220, 20, 20), (20, 20, 220)


def make_video(path: Path, seconds: float = 3.0, fps: int = 25, size: tuple[int, int] = (160, 96),
               change_at: float = 1.0, tone_at: float | None = 1.5, tone_hz: float = 1000.0, codec: str = "libx264",
               vfr: bool = False, rotation: int = 0, sar: Fraction | None = None, pix_fmt: str = "yuv420p",
               marker: bool = False, container_format: str | None = None, noise: bool = False) -> Path:
    """Red frames before `change_at` s, blue after; audio silent before `tone_at` s, a sine after (None: no audio).

    `vfr`: frame intervals alternate 1/fps and 2/fps. `marker`: a white square in the top-left corner.
    `noise`: random pixel noise on top (the file's bytes then spread evenly over time).
    """
    rng = np.random.default_rng(0)
    w, h = size
    with av.open(str(path), "w", format=container_format) as out:
        vs = out.add_stream(codec, rate=fps)
        vs.width, vs.height, vs.pix_fmt = w, h, pix_fmt
        vs.time_base = Fraction(1, 1000)
        if sar is not None:
            vs.codec_context.sample_aspect_ratio = sar
        if rotation:
            vs.set_display_rotation(rotation)
        astream = None
        if tone_at is not None:
            astream = out.add_stream("aac", rate=44100)
            astream.layout = "stereo"
        t, n = 0.0, 0
        while t < seconds - 1e-9:
            img = np.empty((h, w, 3), np.uint8)
            img[:] = RED if t < change_at else BLUE
            if marker:
                img[: h // 4, : w // 4] = 255
            if noise:
                img = np.clip(img + rng.integers(-30, 30, img.shape), 0, 255).astype(np.uint8)
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts, frame.time_base = int(round(t * 1000)), Fraction(1, 1000)
            for p in vs.encode(frame):
                out.mux(p)
            n += 1
            t += (2.0 if vfr and n % 2 == 0 else 1.0) / fps
        for p in vs.encode():
            out.mux(p)
        if astream is not None:
            _write_tone(out, astream, seconds, tone_at, tone_hz)
    return path


def _write_tone(out, stream, seconds: float, tone_at: float, hz: float) -> None:
    rate = 44100
    t = np.arange(int(seconds * rate)) / rate
    wave = np.where(t >= tone_at, 0.5 * np.sin(2 * np.pi * hz * t), 0.0).astype(np.float32)
    step = 1024
    for i in range(0, len(wave), step):
        block = np.stack([wave[i:i + step]] * 2)  # planar stereo
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(block), format="fltp", layout="stereo")
        frame.sample_rate, frame.pts = rate, i
        for p in stream.encode(frame):
            out.mux(p)
    for p in stream.encode():
        out.mux(p)


@pytest.fixture(scope="session")
def video_maker():
    """`make_video(path, seconds=3, fps=25, change_at=1.0, tone_at=1.5, ...)`: see its docstring."""
    return make_video


@pytest.fixture(scope="session")
def realdata() -> Path:
    """../shared/realdata/video, or skip."""
    if not REALDATA.is_dir():
        pytest.skip("../shared/realdata/video is absent")
    return REALDATA


@pytest.fixture(scope="session")
def media(tmp_path_factory) -> dict[str, Path]:
    """A folder of generated files, good and bad, shared by the tests of this folder."""
    d = tmp_path_factory.mktemp("media")
    files = {
        "h264": make_video(d / "clip h264.mp4"),
        "mpeg4": make_video(d / "-dash ünï.mp4", codec="mpeg4", change_at=2.0, tone_at=0.5),
        "noaudio": make_video(d / "noaudio.mkv", tone_at=None, seconds=2.0),
        "vfr": make_video(d / "vfr.mp4", vfr=True, seconds=3.0, tone_at=None),
    }
    zero = d / "zero.mp4"
    zero.write_bytes(b"")
    files["zero"] = zero
    data = files["h264"].read_bytes()
    trunc = d / "truncated.mp4"
    trunc.write_bytes(data[: len(data) // 3])
    files["truncated"] = trunc
    return files
