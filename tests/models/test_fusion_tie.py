"""model.tie_projections: one W_q, W_k, W_v per CTM layer shared by every modality (issue 21; off = the paper)."""

import pytest
import torch

from tam.config import load_config
from tam.errors import TamError
from tam.models.fusion import CTMFusion, attention_maps

DIMS = {"image": 12, "motion": 20, "audio": 6}


def test_tied_projections_equal_untied_ones_with_every_modality_given_the_same_weights():
    torch.manual_seed(0)
    kw = dict(d=16, layers=2, heads=4, ffn_mult=2, dropout=0.0, T=8)
    tied = CTMFusion(DIMS, tie_projections=True, **kw).eval()
    untied = CTMFusion(DIMS, **kw).eval()
    sd = tied.state_dict()
    untied.load_state_dict({k: v.expand(3, -1, -1).clone() if k.endswith("W_qkv") else v for k, v in sd.items()})
    g = torch.Generator().manual_seed(1)
    x = {m: torch.randn(2, 7, D, generator=g) for m, D in DIMS.items()}
    valid, present = torch.ones(2, 7, dtype=torch.bool), torch.ones(2, 3, dtype=torch.bool)
    valid[1, 4:] = False
    assert [tuple(layer.W_qkv.shape) for layer in tied.layers] == [(1, 16, 48)] * 2  # one set, not one per modality
    with torch.no_grad():
        torch.testing.assert_close(tied(x, valid, present).f, untied(x, valid, present).f)
    for a, b in zip(attention_maps(tied, x, valid, present), attention_maps(untied, x, valid, present), strict=True):
        torch.testing.assert_close(a, b)


def test_tied_projections_need_a_ctm_fusion():
    with pytest.raises(TamError, match="tie_projections"):
        load_config(None, ["model.fusion=concat", "model.tie_projections=true"])
