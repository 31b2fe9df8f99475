"""tam.predict: schema, sliding windows, both timelines against their definitions, bad files, encoder checks."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from tam.errors import TamError
from tam.infer.pipeline import csv_rows, predict, write_outputs

KEYS = {"video", "source", "status", "model", "task", "segments", "windows", "duration", "timeline", "present",
        "notes", "random_init_features", "seconds"}


def check_schema(r: dict) -> None:
    assert KEYS <= set(r), KEYS - set(r)
    tl = r["timeline"]
    n = r["segments"]
    assert len(tl["start"]) == len(tl["end"]) == n
    assert all(len(v) == n for v in tl["values"].values())
    assert np.all(np.diff(tl["start"]) > 0) and tl["end"][-1] == pytest.approx(r["duration"] + tl["start"][0])
    if r["task"] == "classification":
        assert set(r["probabilities"]) == set(tl["values"]) and len(tl["top"]) == n
        assert sum(r["probabilities"].values()) == pytest.approx(1, abs=1e-4)
        assert r["label"] == max(r["probabilities"], key=r["probabilities"].get) == r["top"][0]["label"]
    else:
        assert set(tl["values"]) == {"valence", "arousal"} and np.isfinite([r["valence"], r["arousal"]]).all()
    json.dumps(r)  # plain JSON


def test_predict_videos_schema_windows_and_bad_files(world, tmp_path):
    bad = tmp_path / "empty.mp4"
    bad.write_bytes(b"")
    results = predict([world["videos"], world["long"], bad, tmp_path / "missing.mkv"], world["ctm"],
                      progress=False, log=lambda s: None)
    by = {r["video"]: r for r in results}
    assert sorted(by) == ["empty", "long", "missing", "v0", "v1", "v2", "v3"]
    for v in ("empty", "missing"):
        assert by[v]["status"] == "failed" and "\n" not in by[v]["error"]
    assert str(bad) in by["empty"]["error"] and "missing.mkv" in by["missing"]["error"]
    for v in ("long", "v0", "v1", "v2", "v3"):
        assert by[v]["status"] == "ok"
        check_schema(by[v])
    long = by["long"]
    assert long["segments"] == 7 and long["windows"] == 4  # T = 2: windows at 0, 2, 4, 5
    assert long["present"]["audio"] is False and long["timeline"]["method"] == "token"
    jsonl, table = write_outputs(results, tmp_path / "out")
    assert [json.loads(x) for x in jsonl.read_text().splitlines()] == results
    header = table.read_text().splitlines()[0].split(",")
    assert header[:4] == ["video", "source", "status", "label"] and "p_calm" in header and "error" in header
    assert len(csv_rows(results)) == 7


def test_video_prediction_equals_evaluation(world):
    """The whole-video output is the number `tam evaluate` computes (window-averaged probabilities)."""
    from tam.features.clips import ClipDataset
    from tam.features.store import FeatureStore
    from tam.train import distributed
    from tam.train.checkpoint import load_model
    from tam.train.loop import predict as eval_predict

    results = predict(model=world["ctm"], features=str(world["store"]), device="cpu", progress=False,
                      log=lambda s: None)
    model, meta = load_model(world["ctm"])
    store = FeatureStore.open(world["store"])
    videos = [r["video"] for r in results]
    ds = ClipDataset(store, videos, np.zeros(len(videos)), meta["model"]["modalities"], meta["model"]["T"], train=False)
    ref = eval_predict(model, ds, torch.device("cpu"), distributed.Dist(), 4, [], [], "classification")
    got = np.array([[r["probabilities"][c] for c in meta["classes"]] for r in results])
    np.testing.assert_allclose(got, ref, atol=1e-5)


def _window(store, video, meta, start):
    from tam.features.clips import ClipDataset, collate

    ds = ClipDataset(store, [video], np.zeros(1), meta["model"]["modalities"], meta["model"]["T"], train=False)
    return collate([ds[(0, start)]])


def test_token_timeline_is_head_on_segment_tokens(world):
    from tam.features.store import FeatureStore
    from tam.train.checkpoint import load_model

    model, meta = load_model(world["ctm"])
    store = FeatureStore.open(world["store"])
    (r,) = predict(["v0"], world["ctm"], features=str(world["store"]), device="cpu", progress=False)
    b = _window(store, "v0", meta, 0)  # segment 0 lies in window 0 only (windows at 0 and 1)
    with torch.no_grad():
        f = model.forward_features(b.x, b.valid, b.present).f
        want = model.forward_head(f[0, 1]).softmax(-1)
    got = [r["timeline"]["values"][c][0] for c in meta["classes"]]
    np.testing.assert_allclose(got, want.numpy(), atol=1e-4)


def test_occlusion_timeline_is_output_change_without_the_segment(world):
    from tam.features.store import FeatureStore
    from tam.train.checkpoint import load_model

    model, meta = load_model(world["concat"])
    store = FeatureStore.open(world["store"])
    (r,) = predict(["v1"], world["concat"], features=str(world["store"]), device="cpu", progress=False)
    assert r["timeline"]["method"] == "occlusion" and r["timeline"]["unit"] == "value change"
    b = _window(store, "v1", meta, 0)
    masked = b.valid.clone()
    masked[0, 0] = False
    std = torch.tensor(meta["target_std"])  # the mean cancels in the difference
    with torch.no_grad():
        want = (model(b.x, b.valid, b.present) - model(b.x, masked, b.present))[0] * std
    got = [r["timeline"]["values"][k][0] for k in ("valence", "arousal")]
    np.testing.assert_allclose(got, want.numpy(), atol=1e-4)
    assert np.abs(got).max() > 0  # removing a segment changes the output


def test_token_timeline_refused_for_concat(world):
    with pytest.raises(TamError, match="occlusion"):
        predict(["v0"], world["concat"], features=str(world["store"]), timeline="token", progress=False)


def test_encoder_mismatch_is_refused(world, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(world["ctm"], run)
    meta = json.loads((run / "best.json").read_text())
    meta["features"]["encoders"]["image"]["preprocessing"] = "another crop"
    (run / "best.json").write_text(json.dumps(meta))
    with pytest.raises(TamError, match=r"encoders differ from the model's on \['image'\]") as e:
        predict([world["videos"] / "v0.mp4"], run, cache=str(tmp_path / "cache"), progress=False)
    assert "\n" not in str(e.value)
    assert not (tmp_path / "cache").exists()  # refused before anything was decoded
    with pytest.raises(TamError, match=str(world["store"])):  # an existing store is checked the same way
        predict(model=run, features=str(world["store"]), progress=False)


def test_missing_id_in_store_is_reported(world):
    results = predict(["v0", "nope"], world["ctm"], features=str(world["store"]), progress=False)
    assert [r["status"] for r in results] == ["ok", "failed"] and "nope" in results[1]["error"]


def test_a_damaged_entry_fails_that_video_only(world, tmp_path):
    import shutil

    from tam.features.store import entry_name

    store = tmp_path / "feats"
    shutil.copytree(world["store"], store)
    npy = store / "videos" / entry_name("v1") / "image.npy"
    npy.write_bytes(npy.read_bytes()[:-3])
    results = predict(["v0", "v1", "v2"], world["ctm"], features=str(store), progress=False)
    assert [r["status"] for r in results] == ["ok", "failed", "ok"]
    assert results[1]["error"].startswith(f"video 'v1': {npy}: ") and "\n" not in results[1]["error"]


def test_cache_resumes(world, tmp_path):
    cache = tmp_path / "cache"
    first = predict([world["videos"] / "v2.mp4"], world["ctm"], cache=str(cache), progress=False)
    entry = next((cache / "videos").iterdir())
    stamp = (entry / "meta.json").stat().st_mtime_ns
    second = predict([world["videos"] / "v2.mp4"], world["ctm"], cache=str(cache), progress=False)
    assert (entry / "meta.json").stat().st_mtime_ns == stamp  # not extracted again
    assert first[0]["probabilities"] == second[0]["probabilities"]


def test_tam_predict_is_the_function(world):
    """`import tam; tam.predict(...)` returns the same dicts as the JSON lines, and `import tam` stays light."""
    import subprocess
    import sys

    import tam

    a = tam.predict(["v3"], world["ctm"], features=str(world["store"]), progress=False)
    b = predict(["v3"], world["ctm"], features=str(world["store"]), progress=False)
    for r in a + b:
        r.pop("seconds")
    assert a == b and a[0]["video"] == "v3"
    assert tam.predict is predict and type(sys.modules["tam.infer.pipeline"]).__name__ == "module"
    code = "import sys, tam; assert 'torch' not in sys.modules"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
