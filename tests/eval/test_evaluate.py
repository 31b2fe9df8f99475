"""`tam evaluate` / `tam predict --model` on broken run directories and stores: one stderr line naming the file
(and the video), a non-zero exit, never a traceback."""

import json
import shutil
import subprocess
import sys

import pytest

from tam.cli import main
from tam.config import DataConfig, ModelConfig, OptimConfig, RunConfig, TrainConfig
from tam.eval.evaluate import evaluate_run
from tam.features.store import entry_name
from tam.train.loop import fit


@pytest.fixture(scope="module")
def trained(tiny_world, tmp_path_factory):
    """(store, labels, run_dir) of a 1-epoch d=16 run on the tiny world."""
    from tam.demo.worlds.features import CLASSES

    store, labels = tiny_world
    cfg = RunConfig(model=ModelConfig(d=16, layers=1, heads=2, T=4, dropout=0.0),
                    data=DataConfig(store=str(store), labels=str(labels), classes=list(CLASSES)),
                    optim=OptimConfig(lr=1e-3, batch_size=16, epochs=1),
                    train=TrainConfig(num_workers=0, progress=False, device="cpu", threads=1))
    run = tmp_path_factory.mktemp("eval") / "run"
    fit(cfg, run, log=lambda s: None)
    return store, labels, run


def broken_run(trained, tmp_path, name, damage):
    run = tmp_path / "run"
    shutil.copytree(trained[2], run, ignore=shutil.ignore_patterns("tb", "last.pt"))
    damage(run / name)
    return run


def set_json(**changes):
    def damage(path):
        meta = json.loads(path.read_text())
        for k, v in changes.items():
            section, _, key = k.partition("__")
            if key:
                meta[section][key] = v
            elif v is None:
                del meta[section]
            else:
                meta[section] = v
        path.write_text(json.dumps(meta))
    return damage


def truncate(path):
    path.write_bytes(path.read_bytes()[:len(path.read_bytes()) * 2 // 3])


CASES = {
    "garbage-json": ("best.json", lambda p: p.write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe")),
    "no-dims": ("best.json", set_json(dims=None)),
    "unknown-fusion": ("best.json", set_json(model__fusion="perceiver")),
    "negative-d": ("best.json", set_json(model__d=-8)),
    "huge-d": ("best.json", set_json(model__d=10**7)),
    "short-classes": ("best.json", set_json(classes=["scene0_up"])),
    "truncated-weights": ("best.safetensors", truncate),
    "empty-weights": ("best.safetensors", lambda p: p.write_bytes(b"")),
    "huge-header": ("best.safetensors", lambda p: p.write_bytes((10**15).to_bytes(8, "little") + b"{}")),
}


@pytest.mark.parametrize("case", list(CASES))
def test_evaluate_cli_broken_checkpoints(trained, tmp_path, capsys, case):
    store, labels, _ = trained
    name, damage = CASES[case]
    run = broken_run(trained, tmp_path, name, damage)
    code = main(["evaluate", "--run-dir", str(run), "--store", str(store), "--labels", str(labels)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.count("\n") == 0 and err.startswith("error: "), err
    assert str(run / name) in err


def tam(*args):
    return subprocess.run([sys.executable, "-m", "tam", *map(str, args)], capture_output=True, text=True)


@pytest.mark.parametrize("case", ["garbage-json", "huge-d"])
def test_evaluate_subprocess_one_stderr_line(trained, tmp_path, case):
    store, labels, _ = trained
    name, damage = CASES[case]
    run = broken_run(trained, tmp_path, name, damage)
    p = tam("evaluate", "--run-dir", run, "--store", store, "--labels", labels)
    assert p.returncode == 2 and p.stderr.strip().count("\n") == 0 and str(run / name) in p.stderr, p.stderr


@pytest.mark.parametrize("case", ["short-classes"])
def test_predict_model_subprocess_one_stderr_line(trained, tmp_path, case):
    store, _, _ = trained
    name, damage = CASES[case]
    run = broken_run(trained, tmp_path, name, damage)
    p = tam("predict", "--model", run, "--features", store, "-o", tmp_path / "out", "--no-progress")
    assert p.returncode == 2 and p.stderr.strip().count("\n") == 0 and str(run / name) in p.stderr, p.stderr
    assert not (tmp_path / "out").exists()


def test_evaluate_cli_prints_readable_metrics_and_whether_features_are_real(trained, tmp_path, capsys):
    from tam.eval.evaluate import format_metrics

    store, labels, run = trained
    out = tmp_path / "m.json"
    assert main(["evaluate", "--run-dir", str(run), "--store", str(store), "--labels", str(labels), "--split", "test",
                 "--out", str(out)]) == 0
    text = capsys.readouterr().out
    saved = json.loads(out.read_text())
    assert saved["random_init_features"] is False and "{" not in text
    assert f"on split test: {saved['n']} videos scored" in text and "not real" not in text
    assert f"accuracy         {saved['metrics']['accuracy']:.4f}" in text
    assert "not real results" in format_metrics({**saved, "random_init_features": True}, str(run), "test")


def test_evaluate_names_a_damaged_entry_up_front(trained, tmp_path):
    store, labels, run = trained
    copy = tmp_path / "store"
    shutil.copytree(store, copy)
    video = next(line.split(",")[0] for line in labels.read_text().splitlines()[1:] if line.endswith(",test"))
    npy = copy / "videos" / entry_name(video) / "motion.npy"
    npy.write_bytes(npy.read_bytes()[:-100])
    p = tam("evaluate", "--run-dir", run, "--store", copy, "--labels", labels, "--split", "test")
    assert p.returncode == 2 and p.stderr.strip().count("\n") == 0, p.stderr
    assert repr(video) in p.stderr and str(npy) in p.stderr
    r = evaluate_run(str(run), str(copy), str(labels), "train")  # other splits are unaffected
    assert r["n"] > 0 and r["skipped"] == 0


def test_fuzz_evaluate_gives_only_one_line_tam_errors(trained, tmp_path):
    """Bit-flipped and truncated best.json / best.safetensors and store entry files through `evaluate_run`."""
    import numpy as np

    from tam.errors import TamError

    store, labels, _ = trained
    run = broken_run(trained, tmp_path, "best.json", lambda p: None)
    copy = tmp_path / "store"
    shutil.copytree(store, copy)
    video = next(line.split(",")[0] for line in labels.read_text().splitlines()[1:] if line.endswith(",test"))
    targets = [run / "best.json", run / "best.safetensors", copy / "videos" / entry_name(video) / "meta.json",
               copy / "videos" / entry_name(video) / "image.npy"]
    rng = np.random.default_rng(0)
    refused = 0
    for path in targets:
        raw = path.read_bytes()
        for i in range(6):
            b = bytearray(raw[:int(rng.integers(0, len(raw)))] if i < 2 else raw)
            for _ in range(int(rng.integers(1, 4)) if i >= 2 else 0):
                b[int(rng.integers(0, min(len(raw), 300)))] ^= 1 << int(rng.integers(0, 8))
            path.write_bytes(bytes(b))
            try:
                evaluate_run(str(run), str(copy), str(labels), "test")
            except TamError as e:
                assert "\n" not in str(e) and path.name in str(e), str(e)
                refused += 1
        path.write_bytes(raw)
    assert refused >= 8  # every truncation at least
