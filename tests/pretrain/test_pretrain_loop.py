"""Pre-training loop on the synthetic comment world; its checkpoint feeds fine-tuning (decoder dropped)."""

import json

import pytest
import torch
from safetensors.torch import load_file

from tam.config import ModelConfig, OptimConfig, TrainConfig
from tam.train.pretrain import (
    DecoderConfig,
    LossConfig,
    PretrainConfig,
    PretrainDataConfig,
    load_pretrain_config,
    pretrain,
)


@pytest.fixture(scope="module")
def comment_world(tmp_path_factory):
    from tam.demo.worlds.features import WorldSpec
    from tam.demo.worlds.pretrain import CommentWorldSpec, make_comment_world

    return make_comment_world(tmp_path_factory.mktemp("cworld"), WorldSpec(min_segments=3, max_segments=12),
                              CommentWorldSpec(n_videos=40))


def small_config(store, corpus, epochs=2, **loss) -> PretrainConfig:
    return PretrainConfig(model=ModelConfig(d=16, layers=1, heads=2, T=8, dropout=0.0),
                          decoder=DecoderConfig(layers=2, heads=2, dropout=0.0),
                          data=PretrainDataConfig(store=str(store), corpus=str(corpus), comments_per_clip=8),
                          loss=LossConfig(**loss),
                          optim=OptimConfig(optimizer="adam", lr=1e-3, weight_decay=0.0, batch_size=8, epochs=epochs),
                          train=TrainConfig(num_workers=0, progress=False, device="cpu", threads=1)).validate()


@pytest.fixture(scope="module")
def pretrained(comment_world, tmp_path_factory):
    store, corpus = comment_world
    run = tmp_path_factory.mktemp("pre") / "run"
    return run, pretrain(small_config(store, corpus), run, log=lambda s: None)


def test_pretrain_writes_checkpoint_and_metrics(pretrained):
    run, r = pretrained
    h = r["heldout"]
    assert r["clips"]["train"] > 0 and r["clips"]["heldout"] > 0 and h["comments"] > 0
    for k in ("ewp_top1", "ewp_top5", "atp_top1", "atp_chance"):
        assert 0 <= h[k] <= 1
    assert h["ewp_top5"] >= h["ewp_top1"]
    meta = json.loads((run / "pretrained.json").read_text())
    assert meta["model"]["d"] == 16 and set(meta["dims"]) == {"image", "motion", "audio"} and "features" in meta
    keys = load_file(str(run / "pretrained.safetensors")).keys()
    assert any(k.startswith("fusion.") for k in keys) and any(k.startswith("decoder.") for k in keys)
    rows = (run / "metrics.csv").read_text().splitlines()
    assert len(rows) == 3 and rows[0] == "epoch,lr,loss,l_wp,l_tp"


def test_finished_run_is_not_redone(pretrained):
    run, r = pretrained
    before = (run / "pretrained.safetensors").stat().st_mtime_ns
    again = pretrain(PretrainConfig(), run, log=lambda s: None)  # a finished run returns its results
    assert again == json.loads(json.dumps(r))
    assert (run / "pretrained.safetensors").stat().st_mtime_ns == before


def test_resume_continues_from_last_epoch(comment_world, tmp_path):
    store, corpus = comment_world
    pretrain(small_config(store, corpus, epochs=1), tmp_path, log=lambda s: None)
    for name in ("results.json", "pretrained.json"):
        (tmp_path / name).unlink()  # as if killed after epoch 1
    pretrain(small_config(store, corpus, epochs=2), tmp_path, log=lambda s: None)
    assert [r.split(",")[0] for r in (tmp_path / "metrics.csv").read_text().splitlines()[1:]] == ["1", "2"]


