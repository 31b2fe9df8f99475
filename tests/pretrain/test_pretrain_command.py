"""`tam pretrain run` / `table` through the real CLI parser, and the Table 3/4 collector."""

import json

import pytest

from tam.cli import main
from tam.train.pretrain import TABLES, collect_table


@pytest.mark.slow
def test_cli_run_then_finetune(tmp_path, tiny_config, capsys):
    from tam.demo.worlds.features import WorldSpec
    from tam.demo.worlds.pretrain import CommentWorldSpec, make_comment_world
    from tam.train.loop import fit

    store, corpus = make_comment_world(tmp_path / "w", WorldSpec(min_segments=3, max_segments=12),
                                       CommentWorldSpec(n_videos=16))
    sets = ["model.d=16", "model.layers=1", "model.heads=2", "model.T=8", "decoder.layers=1", "decoder.heads=2",
            "optim.epochs=1", "optim.batch_size=8", "train.num_workers=0", "train.progress=false", "train.device=cpu"]
    argv = ["pretrain", "run", "--store", str(store), "--corpus", str(corpus), "--run-dir", str(tmp_path / "pre")]
    assert main(argv + [x for s in sets for x in ("--set", s)]) == 0
    out = capsys.readouterr().out
    assert "EWP top-1" in out and "ATP top-1" in out and "chance" in out
    tiny_config.train.init_from = str(tmp_path / "pre" / "pretrained.safetensors")
    tiny_config.optim.epochs = 1
    r = fit(tiny_config, tmp_path / "ft", log=lambda s: None)
    assert 0 <= r["test"]["accuracy"] <= 1


def test_cli_bad_corpus_is_one_line(tmp_path, capsys, tiny_world):
    store, _ = tiny_world
    assert main(["pretrain", "run", "--store", str(store), "--corpus", str(tmp_path), "--run-dir",
                 str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "segments.parquet" in err and len(err.splitlines()) == 1


def test_cli_says_random_init_once_and_that_a_finished_run_is_complete(tmp_path, capsys):
    from tam.demo.worlds.features import WorldSpec
    from tam.demo.worlds.pretrain import CommentWorldSpec, make_comment_world

    store, corpus = make_comment_world(tmp_path / "w", WorldSpec(min_segments=3, max_segments=8),
                                       CommentWorldSpec(n_videos=8))
    manifest = json.loads((store / "manifest.json").read_text())
    manifest["encoders"]["image"]["random_init"] = True  # as `tam extract --random-init` writes it
    (store / "manifest.json").write_text(json.dumps(manifest))
    sets = ["model.d=8", "model.layers=1", "model.heads=2", "model.T=8", "decoder.layers=1", "decoder.heads=2",
            "optim.epochs=1", "train.num_workers=0", "train.progress=false", "train.device=cpu"]
    argv = ["pretrain", "run", "--store", str(store), "--corpus", str(corpus), "--run-dir", str(tmp_path / "pre"),
            "--threads", "1"] + [x for s in sets for x in ("--set", s)]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert out.count("randomly initialised encoders") == 1 and "EWP top-1" in out
    assert (tmp_path / "pre" / "results.md").read_text().count("randomly initialised encoders") == 1
    assert json.loads((tmp_path / "pre" / "results.json").read_text())["random_init_features"] is True
    assert main(argv) == 0
    again = capsys.readouterr().out
    assert "already complete" in again and "EWP top-1" in again and again.count("randomly initialised") == 1


def test_collect_table(tmp_path):
    for row, ds, split, acc in [("none", "ve8", "split01", 0.5), ("none", "ve8", "split02", 0.6),
                                ("w1t1", "yf6", "public", 0.7)]:
        d = tmp_path / row / ds / split
        d.mkdir(parents=True)
        (d / "results.json").write_text(json.dumps({"test": {"accuracy": acc}}))
    md = collect_table(4, tmp_path).splitlines()
    assert len(md) == 2 + len(TABLES[4][1])
    assert md[2].startswith("| No pre-training | 55.00 ± 5.00 (n=2) | — | 56.04 | 60.64 |")
    assert md[-1].startswith("| λw : λt = 1 : 1 | — | 70.00 ± 0.00 (n=1) |")
    assert main(["pretrain", "table", "3", "--runs", str(tmp_path), "--out", str(tmp_path / "t3.md")]) == 0
    assert "random 10%" in (tmp_path / "t3.md").read_text()


@pytest.mark.slow
def test_acceptance_quick_runs(tmp_path, capsys):
    assert main(["pretrain", "acceptance", "--out", str(tmp_path), "--quick", "--seeds", "0", "1"]) == 0
    out = capsys.readouterr().out
    assert "no pre-training" in out and "TSC pre-training" in out and "ATP top-1" in out
    r = json.loads((tmp_path / "acceptance.json").read_text())
    assert len(r["accuracy"]["scratch"]) == len(r["accuracy"]["pretrained"]) == 2
