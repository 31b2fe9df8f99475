"""The synchrony worlds: the label is the timing rule (an oracle on the features recovers it), neither event's
position alone gives it, both worlds share the encoders' manifest, and the comments at the flash carry the timing."""

import numpy as np
import pyarrow.parquet as pq
import pytest

from tam.demo.worlds.sync import (
    BACKGROUND,
    CLASSES,
    SyncCorpusSpec,
    SyncSpec,
    generate_sync_video,
    make_sync_corpus,
    make_sync_world,
    sync_dirs,
    sync_oracle,
    sync_vocab,
)
from tam.features.store import FeatureStore


def test_oracle_recovers_every_label_and_positions_alone_do_not():
    for world in ("sync", "valence"):
        spec = SyncSpec(world=world)
        dirs = sync_dirs(spec)
        ys, ti, lengths = [], [], []
        for i in range(400):
            feats, y, plan = generate_sync_video(np.random.default_rng([5, i]), spec, dirs)
            assert sync_oracle(feats, dirs, spec.amp) == y
            assert (abs(plan["audio"] - plan["image"]) <= 1) == (y == 0)
            ys.append(y), ti.append(plan["image"]), lengths.append(len(feats["image"]))
        ys, ti = np.array(ys), np.array(ti)
        assert 0.4 < ys.mean() < 0.6
        assert abs(ti[ys == 0].mean() - ti[ys == 1].mean()) < 1.0  # the flash's position alone says little
        assert (min(lengths), max(lengths)) == BACKGROUND[world][4:]


def test_worlds_share_the_encoders_but_not_the_background(tmp_path):
    a, b = SyncSpec(world="sync", n_train=6, n_test=4), SyncSpec(world="valence", n_train=6, n_test=4)
    sa, la = make_sync_world(tmp_path / "a", a)
    sb, lb = make_sync_world(tmp_path / "b", b)
    assert FeatureStore.open(sa).manifest.to_json() == FeatureStore.open(sb).manifest.to_json()
    assert {r.split(",")[1] for r in lb.read_text().splitlines()[1:]} <= set(CLASSES["valence"])
    da, db = sync_dirs(a), sync_dirs(b)
    assert np.array_equal(da["image"], db["image"])
    x = FeatureStore.open(sb).read("v00000").features["image"]
    bg_a, bg_b = da["bg_image"][:8], da["bg_image"][8:20]
    assert np.linalg.norm(x @ bg_b.T) > 3 * np.linalg.norm(x @ bg_a.T)  # B's background lies in its own directions


def test_comments_at_the_flash_carry_the_timing(tmp_path):
    spec = SyncSpec(world="sync")
    store, corpus = make_sync_corpus(tmp_path / "u", spec, SyncCorpusSpec(n_videos=30, corpora=(10,)))
    vocab = sync_vocab()
    com = pq.read_table(corpus / "comments.parquet").to_pylist()
    small = pq.read_table(corpus.parent / "corpus-10" / "segments.parquet").column("video").to_pylist()
    assert small == [f"u{i:05d}" for i in range(10)]
    dirs, st = sync_dirs(spec), FeatureStore.open(store)
    checked = 0
    for c in com:
        words = [vocab[i] for i in c["target_ids"]]
        feats = st.read(c["video"]).features
        t_i = int(np.argmax(feats["image"] @ dirs["image"][0]))
        if "flash" in [vocab[i] for i in c["masked_ids"]]:
            assert int(c["time"]) == t_i
            assert words == ["emo_together" if sync_oracle(feats, dirs, spec.amp) == 0 else "emo_lagging"]
            checked += 1
    assert checked > 30


@pytest.mark.slow
def test_probe_reads_the_pretrained_fusion(tmp_path):
    """Pre-training with loss.lambda_v on a tiny world A, then probes of its fusion against the same at random init."""
    from safetensors.torch import load_file

    from tam.config import ModelConfig, OptimConfig, TrainConfig
    from tam.demo.worlds.sync import probe_timing
    from tam.train.pretrain import DecoderConfig, LossConfig, PretrainConfig, PretrainDataConfig, pretrain

    spec = SyncSpec(world="sync", n_train=24, n_test=24)
    make_sync_world(tmp_path / "a", spec)
    store, corpus = make_sync_corpus(tmp_path / "a" / "unlabelled", spec, SyncCorpusSpec(n_videos=20))
    cfg = PretrainConfig(model=ModelConfig(modalities=["image", "audio"], d=16, layers=1, heads=2, T=16),
                         decoder=DecoderConfig(layers=1, heads=2), loss=LossConfig(lambda_v=1.0),
                         data=PretrainDataConfig(store=str(store), corpus=str(corpus), comments_per_clip=8),
                         optim=OptimConfig(optimizer="adam", batch_size=8, epochs=1),
                         train=TrainConfig(num_workers=0, progress=False, device="cpu")).validate()
    pretrain(cfg, tmp_path / "pre", log=lambda s: None)
    ckpt = tmp_path / "pre" / "pretrained.safetensors"
    header, row = (tmp_path / "pre" / "metrics.csv").read_text().splitlines()[:2]
    assert header.endswith(",l_v") and float(row.split(",")[-1]) > 0  # loss.lambda_v trained f^0's word layer
    assert any(k.startswith("f0_words.") for k in load_file(str(ckpt)))
    pre = probe_timing(ckpt, tmp_path / "a", "sync", n_train=24)
    rnd = probe_timing(ckpt, tmp_path / "a", "sync", pretrained=False, n_train=24)
    assert set(pre) == {"f0", "f at the flash", "mean of f"} and all(0 <= v <= 1 for v in pre.values())
    assert pre != rnd  # the pre-trained weights are what the probe reads
