"""The training engine: a run directory, model selection on validation, resume, bad input."""

import copy
import csv
import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from tam.datasets.labels import carve_validation, read_labels
from tam.errors import TamError
from tam.eval.evaluate import evaluate_run
from tam.features.normalize import compute_stats
from tam.features.store import FeatureStore
from tam.train.checkpoint import load_model, load_state
from tam.train.loop import diagnose, fit, prepare_data


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """finished(cfg) -> (results, run directory) of fit(cfg), trained once per module for each config: the tests that
    only read a finished run share it (a test that resumes or changes one works on a copy, `copied`)."""
    done = {}

    def run(cfg):
        key = repr(cfg)
        if key not in done:
            folder = tmp_path_factory.mktemp("finished") / "run"
            done[key] = (fit(cfg, folder, log=lambda s: None), folder)
        return copy.deepcopy(done[key][0]), done[key][1]

    return run


def copied(folder: Path, to: Path) -> Path:
    shutil.copytree(folder, to)
    return to


def one_epoch(cfg):
    return replace(cfg, optim=replace(cfg.optim, epochs=1))


def test_run_directory_and_results(tiny_config, finished):
    r, run = finished(tiny_config)
    for name in ("config.yaml", "features_manifest.json", "skipped.csv", "metrics.csv", "best.safetensors",
                 "best.json", "last.pt", "results.json", "results.md"):
        assert (run / name).is_file(), name
    assert any((run / "tb").iterdir())
    rows = list(csv.DictReader((run / "metrics.csv").open()))
    assert [int(x["epoch"]) for x in rows] == [0, 1, 2]
    # selection: the best validation accuracy, ties broken by the lower validation loss (then the earlier epoch)
    best = max(range(3), key=lambda i: (float(rows[i]["val_accuracy"]), -float(rows[i]["val_loss"])))
    assert r["best_epoch"] == best and r["val"]["accuracy"] == pytest.approx(float(rows[best]["val_accuracy"]))
    assert r["n"] == {"train": 54, "val": 10, "test": 32, "skipped": 0}
    assert r["baseline"]["name"] == "majority class" and 0 < r["baseline"]["test"]["accuracy"] < 1
    assert json.loads((run / "results.json").read_text())["test"] == r["test"]
    md = (run / "results.md").read_text()
    assert "majority class (test)" in md and "linear (logistic, C=" in md and "curves.png" in md
    assert (run / "curves.png").read_bytes()[:4] == b"\x89PNG"
    assert {"train_accuracy", "train_eval_loss", "val_loss"} <= set(rows[0])
    assert 0 <= r["linear"]["test"]["accuracy"] <= 1 and r["linear"]["strength"] > 0
    assert np.array(r["confusion"]).sum() == 32
    # the best checkpoint rebuilds alone, and the resume state loads with weights_only
    model, meta = load_model(run)
    assert meta["epoch"] == best and meta["classes"][0] == "scene0_up"
    assert set(load_state(run / "last.pt")) >= {"model", "opt", "epoch", "rng"}


def test_validation_is_carved_from_training_rows_only(tiny_world):
    _, labels_path = tiny_world
    labels = read_labels(labels_path, "classification")
    carved = carve_validation(labels, 0.15, seed=0)
    test_before = [v for v, s in zip(labels.videos, labels.split) if s == "test"]
    test_after = [v for v, s in zip(carved.videos, carved.split) if s == "test"]
    assert test_before == test_after
    assert carved.split.count("val") == pytest.approx(0.15 * labels.split.count("train"), abs=len(labels.classes))
    assert carve_validation(labels, 0.15, seed=0).split == carved.split  # deterministic


def test_killed_run_resumes_to_the_same_result(tiny_config, tmp_path, finished):
    full, _ = finished(tiny_config)
    copied(finished(one_epoch(tiny_config))[1], tmp_path / "resumed")  # "killed" after epoch 1 ...
    state = load_state(tmp_path / "resumed" / "last.pt")
    state["config"] = state["config"].replace("epochs: 1", "epochs: 3")  # ... of a 3-epoch run
    torch.save(state, tmp_path / "resumed" / "last.pt")
    resumed = fit(tiny_config, tmp_path / "resumed", log=lambda s: None)
    assert resumed["test"] == full["test"] and resumed["val"] == full["val"]
    assert resumed["best_epoch"] == full["best_epoch"]
    rows = list(csv.DictReader((tmp_path / "resumed" / "metrics.csv").open()))
    assert [int(x["epoch"]) for x in rows] == [0, 1, 2]


