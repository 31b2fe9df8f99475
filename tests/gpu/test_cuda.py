"""CUDA paths (bf16 autocast on GPU): training, pre-training, extraction and prediction on a GPU agree with the CPU.

Skipped without CUDA (CI). On a GPU machine: `bash bench/gpu_check.sh` (or `python -m pytest tests/gpu`).

Tolerances. On CUDA the models run under bf16 autocast (8 significant bits: relative rounding 2^-8 ≈ 0.004 per
matmul input), so a CUDA output differs from the fp32 CPU output by a few 2^-8 of the values flowing through:
probabilities of the tiny models here by < 0.02 (BF16_PROB), encoder features by a relative L2 error < 0.03
(BF16_REL) with cosine > 0.999. The same weights run in fp32 on CUDA (autocast off) must match the CPU to
1e-4: a larger gap is a device bug, not rounding. Predicted classes must agree wherever the CPU's top-2 margin
exceeds twice the probability tolerance. End to end (videos -> features -> prediction, both stages in bf16 on
CUDA) the probability tolerance is BF16_E2E = 0.05.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (bash bench/gpu_check.sh)")

BF16_PROB = 0.02  # max |p_cuda - p_cpu| of a class probability under bf16 autocast
BF16_REL = 0.03  # max ||f_cuda - f_cpu|| / ||f_cpu|| of an encoder feature row under bf16 autocast
BF16_E2E = 0.05  # the same, end to end: encoder features and model both in bf16
FP32_ATOL = 1e-4  # the same model in fp32 on both devices
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def cuda() -> torch.device:
    return torch.device("cuda", 0)


def _infer_helpers():
    """tests/infer/conftest.py (make_video, train_tiny), loaded by path: conftests are not importable modules."""
    path = Path(__file__).resolve().parents[1] / "infer" / "conftest.py"
    spec = importlib.util.spec_from_file_location("tam_tests_infer_helpers", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _rows(path: Path) -> list[dict]:
    with path.open(encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _agree(p_cpu: np.ndarray, p_gpu: np.ndarray, tol: float = BF16_PROB) -> None:
    """Probabilities within `tol`; the same class wherever the CPU's top-2 margin exceeds 2 `tol`."""
    assert np.isfinite(p_gpu).all()
    gap = np.abs(p_cpu - p_gpu).max()
    assert gap < tol, f"CUDA (bf16) vs CPU probabilities differ by {gap:.4f}"
    top2 = np.sort(p_cpu, 1)[:, -2:]
    clear = top2[:, 1] - top2[:, 0] > 2 * tol
    assert (p_cpu.argmax(1) == p_gpu.argmax(1))[clear].all()


# ---- device choice ------------------------------------------------------------------------------------
def test_auto_device_is_cuda_and_autocast_is_bf16(cuda):
    from tam.encoders.cli_support import pick_device
    from tam.train import distributed
    from tam.train.loop import autocast

    d, dev = distributed.init("auto")
    assert dev == cuda and not d.enabled
    assert distributed.init("cuda")[1] == cuda and distributed.init("cuda:0")[1] == cuda
    assert pick_device("auto", {}) == "cuda:0" and pick_device("auto", {"LOCAL_RANK": "0"}) == "cuda:0"
    assert torch.distributed.is_nccl_available()  # torchrun on GPUs joins with backend="nccl"
    a = torch.randn(4, 4, device=cuda)
    with autocast(cuda):
        assert (a @ a).dtype == torch.bfloat16 and (a @ a).float().softmax(-1).dtype == torch.float32
    with autocast(CPU):
        assert (a.cpu() @ a.cpu()).dtype == torch.float32  # CPU runs stay fp32


# ---- supervised training ------------------------------------------------------------------------------
def _config(tiny_world, epochs: int, workers: int):
    from tam.config import DataConfig, ModelConfig, OptimConfig, RunConfig, TrainConfig
    from tam.demo.worlds.features import CLASSES

    store, labels = tiny_world
    return RunConfig(model=ModelConfig(d=16, layers=1, heads=2, T=8, dropout=0.0),
                     data=DataConfig(store=str(store), labels=str(labels), classes=list(CLASSES)),
                     optim=OptimConfig(lr=3e-3, batch_size=8, epochs=epochs),
                     train=TrainConfig(num_workers=workers, progress=False, device="cuda")).validate()


