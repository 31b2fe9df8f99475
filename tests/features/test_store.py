"""The feature store: round trip, validation errors, atomicity, resume, manifest checks, memory maps."""

import json
import os

import numpy as np
import pytest

from tam.errors import TamError
from tam.features.store import Encoder, FeatureStore, Manifest, entry_name

DIMS = {"image": 4, "motion": 6, "audio": 3}


def manifest(**kw):
    return Manifest(encoders={m: Encoder(name=f"enc-{m}", dim=D, weights_sha256="ab" * 32, **kw)
                              for m, D in DIMS.items()}, segment="16 frames")


def times(T):
    return np.stack([np.arange(T), np.arange(T) + 1.0], 1)


def test_round_trip_with_missing_modality(tmp_path):
    store = FeatureStore.create(tmp_path / "s", manifest())
    rng = np.random.default_rng(0)
    feats = {"image": rng.normal(size=(5, 4)), "motion": rng.normal(size=(5, 6)), "audio": None}
    store.write("Fear/clip one", feats, times(5), extra={"fps": 25})
    v = FeatureStore.open(tmp_path / "s").read("Fear/clip one")
    assert v.T == 5 and v.present == {"image": True, "motion": True, "audio": False}
    np.testing.assert_allclose(v.features["image"], feats["image"].astype(np.float32))
    assert isinstance(v.features["image"], np.memmap)
    assert (v.features["audio"] == 0).all() and v.features["audio"].shape == (5, 3)
    assert v.extra == {"fps": 25}
    assert store.videos() == ["Fear/clip one"]


def test_same_name_in_two_classes_are_two_entries(tmp_path):
    store = FeatureStore.create(tmp_path, manifest())
    for vid in ("Disgust/x", "Fear/x"):
        store.write(vid, {m: np.ones((2, D)) for m, D in DIMS.items()}, times(2))
    assert store.videos() == ["Disgust/x", "Fear/x"]
    assert entry_name("Disgust/x") != entry_name("Fear/x")


@pytest.mark.parametrize("bad, message", [
    ({"image": np.ones((3, 5))}, "image features must be [T, 4]"),
    ({"image": np.full((3, 4), np.nan)}, "NaN or Inf"),
    ({"image": np.ones((2, 4))}, "has 2 segments but the times list 3"),
    ({"colour": np.ones((3, 4))}, "not in the store's manifest"),
    ({"image": None, "motion": None, "audio": None}, "no modality present"),
])
def test_bad_features_give_one_line_errors_naming_the_video(tmp_path, bad, message):
    store = FeatureStore.create(tmp_path, manifest())
    with pytest.raises(TamError, match="video 'v1'") as e:
        store.write("v1", bad, times(3))
    assert message in str(e.value) and "\n" not in str(e.value)
    assert store.videos() == []


def test_empty_video_rejected(tmp_path):
    store = FeatureStore.create(tmp_path, manifest())
    with pytest.raises(TamError, match=r"no segments \(T_v = 0\)"):
        store.write("v", {m: np.ones((0, D)) for m, D in DIMS.items()}, np.zeros((0, 2)))


def test_killed_writer_leaves_no_entry(tmp_path, monkeypatch):
    store = FeatureStore.create(tmp_path, manifest())
    store.write("done", {m: np.ones((2, D)) for m, D in DIMS.items()}, times(2))
    real_replace = os.replace

    def crash(src, dst):
        raise KeyboardInterrupt  # the process is killed just before the entry is renamed into place

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(KeyboardInterrupt):
        store.write("half", {m: np.ones((2, D)) for m, D in DIMS.items()}, times(2))
    monkeypatch.setattr(os, "replace", real_replace)
    assert store.videos() == ["done"] and not store.has("half")
    assert not [p for p in (tmp_path / "videos").iterdir() if p.name.startswith(".tmp")]
    store.write("half", {m: np.ones((2, D)) for m, D in DIMS.items()}, times(2))  # a re-run completes it
    assert store.videos() == ["done", "half"]


def test_existing_entries_are_skipped_unless_overwrite(tmp_path):
    store = FeatureStore.create(tmp_path, manifest())
    store.write("v", {m: np.ones((2, D)) for m, D in DIMS.items()}, times(2))
    store.write("v", {m: np.zeros((2, D)) for m, D in DIMS.items()}, times(2))
    assert store.read("v").features["image"][0, 0] == 1
    store.write("v", {m: np.zeros((2, D)) for m, D in DIMS.items()}, times(2), overwrite=True)
    assert store.read("v").features["image"][0, 0] == 0


