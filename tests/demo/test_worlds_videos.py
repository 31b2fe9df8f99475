"""The synthetic videos are real H.264 + AAC MP4 files whose pixels, motion and sound carry the plan."""

import colorsys

import numpy as np
import pytest

from tam.demo.worlds import videos
from tam.demo.worlds.videos import AFFECT, CLASSES, FPS, SAMPLE_RATE, SCENE_HUES, VideoWorldSpec, make_videos
from tam.errors import TamError


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("vworld")
    plans = make_videos(root, VideoWorldSpec(labelled=6, unlabelled=3, min_segments=4, max_segments=6, seed=3))
    return root, plans


def _decode(path):
    import av

    with av.open(str(path)) as c:
        v, a = c.streams.video[0], c.streams.audio[0]
        assert v.codec_context.name == "h264" and a.codec_context.name == "aac"
        assert a.rate == SAMPLE_RATE
        frames = np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)])
    with av.open(str(path)) as c:
        res = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
        audio = np.concatenate([r.to_ndarray()[0] for f in c.decode(audio=0) for r in res.resample(f)])
    return frames, audio


def test_files_labels_and_truth(world):
    root, plans = world
    assert [p.video for p in plans["labelled"]] == [f"L{i:03d}" for i in range(6)]
    lines = (root / "labels.csv").read_text().splitlines()
    assert lines[0] == "video,label,split" and len(lines) == 7
    for line, p in zip(lines[1:], plans["labelled"]):
        video, label, _ = line.split(",")
        assert video == p.video and label == CLASSES[p.label]
        kind = max(p.scene)  # the one scene's kind
        assert p.label == (kind + p.sound) % 4 and sum(k >= 0 for k in p.scene) == 1
        assert p.react == max(p.cue, p.scene.index(kind))  # where both the scene and the sound have happened
        assert p.valence[p.react] == AFFECT[label][0] and p.valence.count(0.0) >= p.T - 2
    assert (root / "truth.json").is_file() and (root / "videos" / "unlabelled" / "U002.mp4").is_file()


def test_no_single_modality_holds_the_class():
    """The class is (scene kind + sound kind) mod 4: over many plans, given the scene's kind alone (what the image
    and the motion encoder see) or the sound's kind and the cue's time alone (what the audio holds), every class
    is about equally likely; given both, the class is determined."""
    rng = np.random.default_rng(0)
    plans = [videos.plan_video(rng, f"L{i}", VideoWorldSpec(min_segments=4, max_segments=6)) for i in range(4000)]
    labels, kinds = np.array([p.label for p in plans]), np.array([max(p.scene) for p in plans])
    sounds, cues = np.array([p.sound for p in plans]), np.array([p.cue for p in plans])
    groups = [labels[kinds == k] for k in range(4)] + [labels[sounds == j] for j in range(4)]
    groups += [labels[cues == t] for t in range(4)]
    for group in groups:
        assert np.abs(np.bincount(group, minlength=4) / len(group) - 0.25).max() < 0.06
    for k in range(4):
        for j in range(4):
            assert set(labels[(kinds == k) & (sounds == j)]) == {(k + j) % 4}


def test_pixels_motion_and_sound_carry_the_plan(world):
    root, plans = world
    p = plans["labelled"][0]
    frames, audio = _decode(root / "videos" / "labelled" / f"{p.video}.mp4")
    assert len(frames) == p.T * FPS and frames.shape[1:] == (64, 64, 3)
    assert abs(len(audio) / SAMPLE_RATE - p.T) < 0.2
    seg = frames.reshape(p.T, FPS, 64, 64, 3).astype(float)
    for t in range(p.T):  # the tinted segments have the scene's hue; the others are grey-blue
        mean = seg[t].mean((0, 1, 2)) / 255
        hue = colorsys.rgb_to_hsv(*mean)[0]
        if p.scene[t] >= 0:
            target = SCENE_HUES[p.scene[t]]
            assert min(abs(hue - target), 1 - abs(hue - target)) < 0.08, (t, hue, target)
        else:
            assert colorsys.rgb_to_hsv(*mean)[1] < 0.35
    motion = (np.abs(np.diff(seg, axis=1)) > 100).mean((1, 2, 3, 4))  # large frame-to-frame changes per segment
    moving = [t for t in range(p.T) if p.move[t]]
    still = [t for t in range(p.T) if not p.move[t]]
    assert min(motion[moving]) > 2 * max(motion[still])
    energy = [np.sqrt(np.mean(audio[t * SAMPLE_RATE:(t + 1) * SAMPLE_RATE] ** 2)) for t in range(p.T)]
    assert int(np.argmax(energy)) == p.cue and energy[p.cue] > 2 * np.median(energy)
    beep = audio[p.cue * SAMPLE_RATE + SAMPLE_RATE // 4:p.cue * SAMPLE_RATE + SAMPLE_RATE // 2]
    peak = np.fft.rfftfreq(len(beep), 1 / SAMPLE_RATE)[int(np.argmax(np.abs(np.fft.rfft(beep))))]
    hz = videos.CUE_HZ[p.sound]  # the sound's kind is its pitch
    assert 0.9 * hz < peak < 1.5 * hz, (peak, p.sound)


def test_rerun_keeps_rendered_files_and_is_deterministic(world):
    root, plans = world
    path = root / "videos" / "labelled" / "L001.mp4"
    before = path.stat().st_mtime_ns
    again = make_videos(root, VideoWorldSpec(labelled=6, unlabelled=3, min_segments=4, max_segments=6, seed=3))
    assert path.stat().st_mtime_ns == before and again == plans


def test_bad_spec_is_one_line_error(tmp_path):
    with pytest.raises(TamError, match="even"):
        make_videos(tmp_path, VideoWorldSpec(size=63))
    with pytest.raises(TamError, match="segments"):
        make_videos(tmp_path, VideoWorldSpec(min_segments=1))


def test_resuming_with_other_settings_is_refused(world):
    root, _ = world
    with pytest.raises(TamError, match="other settings"):
        make_videos(root, VideoWorldSpec(labelled=7, unlabelled=3, min_segments=4, max_segments=6, seed=3))