@pytest.fixture(scope="module")
def cuda_run(tiny_world, tmp_path_factory):
    """A 4-epoch run on CUDA (bf16 autocast; 2 loader workers with pinned memory)."""
    from tam.train.loop import fit

    run = tmp_path_factory.mktemp("cuda-train") / "run"
    return run, fit(_config(tiny_world, 4, 2), run, log=lambda s: None)


def test_training_on_cuda_learns_and_writes_its_run(cuda_run):
    run, r = cuda_run
    for name in ("best.safetensors", "best.json", "last.pt", "metrics.csv", "results.json"):
        assert (run / name).is_file(), name
    loss = [float(x["train_loss"]) for x in _rows(run / "metrics.csv")]
    assert len(loss) == 4 and all(math.isfinite(v) for v in loss)
    assert loss[-1] < loss[0], f"training loss did not fall on CUDA: {loss}"
    assert 0 <= r["test"]["accuracy"] <= 1


def test_cuda_checkpoint_predicts_the_same_on_cpu(cuda_run, tiny_world, cuda):
    from tam.datasets.labels import read_labels
    from tam.eval.evaluate import evaluate_run
    from tam.features.clips import ClipDataset, collate
    from tam.features.store import FeatureStore
    from tam.train.checkpoint import load_model
    from tam.train.distributed import Dist
    from tam.train.loop import predict

    run, r = cuda_run
    store_path, labels_path = tiny_world
    store, labels = FeatureStore.open(store_path), read_labels(labels_path, "classification")
    m_cpu, meta = load_model(run, device="cpu")
    m_gpu, _ = load_model(run, device=cuda)
    assert next(m_gpu.parameters()).device == cuda and next(m_cpu.parameters()).device == CPU
    ds = ClipDataset(store, labels.videos, labels.targets, meta["model"]["modalities"], meta["model"]["T"],
                     train=False)
    p_cpu = predict(m_cpu, ds, CPU, Dist(), 16, [], [], "classification")
    p_gpu = predict(m_gpu, ds, cuda, Dist(), 16, [], [], "classification")  # bf16 autocast
    _agree(p_cpu, p_gpu)
    b = collate([ds[w] for w in ds.windows()[:16]])
    with torch.no_grad():  # fp32 on both devices: only summation order differs
        out_cpu = m_cpu(b.x, b.valid, b.present)
        bg = b.to(cuda)
        out_gpu = m_gpu(bg.x, bg.valid, bg.present).cpu()
    assert out_gpu.dtype == torch.float32
    torch.testing.assert_close(out_gpu, out_cpu, atol=FP32_ATOL, rtol=FP32_ATOL)
    # `tam evaluate` picks CUDA by itself and reproduces the run's test metrics
    ev = evaluate_run(str(run), str(store_path), str(labels_path), split="test")
    assert ev["metrics"]["accuracy"] == pytest.approx(r["test"]["accuracy"], abs=1.5 / ev["n"])


def test_resume_on_cuda(tiny_world, tmp_path):
    """last.pt written from CUDA (optimiser state on the GPU) resumes on CUDA."""
    from tam.train.checkpoint import load_state
    from tam.train.loop import fit

    cfg = _config(tiny_world, 2, 0)
    fit(replace(cfg, optim=replace(cfg.optim, epochs=1)), tmp_path / "r", log=lambda s: None)
    state = load_state(tmp_path / "r" / "last.pt")
    assert state["model"][next(iter(state["model"]))].device == CPU  # loaded with map_location="cpu"
    state["config"] = state["config"].replace("epochs: 1", "epochs: 2")
    torch.save(state, tmp_path / "r" / "last.pt")
    r = fit(cfg, tmp_path / "r", log=lambda s: None)
    assert [int(x["epoch"]) for x in _rows(tmp_path / "r" / "metrics.csv")] == [0, 1]
    assert math.isfinite(float(_rows(tmp_path / "r" / "metrics.csv")[1]["train_loss"])) and r["best_epoch"] in (0, 1)


