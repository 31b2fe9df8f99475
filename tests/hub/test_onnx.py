"""ONNX export of fusion + head: every fusion against PyTorch on 100 padded videos with a missing audio track,
`tam predict --runtime onnx` against the PyTorch runtime, and the one-line error without onnxruntime."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from tam.config import FUSIONS, ModelConfig
from tam.errors import TamError

REALDATA = Path(__file__).resolve().parents[2].parent / "shared" / "realdata" / "video" / "gradio"
DIMS = {"image": 512, "motion": 2048, "audio": 128}  # the paper's feature widths


@pytest.mark.slow
@pytest.mark.parametrize("fusion", FUSIONS)
def test_every_fusion_exports_within_tolerance(fusion, tmp_path):
    """The export's own check (100 videos, padded, last modality missing in every third) and another shape."""
    from tam.hub.onnx import OnnxFusion, example, export_onnx
    from tam.models.model import build_model

    torch.manual_seed(0)
    cfg = ModelConfig(fusion=fusion, d=16, layers=2, heads=2, T=8, dropout=0.1)
    model = build_model(cfg, DIMS, 8).eval()
    model.norm.set_stats({m: (np.full(D, 0.5), np.full(D, 2.0)) for m, D in DIMS.items()}, "log1p", 3.0)
    entry = export_onnx(model, DIMS, tmp_path / "model.onnx", cfg.T)
    assert entry["max_abs_diff"] <= 1e-4
    runner = OnnxFusion(tmp_path / "model.onnx", list(DIMS), 8)
    *xs, valid, present = example(DIMS, 6, 5, seed=7)  # another batch size and number of segments than at export
    assert not present.all() and not valid.all()  # padding and a missing audio track are exercised
    x = dict(zip(DIMS, xs))
    got, want = runner(x, valid, present), model(x, valid, present)
    assert got.shape == (6, 8) and (got - want).abs().max() <= 1e-4
    assert runner.tokens == (fusion in ("ctm", "inner", "cross"))


def test_predict_runtime_onnx_matches_torch_on_stored_features(world, exported):
    from tam.infer.pipeline import predict

    kw = dict(model=str(exported), features=str(world["store"]), progress=False)
    torch_results, onnx_results = predict(**kw), predict(**kw, runtime="onnx")
    assert [r["label"] for r in onnx_results] == [r["label"] for r in torch_results]
    for a, b in zip(torch_results, onnx_results):
        assert max(abs(a["probabilities"][c] - b["probabilities"][c]) for c in a["probabilities"]) <= 1e-4
        assert np.abs(np.array(a["timeline"]["values"]["calm"]) - b["timeline"]["values"]["calm"]).max() <= 1e-4


@pytest.mark.slow
def test_predict_runtime_onnx_same_classes_on_real_videos(exported, tmp_path):
    """Real files (one with audio, one muted): the tiny encoders in PyTorch, the fusion in either runtime."""
    from tam.infer.pipeline import Predictor

    videos = [REALDATA / "video_sample.mp4", REALDATA / "muted_video_sample.mp4"]
    if not all(v.is_file() for v in videos):
        pytest.skip("../shared/realdata/video is absent")
    cache = str(tmp_path / "feats")  # extracted once, by the first call
    kw = dict(cache=cache, progress=False, timeline="token")
    torch_results = Predictor(exported, device="cpu")(videos, **kw)
    onnx_results = Predictor(exported, device="cpu", runtime="onnx")(videos, **kw)
    assert [r["status"] for r in torch_results] == ["ok", "ok"]
    assert {Path(r["source"]).name: r["present"]["audio"] for r in torch_results} == \
        {"video_sample.mp4": True, "muted_video_sample.mp4": False}
    assert [r["label"] for r in onnx_results] == [r["label"] for r in torch_results]
    for a, b in zip(torch_results, onnx_results):
        assert max(abs(a["probabilities"][c] - b["probabilities"][c]) for c in a["probabilities"]) <= 1e-4


def test_without_onnxruntime_the_error_names_the_fix(exported, monkeypatch):
    from tam.hub.onnx import load_onnx
    from tam.train.checkpoint import load_model

    model, meta = load_model(exported)
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # what `import onnxruntime` meets when it is absent
    with pytest.raises(TamError, match=r"onnxruntime is not installed: pip install 'tam-affect\[onnx\]'") as e:
        load_onnx(exported, meta, model)
    assert "\n" not in str(e.value)


def test_runtime_onnx_needs_an_exported_graph(world, tmp_path):
    from tam.infer.pipeline import predict

    with pytest.raises(TamError, match="a run directory has no ONNX graph"):
        predict(model=str(world["ctm"]), features=str(world["store"]), runtime="onnx", progress=False)
    with pytest.raises(TamError, match="runtime 'tensorrt'"):
        predict(model=str(world["ctm"]), features=str(world["store"]), runtime="tensorrt", progress=False)
