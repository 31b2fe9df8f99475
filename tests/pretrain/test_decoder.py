"""Video-TSC decoder (Eqs. 7-8) with the fusion module: shapes, gradients, isolation, the ATP softmax."""

import math

import pytest
import torch

from tam.models.decoder import TscPretrainModel, VideoTSCDecoder
from tam.models.fusion import CTMFusion
from tam.objectives.pretrain import IGNORE, pretrain_losses

DIMS = {"image": 12, "motion": 10, "audio": 6}
V, d = 30, 16


def make_model(layers: int = 2) -> TscPretrainModel:
    torch.manual_seed(0)
    fusion = CTMFusion(DIMS, d=d, layers=1, heads=2, ffn_mult=2, dropout=0.0, T=8)
    return TscPretrainModel(fusion, VideoTSCDecoder(V, d=d, layers=layers, heads=2, ffn_mult=2, dropout=0.0,
                                                    max_len=10))


def make_batch(B: int = 2, T: int = 5, N: int = 5, S: int = 7):
    g = torch.Generator().manual_seed(1)
    x = {m: torch.randn(B, T, D, generator=g) for m, D in DIMS.items()}
    valid = torch.ones(B, T, dtype=torch.bool)
    valid[1, 3:] = False  # clip 1 has 3 segments
    present = torch.ones(B, len(DIMS), dtype=torch.bool)
    tokens = torch.randint(4, V, (N, S), generator=g)
    tokens[:, 0] = 2  # [#S]
    tokens[:, 2] = 3  # [#M]
    tokens[3, 5:] = 0  # padding
    token_valid = tokens != 0
    targets = torch.full((N, S), IGNORE)
    targets[:, 2] = torch.randint(4, V, (N,), generator=g)
    clip = torch.tensor([0, 0, 1, 1, 1])
    segment = torch.tensor([0, 4, 2, 1, 0])
    return x, valid, present, tokens, token_valid, targets, clip, segment


def test_shapes_and_no_nan():
    model = make_model()
    x, valid, present, tokens, tv, targets, clip, seg = make_batch()
    out = model(x, valid, present, tokens, tv, clip)
    assert out.word_logits.shape == (5, 7, V)
    assert out.time_logits.shape == (5, 5)
    assert torch.isfinite(out.word_logits).all()
    assert torch.isfinite(out.time_logits[:2]).all()
    losses = pretrain_losses(out, targets, seg, 1.0, 1.0)
    assert torch.isfinite(losses["loss"]) and losses["n_words"] == 5


@pytest.mark.parametrize("lw,lt", [(1.0, 1.0), (1.0, 0.0), (0.0, 1.0)])
def test_gradients(lw, lt):
    """Both tasks on: every trainable parameter gets a gradient. One task: the parameters it uses do."""
    model = make_model()
    x, valid, present, tokens, tv, targets, clip, seg = make_batch()
    out = model(x, valid, present, tokens, tv, clip, words=lw > 0)
    pretrain_losses(out, targets, seg, lw, lt)["loss"].backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and (p.grad is None or not p.grad.any())]
    if lw and lt:
        assert missing == []
    elif lt:  # ATP uses the fusion, the embeddings, layer 1's self-attention and its W_q, W_k
        assert not [n for n in missing if n.startswith("fusion.")]
        assert "decoder.layers.0.video_attn.W_q.weight" not in missing
        assert "decoder.layers.0.video_attn.W_k.weight" not in missing
        assert "decoder.word_head.weight" in missing
    else:
        assert not [n for n in missing if n.startswith("fusion.") or n.startswith("decoder.layers.1")]
        assert "decoder.word_head.weight" not in missing


def test_changing_one_comment_changes_only_its_predictions():
    model = make_model().eval()
    x, valid, present, tokens, tv, targets, clip, seg = make_batch()
    a = model(x, valid, present, tokens, tv, clip)
    tokens2 = tokens.clone()
    tokens2[1, 4] = (tokens[1, 4] + 1 - 4) % (V - 4) + 4  # an unmasked word of comment 1
    b = model(x, valid, present, tokens2, tv, clip)
    others = [0, 2, 3, 4]
    assert torch.equal(a.word_logits[others], b.word_logits[others])
    assert torch.equal(a.time_logits[others], b.time_logits[others])
    assert not torch.allclose(a.word_logits[1], b.word_logits[1])
    assert not torch.allclose(a.time_logits[1], b.time_logits[1])


def test_atp_softmax_over_exactly_the_valid_segments():
    model = make_model().eval()
    x, valid, present, tokens, tv, targets, clip, seg = make_batch()
    out = model(x, valid, present, tokens, tv, clip)
    p = out.time_logits.softmax(-1)
    assert torch.all(p[2:, 3:] == 0)  # clip 1: segments 4, 5 are padding
    assert torch.all(p[2:, :3] > 0) and torch.all(p[:2] > 0)
    assert torch.allclose(p.sum(-1), torch.ones(5))
    x2 = {m: v.clone() for m, v in x.items()}
    for v in x2.values():
        v[1, 3:] = 1e3  # garbage in the padding changes nothing
    out2 = model(x2, valid, present, tokens, tv, clip)
    assert torch.allclose(out.time_logits[2:, :3], out2.time_logits[2:, :3], atol=1e-5)
    assert torch.allclose(out.word_logits[2:], out2.word_logits[2:], atol=1e-5)


def test_atp_logits_follow_eq8():
    """P(t|g,f) from ĝ = W_q LN(g), f̃ = W_k f^t with g the [#S] output of the first attention block."""
    model = make_model().eval()
    x, valid, present, tokens, tv, targets, clip, seg = make_batch()
    dec = model.decoder
    fo = model.fusion(x, valid, present)
    f = fo.f[clip]
    h = dec.embed(tokens) + dec.pos[:tokens.shape[1]]
    h = h + dec.layers[0].self_attn(dec.layers[0].norm1(h), dec.layers[0].norm1(h), tv)
    g = h[:, 0]
    va = dec.layers[0].video_attn
    ref = (va.W_q(dec.layers[0].norm2(g))[:, None, :] * va.W_k(f[:, 1:])).sum(-1) / math.sqrt(d)
    out = model(x, valid, present, tokens, tv, clip)
    ok = fo.valid[clip][:, 1:]
    assert torch.allclose(out.time_logits[ok], ref[ok], atol=1e-5)


def test_too_long_comment_is_refused():
    model = make_model()
    x, valid, present, tokens, tv, targets, clip, seg = make_batch(S=11)
    with pytest.raises(ValueError, match="max_len"):
        model(x, valid, present, tokens, tv, clip)
