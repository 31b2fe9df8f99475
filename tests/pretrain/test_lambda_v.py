"""The option loss.lambda_v (off by default): each masked word read from its clip's f^0 by one linear layer.
A pre-training run with it: tests/demo/test_worlds_sync.py::test_probe_reads_the_pretrained_fusion."""

import math

import pytest
import torch

from tam.objectives.pretrain import IGNORE, f0_word_loss_sum, pretrain_losses
from tam.train.pretrain import F0WordsModel, LossConfig, PretrainConfig, build_pretrain_model


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


def test_the_f0_layer_exists_only_with_lambda_v():
    from tam.config import ModelConfig
    from tam.train.pretrain import DecoderConfig

    dims, small = {"image": 4, "motion": 4, "audio": 4}, {"model": ModelConfig(d=16, layers=1, heads=2, T=8),
                                                           "decoder": DecoderConfig(layers=1, heads=2)}
    assert not isinstance(build_pretrain_model(PretrainConfig(**small), dims, 9), F0WordsModel)
    m = build_pretrain_model(PretrainConfig(**small, loss=LossConfig(lambda_v=1.0)), dims, 9)
    assert isinstance(m, F0WordsModel) and m.f0_words.out_features == 9