def test_checkpoint_loads_into_finetuning(pretrained, tiny_config, tmp_path):
    """The decoder is gone, every fusion weight is carried over, the fusion gets fusion_lr and the head lr."""
    from tam.train import distributed
    from tam.train.loop import Run, prepare_data

    run, _ = pretrained
    tiny_config.train.init_from = str(run / "pretrained.safetensors")
    tiny_config.optim.fusion_lr = 1e-5
    tiny_config.optim.lr = 1e-4
    ft = Run(tiny_config, tmp_path, distributed.Dist(), torch.device("cpu"), prepare_data(tiny_config))
    saved = {k.removeprefix("fusion."): v for k, v in load_file(str(run / "pretrained.safetensors")).items()
             if k.startswith("fusion.")}
    fusion = ft.model.fusion.state_dict()
    assert set(fusion) == set(saved)
    for k, v in saved.items():
        assert torch.equal(fusion[k], v), k
    assert not any(k.startswith("decoder") for k in ft.model.state_dict())
    assert [g["lr"] for g in ft.opt.param_groups] == [1e-4, 1e-5]


@pytest.mark.parametrize("loss", [{"lambda_w": 0.0}, {"lambda_t": 0.0}])
def test_single_task_runs(comment_world, tmp_path, loss):
    store, corpus = comment_world
    r = pretrain(small_config(store, corpus, epochs=1, **loss), tmp_path, log=lambda s: None)
    row = (tmp_path / "metrics.csv").read_text().splitlines()[1].split(",")
    assert (float(row[3]) == 0) == (loss.get("lambda_w") == 0.0)
    assert (float(row[4]) == 0) == (loss.get("lambda_t") == 0.0)
    assert r["heldout"]["comments"] > 0


def test_config_checks(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("loss: {lambda_w: 0, lambda_t: 0}\n")
    from tam.errors import TamError
    with pytest.raises(TamError, match="lambda"):
        load_pretrain_config(str(p))
    cfg = load_pretrain_config(None, ["loss.lambda_w=2", "decoder.layers=8"])
    assert cfg.loss.lambda_w == 2.0 and cfg.decoder.layers == 8 and cfg.optim.lr == 1e-3
    assert cfg.optim.lr_step_epochs == 50 and cfg.optim.epochs == 200 and cfg.optim.optimizer == "adam"


def test_pretraining_normalises_with_the_rows_of_its_training_clips(pretrained, comment_world):
    from tam.comments.pairs import build_pairs
    from tam.features.normalize import compute_stats
    from tam.features.store import FeatureStore

    run, _ = pretrained
    store, corpus = comment_world
    fs = FeatureStore.open(store)
    pairs = build_pairs(corpus, fs, 8, DecoderConfig().max_len)
    train = pairs.split(True)
    rows = [slice(int(pairs.clip_row0[c]), int(pairs.clip_row0[c] + pairs.clip_rows[c])) for c in train]
    stats = compute_stats(fs, [pairs.videos[pairs.clip_video[c]] for c in train], ["image", "motion", "audio"],
                          "zscore", rows)
    saved = load_file(str(run / "pretrained.safetensors"))
    for m in ("image", "motion", "audio"):  # the training clips' rows only, saved with the weights
        torch.testing.assert_close(saved[f"norm.mean_{m}"], torch.tensor(stats[m][0], dtype=torch.float32))
        torch.testing.assert_close(saved[f"norm.scale_{m}"], torch.tensor(stats[m][1], dtype=torch.float32))
    everything = compute_stats(fs, fs.videos(), ["image"], "zscore")["image"][0]
    assert not torch.allclose(saved["norm.mean_image"], torch.tensor(everything, dtype=torch.float32))


def test_checkpoint_every_zero_writes_the_resume_state_after_the_last_epoch_only(comment_world, pretrained, tmp_path,
                                                                                  monkeypatch):
    """train.checkpoint_every = 0 (as `tam demo` sets it): last.pt once, after the last epoch; the same results."""
    import tam.train.pretrain as module

    store, corpus = comment_world
    written, save = [], module.save_state
    monkeypatch.setattr(module, "save_state", lambda path, state: (written.append(state["epoch"]), save(path, state)))
    cfg = small_config(store, corpus)
    cfg.train.checkpoint_every = 0
    results = pretrain(cfg, tmp_path / "run", log=lambda s: None)
    assert written == [1] and (tmp_path / "run" / "last.pt").is_file()
    assert results["heldout"] == pretrained[1]["heldout"]
