"""`tam export`: the folder, its config and card, loading by folder and by Hub repo id, `tam evaluate` on it."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from tam.errors import TamError


def _outputs(source, store) -> np.ndarray:
    """Every stored video's whole-video probabilities and token timeline from the model at `source`."""
    from tam.infer.timeline import analyse
    from tam.train.checkpoint import load_model

    model, meta = load_model(source)
    out = [analyse(model, meta, store, v, "token", torch.device("cpu")) for v in store.videos()]
    return np.concatenate([np.concatenate([a["output"][None], a["timeline"]]) for a in out])


def test_folder_and_repo_id_predict_what_the_run_predicts(world, exported, hub_cache):
    from tam.features.store import FeatureStore
    from tam.infer.pipeline import predict

    store = FeatureStore.open(world["store"])
    want = _outputs(world["ctm"], store)
    for source in (exported, hub_cache):
        assert np.abs(_outputs(source, store) - want).max() <= 1e-6, source
    by_run = predict(model=str(world["ctm"]), features=str(world["store"]), progress=False)
    by_id = predict(model=hub_cache, features=str(world["store"]), progress=False)
    assert [r["probabilities"] for r in by_id] == [r["probabilities"] for r in by_run]


def test_config_holds_what_rebuilds_and_uses_the_model(world, exported):
    from tam.train.checkpoint import load_model

    cfg = json.loads((exported / "config.json").read_text())
    model, meta = load_model(world["ctm"])
    assert cfg["library_name"] == "tam" and cfg["task"] == "classification" and cfg["classes"] == meta["classes"]
    assert cfg["model"] == meta["model"] and cfg["features"] == meta["features"] and cfg["dims"] == meta["dims"]
    assert cfg["model"]["readout"] == "f0" and cfg["code_version"] == meta["code_version"]
    for m in cfg["dims"]:
        assert torch.equal(torch.tensor(cfg["normalization"]["mean"][m]), getattr(model.norm, f"mean_{m}"))
        assert torch.equal(torch.tensor(cfg["normalization"]["scale"][m]), getattr(model.norm, f"scale_{m}"))
    assert cfg["features"]["encoders"]["image"]["preprocessing"]  # the receiver's preprocessing contract
    assert (exported / "model.safetensors").read_bytes() == (world["ctm"] / "best.safetensors").read_bytes()


def test_card_is_generated_from_results_and_parses_as_a_model_card(world, exported, tmp_path):
    from huggingface_hub import ModelCard

    from tam.hub.export import export_run

    results = json.loads((world["ctm"] / "results.json").read_text())
    card = ModelCard.load(exported / "README.md")
    assert card.data.library_name == "tam" and card.data.license == "apache-2.0"
    assert card.data.pipeline_tag == "video-classification" and "tam" in card.data.tags
    scores = {r.metric_type: r.metric_value for r in card.data.eval_results}
    assert scores == {k: round(v, 4) for k, v in results["val"].items()} != {}  # this world has no test split
    for section in ("## What the model predicts", "## Intended use", "## Out-of-scope use",
                    "## Training data and protocol", "## Evaluation", "## Limitations"):
        assert section in card.text
    assert "**WARNING: the features this model was trained on came from randomly initialised encoders" in card.text
    assert "One seed: no interval" in card.text
    run = tmp_path / "run"  # the same run as if it had a test split: the card's table follows results.json
    shutil.copytree(world["ctm"], run)
    results |= {"test": {"accuracy": 0.625, "macro_f1": 0.6}, "linear": {"name": "linear (logistic, C=1)",
                "test": {"accuracy": 0.5, "macro_f1": 0.45}}, "random_init_features": False,
                "baseline": {"name": "majority class", "test": {"accuracy": 0.375, "macro_f1": 0.25}}}
    (run / "results.json").write_text(json.dumps(results))
    export_run(run, tmp_path / "out")
    card = ModelCard.load(tmp_path / "out" / "README.md")
    assert {r.metric_type: r.metric_value for r in card.data.eval_results} == {"accuracy": 0.625, "macro_f1": 0.6}
    for row in ("| model | 0.6250 | 0.6000 |", "| majority class | 0.3750 | 0.2500 |",
                "| linear (logistic, C=1) | 0.5000 | 0.4500 |"):
        assert row in card.text
    assert "WARNING" not in card.text


def test_card_gives_intervals_over_sibling_seeds(world, tmp_path):
    from tam.eval.statistics import mean_ci
    from tam.hub.export import export_run

    runs = tmp_path / "runs"
    runs.mkdir()
    accs = []
    for seed in range(3):  # the same run with another seed and other scores, as `tam experiment` leaves them
        d = runs / f"ctm-seed{seed}"
        shutil.copytree(world["ctm"], d)
        r = json.loads((d / "results.json").read_text())
        r["config"]["train"]["seed"], r["val"]["accuracy"] = seed, 0.25 * (seed + 1)  # (this world has no test)
        accs.append(r["val"]["accuracy"])
        (d / "results.json").write_text(json.dumps(r))
    (runs / "other").mkdir()  # a run of another configuration is not a seed
    r["config"]["model"]["d"] = 99
    (runs / "other" / "results.json").write_text(json.dumps(r))
    export_run(runs / "ctm-seed0", tmp_path / "out")
    ci = mean_ci(accs)
    text = (tmp_path / "out" / "README.md").read_text()
    assert "Over 3 seeds" in text and f"accuracy {ci.mean:.4f} [{ci.low:.4f}, {ci.high:.4f}]" in text
    assert not (tmp_path / "out" / "model.onnx").exists()


def test_from_pretrained_and_evaluate_take_the_folder(world, exported, hub_cache):
    import tam
    from tam.eval.evaluate import evaluate_run

    model, meta = tam.from_pretrained(hub_cache)
    assert meta["classes"] == ["calm", "tense"] and not model.training
    labels = world["root"] / "labels.csv"
    assert evaluate_run(str(exported), str(world["store"]), str(labels)) == \
        evaluate_run(str(world["ctm"]), str(world["store"]), str(labels))


def test_export_command_and_evaluate_by_model(world, tmp_path, capsys):
    from tam.cli import main

    out = tmp_path / "m"
    assert main(["export", str(world["concat"]), "--out", str(out), "--license", "mit", "--onnx"]) == 0
    assert "max |difference|" in capsys.readouterr().out
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["task"] == "regression" and len(cfg["target_mean"]) == 2 and cfg["onnx"]["max_abs_diff"] <= 1e-4
    assert cfg["onnx"]["outputs"] == ["logits"]  # concat's f^0 is M·d wide: no token timeline in the graph
    assert main(["evaluate", "--model", str(out), "--store", str(world["store"]), "--labels",
                 str(world["root"] / "va.csv")]) == 0


def test_unknown_repo_id_offline_is_a_one_line_error(hub_cache, tmp_path):
    from tam.train.checkpoint import load_model

    with pytest.raises(TamError, match="not found in the local cache") as e:
        load_model("tam-tests/no-such-model")
    assert "\n" not in str(e.value) and "tam-tests/no-such-model" in str(e.value)
    with pytest.raises(TamError, match="no model here"):
        load_model(tmp_path)  # an existing folder without a model


def test_export_refuses_an_unfinished_run(world, tmp_path):
    from tam.hub.export import export_run

    run = tmp_path / "run"
    shutil.copytree(world["ctm"], run)
    (run / "results.json").unlink()
    with pytest.raises(TamError, match="no results.json"):
        export_run(run, tmp_path / "out")
