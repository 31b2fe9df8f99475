"""The predicted viewer-words track: a tiny pre-trained decoder on the synthetic comment world."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from tam.errors import TamError

pytestmark = pytest.mark.slow  # pre-trains and fine-tunes tiny models


@pytest.fixture(scope="module")
def pre(tmp_path_factory, trainer):
    """(store, corpus, pre-trained run, fine-tuned classifier run) on the synthetic comment world."""
    from tam.config import ModelConfig, OptimConfig, TrainConfig
    from tam.demo.worlds.features import WorldSpec
    from tam.demo.worlds.pretrain import CommentWorldSpec, make_comment_world
    from tam.features.store import FeatureStore
    from tam.train.pretrain import DecoderConfig, PretrainConfig, PretrainDataConfig, pretrain

    root = tmp_path_factory.mktemp("words")
    store, corpus = make_comment_world(root, WorldSpec(min_segments=3, max_segments=6), CommentWorldSpec(n_videos=16))
    cfg = PretrainConfig(model=ModelConfig(d=16, layers=1, heads=2, T=2, dropout=0.0),
                         decoder=DecoderConfig(layers=1, heads=2, dropout=0.0),
                         data=PretrainDataConfig(store=str(store), corpus=str(corpus), comments_per_clip=4),
                         optim=OptimConfig(optimizer="adam", lr=1e-3, weight_decay=0.0, batch_size=8, epochs=1),
                         train=TrainConfig(num_workers=0, progress=False, device="cpu", threads=1)).validate()
    pretrain(cfg, root / "pre", log=lambda s: None)
    videos = FeatureStore.open(store).videos()[:4]
    labels = root / "labels.csv"
    labels.write_text("video,label,split\n" + "".join(f"{v},{c},{s}\n" for v, c, s in zip(
        videos, ["calm", "tense", "calm", "tense"], ["train", "train", "val", "val"])))
    return store, corpus, root / "pre", trainer(store, labels, root / "ft", "ctm")


def test_words_track_follows_its_definition(pre):
    from tam.comments.process import SPECIAL_TOKENS
    from tam.features.store import FeatureStore
    from tam.infer.pipeline import predict
    from tam.infer.words import load_word_model

    store, corpus, pre_run, ft = pre
    video = FeatureStore.open(store).videos()[0]
    (r,) = predict([video], ft, features=str(store), words=str(pre_run), device="cpu", progress=False,
                   log=lambda s: None)
    w = r["words"]
    assert len(w["top"]) == r["segments"] and all(1 <= len(x) <= 3 for x in w["top"])
    vocab = json.loads((corpus / "vocab.json").read_text())["tokens"]
    assert all(x in vocab and x not in SPECIAL_TOKENS for seg in w["top"] for x in seg)
    assert all(s == sorted(s, reverse=True) for s in w["score"])
    # segment 0 lies in the first window only: recompute its best word from Eqs. (7) and (8)
    wm = load_word_model(pre_run)
    from tam.features.clips import ClipDataset, collate

    ds = ClipDataset(FeatureStore.open(store), [video], np.zeros(1), wm.meta["model"]["modalities"], wm.T, train=False)
    b = collate([ds[(0, 0)]])
    with torch.no_grad():
        fo = wm.model.fusion(wm.model.norm(b.x, b.valid), b.valid, b.present)  # as in pre-training's forward
        s, m = vocab.index("[#S]"), vocab.index("[#M]")
        p_w = wm.model.decoder(torch.tensor([[s, m]]), torch.ones(1, 2, dtype=torch.bool), fo.f, fo.valid)
        p_w = p_w.word_logits[0, 1]
        p_w[:4] = -float("inf")
        p_w = p_w.softmax(-1)
        best, best_word = -1.0, ""
        for i in p_w.topk(10).indices.tolist():
            t = wm.model.decoder(torch.tensor([[s, i]]), torch.ones(1, 2, dtype=torch.bool), fo.f, fo.valid,
                                 words=False).time_logits.softmax(-1)[0, 0]
            if p_w[i] * t > best:
                best, best_word = float(p_w[i] * t), vocab[i]
    assert w["top"][0][0] == best_word and w["score"][0][0] == pytest.approx(best, abs=1e-4)


def test_words_refused_for_other_features(pre, world):
    from tam.infer.pipeline import predict

    _, _, pre_run, _ = pre
    with pytest.raises(TamError, match="pre-trained decoder"):
        predict(["v0"], world["ctm"], features=str(world["store"]), words=str(pre_run), progress=False)


def test_words_in_report(pre, tmp_path):
    from tam.infer.pipeline import predict

    store, _, pre_run, ft = pre
    from tam.features.store import FeatureStore

    two = FeatureStore.open(store).videos()[:2]
    results = predict(two, ft, features=str(store), words=str(pre_run), report=str(tmp_path / "r"),
                      progress=False, log=lambda s: None)
    page = next((tmp_path / "r").glob(f"*{results[0]['video'][:5]}*.html")).read_text()
    assert "Predicted viewer words" in page and results[0]["words"]["top"][0][0] in page


@pytest.mark.parametrize("damage, message", [
    (lambda d: (d / "pretrained.json").write_bytes(b"\xff\xfe\x00"), "not UTF-8"),
    (lambda d: _edit(d / "pretrained.json", vocab_size="many"), "'vocab_size'"),
    (lambda d: _edit(d / "pretrained.json", decoder={"layers": -1}), "decoder.layers = -1"),
    (lambda d: _edit(d / "pretrained.json", model={"d": 10**7}), "model.d = 10000000"),
    (lambda d: (d / "pretrained.safetensors").write_bytes((d / "pretrained.safetensors").read_bytes()[:999]),
     "pretrained.safetensors"),
])
def test_broken_pretrained_checkpoints_are_one_line(pre, tmp_path, damage, message):
    import shutil

    from tam.infer.words import load_word_model

    run = tmp_path / "pre"
    shutil.copytree(pre[2], run, ignore=shutil.ignore_patterns("tb", "last.pt"))
    damage(run)
    with pytest.raises(TamError) as e:
        load_word_model(run, str(pre[1] / "vocab.json"))
    assert message in str(e.value) and "\n" not in str(e.value)


def _edit(path, **changes):
    meta = json.loads(path.read_text())
    for k, v in changes.items():
        meta[k] = {**meta[k], **v} if isinstance(v, dict) else v
    path.write_text(json.dumps(meta))
