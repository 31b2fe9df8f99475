"""The issue's target on the real thing: the CTM model that `tam demo --quick` trains, exported through the CLI,
loaded by folder and by repo id from a populated cache, predicts the run's probabilities; its ONNX graph too."""

from __future__ import annotations

import numpy as np
import pytest
import torch


@pytest.mark.slow
def test_demo_model_exported_predicts_what_the_run_predicts(request, tmp_path, monkeypatch):
    from tam.cli import main
    from tam.features.store import FeatureStore
    from tam.hub.onnx import load_onnx
    from tam.infer.timeline import analyse
    from tam.train.checkpoint import load_model

    from .conftest import populate_cache

    try:  # tests/conftest.py's one `tam demo --quick` of the session (tests/e2e use it too)
        out, _ = request.getfixturevalue("quick_demo")
    except pytest.FixtureLookupError:
        pytest.skip("no quick_demo fixture in tests/conftest.py")
    run, folder = out / "runs" / "ctm-seed0", tmp_path / "ctm-quick"
    assert main(["export", str(run), "--out", str(folder), "--onnx", "--license", "apache-2.0"]) == 0
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    populate_cache(tmp_path / "hf", "tam-demo/ctm-quick", folder)
    store = FeatureStore.open(out / "features")

    def outputs(source, onnx: bool = False) -> np.ndarray:
        model, meta = load_model(source)
        net = load_onnx(source, meta, model) if onnx else model
        res = [analyse(net, meta, store, v, "token", torch.device("cpu")) for v in store.videos()]
        return np.concatenate([np.concatenate([a["output"][None], a["timeline"]]) for a in res])

    want = outputs(run)
    assert len(store.videos()) >= 40
    assert np.abs(outputs(folder) - want).max() <= 1e-6
    assert np.abs(outputs("tam-demo/ctm-quick") - want).max() <= 1e-6
    assert np.abs(outputs(folder, onnx=True) - want).max() <= 1e-4
