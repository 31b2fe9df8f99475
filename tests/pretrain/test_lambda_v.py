"""The option loss.lambda_v (off by default): each masked word read from its clip's f^0 by one linear layer."""

import math

import pytest
import torch
from safetensors.torch import load_file

from tam.objectives.pretrain import IGNORE, f0_word_loss_sum, pretrain_losses
from tam.train.pretrain import F0WordsModel, LossConfig, pretrain


def test_f0_word_loss_by_hand():
    f0_logits = torch.tensor([[2.0, 0.0, 0.0], [0.0, 0.0, 1.0]])  # clips 0 and 1
    targets = torch.full((3, 2), IGNORE)
    targets[0, 1], targets[1, 0], targets[2, 1] = 0, 2, 1  # comment 0 and 2 in clip 1, comment 1 in clip 0
    clip = torch.tensor([1, 0, 1])

    def nll(z, k):
        return -(z[k] - math.log(sum(math.exp(v) for v in z)))

    want = nll([0, 0, 1], 0) + nll([2, 0, 0], 2) + nll([0, 0, 1], 1)
    assert f0_word_loss_sum(f0_logits, clip, targets).item() == pytest.approx(want, rel=1e-6)


def test_lambda_v_adds_its_term_and_is_off_by_default():
    from tam.models.decoder import DecoderOutput

    assert LossConfig().lambda_v == 0.0
    out = DecoderOutput(torch.zeros(1, 2, 3), torch.zeros(1, 2, 3), torch.zeros(1, 2))
    targets = torch.tensor([[IGNORE, 1]])
    f0 = torch.tensor([[0.0, 3.0, 0.0]])
    base = pretrain_losses(out, targets, torch.tensor([0]), 1.0, 1.0)
    with_v = pretrain_losses(out, targets, torch.tensor([0]), 1.0, 1.0, lambda_v=2.0, f0_logits=f0,
                             clip=torch.tensor([0]))
    l_v = -(3 - math.log(2 + math.exp(3)))
    assert base["l_v"].item() == 0 and with_v["l_v"].item() == pytest.approx(l_v, rel=1e-6)
    assert with_v["loss"].item() == pytest.approx(base["loss"].item() + 2 * l_v, rel=1e-6)


@pytest.mark.slow
def test_pretraining_with_lambda_v_trains_f0_and_keeps_the_fusion_keys(tmp_path):
    from tam.config import ModelConfig, OptimConfig, TrainConfig
    from tam.demo.worlds.features import WorldSpec
    from tam.demo.worlds.pretrain import CommentWorldSpec, make_comment_world
    from tam.train.pretrain import DecoderConfig, PretrainConfig, PretrainDataConfig

    store, corpus = make_comment_world(tmp_path / "w", WorldSpec(min_segments=3, max_segments=8),
                                       CommentWorldSpec(n_videos=20))

    def small_config(store, corpus, **loss):
        return PretrainConfig(model=ModelConfig(d=16, layers=1, heads=2, T=8), decoder=DecoderConfig(layers=1, heads=2),
                              data=PretrainDataConfig(store=str(store), corpus=str(corpus), comments_per_clip=8),
                              loss=LossConfig(**loss), optim=OptimConfig(optimizer="adam", batch_size=8, epochs=1),
                              train=TrainConfig(num_workers=0, progress=False, device="cpu")).validate()

    cfg = small_config(store, corpus, lambda_v=1.0)
    r = pretrain(cfg, tmp_path / "run", log=lambda s: None)
    header, row = (tmp_path / "run" / "metrics.csv").read_text().splitlines()[:2]
    assert header.endswith(",l_v") and float(row.split(",")[-1]) > 0
    keys = load_file(str(tmp_path / "run" / "pretrained.safetensors"))
    assert any(k.startswith("f0_words.") for k in keys) and any(k.startswith("fusion.") for k in keys)
    assert r["heldout"]["comments"] > 0
    from tam.train.pretrain import build_pretrain_model
    assert not isinstance(build_pretrain_model(small_config(store, corpus), {"image": 4, "motion": 4, "audio": 4}, 9),
                          F0WordsModel)
