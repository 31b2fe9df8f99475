"""Decoding and segmenting: known colour changes land in the right segments; odd files give notes or clean errors."""

from fractions import Fraction

import numpy as np
import pytest

from tam.encoders.video_io import FrameSizes, MediaInfo, SegmentPolicy, decode_audio, frame_to_crop, iter_segments
from tam.errors import TamError

RED, BLUE = (220, 20, 20), (20, 20, 220)


SMALL = FrameSizes(motion=32, image=48)


def _all(path, policy=None, sizes=SMALL, chunk=4):
    policy = policy or SegmentPolicy()
    info = MediaInfo(path)
    parts = list(iter_segments(path, info, policy, sizes, chunk))
    cat = {k: np.concatenate([getattr(p, k) for p in parts]) for k in ("times", "motion", "image")}
    return cat, parts, info


def _colour(pixels: np.ndarray) -> tuple:
    return tuple(np.asarray(pixels, float).reshape(-1, 3).mean(0).round())


def _is(pixels, rgb) -> bool:
    return np.abs(np.asarray(_colour(pixels)) - rgb).max() < 20


def test_segments_fixed_rate_times_and_colour_change(media):
    cat, parts, info = _all(media["mpeg4"])  # 3 s at 25 fps, red -> blue at 2.0 s
    assert cat["times"].tolist() == [[0, 1], [1, 2], [2, 3]]
    assert [p.start for p in parts] == [0]  # 3 segments < chunk of 4: one run
    assert cat["motion"].shape == (3, 16, 32, 32, 3) and cat["image"].shape == (3, 48, 48, 3)
    assert _is(cat["motion"][:2], RED) and _is(cat["motion"][2], BLUE)
    assert _is(cat["image"][1], RED) and _is(cat["image"][2], BLUE)
    assert "mpeg4" in info.video and info.decode_errors == 0


def test_change_inside_a_segment_splits_its_frames(media):
    cat, _, _ = _all(media["h264"], SegmentPolicy(fps=8.0))  # 2 s segments; change at 1.0 s = frame 8
    seg0 = cat["motion"][0]
    assert all(_is(f, RED) for f in seg0[:8]) and all(_is(f, BLUE) for f in seg0[8:])
    assert _is(cat["image"][0], BLUE)  # the middle frame (index 8) is the first blue one


def test_chunks_are_consecutive(media):
    _, parts, _ = _all(media["h264"], SegmentPolicy(fps=32.0), chunk=2)  # 0.5 s segments -> 6
    assert [p.start for p in parts] == [0, 2, 4]
    times = np.concatenate([p.times for p in parts])
    assert np.allclose(times[:, 0], np.arange(6) * 0.5) and np.allclose(times[:-1, 1], times[1:, 0])


def test_native_rate_takes_16_decoded_frames(media):
    cat, _, _ = _all(media["h264"], SegmentPolicy(native=True))  # 75 frames at 25 fps -> 4 full + 11 kept
    assert len(cat["times"]) == 5
    assert np.allclose(cat["times"][:4, 0], np.arange(4) * 16 / 25)
    assert cat["times"][-1, 1] == pytest.approx(3.0)


def test_variable_frame_rate_uses_timestamps(media):
    cat, _, _ = _all(media["vfr"])  # intervals alternate 40 and 80 ms; change at 1.0 s; last frame at 2.92 s
    assert cat["times"][:, 0].tolist() == [0, 1, 2] and cat["times"][:2, 1].tolist() == [1, 2]
    assert 2.92 < cat["times"][2, 1] <= 3.0
    assert _is(cat["motion"][0], RED) and _is(cat["motion"][1], BLUE)


def test_trailing_partial_segment_kept_when_half_full(tmp_path, video_maker):
    path = video_maker(tmp_path / "short.mp4", seconds=1.6, tone_at=None)
    cat, _, _ = _all(path)
    assert len(cat["times"]) == 2 and cat["times"][1, 1] == pytest.approx(1.6)
    path = video_maker(tmp_path / "shorter.mp4", seconds=1.3, tone_at=None)
    assert len(_all(path)[0]["times"]) == 1  # 0.3 s is less than half a segment
    path = video_maker(tmp_path / "tiny.mp4", seconds=0.2, tone_at=None)
    assert len(_all(path)[0]["times"]) == 1  # the only segment is always kept


def test_rotation_is_applied(tmp_path, video_maker):
    path = video_maker(tmp_path / "rot.mp4", seconds=0.5, tone_at=None, size=(64, 32), marker=True, rotation=90)
    info = MediaInfo(path)
    parts = list(iter_segments(path, info, SegmentPolicy(), FrameSizes(motion=0, image=64)))
    assert info.rotation == 90 and any("rotation" in n for n in info.notes)
    img = parts[0].image[0]  # 64x32 landscape shown 90 degrees counter-clockwise: portrait, marker bottom-left
    assert img.shape == (64, 64, 3)
    corner = img[-4:, 16:20]  # the crop keeps the middle 64 rows of the 128x64 portrait frame
    assert _is(corner, (255, 255, 255)) or _colour(corner)[0] > 200


