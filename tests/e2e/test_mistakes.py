"""Every command's common mistakes through the real CLI (in-process `tam.cli.main`): a missing or unreadable file,
the wrong kind of file, empty input, an unknown split / key / option value, a file from an older version.

Each must end with exit code 2 and exactly one line on stderr that names the thing (and the fix where there is
one), never a traceback, and must leave no output behind that looks complete."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tam.cli import main

ROWS = ((1, "我今天很开心"), (50, "我真的好难过呀"), (90, "我很开心啊"))

# name: (argv, substrings stderr must hold, paths that must not exist afterwards). Placeholders: {tmp} a fresh
# folder per case, {store} {labels} a synthetic world, {run} a trained run, {cstore} {corpus} a comment world
# (other ids than {store}), {old_store} {old_corpus} files of an older format, {empty_corpus} a corpus without
# training comments, {files} small bad inputs.
CASES = {
    # tam train
    "train: store missing": (["train", "--store", "{tmp}/nope", "--labels", "{labels}", "--run-dir", "{tmp}/r"],
                             ["nope", "not a feature store"], ["{tmp}/r"]),
    "train: no store given": (["train", "--labels", "{labels}", "--run-dir", "{tmp}/r"], ["--store FOLDER"],
                              ["{tmp}/r"]),
    "train: labels missing": (["train", "--store", "{store}", "--labels", "{tmp}/nope.csv", "--run-dir", "{tmp}/r"],
                              ["nope.csv", "cannot read labels"], ["{tmp}/r"]),
    "train: labels empty": (["train", "--store", "{store}", "--labels", "{files}/empty.csv", "--run-dir", "{tmp}/r"],
                            ["empty.csv", "empty"], ["{tmp}/r"]),
    "train: labels not text": (["train", "--store", "{store}", "--labels", "{files}/binary.csv", "--run-dir",
                                "{tmp}/r"], ["binary.csv", "UTF-8"], ["{tmp}/r"]),
    "train: labels is a folder": (["train", "--store", "{store}", "--labels", "{files}", "--run-dir", "{tmp}/r"],
                                  ["{files}", "cannot read labels"], ["{tmp}/r"]),
    "train: labels of other videos": (["train", "--store", "{cstore}", "--labels", "{labels}", "--run-dir",
                                       "{tmp}/r"], ["none of its", "labels e.g. v0", "store e.g. u0", "--list"],
                                      ["{tmp}/r"]),
    "train: --set with a space": (["train", "--store", "{store}", "--labels", "{labels}", "--run-dir", "{tmp}/r",
                                   "--set", "model.d", "32"], ["--set model.d", "--set model.d=32"], ["{tmp}/r"]),
    "train: unknown config section": (["train", "--store", "{store}", "--labels", "{labels}", "--run-dir", "{tmp}/r",
                                       "--set", "optimizer.lr=1e-3"], ["'optimizer'", "did you mean 'optim'"],
                                      ["{tmp}/r"]),
    "train: unknown config key": (["train", "--store", "{store}", "--labels", "{labels}", "--run-dir", "{tmp}/r",
                                   "--set", "optim.lrr=1e-3"], ["'lrr'", "did you mean 'lr'"], ["{tmp}/r"]),
    "train: unknown fusion": (["train", "--store", "{store}", "--labels", "{labels}", "--run-dir", "{tmp}/r",
                               "--set", "model.fusion=ctmm"], ["model.fusion", "'ctmm'", "joint"], ["{tmp}/r"]),
    "train: zero epochs": (["train", "--store", "{store}", "--labels", "{labels}", "--run-dir", "{tmp}/r",
                            "--set", "optim.epochs=0"], ["optim.epochs", "at least 1"], ["{tmp}/r"]),
    "train: config missing": (["train", "--config", "{tmp}/nope.yaml", "--run-dir", "{tmp}/r"],
                              ["nope.yaml", "cannot read config"], ["{tmp}/r"]),
    "train: config not YAML": (["train", "--config", "{files}/binary.csv", "--run-dir", "{tmp}/r"],
                               ["binary.csv", "not a YAML config"], ["{tmp}/r"]),
    "train: config a list": (["train", "--config", "{files}/list.yaml", "--run-dir", "{tmp}/r"],
                             ["list.yaml", "mapping"], ["{tmp}/r"]),
    "train: store of an older format": (["train", "--store", "{old_store}", "--labels", "{labels}", "--run-dir",
                                         "{tmp}/r"], ["manifest.json", "format version 0"], ["{tmp}/r"]),
    "train: unknown option": (["train", "--store", "{store}", "--bogus", "1", "--run-dir", "{tmp}/r"],
                              ["unrecognized arguments: --bogus 1", "tam train --help"], ["{tmp}/r"]),
    # tam evaluate
    "evaluate: split typo": (["evaluate", "--run-dir", "{run}", "--store", "{store}", "--labels", "{labels}",
                              "--split", "tset", "--out", "{tmp}/m.json"],
                             ["--split tset", "train, val, test"], ["{tmp}/m.json"]),
    "evaluate: split not in the file": (["evaluate", "--run-dir", "{run}", "--store", "{store}", "--labels",
                                         "{labels}", "--split", "val"], ["{labels}", "no rows of split val"], []),
    "evaluate: no model": (["evaluate", "--run-dir", "{tmp}", "--store", "{store}", "--labels", "{labels}"],
                           ["{tmp}", "best.json"], []),
    "evaluate: labels of other videos": (["evaluate", "--run-dir", "{run}", "--store", "{store}", "--labels",
                                          "{files}/other.csv"], ["other.csv", "store e.g. v0"], []),
    # tam store
    "store: not a store": (["store", "{files}"], ["{files}", "not a feature store"], []),
    "store: check a missing store": (["store", "check", "{tmp}/nope"], ["nope", "not a feature store"], []),
    # tam extract
    "extract: file missing": (["extract", "{tmp}/nope.mp4", "-o", "{tmp}/st", "--random-init", "--tiny"],
                              ["nope.mp4", "no such file"], ["{tmp}/st"]),
    "extract: empty folder": (["extract", "{files}/empty", "-o", "{tmp}/st", "--random-init", "--tiny"],
                              ["empty", "no video files"], ["{tmp}/st"]),
    "extract: -o is a file": (["extract", "{files}/clip.mp4", "-o", "{labels}", "--random-init", "--tiny"],
                              ["{labels}", "not a feature store folder"], []),
    "extract: unknown modality": (["extract", "{files}/clip.mp4", "-o", "{tmp}/st", "--modalities", "image,sound",
                                   "--random-init", "--tiny"], ["--modalities", "image,sound"], ["{tmp}/st"]),
    "extract: list missing": (["extract", "--list", "{tmp}/nope.txt", "-o", "{tmp}/st"],
                              ["nope.txt", "cannot read the list"], ["{tmp}/st"]),
    "extract: no motion weights": (["extract", "{files}/clip.mp4", "-o", "{tmp}/st", "--modalities", "motion"],
                                   ["r3d50", "no weights given", "--motion-weights FILE", "--random-init"],
                                   ["{tmp}/st"]),
    "extract: image weights not cached": (["extract", "{files}/clip.mp4", "-o", "{tmp}/st", "--modalities", "image"],
                                          ["openai/clip-vit-base-patch32", "--image-weights FOLDER",
                                           "--random-init"], ["{tmp}/st"]),
    # tam predict
    "predict: no model": (["predict", "{files}/clip.mp4", "--model", "{tmp}/nope", "-o", "{tmp}/po"],
                          ["nope", "no model"], ["{tmp}/po"]),
    "predict: no inputs": (["predict", "--model", "{run}", "-o", "{tmp}/po"], ["--features STORE"], ["{tmp}/po"]),
    "predict: video for a model of synthetic features": (["predict", "{files}/clip.mp4", "--model", "{run}", "-o",
                                                          "{tmp}/po"], ["{run}", "segment policy", "--features"],
                                                         ["{tmp}/po"]),
    "predict: video ids not in the store": (["predict", "--features", "{store}", "nope", "--model", "{run}", "-o",
                                             "{tmp}/po"], ["nope"], ["{tmp}/po"]),
    # tam comments
    "comments: lexicon missing": (["comments", "prepare", "{files}/danmaku", "--lexicon", "{tmp}/lex.xlsx", "--out",
                                   "{tmp}/cx", "--workers", "1", "--no-progress"],
                                  ["lex.xlsx", "lexicon file not found", "--lexicon"], ["{tmp}/cx"]),
    "comments: lexicon of another kind": (["comments", "prepare", "{files}/danmaku", "--lexicon", "{labels}",
                                           "--out", "{tmp}/cx", "--workers", "1", "--no-progress"],
                                          ["{labels}", "词语/word column"], ["{tmp}/cx"]),
    "comments: lexicon not a table": (["comments", "prepare", "{files}/danmaku", "--lexicon", "{files}/clip.mp4",
                                       "--out", "{tmp}/cx", "--no-progress"], ["clip.mp4", ".xlsx, .csv or .txt"],
                                      ["{tmp}/cx"]),
    "comments: input folder empty": (["comments", "prepare", "{files}/empty", "--lexicon", "{files}/lex.txt", "--out",
                                      "{tmp}/cx", "--no-progress"], ["empty", "no danmaku files"], ["{tmp}/cx"]),
    "comments: input missing": (["comments", "prepare", "{tmp}/nope", "--lexicon", "{files}/lex.txt", "--out",
                                 "{tmp}/cx", "--no-progress"], ["nope", "no such file"], ["{tmp}/cx"]),
    "comments: durations missing": (["comments", "prepare", "{files}/danmaku", "--lexicon", "{files}/lex.txt",
                                     "--durations", "{tmp}/d.csv", "--out", "{tmp}/cx", "--no-progress"],
                                    ["d.csv", "durations source not found"], ["{tmp}/cx"]),
    "comments: unknown scorer": (["comments", "prepare", "{files}/danmaku", "--lexicon", "{files}/lex.txt", "--out",
                                  "{tmp}/cx", "--scorer", "bert"], ["--scorer", "'bert'", "snownlp"], ["{tmp}/cx"]),
    "comments pair: corpus missing": (["comments", "pair", "--corpus", "{tmp}/nope", "--store", "{store}"],
                                      ["segments.parquet", "tam comments prepare"], []),
    "comments pair: id map of another kind": (["comments", "pair", "--corpus", "{corpus}", "--store", "{cstore}",
                                               "--id-map", "{labels}"], ["{labels}", "comments_id,video_id"], []),
    # tam pretrain
    "pretrain: corpus and store do not pair": (["pretrain", "run", "--store", "{store}", "--corpus", "{corpus}",
                                                "--run-dir", "{tmp}/pre"],
                                               ["corpus ids e.g. u0", "store ids e.g. v0", "--id-map",
                                                "tam comments pair"], ["{tmp}/pre"]),
    "pretrain: corpus of an older format": (["pretrain", "run", "--store", "{cstore}", "--corpus", "{old_corpus}",
                                             "--run-dir", "{tmp}/pre"], ["{old_corpus}", "unreadable corpus"],
                                            ["{tmp}/pre"]),
    "pretrain: corpus without training comments": (["pretrain", "run", "--store", "{cstore}", "--corpus",
                                                    "{empty_corpus}", "--run-dir", "{tmp}/pre"],
                                                   ["vocab.json", "only the special tokens", "--test-fraction"],
                                                   ["{tmp}/pre"]),
    "pretrain: corpus missing": (["pretrain", "run", "--store", "{cstore}", "--corpus", "{tmp}/nope", "--run-dir",
                                  "{tmp}/pre"], ["segments.parquet", "tam comments prepare"], ["{tmp}/pre"]),
    "pretrain: config not YAML": (["pretrain", "run", "--config", "{files}/binary.csv", "--run-dir", "{tmp}/pre"],
                                  ["binary.csv", "not a YAML config"], ["{tmp}/pre"]),
    "pretrain table: runs missing": (["pretrain", "table", "3", "--runs", "{tmp}/nope", "--out", "{tmp}/t3.md"],
                                     ["nope", "no such folder"], ["{tmp}/t3.md"]),
    # tam dataset, collect, tune, experiment, synth, demo
    "dataset: csv missing": (["dataset", "custom", "--csv", "{tmp}/nope.csv", "--out", "{tmp}/d"],
                             ["nope.csv", "cannot read"], ["{tmp}/d"]),
    "dataset: csv not text": (["dataset", "custom", "--csv", "{files}/binary.csv", "--out", "{tmp}/d"],
                              ["binary.csv", "UTF-8"], ["{tmp}/d"]),
    "dataset: splits without root": (["dataset", "splits", "ve8", "--out", "{tmp}/d"], ["--root"], ["{tmp}/d"]),
    "dataset check: store missing": (["dataset", "check", "{labels}", "--store", "{tmp}/nope"],
                                     ["nope", "not a feature store"], []),
    "collect: no runs": (["collect", "{tmp}/nope", "--table", "1", "--out", "{tmp}/t1"], ["nope"], ["{tmp}/t1.md"]),
    "collect: unknown table": (["collect", "{tmp}", "--table", "3", "--out", "{tmp}/t"], ["--table", "invalid choice"],
                               ["{tmp}/t.md"]),
    "tune: space missing": (["tune", "--store", "{store}", "--labels", "{labels}", "--space", "{tmp}/nope.yaml",
                             "--study-dir", "{tmp}/s"], ["nope.yaml"], ["{tmp}/s"]),
    "tune: zero trials": (["tune", "--store", "{store}", "--labels", "{labels}", "--space", "{tmp}/nope.yaml",
                           "--study-dir", "{tmp}/s", "--trials", "0"], ["--trials"], ["{tmp}/s"]),
    "experiment: grid missing": (["experiment", "run", "{tmp}/nope.yaml"], ["nope.yaml", "cannot read the grid"], []),
    "experiment: grid of another kind": (["experiment", "list", "{labels}"], ["{labels}", "mapping"], []),
    "synth: unknown world": (["synth", "--out", "{tmp}/w", "--world", "timingg"], ["--world", "'timingg'"],
                             ["{tmp}/w"]),
    "demo: unknown readout": (["demo", "--out", "{tmp}/demo", "--readouts", "f1"], ["--readouts", "'f1'"],
                              ["{tmp}/demo"]),
}


@pytest.fixture(scope="module")
def places(tiny_world, tmp_path_factory):
    """Paths of the placeholders: a world, a 1-epoch run on it, a comment world, old-format files, bad inputs."""
    import pyarrow.parquet as pq

    from tam.config import DataConfig, ModelConfig, OptimConfig, RunConfig, TrainConfig
    from tam.demo.worlds.features import CLASSES, WorldSpec
    from tam.demo.worlds.pretrain import CommentWorldSpec, make_comment_world
    from tam.train.loop import fit

    root = tmp_path_factory.mktemp("mistakes")
    store, labels = tiny_world
    cfg = RunConfig(model=ModelConfig(d=8, layers=1, heads=2, T=4),
                    data=DataConfig(store=str(store), labels=str(labels), classes=list(CLASSES)),
                    optim=OptimConfig(epochs=1, batch_size=16),
                    train=TrainConfig(num_workers=0, progress=False, device="cpu", linear_baseline=False,
                                      train_eval_videos=0))
    fit(cfg, root / "run", log=lambda s: None)
    cstore, corpus = make_comment_world(root / "cw", WorldSpec(min_segments=3, max_segments=8),
                                        CommentWorldSpec(n_videos=6))
    old_store = root / "old_store"
    shutil.copytree(store, old_store, ignore=shutil.ignore_patterns("videos"))
    manifest = json.loads((old_store / "manifest.json").read_text())
    (old_store / "manifest.json").write_text(json.dumps({**manifest, "format_version": 0}))
    old_corpus = root / "old_corpus"  # a corpus from before segment selection: no `selected` column
    shutil.copytree(corpus, old_corpus)
    segs = pq.read_table(old_corpus / "segments.parquet")
    pq.write_table(segs.drop_columns(["selected"]), old_corpus / "segments.parquet")
    empty_corpus = root / "empty_corpus"  # every comment held out: the vocabulary is the special tokens alone
    shutil.copytree(corpus, empty_corpus)
    vocab = json.loads((empty_corpus / "vocab.json").read_text())
    (empty_corpus / "vocab.json").write_text(json.dumps({**vocab, "tokens": vocab["tokens"][:4]}))
    files = root / "files"
    (files / "empty").mkdir(parents=True)
    (files / "danmaku").mkdir()
    (files / "danmaku" / "v1.csv").write_text("video,time,text\n" + "".join(f"v1,{t},{x}\n" for t, x in ROWS),
                                              encoding="utf-8")
    (files / "lex.txt").write_text("开心\n难过\n", encoding="utf-8")
    (files / "empty.csv").write_bytes(b"")
    (files / "binary.csv").write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe\x00\x88" * 8)
    (files / "list.yaml").write_text("- model\n- data\n")
    (files / "other.csv").write_text("video,label,split\nnot_a_video,scene0_up,test\n")
    (files / "clip.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42")  # named like a video: checks come before decoding
    return {"store": store, "labels": labels, "run": root / "run", "cstore": cstore, "corpus": corpus,
            "old_store": old_store, "old_corpus": old_corpus, "empty_corpus": empty_corpus, "files": files}


@pytest.mark.parametrize("case", list(CASES))
def test_mistake_is_one_helpful_line(case, places, tmp_path, capsys):
    argv, needles, absent = CASES[case]
    fill = {k: str(v) for k, v in places.items()} | {"tmp": str(tmp_path)}
    try:
        code = main([a.format(**fill) for a in argv])
    except SystemExit as e:  # argparse's own errors (tam.cli makes them one line too)
        code = e.code
    err = capsys.readouterr().err.strip()
    assert code == 2, (code, err)
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert err.startswith(("error: ", "tam ")), err
    for needle in needles:
        assert needle.format(**fill) in err, (needle, err)
    for path in absent:
        assert not Path(path.format(**fill)).exists(), f"{path} left behind: {err}"


def test_every_command_has_a_mistake_case():
    from tam.cli import COMMANDS

    tested = {case.split(":")[0].split()[0] for case in CASES}
    newer = {"export", "serve"}  # commands added beside this file; their own tests cover their mistakes
    assert set(COMMANDS) - newer <= tested, set(COMMANDS) - newer - tested


def test_closed_pipe_ends_quietly(places):
    """`tam store STORE --list | head -1`: the reader goes away; no BrokenPipeError traceback, exit 141 (SIGPIPE)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    p = subprocess.Popen([sys.executable, "-m", "tam", "store", str(places["store"]), "--list"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    p.stdout.close()  # before the child writes anything: its first write (or flush) meets a closed pipe
    err = p.stderr.read().decode()
    assert p.wait(timeout=120) == 141 and "Traceback" not in err and "BrokenPipe" not in err, err
