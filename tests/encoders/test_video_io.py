"""Decoding and segmenting: known colour changes land in the right segments; odd files give notes or clean errors."""

from fractions import Fraction

import numpy as np
import pytest

from tam.encoders.video_io import (
    FrameSizes,
    MediaInfo,
    SegmentPolicy,
    decode_audio,
    display_image,
    frame_to_crop,
    iter_segments,
)
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


def _counting_video(path, fps: int, frames: int):
    """Frames that say their index: left half grey (i % 16) * 16, right half grey (i // 16) * 40."""
    import av

    with av.open(str(path), "w") as out:
        vs = out.add_stream("libx264", rate=fps)
        vs.width, vs.height, vs.pix_fmt = 32, 32, "yuv420p"
        for i in range(frames):
            img = np.zeros((32, 32, 3), np.uint8)
            img[:, :16], img[:, 16:] = (i % 16) * 16, (i // 16) * 40
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, fps)
            for p in vs.encode(frame):
                out.mux(p)
        for p in vs.encode():
            out.mux(p)
    return path


def _indices(clip) -> list[int]:
    return [int(round(float(f[:, :5].mean()) / 16)) + 16 * int(round(float(f[:, -5:].mean()) / 40)) for f in clip]


@pytest.mark.parametrize("fps, frames, expect", [
    (30, 90, [list(range(7, 23)), list(range(37, 53)), list(range(67, 83))]),  # centred on 0.5, 1.5, 2.5 s
    (12, 36, [list(range(0, 16)), list(range(10, 26)), list(range(20, 36))]),  # kept inside the video
    (10, 12, [list(range(12)) + [0, 1, 2, 3]]),  # fewer than 16 frames: looped
])
def test_motion_gets_consecutive_native_frames_centred_on_each_segment(tmp_path, fps, frames, expect):
    path = _counting_video(tmp_path / f"count{fps}.mp4", fps, frames)
    cat, _, _ = _all(path, sizes=FrameSizes(motion=16, image=16), chunk=1)
    assert cat["times"][:, 0].tolist() == list(range(len(expect)))  # the 1 s grid is kept
    assert [_indices(c) for c in cat["motion"]] == expect
    grid, _, _ = _all(path, SegmentPolicy(motion="grid"), sizes=FrameSizes(motion=16, image=16))
    if fps == 30:  # the old rule: 16 frames resampled to 16 fps (gaps of 1-2 native frames)
        assert _indices(grid["motion"][0]) == [k * 30 // 16 for k in range(16)]  # 0, 1, 3, 5, ..


def test_segment_policy_round_trips_its_description():
    for policy in (SegmentPolicy(), SegmentPolicy(motion="grid"), SegmentPolicy(native=True), SegmentPolicy(fps=25)):
        assert SegmentPolicy.parse(policy.describe()) == policy
    assert SegmentPolicy.parse("16 frames at 16 fps resampled by timestamps (1 s)") == SegmentPolicy(motion="grid")
    assert SegmentPolicy.parse("every frame") is None
    with pytest.raises(TamError, match="motion frames"):
        SegmentPolicy(motion="sparse")


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
    crop = frame_to_crop(frame, 20, 0, 0.5, "bilinear")
    assert crop.shape == (20, 20, 3)
    path = video_maker(tmp_path / "sar.mkv", seconds=0.5, tone_at=None, sar=Fraction(2, 3))
    info = MediaInfo(path)
    list(iter_segments(path, info, SegmentPolicy(), FrameSizes(motion=16, image=0)))
    assert any("non-square" in n for n in info.notes)


def test_decoding_threads_and_the_rgb_path_leave_the_pixels_unchanged(tmp_path, video_maker):
    import av

    # odd width: the RGB rows are padded in FFmpeg's buffer (line size > 3 * width)
    path = video_maker(tmp_path / "odd.mp4", seconds=1.5, tone_at=None, size=(161, 97), noise=True,
                       pix_fmt="yuv444p")
    runs = [list(iter_segments(path, MediaInfo(path), SegmentPolicy(), SMALL, 4, threads)) for threads in (1, 3)]
    assert len(runs[0]) == len(runs[1]) >= 1
    for a, b in zip(*runs):
        assert np.array_equal(a.motion, b.motion) and np.array_equal(a.image, b.image)
    other = video_maker(tmp_path / "even.mp4", seconds=0.5, tone_at=None, size=(64, 48), noise=True)
    frames = []
    for f in (path, other):
        with av.open(str(f)) as c:
            frames += list(c.decode(video=0))
    # the fast path is the plain full-size RGB conversion, byte for byte, with this thread's kept converter going
    # from one size and format to the other and back
    for frame in frames[::-1] + frames:
        assert np.array_equal(np.asarray(display_image(frame, 0, 1.0)), frame.to_ndarray(format="rgb24"))


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


# ---- against the reference processors, on real files ---------------------------------------------------
# 16:9 720p (crop offset 43.5: floor 43 vs round 44), SAR 2:3 and 64:51 (non-square pixels), 4:4:4 chroma
REAL = ["auto-editor/example.mp4", "auto-editor/SAR-2by3.mp4", "mmaction2/demo__demo.mp4", "imageio/cockatoo.mp4"]


def _rotated_copy(src, dst, degrees: int):
    """`src`'s video packets remuxed unchanged with a display rotation (real frames, a rotated file)."""
    import av

    with av.open(str(src)) as inp, av.open(str(dst), "w") as out:
        s_in = inp.streams.video[0]
        s_out = out.add_stream_from_template(s_in)
        s_out.set_display_rotation(degrees)
        for p in inp.demux(s_in):
            if p.dts is not None:
                p.stream = s_out
                out.mux(p)
    return dst


def _reference_frames(path, count: int):
    """The first `count` frames as a user hands them to a processor: PyAV's full-size rgb24, shown as a player
    shows it (pixels stretched to the display aspect, display rotation), plus their times."""
    import av
    from PIL import Image

    out, times = [], []
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        sar = float(s.codec_context.sample_aspect_ratio or 1)
        for f in c.decode(s):
            rgb = f.to_ndarray(format="rgb24")
            if sar != 1:
                rgb = np.asarray(Image.fromarray(rgb).resize((round(rgb.shape[1] * sar), rgb.shape[0]), 3))
            out.append(np.ascontiguousarray(np.rot90(rgb, (f.rotation or 0) // 90)))
            times.append(f.time - (c.start_time or 0) / 1e6)
            if len(out) == count:
                break
    return out, np.array(times)


def _r3d_reference(rgb: np.ndarray, size: int = 112) -> np.ndarray:
    """3D-ResNets' test transforms as documented: Scale(size) (PIL bilinear, shorter side to size, the other
    int(size * long / short)), then CenterCrop(size) at int(round((side - size) / 2.))."""
    from PIL import Image

    img = Image.fromarray(rgb)
    w, h = img.size
    ow, oh = (size, int(size * h / w)) if w < h else (int(size * w / h), size)
    if min(w, h) != size:
        img = img.resize((ow, oh), Image.BILINEAR)
    x1, y1 = int(round((img.width - size) / 2.0)), int(round((img.height - size) / 2.0))
    return np.asarray(img.crop((x1, y1, x1 + size, y1 + size)))


def _unnormalise(pixels: np.ndarray, mean, std) -> np.ndarray:
    """[..., 3, H, W] processor output -> float [..., H, W, 3] on 0..255."""
    x = np.moveaxis(np.asarray(pixels, np.float64), -3, -1)
    return (x * np.asarray(std) + np.asarray(mean)) * 255.0


def _diffs(ours: np.ndarray, ref: np.ndarray) -> tuple[float, float]:
    d = np.abs(np.asarray(ours, np.float64) - np.asarray(ref, np.float64))
    return float(d.mean()), float(d.max())


def reference_diffs(path, frames: int = 16) -> dict[str, tuple[float, float]]:
    """Mean and max |ours - reference| (0..255) over segment 0's inputs, per reference processor.

    Ours: `iter_segments` as extraction runs it (the image is segment 0's middle frame, the motion clip its 16
    consecutive native frames centred on 0.5 s). Reference: the same frames through CLIPImageProcessor,
    VideoMAEImageProcessor (transformers, PIL path) and 3D-ResNets' documented test transforms.
    """
    from transformers import CLIPImageProcessorPil, VideoMAEImageProcessorPil

    sizes = FrameSizes(motion=112, image=224)
    seg = next(iter_segments(path, MediaInfo(path), SegmentPolicy(), sizes, chunk=1))
    rgb, times = _reference_frames(path, 40)
    n = int(np.searchsorted(times, 0.5 - 1e-9))  # frames before the midpoint of segment 0
    first = max(min(n - 8, len(rgb) - 16), 0)
    clip = [rgb[i % len(rgb)] for i in range(first, first + 16)]
    middle = rgb[int(np.searchsorted(times, 0.5 + 1e-6)) - 1]  # the frame shown at 0.5 s
    clip_proc = CLIPImageProcessorPil()
    out = {"clip": _diffs(seg.image[0], _unnormalise(clip_proc(images=middle, return_tensors="np")["pixel_values"][0],
                                                      clip_proc.image_mean, clip_proc.image_std)),
           "r3d": _diffs(seg.motion[0], np.stack([_r3d_reference(f) for f in clip]))}
    vm = VideoMAEImageProcessorPil(image_mean=[0.485, 0.456, 0.406], image_std=[0.229, 0.224, 0.225])
    vm_sizes = FrameSizes(motion=224, image=0, motion_resample="bilinear", motion_offset="floor")
    vm_seg = next(iter_segments(path, MediaInfo(path), SegmentPolicy(), vm_sizes, chunk=1))
    ref = _unnormalise(vm.preprocess([clip], return_tensors="np")["pixel_values"][0], vm.image_mean, vm.image_std)
    out["videomae"] = _diffs(vm_seg.motion[0], ref)
    return out


@pytest.mark.slow
@pytest.mark.parametrize("name", REAL + ["rotated"])
def test_inputs_match_the_reference_processors_on_real_files(realdata, name, tmp_path):
    path = _rotated_copy(realdata / "gradio/video_sample.mp4", tmp_path / "rot90.mp4", 90) if name == "rotated" \
        else realdata / name
    for processor, (mean, worst) in reference_diffs(path).items():
        assert mean <= 0.5 and worst <= 3, (name, processor, mean, worst)