def test_manifest_mismatch_is_refused(tmp_path):
    FeatureStore.create(tmp_path, manifest())
    other = Manifest(encoders={**manifest().encoders, "audio": Encoder("vggish-other", 3)})
    with pytest.raises(TamError, match="made by other encoders"):
        FeatureStore.create(tmp_path, other)
    store = FeatureStore.open(tmp_path)
    with pytest.raises(TamError, match="expects"):
        store.check_matches(other, "the model")
    store.check_matches(json.loads(json.dumps(manifest().identity())), "the model")  # a JSON round trip matches


def test_open_errors(tmp_path):
    with pytest.raises(TamError, match="not a feature store"):
        FeatureStore.open(tmp_path)
    (tmp_path / "manifest.json").write_text("{broken")
    with pytest.raises(TamError, match="unreadable manifest"):
        FeatureStore.open(tmp_path)


# ---- entry checks: damaged entries are named (video and file) without loading the features -----------------
def small_store(root, n=4):
    store = FeatureStore.create(root, manifest())
    rng = np.random.default_rng(1)
    for i in range(n):
        feats = {m: rng.normal(size=(3 + i, D)) for m, D in DIMS.items()}
        feats["audio"] = None if i == 1 else feats["audio"]
        store.write(f"Fear/v{i}", feats, times(3 + i))
    return store


def entry(store, video, name):
    return store.root / "videos" / entry_name(video) / name


@pytest.mark.parametrize("name, damage, message", [
    ("motion.npy", lambda p: p.write_bytes(p.read_bytes()[:-5]), "truncated or damaged"),
    ("times.npy", lambda p: p.write_bytes(p.read_bytes()[:20]), "not a readable .npy"),
    ("image.npy", lambda p: p.unlink(), "missing"),
    ("image.npy", lambda p: np.save(p, np.ones((5, 4))), "expected float32 [5, 4]"),
    ("meta.json", lambda p: p.write_bytes(b"\xff\x00{"), "unreadable"),
    ("meta.json", lambda p: p.write_text('{"video": "Fear/v2", "T": -1, "present": {}}'), "T must be"),
    ("meta.json", lambda p: p.write_text('{"video": "other", "T": 5, "present": {"image": true}}'),
     "belongs to another video"),
])
def test_check_names_the_damaged_entry_and_file(tmp_path, name, damage, message):
    store = small_store(tmp_path / "s")
    damage(entry(store, "Fear/v2", name))
    problems = store.check()
    assert len(problems) == 1 and "\n" not in problems[0], problems
    assert name in problems[0] and message in problems[0]
    assert "Fear/v2" in problems[0] or name == "meta.json"
    assert store.check(["Fear/v0", "Fear/v1", "Fear/v3", "not-in-store"]) == []
    with pytest.raises(TamError) as e:
        store.require_valid(["Fear/v0", "Fear/v2"])
    assert "'Fear/v2'" in str(e.value) and str(e.value).endswith(problems[0].split(": ", 1)[1])


def test_read_of_a_truncated_entry_is_one_line(tmp_path):
    store = small_store(tmp_path / "s")
    p = entry(store, "Fear/v3", "audio.npy")
    p.write_bytes(p.read_bytes()[:100])
    with pytest.raises(TamError, match=r"video 'Fear/v3': .*audio.npy") as e:
        store.read("Fear/v3")
    assert "\n" not in str(e.value)
    assert store.read("Fear/v1").T == 4  # the others still read


def test_store_check_command(tmp_path):
    import subprocess
    import sys

    store = small_store(tmp_path / "s")
    ok = subprocess.run([sys.executable, "-m", "tam", "store", "check", str(store.root)], capture_output=True,
                        text=True)
    assert ok.returncode == 0 and "4 entries checked, 0 damaged" in ok.stdout, ok.stderr
    for v in ("Fear/v0", "Fear/v3"):
        p = entry(store, v, "image.npy")
        p.write_bytes(p.read_bytes()[:-1])
    bad = subprocess.run([sys.executable, "-m", "tam", "store", "check", str(store.root)], capture_output=True,
                         text=True)
    lines = bad.stdout.strip().splitlines()
    assert bad.returncode == 1 and len(lines) == 3 and "4 entries checked, 2 damaged" in lines[-1], bad.stdout
    assert "'Fear/v0'" in lines[0] and "'Fear/v3'" in lines[1] and all("image.npy" in s for s in lines[:2])