# ---- TSC pre-training -> fine-tuning -> viewer words ----------------------------------------------------
def test_pretrain_finetune_and_words_on_cuda(tmp_path, cuda):
    from tam.config import DataConfig, ModelConfig, OptimConfig, RunConfig, TrainConfig
    from tam.demo.worlds.features import WorldSpec
    from tam.demo.worlds.pretrain import CommentWorldSpec, make_comment_world
    from tam.features.store import FeatureStore
    from tam.infer.words import load_word_model, predict_words
    from tam.train.loop import fit
    from tam.train.pretrain import DecoderConfig, PretrainConfig, PretrainDataConfig, pretrain

    store, corpus = make_comment_world(tmp_path / "world", WorldSpec(min_segments=3, max_segments=8),
                                       CommentWorldSpec(n_videos=24))
    model = ModelConfig(d=16, layers=1, heads=2, T=4, dropout=0.0)
    cfg = PretrainConfig(model=model, decoder=DecoderConfig(layers=1, heads=2, dropout=0.0),
                         data=PretrainDataConfig(store=str(store), corpus=str(corpus), comments_per_clip=8),
                         optim=OptimConfig(optimizer="adam", lr=3e-3, weight_decay=0.0, batch_size=8, epochs=3),
                         train=TrainConfig(num_workers=0, progress=False, device="cuda")).validate()
    r = pretrain(cfg, tmp_path / "pre", log=lambda s: None)
    for name in ("pretrained.safetensors", "pretrained.json", "metrics.csv", "results.json", "last.pt"):
        assert (tmp_path / "pre" / name).is_file(), name
    loss = [float(x["loss"]) for x in _rows(tmp_path / "pre" / "metrics.csv")]
    assert len(loss) == 3 and all(math.isfinite(v) for v in loss) and loss[-1] < loss[0], loss
    assert all(0 <= r["heldout"][k] <= 1 for k in ("ewp_top1", "ewp_top5", "atp_top1"))
    # fine-tuning from it on CUDA (the fusion weights and norm statistics are loaded onto the GPU model)
    videos = FeatureStore.open(store).videos()
    labels = tmp_path / "labels.csv"
    labels.write_text("video,label,split\n" + "".join(
        f"{v},{['calm', 'tense'][i % 2]},{'val' if i % 4 == 3 else 'train'}\n" for i, v in enumerate(videos)))
    ft = RunConfig(model=model, data=DataConfig(store=str(store), labels=str(labels), classes=["calm", "tense"]),
                   optim=OptimConfig(lr=1e-3, batch_size=8, epochs=1),
                   train=TrainConfig(num_workers=0, progress=False, device="cuda",
                                     init_from=str(tmp_path / "pre" / "pretrained.safetensors"))).validate()
    assert math.isfinite(fit(ft, tmp_path / "ft", log=lambda s: None)["val"]["accuracy"])
    # the viewer-words track: the same top words on both devices (scores within bf16 rounding)
    fs = FeatureStore.open(store)
    w_cpu = predict_words(load_word_model(tmp_path / "pre", device="cpu"), fs, videos[0], CPU)
    w_gpu = predict_words(load_word_model(tmp_path / "pre", device=str(cuda)), fs, videos[0], cuda)
    assert len(w_gpu["top"]) == len(w_cpu["top"]) > 0
    for tc, sc, tg, sg in zip(w_cpu["top"], w_cpu["score"], w_gpu["top"], w_gpu["score"]):
        assert sg[0] == pytest.approx(sc[0], rel=0.05, abs=1e-3)  # each segment's best score
        assert tg[0] == tc[0] or (tg[0] in tc and sc[tc.index(tg[0])] >= 0.95 * sc[0])  # a near-tie may swap


# ---- feature extraction ---------------------------------------------------------------------------------
def test_extraction_on_cuda_matches_cpu(tmp_path, cuda):
    from tam.encoders.extract import ExtractOptions, extract, find_videos, open_store
    from tam.encoders.table import TINY, build_encoder
    from tam.encoders.video_io import SegmentPolicy
    from tam.features.store import FeatureStore

    h = _infer_helpers()
    vids = tmp_path / "videos"
    vids.mkdir()
    h.make_video(vids / "a.mp4", 3.0, (200, 40, 40), tone_hz=440.0)
    h.make_video(vids / "b.mp4", 2.0, (40, 40, 200), tone_hz=None)
    stores = {}
    for key, dev in (("cpu", "cpu"), ("cuda", str(cuda))):
        enc = {m: build_encoder(TINY[m], random_init=True, device=dev) for m in ("image", "motion", "audio")}
        store = open_store(tmp_path / key, enc, SegmentPolicy())
        outcomes = extract(find_videos([str(vids)]), store, enc, ExtractOptions(), progress=False)
        assert [o.status for o in outcomes] == ["done", "done"], [o.error for o in outcomes]
        stores[key] = FeatureStore.open(tmp_path / key)
    assert stores["cuda"].manifest.identity() == stores["cpu"].manifest.identity()
    for v in ("a", "b"):
        c, g = stores["cpu"].read(v), stores["cuda"].read(v)
        assert np.array_equal(c.times, g.times) and c.present == g.present
        for m, f in c.features.items():
            fg = g.features[m]
            assert fg.dtype == np.float32 and np.isfinite(fg).all()
            if not c.present[m]:  # an absent modality (b has no audio): zeros on both
                assert not np.abs(fg).any()
                continue
            rel = np.linalg.norm(fg - f, axis=1) / np.maximum(np.linalg.norm(f, axis=1), 1e-12)
            cos = (fg * f).sum(1) / np.maximum(np.linalg.norm(fg, axis=1) * np.linalg.norm(f, axis=1), 1e-12)
            assert rel.max() < BF16_REL and cos.min() > 0.999, (v, m, rel.max(), cos.min())


