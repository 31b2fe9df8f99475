"""The worlds with power: each label follows its world's rule (an oracle on the features recovers it), the test
sets hold >= 1,000 videos, the pre-training corpus carries the label's content at the cued segment."""

import json

import numpy as np
import pyarrow.parquet as pq
import pytest

from tam.datasets.labels import read_labels
from tam.demo.worlds.power import (
    CLASSES,
    WORLDS,
    CorpusSpec,
    PowerSpec,
    corpus_vocab,
    detect,
    generate_video,
    make_power_world,
    make_pretrain_corpus,
    oracle,
    world_dirs,
)
from tam.features.store import FeatureStore


@pytest.mark.parametrize("world", WORLDS)
def test_oracle_on_the_features_recovers_every_label(world):
    spec = PowerSpec(world=world)
    dirs = world_dirs(spec)
    ys = []
    for i in range(300):
        feats, y, _ = generate_video(np.random.default_rng([9, i]), spec, dirs)
        assert oracle(world, feats, dirs, spec.amp) == y
        ys.append(y)
    counts = np.bincount(ys, minlength=len(CLASSES[world]))
    assert counts.min() > 300 / len(counts) / 2  # every class is drawn, roughly balanced


def test_timing_world_image_position_carries_no_label_information():
    """The flash is uniform on [0, T-5] whatever the class: only its relation to the beep decides."""
    spec = PowerSpec(world="timing", min_segments=12, max_segments=12)
    dirs = world_dirs(spec)
    pos = {0: [], 1: []}
    for i in range(2000):
        _, y, plan = generate_video(np.random.default_rng([5, i]), spec, dirs)
        pos[y].append(plan["image"][0][0])
    h0, h1 = (np.bincount(pos[y], minlength=8) / len(pos[y]) for y in (0, 1))
    assert np.abs(h0 - h1).max() < 0.04


def test_cooccur_world_each_modality_alone_is_uninformative():
    spec = PowerSpec(world="cooccur", min_segments=10, max_segments=10)
    dirs = world_dirs(spec)
    per = {0: np.zeros(10), 1: np.zeros(10)}
    for i in range(2000):
        _, y, plan = generate_video(np.random.default_rng([6, i]), spec, dirs)
        for t, _ in plan["audio"]:
            per[y][t] += 1
    p0, p1 = per[0] / per[0].sum(), per[1] / per[1].sum()
    assert np.abs(p0 - p1).max() < 0.03


def test_world_files_test_size_and_labels(tmp_path):
    spec = PowerSpec(world="timing", n_train=30, n_test=1000, dims={"image": 8, "audio": 8}, rank=4)
    store, labels = make_power_world(tmp_path / "w", spec)
    lab = read_labels(labels, "classification")
    assert sum(s == "test" for s in lab.split) == 1000 and sum(s == "train" for s in lab.split) == 30
    st = FeatureStore.open(store)
    assert len(st) == 1030 and st.manifest.dims == {"image": 8, "audio": 8}
    dirs = world_dirs(spec)
    for i in (0, 500, 1029):
        v = lab.videos[i]
        f = st.read(v)
        feats = {m: np.asarray(f.features[m]) for m in ("image", "audio")}
        assert CLASSES["timing"][oracle("timing", feats, dirs, spec.amp)] == lab.classes[lab.targets[i]]
    assert make_power_world(tmp_path / "w", spec) == (store, labels)  # idempotent


def test_pretrain_corpus_words_at_the_cue_are_the_class(tmp_path):
    spec = PowerSpec(world="pretrain", dims={"image": 16, "audio": 8}, rank=4)
    store, corpus = make_pretrain_corpus(tmp_path / "u", spec, CorpusSpec(n_videos=40))
    vocab = json.loads((corpus / "vocab.json").read_text())["tokens"]
    assert vocab == corpus_vocab()
    com = pq.read_table(corpus / "comments.parquet").to_pylist()
    st, dirs = FeatureStore.open(store), world_dirs(spec)
    assert st.manifest.identity() == FeatureStore.open(make_power_world(
        tmp_path / "l", PowerSpec(world="pretrain", dims={"image": 16, "audio": 8}, rank=4, n_train=2, n_test=2))[0]
    ).manifest.identity()  # fine-tuning accepts the pre-trained weights
    checked = 0
    for c in com:
        words = [vocab[i] for i in c["target_ids"]]
        if words and words[0].startswith("emo_scene"):
            f = st.read(c["video"])
            feats = {m: np.asarray(f.features[m]) for m in ("image", "audio")}
            assert words[0] == f"emo_scene{oracle('pretrain', feats, dirs, spec.amp)}"
            cue = detect(feats, dirs, spec.amp)["audio"][0][0]
            assert int(c["time"]) == cue
            checked += 1
    assert checked > 40


def test_tam_synth_world_option(tmp_path, capsys):
    from tam.cli import main

    assert main(["synth", "--world", "pretrain", "--out", str(tmp_path / "p"), "--train", "10", "--test", "5",
                 "--unlabelled", "4"]) == 0
    lab = read_labels(tmp_path / "p" / "labels.csv", "classification")
    assert len(lab) == 15 and set(lab.classes) <= set(CLASSES["pretrain"])
    assert (tmp_path / "p" / "unlabelled" / "corpus" / "comments.parquet").is_file()
    assert "corpus:" in capsys.readouterr().out
