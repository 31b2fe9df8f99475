"""Protocols: the seeded split generator, collecting run directories into the paper's tables, the configs."""

from __future__ import annotations

import argparse
import csv
import io
import json
import random
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import yaml

from tam import MODALITIES
from tam.config import RunConfig, from_dict, load_config, to_dict
from tam.eval import protocols
from tam.eval.protocols import build_table, collect_runs, stratified_splits, to_csv, to_markdown

REPO = Path(__file__).resolve().parents[2]


def items(sizes=(30, 45, 61, 7)):
    return [(f"C{c}/v{i}", f"C{c}") for c, n in enumerate(sizes) for i in range(n)]


# ---- splits -------------------------------------------------------------------------------------
def test_splits_deterministic_for_a_seed_and_order_independent():
    a = stratified_splits(items(), n_splits=10, seed=3)
    shuffled = items()
    random.Random(0).shuffle(shuffled)
    assert stratified_splits(shuffled, n_splits=10, seed=3) == a
    assert stratified_splits(items(), n_splits=3, seed=3) == a[:3]  # split k does not depend on how many
    assert stratified_splits(items(), n_splits=10, seed=4) != a
    assert len({tuple(sorted(s.items())) for s in a}) == 10  # ten different splits


def test_splits_keep_classes_balanced_two_thirds():
    data = items()
    for split in stratified_splits(data, n_splits=10, seed=0):
        assert set(split) == {v for v, _ in data}
        n = Counter((c, split[v]) for v, c in data)
        for c, size in Counter(c for _, c in data).items():
            assert n[(c, "train")] == int(np.floor(size * 2 / 3 + 0.5))
            assert n[(c, "train")] + n[(c, "test")] == size
    tiny = stratified_splits([("a", "X"), ("b", "X"), ("c", "Y")], n_splits=1)[0]
    assert sorted(tiny.values()) == ["test", "train", "train"]  # a 2-video class keeps one of each


def test_split_errors():
    with pytest.raises(protocols.TamError, match="listed twice"):
        stratified_splits([("a", "X"), ("a", "Y")])
    with pytest.raises(protocols.TamError, match="train fraction"):
        stratified_splits(items(), train_fraction=1.0)


def test_video_list_hash_ignores_order():
    data = items()
    assert protocols.video_list_hash(data) == protocols.video_list_hash(list(reversed(data)))


# ---- results.json -> tables ----------------------------------------------------------------------
def write_run(root: Path, name: str, dataset_file: str, *, task="classification", fusion="ctm", mods=MODALITIES,
              test=None, base=None, n_test=367, random_init=False, classes=None, extra=None) -> Path:
    cfg = to_dict(RunConfig())
    cfg["model"].update(fusion=fusion, modalities=list(mods))
    cfg["data"].update(labels=f"/data/{dataset_file}", task=task, classes=classes or [])
    for section, values in (extra or {}).items():
        cfg[section].update(values)
    results = {"task": task, "config": cfg, "code_version": "0.1.0+gtest",
               "n": {"train": 622, "val": 110, "test": n_test, "skipped": 0}, "best_epoch": 3,
               "val": test or {}, "test": test or {},
               "baseline": {"name": "majority class" if task == "classification" else "training mean",
                            "test": base or {}},
               "random_init_features": random_init}
    d = root / name
    d.mkdir(parents=True)
    (d / "results.json").write_text(json.dumps(results))
    return d