def test_vggish_pca_stays_fp32_under_autocast(tmp_path, cuda):
    """The AudioSet PCA + 8-bit quantisation runs in fp32 inside the encoders' bf16 autocast (bins of 4/255)."""
    from tam.encoders import audio

    rng = np.random.default_rng(0)
    E, mu = rng.normal(size=(128, 128)) / 16, rng.normal(size=(128, 1))
    path = tmp_path / "vggish_pca_params-970ea276.pth"
    torch.save({"pca_eigen_vectors": torch.tensor(E), "pca_means": torch.tensor(mu)}, path)
    x = torch.tensor(rng.normal(size=(256, 128)).astype(np.float32))
    for quantize in (False, True):
        pca = audio.load_pca(path, quantize=quantize)
        ref = pca(x)
        with torch.inference_mode(), torch.autocast("cuda", dtype=torch.bfloat16):
            got = pca.to(cuda)(x.to(cuda)).cpu()
        assert got.dtype == torch.float32
        if quantize:  # fp32 on both: only ties at .5 may round apart
            assert (got != ref).float().mean() < 0.005 and (got - ref).abs().max() <= 1
        else:
            torch.testing.assert_close(got, ref, atol=FP32_ATOL, rtol=FP32_ATOL)


# ---- tam predict ------------------------------------------------------------------------------------------
def test_predict_on_cuda_gives_the_cpu_classes(tmp_path, cuda):
    from tam.infer.pipeline import predict

    w = _infer_helpers().build_world(tmp_path)  # tests/infer's world: models trained on the CPU
    vids, long, ctm, concat = w["videos"], w["long"], w["ctm"], w["concat"]
    labels_cpu = {}
    for model, method in ((ctm, "token"), (concat, "occlusion")):
        res = {}
        for dev in ("cpu", "auto"):  # auto: CUDA here (encoders and model on the GPU)
            out = predict([vids, long], model, device=dev, progress=False, log=lambda s: None)
            res[dev] = {r["video"]: r for r in out}
            assert all(r["status"] == "ok" for r in out), [r.get("error") for r in out]
            assert all(r["timeline"]["method"] == method for r in out)
        assert sorted(res["auto"]) == sorted(res["cpu"]) == ["long", "v0", "v1", "v2", "v3"]
        for v, rc in res["cpu"].items():
            rg = res["auto"][v]
            assert rg["segments"] == rc["segments"] and rg["windows"] == rc["windows"]
            if "label" in rc:  # the same class (where the CPU's margin is clear), probabilities and timeline
                names = list(rc["probabilities"])
                _agree(np.array([[rc["probabilities"][n] for n in names]]),
                       np.array([[rg["probabilities"][n] for n in names]]), BF16_E2E)
                _agree(np.array([rc["timeline"]["values"][n] for n in names]).T,
                       np.array([rg["timeline"]["values"][n] for n in names]).T, BF16_E2E)
                labels_cpu[v] = rc["label"], max(rc["probabilities"].values()) - min(rc["probabilities"].values())
            else:  # valence / arousal (targets spread ~0.4) and their occlusion timelines
                for k in ("valence", "arousal"):
                    assert rg[k] == pytest.approx(rc[k], abs=BF16_E2E), (v, k)
                    assert np.allclose(rg["timeline"]["values"][k], rc["timeline"]["values"][k], atol=BF16_E2E), (v, k)
    assert sum(m > 2 * BF16_E2E for _, m in labels_cpu.values()) >= 3  # the class comparison is not vacuous
    # from the stored features, with an explicit device name
    (r,) = predict(["v0"], ctm, features=str(tmp_path / "feats"), device="cuda:0", progress=False)
    label, margin = labels_cpu["v0"]
    assert r["status"] == "ok" and (r["label"] == label or margin <= 2 * BF16_E2E)
    json.dumps(r)