def test_non_square_pixels_use_display_aspect(tmp_path, video_maker):
    import av

    frame = av.VideoFrame.from_ndarray(np.zeros((40, 100, 3), np.uint8), format="rgb24")
    # 100x40 coded with SAR 1/2 displays as 50x40: the shorter display side is the width
    crop = frame_to_crop(frame, 20, 0, 0.5, "BILINEAR")
    assert crop.shape == (20, 20, 3)
    path = video_maker(tmp_path / "sar.mkv", seconds=0.5, tone_at=None, sar=Fraction(2, 3))
    info = MediaInfo(path)
    list(iter_segments(path, info, SegmentPolicy(), FrameSizes(motion=16, image=0)))
    assert any("non-square" in n for n in info.notes)


def test_ten_bit_and_hevc_decode(tmp_path, video_maker):
    path = video_maker(tmp_path / "x265.mkv", seconds=1.0, tone_at=None, codec="libx265", pix_fmt="yuv420p10le")
    cat, _, info = _all(path)
    assert "hevc" in info.video and "10" in info.video
    assert _is(cat["motion"][0][:4], RED)


def test_audio_decodes_to_16k_mono_with_onset(media):
    info = MediaInfo(media["h264"])
    wave = decode_audio(media["h264"], info)
    assert wave.dtype == np.float32 and len(wave) == pytest.approx(3 * 16000, rel=0.03)
    before, after = np.abs(wave[int(0.2 * 16000):int(1.4 * 16000)]), np.abs(wave[int(1.6 * 16000):int(2.8 * 16000)])
    assert before.max() < 0.01 and 0.4 < after.max() < 0.6  # the tone starts at 1.5 s, amplitude 0.5
    assert decode_audio(media["noaudio"], MediaInfo(media["noaudio"])) is None


def test_bad_files_give_one_line_errors(media, tmp_path):
    with pytest.raises(TamError, match="empty file"):
        _all(media["zero"])
    with pytest.raises(TamError, match="truncated.mp4: cannot open"):
        _all(media["truncated"])
    with pytest.raises(TamError, match="no such file"):
        _all(tmp_path / "missing.mp4")
    text = tmp_path / "notes.mp4"
    text.write_text("this is not a video\n" * 50)
    with pytest.raises(TamError, match="notes.mp4"):
        _all(text)


def test_truncated_stream_keeps_what_decodes(tmp_path, video_maker):
    path = video_maker(tmp_path / "full.ts", seconds=3.0, tone_at=None, container_format="mpegts")
    data = path.read_bytes()
    cut = tmp_path / "cut.ts"
    cut.write_bytes(data[: len(data) * 2 // 3])
    cat, _, info = _all(cut)
    assert 1 <= len(cat["times"]) <= 3


def test_corrupt_packets_are_skipped_and_marked(tmp_path, video_maker):
    path = video_maker(tmp_path / "ok.ts", seconds=4.0, tone_at=None, codec="mpeg4", container_format="mpegts",
                       noise=True)
    data = bytearray(path.read_bytes())
    rng = np.random.default_rng(0)
    lo, hi = len(data) // 3, 2 * len(data) // 3
    data[lo:hi] = rng.integers(0, 256, hi - lo, dtype=np.uint8).tobytes()  # garbage over the middle third
    bad = tmp_path / "corrupt.ts"
    bad.write_bytes(bytes(data))
    info = MediaInfo(bad)
    parts = list(iter_segments(bad, info, SegmentPolicy(), FrameSizes(motion=16, image=0)))
    times = np.concatenate([p.times for p in parts])
    assert len(times) >= 3  # the video keeps its length: missing frames repeat the last good one
    frozen = [i for p in parts for i in p.frozen]
    assert frozen and 3 not in frozen  # the damage freezes some 1 s segment, the intact end is not marked
    # independent check: a target frame is a stand-in when the last frame decoded before it is > 0.25 s old
    import av

    with av.open(str(bad)) as c:
        decoded = np.array([f.time for f in c.decode(video=0)])
    targets = np.arange(len(times) * 16) / 16.0
    last = np.array([decoded[decoded <= t + 1e-6].max(initial=-1.0) for t in targets])
    stand_in = (targets - last > 0.25).reshape(-1, 16).sum(1)
    assert frozen == [i for i, n in enumerate(stand_in) if 2 * n >= 16]
    assert any("failed to decode" in n for n in info.notes) == (info.decode_errors > 0)