def test_table1_mean_std_baseline_and_not_run_cells(tmp_path):
    accs = [0.50 + 0.01 * k for k in range(10)]
    for k, acc in enumerate(accs, 1):
        write_run(tmp_path, f"ve8/all/split{k:02d}", f"ve8_split{k:02d}.csv",
                  test={"accuracy": acc, "macro_f1": acc - 0.1}, base={"accuracy": 0.19, "macro_f1": 0.04},
                  n_test=366 + k % 2)
    write_run(tmp_path, "yf6/image/public", "yf6_public.csv", mods=("image",), test={"accuracy": 0.6},
              base={"accuracy": 0.2}, n_test=818)
    runs, skipped = collect_runs([tmp_path])
    assert len(runs) == 11 and skipped == []
    result = build_table(1, runs)
    header, rows = protocols.table_rows(result)
    assert header[:4] == ["Image", "Motion", "Audio", "VE-8 acc (%)"]
    all3 = rows[-1]
    mean, std = 100 * np.mean(accs), 100 * np.std(accs, ddof=1)
    assert all3[3] == f"{mean:.2f} ± {std:.2f}" and all3[4] == "19.00" and all3[5] == "10 × 366–367"
    assert all3[6:] == ["—", "—", "—"]  # YF-6 with all three modalities was not run
    image = rows[0]
    assert image[:3] == ["✓", "", ""] and image[3] == "—" and image[6:] == ["60.00", "20.00", "1 × 818"]
    md = to_markdown(result)
    assert "WARNING" not in md and "published" not in md
    assert "| ✓ | ✓ | ✓ |" in md


def test_paper_numbers_only_in_their_own_columns(tmp_path):
    write_run(tmp_path, "r", "ve8_split01.csv", fusion="joint", test={"accuracy": 0.3}, base={"accuracy": 0.2})
    result = build_table(2, collect_runs([tmp_path])[0])
    header, rows = protocols.table_rows(result, paper=True)
    assert header[-2:] == ["published (paper): VE-8 acc (%)", "published (paper): YF-6 acc (%)"]
    joint = next(r for r in rows if r[0] == "Joint attention")
    assert joint[1] == "30.00" and joint[-2:] == ["54.12", "60.27"]
    assert "Published (paper): numbers printed in Pan et al." in to_markdown(result, paper=True)
    table = list(csv.reader(io.StringIO(to_csv(result, paper=True))))
    row = next(r for r in table if r[0] == "Joint attention")
    assert float(row[table[0].index("VE-8 acc (%) mean")]) == pytest.approx(30.0)
    assert row[table[0].index("VE-8 acc (%) std")] == ""  # one run: no std
    assert float(row[table[0].index("published (paper): VE-8 acc (%)")]) == pytest.approx(54.12)


def test_random_init_is_loud(tmp_path):
    write_run(tmp_path, "a", "ve8_split01.csv", test={"accuracy": 0.9}, base={"accuracy": 0.2}, random_init=True)
    write_run(tmp_path, "b", "ve8_split02.csv", test={"accuracy": 0.8}, base={"accuracy": 0.2})
    md = to_markdown(build_table(1, collect_runs([tmp_path])[0]))
    assert "WARNING: 1 of 2 runs used RANDOM-INIT features" in md and "85.00 ± 7.07 ⚠RANDOM-INIT" in md
    table = list(csv.reader(io.StringIO(to_csv(build_table(1, collect_runs([tmp_path])[0])))))
    assert table[-1][table[0].index("VE-8 random-init runs")] == "1"