def test_checkpoint_every_writes_less_often_and_ends_with_the_same_files(tiny_config, tmp_path, finished):
    """train.checkpoint_every: last.pt (and, under select last, the kept model) every N epochs and after the last;
    the finished run directory holds what writing every epoch leaves."""
    last = replace(tiny_config, train=replace(tiny_config.train, select="last"))
    seen = []

    def on_epoch(epoch, score, row):
        d = tmp_path / "every2"
        seen.append((load_state(d / "last.pt")["epoch"] if (d / "last.pt").is_file() else None,
                     (d / "best.safetensors").is_file()))

    every = fit(replace(last, train=replace(last.train, checkpoint_every=2)), tmp_path / "every2",
                log=lambda s: None, on_epoch=on_epoch)
    assert seen == [(None, False), (1, True), (2, True)]
    each, each_dir = finished(last)
    assert every["test"] == each["test"] and every["best_epoch"] == each["best_epoch"] == 2
    for name in ("best.safetensors", "metrics.csv"):
        assert (tmp_path / "every2" / name).read_bytes() == (each_dir / name).read_bytes(), name
    a, b = (load_state(d / "last.pt") for d in (tmp_path / "every2", each_dir))
    assert a["epoch"] == b["epoch"] == 2 and all(torch.equal(a["model"][k], b["model"][k]) for k in b["model"])


def test_resume_refuses_another_config(tiny_config, tmp_path, finished):
    r = copied(finished(one_epoch(tiny_config))[1], tmp_path / "r")
    other = replace(tiny_config, optim=replace(tiny_config.optim, epochs=1, lr=0.5))
    with pytest.raises(TamError, match="another config"):
        fit(other, r, log=lambda s: None)


def test_missing_videos_are_listed_and_skipped(tiny_config, tmp_path):
    labels = tmp_path / "labels.csv"
    text = open(tiny_config.data.labels).read() + "ghost1,scene0_up,train\nghost2,scene1_up,test\n"
    labels.write_text(text)
    cfg = replace(tiny_config, data=replace(tiny_config.data, labels=str(labels)),
                  optim=replace(tiny_config.optim, epochs=1))
    r = fit(cfg, tmp_path / "run", log=lambda s: None)
    assert r["n"]["skipped"] == 2
    assert (tmp_path / "run" / "skipped.csv").read_text().splitlines()[1:] == ["ghost1,no features",
                                                                              "ghost2,no features"]


@pytest.mark.parametrize("row, message", [
    ("v00001,joy,train", "not one of the classes"),
    ("v00001,scene0_up,holdout", "split must be one of"),
    ("v00001,scene0_up", "expected 3 fields"),
])
def test_bad_labels_name_the_file(tiny_config, tmp_path, row, message):
    labels = tmp_path / "labels.csv"
    labels.write_text("video,label,split\n" + row + "\n")
    cfg = replace(tiny_config, data=replace(tiny_config.data, labels=str(labels)))
    with pytest.raises(TamError, match=message) as e:
        fit(cfg, tmp_path / "run", log=lambda s: None)
    assert str(labels) in str(e.value)


def test_empty_training_split_fails(tiny_config, tmp_path):
    labels = tmp_path / "labels.csv"
    real = FeatureStore.open(tiny_config.data.store).videos()[0]
    labels.write_text(f"video,label,split\nghost,scene0_up,train\n{real},scene0_up,test\n")
    cfg = replace(tiny_config, data=replace(tiny_config.data, labels=str(labels)))
    with pytest.raises(TamError, match="train split is empty"):
        fit(cfg, tmp_path / "run", log=lambda s: None)


def test_labels_of_other_videos_show_ids_from_each_side(tiny_config, tmp_path):
    labels = tmp_path / "labels.csv"
    labels.write_text("video,label,split\nclips/ghost.mp4,scene0_up,train\n")
    cfg = replace(tiny_config, data=replace(tiny_config.data, labels=str(labels)))
    with pytest.raises(TamError, match="none of its 1 videos has features") as e:
        fit(cfg, tmp_path / "run", log=lambda s: None)
    first = FeatureStore.open(tiny_config.data.store).videos()[0]
    assert "labels e.g. clips/ghost.mp4" in str(e.value) and f"store e.g. {first}" in str(e.value)
    assert not (tmp_path / "run").exists()