def fuzz_variants(raw: bytes, rng, n: int = 48):
    for c in sorted({0, 1, 9, len(raw) // 2, len(raw) - 1, *rng.integers(0, len(raw), 6).tolist()}):
        yield raw[:c]
    for _ in range(n):
        b = bytearray(raw)
        for _ in range(int(rng.integers(1, 6))):
            b[int(rng.integers(0, min(len(raw), 160)))] ^= 1 << int(rng.integers(0, 8))  # header region
        yield bytes(b)


@pytest.mark.parametrize("name", ["meta.json", "times.npy", "image.npy"])
def test_fuzz_entry_files_give_only_one_line_tam_errors(tmp_path, name):
    """Truncated and bit-flipped copies: `read` either works (the damage hit only values) or raises a one-line
    TamError naming the video's file, and `check` flags every entry that `read` refuses."""
    store = small_store(tmp_path / "s", n=2)
    path = entry(store, "Fear/v0", name)
    raw = path.read_bytes()
    refused = 0
    for data in fuzz_variants(raw, np.random.default_rng(len(name))):
        path.write_bytes(data)
        problems = store.check()
        try:
            v = store.read("Fear/v0")
            assert v.features["image"].shape == (v.T, 4) and v.times.shape == (v.T, 2)
        except TamError as e:
            assert "\n" not in str(e) and name in str(e), str(e)
            assert problems, str(e)
            refused += 1
        assert all("\n" not in p for p in problems)
        assert store.read("Fear/v1").T == 4
    assert refused >= 5


def test_training_names_a_damaged_entry_before_the_first_epoch(tiny_config, tmp_path):
    import shutil
    from dataclasses import replace

    from tam.train.loop import fit

    copy = tmp_path / "store"
    shutil.copytree(tiny_config.data.store, copy)
    video = FeatureStore.open(copy).videos()[5]
    npy = copy / "videos" / entry_name(video) / "audio.npy"
    npy.write_bytes(npy.read_bytes()[:-7])
    cfg = replace(tiny_config, data=replace(tiny_config.data, store=str(copy)))
    with pytest.raises(TamError) as e:
        fit(cfg, tmp_path / "run", log=lambda s: None)
    assert str(e.value).startswith(f"video {video!r}: {npy}: ") and "\n" not in str(e.value)
    assert not (tmp_path / "run" / "metrics.csv").exists()


@pytest.mark.parametrize("text", ['{"encoders": [1, 2]}', '{"encoders": {"image": {"name": "x", "dim": "4"}}}',
                                  "\x00\xff", "[" * 50000])
def test_a_broken_manifest_is_one_line(tmp_path, text):
    small_store(tmp_path / "s", n=1)
    (tmp_path / "s" / "manifest.json").write_text(text, encoding="latin-1")
    with pytest.raises(TamError, match="manifest.json") as e:
        FeatureStore.open(tmp_path / "s")
    assert "\n" not in str(e.value)


def test_plain_npy_headers_parse_like_numpy(tmp_path):
    import io

    from tam.features.store import _plain_header

    arrays = [np.zeros((16, 32), np.float32), np.ones((5, 2)), np.arange(7, dtype=np.int64), np.float32(3.0),
              np.zeros((3, 1, 2), np.float32), np.zeros((2, 3), np.float32, order="F"), np.zeros((4, 0), np.float32)]
    for a in arrays:
        buf = io.BytesIO()
        np.save(buf, a)
        head = buf.getvalue()[:256]
        ref = io.BytesIO(head)
        np.lib.format.read_magic(ref)
        shape, fortran, dt = np.lib.format.read_array_header_1_0(ref)
        assert _plain_header(head) == (tuple(shape), fortran, dt)
    v2 = io.BytesIO()
    np.lib.format.write_array(v2, np.zeros((2, 2), np.float32), version=(2, 0))
    assert _plain_header(v2.getvalue()[:256]) is None  # not the plain layout: numpy's own parser reads it


def test_an_entry_is_checked_and_mapped_once_until_overwritten(tmp_path):
    store = FeatureStore.create(tmp_path / "s", Manifest(encoders={"a": Encoder("t", 3)}))
    store.write("v", {"a": np.zeros((4, 3), np.float32)}, np.zeros((4, 2)))
    first = store.read("v")
    assert store.read("v") is first and store.check(["v"]) == []
    store.write("v", {"a": np.ones((5, 3), np.float32)}, np.zeros((5, 2)), overwrite=True)
    again = store.read("v")
    assert again is not first and again.T == 5 and float(again.features["a"][0, 0]) == 1.0
    assert FeatureStore.open(tmp_path / "s").read("v").T == 5