def test_table6_regression_pretrained_and_unplaced_runs(tmp_path):
    reg = {"valence_mse": 0.2, "valence_pcc": 0.5, "arousal_mse": 1.1, "arousal_pcc": 0.55}
    write_run(tmp_path, "me16", "mediaeval2016.csv", task="regression", test=reg,
              base={"valence_mse": 0.3, "valence_pcc": None, "arousal_mse": 0.6, "arousal_pcc": None}, n_test=1200)
    write_run(tmp_path, "me16-tsc", "mediaeval2016.csv", task="regression", test=reg, base={},
              extra={"train": {"init_from": "pretrain/best.safetensors"}}, n_test=1200)
    write_run(tmp_path, "me15v", "x.csv", test={"accuracy": 0.45}, base={"accuracy": 0.41},
              classes=["negative", "neutral", "positive"], n_test=4756)
    write_run(tmp_path, "ve8", "ve8_split01.csv", test={"accuracy": 0.5})
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "results.json").write_text("{not json")
    runs, skipped = collect_runs([tmp_path])
    assert len(runs) == 4 and len(skipped) == 1 and "broken/results.json: unreadable results" in skipped[0]
    result = build_table(6, runs, skipped)
    header, rows = protocols.table_rows(result)
    tam_wo, tam = rows
    assert tam_wo[0] == "TAM w/o TSC" and tam_wo[1:4] == ["45.00", "41.00", "1 × 4756"]
    assert tam_wo[4:7] == ["—", "—", "—"]  # MediaEval 2015 arousal not run
    assert tam_wo[7:12] == ["0.200", "0.300", "0.500", "n/a", "1.100"]
    assert tam_wo[-1] == "1 × 1200"
    assert tam[0] == "TAM" and tam[1] == "—" and tam[7] == "0.200"
    md = to_markdown(result)
    assert "not in table 6:" in md and "/ve8 (VE-8" in md and "skipped " in md


def test_cells_that_mix_configurations_are_flagged(tmp_path):
    write_run(tmp_path, "a", "ve8_split01.csv", test={"accuracy": 0.5})
    write_run(tmp_path, "b", "ve8_split02.csv", test={"accuracy": 0.5}, extra={"optim": {"epochs": 3}})
    write_run(tmp_path, "c", "ve8_split02.csv", test={"accuracy": 0.5}, extra={"optim": {"epochs": 3}})
    notes = build_table(1, collect_runs([tmp_path])[0]).notes
    assert any("differ in configuration" in n for n in notes)
    assert any("repeat the same labels file" in n for n in notes)


def test_dataset_can_be_forced_or_is_refused(tmp_path):
    write_run(tmp_path, "a", "mystery.csv", task="regression", test={"valence_mse": 1.0})
    runs, skipped = collect_runs([tmp_path])
    assert runs == [] and "cannot tell the dataset" in skipped[0]
    runs, _ = collect_runs([tmp_path / "a"], dataset="mediaeval2016")
    assert runs[0].dataset == "mediaeval2016"
    with pytest.raises(protocols.TamError, match="no such run directory"):
        collect_runs([tmp_path / "nope"])


def run_collect(argv: list[str]) -> int:
    from tam.commands import collect

    parser = argparse.ArgumentParser()
    collect.add_arguments(parser)
    return collect.run(parser.parse_args(argv))


def test_collect_command_writes_markdown_and_csv(tmp_path, capsys):
    for k in range(1, 4):
        write_run(tmp_path / "runs", f"split{k:02d}", f"ve8_split{k:02d}.csv", test={"accuracy": 0.5},
                  base={"accuracy": 0.15})
    assert run_collect([str(tmp_path / "runs"), "--table", "1", "--out", str(tmp_path / "t1.md"), "--paper"]) == 0
    md = (tmp_path / "t1.md").read_text()
    assert md.startswith("## Table 1") and "50.00 ± 0.00" in md and "3 × 367" in md and "56.04" in md
    rows = list(csv.DictReader((tmp_path / "t1.csv").open()))
    assert rows[-1]["VE-8 runs"] == "3" and rows[0]["VE-8 runs"] == ""
    assert "3 run(s) read, 3 placed" in capsys.readouterr().out
    (tmp_path / "empty").mkdir()
    with pytest.raises(protocols.TamError, match="no results.json"):
        run_collect([str(tmp_path / "empty"), "--table", "1", "--out", str(tmp_path / "x")])


def test_commands_registered():
    from tam.cli import COMMANDS

    assert COMMANDS["dataset"] == "dataset" and COMMANDS["collect"] == "collect"


