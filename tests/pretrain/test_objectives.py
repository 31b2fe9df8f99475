"""EWP / ATP losses (Eqs. 7, 9, 10) against hand computation; accuracy counts."""

import math

import pytest
import torch

from tam.models.decoder import DecoderOutput
from tam.objectives.pretrain import IGNORE, accuracy_counts, pretrain_losses


def output():
    word_logits = torch.zeros(2, 3, 4)
    word_logits[0, 1] = torch.tensor([0.0, 2.0, 0.0, 0.0])
    word_logits[1, 1] = torch.tensor([1.0, 0.0, 0.0, 0.0])
    word_logits[1, 2] = torch.tensor([0.0, 0.0, 3.0, 0.0])
    time_logits = torch.tensor([[1.0, 0.0, float("-inf")], [0.0, 0.0, 0.0]])
    targets = torch.full((2, 3), IGNORE)
    targets[0, 1], targets[1, 1], targets[1, 2] = 1, 1, 2
    return DecoderOutput(torch.zeros(2, 3, 4), word_logits, time_logits), targets, torch.tensor([0, 2])


def nll(logits, k):
    return -(logits[k] - math.log(sum(math.exp(v) for v in logits)))


def test_losses_by_hand():
    out, targets, seg = output()
    l_wp = (nll([0, 2, 0, 0], 1) + nll([1, 0, 0, 0], 1) + nll([0, 0, 3, 0], 2)) / 3  # mean over 3 masked words
    l_tp = (nll([1, 0], 0) + nll([0, 0, 0], 2)) / 2  # mean over 2 comments; padding excluded
    r = pretrain_losses(out, targets, seg, 1.0, 1.0)
    assert r["l_wp"].item() == pytest.approx(l_wp, rel=1e-6)
    assert r["l_tp"].item() == pytest.approx(l_tp, rel=1e-6)
    assert pretrain_losses(out, targets, seg, 2.0, 0.5)["loss"].item() == pytest.approx(2 * l_wp + 0.5 * l_tp, rel=1e-6)
    only_t = pretrain_losses(out, targets, seg, 0.0, 1.0)
    assert only_t["l_wp"].item() == 0 and only_t["loss"].item() == pytest.approx(l_tp, rel=1e-6)
    glob = pretrain_losses(out, targets, seg, 1.0, 1.0, denominators=(6.0, 4.0), world=2)
    assert glob["loss"].item() == pytest.approx(2 * (l_wp * 3 / 6 + l_tp * 2 / 4), rel=1e-6)


def test_accuracy_counts():
    out, targets, seg = output()
    c = accuracy_counts(out, targets, seg)
    assert c["words"] == 3 and c["ewp_top1"] == 2  # word 1 (comment 1, pos 1) predicts 0
    assert c["ewp_top5"] == 3
    assert c["comments"] == 2 and c["atp_top1"] == 1  # argmax of all-equal logits is 0, target 2 -> wrong
    assert c["atp_chance"] == pytest.approx(1 / 2 + 1 / 3)