def test_regression_task(tiny_world, tiny_config, tmp_path):
    store, labels = tiny_world
    rng = np.random.default_rng(0)
    rows = ["video,valence,arousal,split"]
    for line in open(labels).read().splitlines()[1:]:
        vid, _, split = line.split(",")
        rows.append(f"{vid},{rng.normal(3, 1):.3f},{rng.normal(2, .5):.3f},{split}")
    reg = tmp_path / "reg.csv"
    reg.write_text("\n".join(rows) + "\n")
    cfg = replace(tiny_config, data=replace(tiny_config.data, labels=str(reg), task="regression", classes=[]),
                  optim=replace(tiny_config.optim, epochs=2))
    r = fit(cfg, tmp_path / "run", log=lambda s: None)
    assert set(r["test"]) == {"valence_mse", "valence_pcc", "arousal_mse", "arousal_pcc"}
    assert r["baseline"]["name"] == "training mean" and r["baseline"]["test"]["valence_pcc"] is None
    assert r["test"]["valence_mse"] < 10  # predictions are de-standardised back to the label scale


def test_fine_tune_from_a_checkpoint_carries_every_fusion_weight(tiny_config, tmp_path):
    from safetensors.torch import load_file

    pre_cfg = replace(tiny_config, data=replace(tiny_config.data, normalize="log1p"),
                      optim=replace(tiny_config.optim, epochs=1))
    fit(pre_cfg, tmp_path / "pre", log=lambda s: None)
    pre = load_file(str(tmp_path / "pre" / "best.safetensors"))
    cfg = replace(tiny_config, train=replace(tiny_config.train, init_from=str(tmp_path / "pre" / "best.safetensors")),
                  optim=replace(tiny_config.optim, epochs=1, lr=1e-3, fusion_lr=1e-12))
    fit(cfg, tmp_path / "ft", log=lambda s: None)
    ft = load_file(str(tmp_path / "ft" / "best.safetensors"))
    fusion_keys = [k for k in pre if k.startswith("fusion.")]
    assert fusion_keys
    for k in fusion_keys:  # with a vanishing fusion lr the fine-tuned fusion is the pre-trained one
        torch.testing.assert_close(ft[k], pre[k], atol=1e-6, rtol=0)
    # the pre-trained model's normalisation (log1p, its training rows) travels with it, not this config's zscore
    stats = compute_stats(FeatureStore.open(tiny_config.data.store), prepare_data(pre_cfg).train.videos,
                          tiny_config.model.modalities, "log1p")
    torch.testing.assert_close(pre["norm.mean_image"], torch.tensor(stats["image"][0], dtype=torch.float32))
    norm_keys = [k for k in pre if k.startswith("norm.")]
    assert float(pre["norm.log1p"]) == 1 and len(norm_keys) == 2 * 3 + 2
    for k in norm_keys:
        torch.testing.assert_close(ft[k], pre[k], atol=0, rtol=0)
    assert not torch.equal(ft["head.fc.weight"], pre["head.fc.weight"])  # the head is new


def test_fine_tune_with_init_norm_data_normalises_with_its_own_training_rows(tiny_config, tmp_path):
    from safetensors.torch import load_file

    fast = replace(tiny_config.train, linear_baseline=False, train_eval_videos=0)
    pre_cfg = replace(tiny_config, data=replace(tiny_config.data, normalize="log1p"), train=fast,
                      optim=replace(tiny_config.optim, epochs=1))
    fit(pre_cfg, tmp_path / "pre", log=lambda s: None)
    pre = load_file(str(tmp_path / "pre" / "best.safetensors"))
    cfg = replace(tiny_config, train=replace(fast, init_from=str(tmp_path / "pre" / "best.safetensors"),
                                             init_norm="data"), optim=replace(tiny_config.optim, epochs=1))
    lines = []
    fit(cfg, tmp_path / "ft", log=lines.append)
    ft = load_file(str(tmp_path / "ft" / "best.safetensors"))
    stats = compute_stats(FeatureStore.open(tiny_config.data.store), prepare_data(cfg).train.videos,
                          tiny_config.model.modalities, "zscore")  # this run's training rows, not validation/test
    for m in tiny_config.model.modalities:
        torch.testing.assert_close(ft[f"norm.mean_{m}"], torch.tensor(stats[m][0], dtype=torch.float32))
    assert float(ft["norm.log1p"]) == 0 and not torch.equal(ft["norm.mean_image"], pre["norm.mean_image"])
    served = load_model(tmp_path / "ft")[0]  # what evaluate / predict / export load: the statistics it trained with
    torch.testing.assert_close(served.norm.state_dict()["mean_image"], ft["norm.mean_image"], atol=0, rtol=0)
    assert any("feature normalisation: zscore, clip 5, training rows" in s for s in lines)
    with pytest.raises(TamError, match="train.init_norm must be checkpoint or data"):
        replace(cfg, train=replace(cfg.train, init_norm="test")).validate()