# ---- configs ---------------------------------------------------------------------------------------
# run configs only: pre-training, experiment grids and search spaces have their own schemas (their own tests)
OWN_SCHEMA = {"pretrain", "experiments", "tune"}
CONFIGS = sorted(p for p in (REPO / "configs").rglob("*.yaml") if not OWN_SCHEMA & set(p.parts))


def test_a_config_for_every_setting_of_tables_1_2_5_6():
    names = {p.relative_to(REPO / "configs").as_posix() for p in CONFIGS}
    for ds in ("ve8", "yf6"):
        for mods in ("image", "motion", "audio", "image-motion", "image-audio", "motion-audio", "image-motion-audio"):
            assert f"{ds}/ctm-{mods}.yaml" in names
        for fusion in ("concat", "divide", "joint", "inner", "cross"):
            assert f"{ds}/{fusion}-image-motion-audio.yaml" in names
        assert f"{ds}/ctm-dual-features.yaml" in names
    assert {"mediaeval2015/valence-ctm.yaml", "mediaeval2015/arousal-ctm.yaml", "mediaeval2016/ctm.yaml"} <= names


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.relative_to(REPO / "configs").as_posix())
def test_config_loads_with_the_papers_hyper_parameters(path):
    raw = yaml.safe_load(path.read_text())
    cfg = from_dict(RunConfig, raw)  # schema: known keys and types
    if set(cfg.model.modalities) <= set(MODALITIES):
        cfg = load_config(path)  # also validated; other feature names await the engine's relaxed check
    video = path.parent.name in ("ve8", "yf6")
    assert (cfg.optim.batch_size, cfg.optim.epochs, cfg.model.T) == ((8, 100, 64) if video else (16, 20, 16))
    assert (cfg.optim.lr, cfg.optim.weight_decay, cfg.model.d, cfg.model.layers, cfg.model.heads) == (
        1e-4, 5e-3, 768, 12, 8)
    assert cfg.data.val_fraction == 0.15
    fake = protocols.RunResult(path, cfg.data.task, to_dict(cfg), {}, {}, "", {}, False, "")
    assert protocols.infer_dataset(fake) == {"ve8": "ve8", "yf6": "yf6", "mediaeval2016": "mediaeval2016"}.get(
        path.parent.name, f"mediaeval2015_{path.stem.split('-')[0]}")
    placed = [n for n in (1, 2, 5, 6) if build_table(n, [_as_run(fake)]).n_runs]
    assert placed, f"{path} fits no table"


def _as_run(run):
    run.dataset = protocols.infer_dataset(run)
    run.test = {"accuracy": 0.5, "valence_mse": 0.1, "valence_pcc": 0.1, "arousal_mse": 0.1, "arousal_pcc": 0.1}
    return run


@pytest.mark.slow
def test_table_import_splits_engine_and_collect_end_to_end(tmp_path):
    """A clip-level table -> store, seeded splits -> labels CSVs, the real engine -> results.json -> Table 1."""
    loop = pytest.importorskip("tam.train.loop")
    from tam.datasets.cliptable import import_table

    rng = np.random.default_rng(0)
    lines, rows = [], []
    for i in range(36):
        c = i % 3
        lines.append(f"{i}\tclip{i:03d}.mp4\t" + "\t".join(f"{x:.3E}" for x in rng.normal(size=6) + 2 * c))
        rows.append((f"clip{i:03d}", "abc"[c]))
    (tmp_path / "t.tsv").write_text("\n".join(lines) + "\n")
    (tmp_path / "g.yaml").write_text("modalities:\n  image: [f1..f2]\n  motion: [f3..f4]\n  audio: [f5..f6]\n")
    assert import_table(tmp_path / "t.tsv", tmp_path / "g.yaml", tmp_path / "store").written == 36
    splits = stratified_splits(rows, n_splits=2, seed=0)
    csvs = protocols.write_split_set(tmp_path / "splits", "ve8", ["a", "b", "c"], rows, splits, {"seed": 0})
    accs = []
    for k, labels in enumerate(csvs, 1):
        cfg = load_config(None, [f"data.store={tmp_path / 'store'}", f"data.labels={labels}", "model.d=16",
                                 "model.layers=1", "model.heads=2", "model.T=1", "optim.epochs=1",
                                 "train.num_workers=0", "train.progress=false", "data.classes=[a, b, c]"])
        accs.append(loop.fit(cfg, tmp_path / "runs" / f"split{k:02d}", log=lambda *a: None)["test"]["accuracy"])
    runs, skipped = collect_runs([tmp_path / "runs"])
    assert skipped == [] and [r.dataset for r in runs] == ["ve8", "ve8"]
    header, table = protocols.table_rows(build_table(1, runs))
    expect = f"{100 * np.mean(accs):.2f} ± {100 * np.std(accs, ddof=1):.2f}"
    assert table[-1][4:6] == ["33.33", "2 × 12"]
    # one epoch of a d=16 model loses to the linear baseline on these separable clips: the cell says so
    mean_std, flag = table[-1][3].split(" ⚠")
    assert mean_std == expect and flag.startswith("<linear ") and float(flag.split()[-1]) > 100 * np.mean(accs)


