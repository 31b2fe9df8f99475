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