def test_fine_tune_refuses_a_checkpoint_of_another_shape(tiny_config, tmp_path, finished):
    pre = finished(one_epoch(tiny_config))[1]
    cfg = replace(tiny_config, model=replace(tiny_config.model, d=32),
                  train=replace(tiny_config.train, init_from=str(pre / "best.safetensors")))
    with pytest.raises(TamError, match="do not fit this model config"):
        fit(cfg, tmp_path / "ft", log=lambda s: None)


def test_store_of_other_encoders_is_refused(tiny_config, tmp_path):
    cfg = replace(tiny_config, data=replace(tiny_config.data, encoders={"image": "clip-vit-b32"}))
    with pytest.raises(TamError, match="expects image features from 'clip-vit-b32'.*'synthetic-image'"):
        fit(cfg, tmp_path / "run", log=lambda s: None)
    ok = replace(tiny_config, data=replace(tiny_config.data, encoders={"image": "synthetic-image"}),
                 optim=replace(tiny_config.optim, epochs=1))
    fit(ok, tmp_path / "run", log=lambda s: None)


def test_resume_refuses_a_store_of_other_encoders(tiny_config, tmp_path, finished):
    import json as _json

    copied(finished(one_epoch(tiny_config))[1], tmp_path / "run")
    path = tmp_path / "run" / "features_manifest.json"
    m = _json.loads(path.read_text())
    m["encoders"]["audio"]["name"] = "vggish"
    path.write_text(_json.dumps(m))
    with pytest.raises(TamError, match="features of other encoders"):
        fit(tiny_config, tmp_path / "run", log=lambda s: None)


def _regularised(cfg, epochs=3):
    """Every regularisation option on (tam.train.augment, tam.train.schedule, tam.models.stochastic)."""
    return replace(cfg, model=replace(cfg.model, dropout=0.1, drop_path=0.1, noise=0.1),
                   optim=replace(cfg.optim, epochs=epochs, schedule="cosine", warmup_epochs=0.5),
                   train=replace(cfg.train, ema_decay=0.9),
                   augment=replace(cfg.augment, crop_min_fraction=0.5, token_dropout=0.1, modality_dropout=0.2,
                                   mixup_alpha=0.2, label_smoothing=0.1)).validate()


class _Killed(Exception):
    pass


def test_regularised_run_killed_mid_run_resumes_to_the_same_result(tiny_config, tmp_path):
    cfg = _regularised(tiny_config)
    full = fit(cfg, tmp_path / "full", log=lambda s: None)

    def kill(epoch, score, row):
        if epoch == 0:
            raise _Killed

    with pytest.raises(_Killed):
        fit(cfg, tmp_path / "resumed", log=lambda s: None, on_epoch=kill)
    state = load_state(tmp_path / "resumed" / "last.pt")
    assert state["epoch"] == 0 and {"ema", "sched"} <= set(state)
    resumed = fit(cfg, tmp_path / "resumed", log=lambda s: None)
    assert resumed["test"] == full["test"] and resumed["val"] == full["val"]
    assert resumed["best_epoch"] == full["best_epoch"]
    lr = [float(r["lr"]) for r in csv.DictReader((tmp_path / "resumed" / "metrics.csv").open())]
    assert lr == pytest.approx([float(r["lr"]) for r in csv.DictReader((tmp_path / "full" / "metrics.csv").open())])
    # the EMA weights are what is selected and saved
    model, meta = load_model(tmp_path / "full")
    last = load_state(tmp_path / "full" / "last.pt")
    if meta["epoch"] == last["epoch"]:
        for k, v in model.state_dict().items():
            assert torch.equal(v, last["ema"][k]), k


def test_early_stopping_with_patience(tiny_config, tmp_path):
    cfg = replace(tiny_config, optim=replace(tiny_config.optim, lr=0.0, epochs=6),
                  train=replace(tiny_config.train, patience=2))
    lines = []
    r = fit(cfg, tmp_path / "run", log=lines.append)
    rows = list(csv.DictReader((tmp_path / "run" / "metrics.csv").open()))
    assert len(rows) == 3 and r["best_epoch"] == 0  # lr 0: nothing improves after epoch 1; 2 more epochs
    assert any("early stopping" in s for s in lines)