@pytest.mark.parametrize("table", [1, 2, 5, 6])
def test_runs_scripts_name_existing_configs(table, tmp_path):
    import shutil
    import subprocess

    if shutil.which("bash") is None:
        pytest.skip("no bash")
    env = {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "DRY": "1", "OUT": str(tmp_path), "NGPU": "2",
           "PRETRAINED": "p.safetensors", "INIT_KEY": "train.init_from", "DUAL_STORE_VE8": "d", "DUAL_STORE_YF6": "d"}
    out = subprocess.run(["bash", f"runs/table{table}.sh"], cwd=REPO, env=env, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    cmds = [line.split() for line in out.stdout.splitlines() if line.startswith("+ torchrun")]
    assert cmds and all("--nproc_per_node=2" in c for c in cmds)
    for c in cmds:
        assert (REPO / c[c.index("--config") + 1]).is_file()
    expected = {1: 7 * 11, 2: 6 * 11, 5: 3 * 11, 6: 6}[table]  # VE-8: 10 splits, YF-6: 1
    assert len(cmds) == expected


def test_runs_scripts_pass_each_override_with_its_own_set(tmp_path):
    import subprocess

    env = {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "DRY": "1", "OUT": str(tmp_path), "SPLITS": "03"}
    out = subprocess.run(["bash", "runs/table1.sh"], cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    line = next(x for x in out.stdout.splitlines() if "ve8/ctm-image/split03" in x)
    assert line.endswith("--set data.store=data/ve8/features --set data.labels=data/ve8/splits/ve8_split03.csv")
    assert line.startswith("+ tam train --config configs/ve8/ctm-image.yaml")


def test_cells_below_the_linear_baseline_are_flagged(tmp_path):
    for k, (acc, lin) in enumerate([(0.40, 0.45), (0.42, 0.47)], 1):
        d = write_run(tmp_path, f"ve8/all/split{k:02d}", f"ve8_split{k:02d}.csv", test={"accuracy": acc},
                      base={"accuracy": 0.19})
        r = json.loads((d / "results.json").read_text())
        r["linear"] = {"name": "linear (logistic, C=1)", "test": {"accuracy": lin}}
        (d / "results.json").write_text(json.dumps(r))
    write_run(tmp_path, "yf6/all/public", "yf6_public.csv", test={"accuracy": 0.6}, base={"accuracy": 0.2})
    result = build_table(1, collect_runs([tmp_path])[0])
    all3 = protocols.table_rows(result)[1][-1]
    assert all3[3] == "41.00 ± 1.41 ⚠<linear 46.00"
    assert "⚠" not in all3[6]  # no linear baseline recorded: no flag
    assert "below the linear baseline" in to_markdown(result)