def test_select_on_validation_loss_warns_about_a_tiny_validation_split(tiny_config, tmp_path):
    cfg = replace(tiny_config, train=replace(tiny_config.train, select="loss"))
    logs = []
    r = fit(cfg, tmp_path / "run", log=logs.append)
    rows = list(csv.DictReader((tmp_path / "run" / "metrics.csv").open()))
    assert r["best_epoch"] == int(np.argmin([float(x["val_loss"]) for x in rows]))
    assert r["n"]["val"] == 10 and any("validation split has only 10 videos" in w for w in r["warnings"])
    assert any("train.select=loss" in line for line in logs if line.startswith("warning:"))
    assert "validation split has only 10" in (tmp_path / "run" / "results.md").read_text()
    # evaluate applies the normalisation saved in the checkpoint: the same test metrics as the run
    ev = evaluate_run(str(tmp_path / "run"), cfg.data.store, cfg.data.labels, "test")
    assert ev["metrics"]["accuracy"] == pytest.approx(r["test"]["accuracy"])


def test_cli_warns_once_shows_what_it_selects_on_and_says_a_finished_run_is_complete(tiny_world, tmp_path, capsys):
    """Terminal: each warning once, never advice already taken; results.md: once; re-run: 'already complete'."""
    from tam.cli import main

    store, labels = tiny_world
    argv = ["train", "--store", str(store), "--labels", str(labels), "--run-dir", str(tmp_path / "run"), "--threads",
            "1"] + [x for s in ("model.d=16", "model.layers=1", "model.heads=2", "model.T=8", "optim.epochs=2",
                                "train.num_workers=0", "train.progress=false", "train.select=loss",
                                "train.device=cpu", "train.linear_baseline=false", "train.train_eval_videos=0")
                     for x in ("--set", s)]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert out.count("validation split has only 10 videos") == 1, out
    assert "Consider train.select=loss" not in out and "train.select=last" in out  # loss is already selected on
    epochs = [line for line in out.splitlines() if line.startswith("epoch")]
    assert len(epochs) == 2 and all("val loss " in line for line in epochs)  # the number the * is chosen on
    r = json.loads((tmp_path / "run" / "results.json").read_text())
    assert "*" in epochs[r["best_epoch"]]
    assert (tmp_path / "run" / "results.md").read_text().count("validation split has only 10 videos") == 1
    assert main(argv) == 0
    again = capsys.readouterr().out
    assert "already complete" in again and not any(line.startswith("epoch") for line in again.splitlines())
    assert again.count("validation split has only 10 videos") == 1


def test_memorisation_is_diagnosed_from_the_curves():
    def rows(losses, accs):
        return [{"train_loss": str(lo), "val_accuracy": str(a)} for lo, a in zip(losses, accs)]

    base = {"accuracy": 0.25}
    w = diagnose("classification", rows([2.0, 0.5, 0.01], [0.25, 0.27, 0.26]), base)
    assert len(w) == 1 and w[0].startswith("memorisation: the training loss fell from 2 to 0.01")
    assert diagnose("classification", rows([2.0, 0.5, 0.01], [0.25, 0.5, 0.6]), base) == []  # it generalises
    assert diagnose("classification", rows([2.0, 1.5, 1.2], [0.25, 0.25, 0.26]), base) == []  # no collapse
    # the timing world with concatenation: best of 15 noisy epochs 0.62 on 45 videos, majority 0.51, test at chance
    half = {"accuracy": 0.51}
    assert diagnose("classification", rows([0.83, 0.3, 0.069], [0.44, 0.62, 0.6]), half, n_val=45)
    assert not diagnose("classification", rows([0.83, 0.3, 0.069], [0.44, 0.62, 0.6]), half, n_val=1000)
    reg = [{"train_loss": "1.0", "val_valence_pcc": "0.02", "val_arousal_pcc": ""},
           {"train_loss": "0.05", "val_valence_pcc": "0.05", "val_arousal_pcc": "0.01"}]
    assert "mean PCC" in diagnose("regression", reg, {"valence_mse": 1.0})[0]


def test_select_last_tests_the_last_epoch_whatever_validation_says(tiny_config, finished):
    cfg = replace(tiny_config, optim=replace(tiny_config.optim, epochs=3), train=replace(tiny_config.train,
                                                                                         select="last"))
    r, run = finished(cfg)
    assert r["best_epoch"] == 2
    ev = evaluate_run(str(run), cfg.data.store, cfg.data.labels, "test")
    assert ev["metrics"]["accuracy"] == pytest.approx(r["test"]["accuracy"])
    with pytest.raises(TamError, match="train.select"):
        replace(cfg, train=replace(cfg.train, select="first")).validate()
