"""CTM fusion: the fast path against a plain equation-by-equation reference, masks, gradients."""

import math

import pytest
import torch
import torch.nn.functional as F

from tam.config import FUSIONS, ModelConfig
from tam.models.baselines import attention
from tam.models.fusion import CTMFusion
from tam.models.model import build_model

DIMS = {"image": 12, "motion": 20, "audio": 6}


def reference_bias(layer, m: int, n: int, head: int, L: int) -> torch.Tensor:
    """B^{mn} of one head, entry by entry: b^{mn}[clip(j - i, -R, R)] between segment tokens i, j >= 1, else 0."""
    B = torch.zeros(L, L)
    if layer.b_rel is None:
        return B
    p = [(int(q), int(k)) for q, k in zip(layer.q_idx, layer.k_idx, strict=True)].index((m, n))
    b = (layer.rel_scale * layer.b_rel[p, head]).tolist()
    R = (len(b) - 1) // 2
    for i in range(1, L):
        for j in range(1, L):
            B[i, j] = b[min(max(j - i, -R), R) + R]
    return B


def reference_ctm(model: CTMFusion, x, valid, present):
    """Eqs. (1)-(6) written out with Python loops over modalities, heads and pairs (no batching tricks)."""
    B, T = valid.shape
    mods = model.modalities
    M = len(mods)
    out = []
    for b in range(B):
        L = T + 1
        tok = torch.cat([torch.ones(1, dtype=torch.bool), valid[b]])
        Z = []
        for i, m in enumerate(mods):  # Eq. (1)
            xb = x[m][b]
            if model.centre:  # per-video centring: minus the mean of the valid segments
                xb = xb - xb[valid[b]].mean(0)
            X = model.embed.proj[m](xb)
            Z.append(torch.cat([model.embed.X0[i : i + 1], X]) + model.embed.P_e[:L])
        for layer in model.layers:
            d, h = layer.d, layer.h
            dh = d // h
            Zn = [layer.norm1(z) for z in Z]
            W = layer.W_qkv
            Q = [Zn[i] @ W[i][:, :d] for i in range(M)]  # Eq. (2)
            K = [Zn[i] @ W[i][:, d : 2 * d] for i in range(M)]
            V = [Zn[i] @ W[i][:, 2 * d :] for i in range(M)]

            def attend(m, n, keys, h=h, dh=dh, layer=layer, Q=Q, K=K, V=V, L=L):
                heads = []
                for j in range(h):  # each head does the equation on its slice
                    s = slice(j * dh, (j + 1) * dh)
                    scores = Q[m][:, s] @ K[n][:, s].T / math.sqrt(dh) + reference_bias(layer, m, n, j, L)
                    scores = scores.masked_fill(~keys[None, :], float("-inf"))
                    heads.append(torch.softmax(scores, dim=-1) @ V[n][:, s])
                return torch.cat(heads, dim=-1)

            newZ = []
            for i in range(M):
                parts = []
                if layer.attention in ("both", "inner"):
                    parts.append(attend(i, i, tok))  # Eq. (3)
                if layer.attention in ("both", "cross"):
                    others = [n for n in range(M) if n != i and present[b, n]]
                    C = sum((attend(i, n, tok) for n in others), torch.zeros(L, d))
                    parts.append(C / max(1, len(others)))  # Eq. (4)
                O = torch.cat(parts, dim=-1) @ layer.W_o.weight.T  # Eq. (5)
                z = Z[i] + O
                newZ.append(z + layer.ffn(layer.norm2(z)))
            Z = newZ
        O = [model.norm(z) for z in Z]
        pres = [i for i in range(M) if present[b, i]]
        f = sum(O[i] for i in pres) / len(pres)  # Eq. (6)
        out.append(f * tok[:, None])
    return torch.stack(out)


def inputs(B=3, T=7, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = {m: torch.randn(B, T, D, generator=g) for m, D in DIMS.items()}
    valid = torch.ones(B, T, dtype=torch.bool)
    valid[1, 4:] = False  # a short video, padded
    present = torch.ones(B, len(DIMS), dtype=torch.bool)
    present[2, 2] = False  # a video without audio
    return x, valid, present


@pytest.mark.parametrize("attention", ["both", "inner", "cross"])
def test_fast_path_matches_reference(attention):
    torch.manual_seed(0)
    model = CTMFusion(DIMS, d=16, layers=2, heads=4, ffn_mult=2, dropout=0.0, T=8, attention=attention).eval()
    x, valid, present = inputs()
    with torch.no_grad():
        fast = model(x, valid, present)
        ref = reference_ctm(model, x, valid, present)
    assert fast.f.shape == (3, 8, 16)
    torch.testing.assert_close(fast.f, ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(fast.f0, ref[:, 0], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("attention,rel_bias,centre", [("both", 3, False), ("inner", 3, False), ("cross", 3, False),
                                                      ("both", 20, True), ("cross", 0, True)])
def test_relative_bias_and_centring_match_the_reference(attention, rel_bias, centre):
    """The options for sample-efficient timing: the fast path (bias as an additive score term) against the loops,
    with a random bias (it starts at 0) and R both inside and beyond the clip's offsets."""
    torch.manual_seed(0)
    model = CTMFusion(DIMS, d=16, layers=2, heads=4, ffn_mult=2, dropout=0.0, T=8, attention=attention,
                      rel_bias=rel_bias, centre=centre, rel_bias_scale=2.5).eval()
    with torch.no_grad():
        for layer in model.layers:
            if layer.b_rel is not None:
                layer.b_rel.normal_()
    x, valid, present = inputs()
    with torch.no_grad():
        fast = model(x, valid, present).f
        ref = reference_ctm(model, x, valid, present)
        plain = CTMFusion(DIMS, d=16, layers=2, heads=4, ffn_mult=2, dropout=0.0, T=8, attention=attention).eval()
        plain.load_state_dict(model.state_dict(), strict=False)  # the same weights without the options
        plain = plain(x, valid, present).f
    torch.testing.assert_close(fast, ref, atol=1e-5, rtol=1e-5)
    assert (fast - plain).abs().max() > 1e-3  # the options change the output (a reference that ignores them fails)


def test_relative_bias_starts_at_the_papers_scores_and_shifts_with_the_clip():
    """b = 0 at init gives the paper's CTM exactly; B^{mn} depends on j - i only, never on absolute position."""
    from tam.models.fusion import offset_bias

    torch.manual_seed(0)
    paper = CTMFusion(DIMS, d=16, layers=2, heads=4, dropout=0.0, T=8).eval()
    biased = CTMFusion(DIMS, d=16, layers=2, heads=4, dropout=0.0, T=8, rel_bias=4).eval()
    biased.load_state_dict(paper.state_dict(), strict=False)
    x, valid, present = inputs()
    with torch.no_grad():
        torch.testing.assert_close(paper(x, valid, present).f, biased(x, valid, present).f)
    b = torch.arange(2 * 9.0).view(1, 2, 9)  # R = 4, one pair, two heads
    B = offset_bias(b, 8)
    assert B.shape == (1, 2, 8, 8) and (B[:, :, 0] == 0).all() and (B[:, :, :, 0] == 0).all()  # X_0: no bias
    assert B[0, 1, 2, 4] == b[0, 1, 4 + 2] and B[0, 0, 5, 3] == b[0, 0, 4 - 2] and B[0, 0, 1, 7] == b[0, 0, 8]
    assert torch.equal(B[0, 0, 1:-1, 1:-1], B[0, 0, 2:, 2:])  # Toeplitz: the same offset, the same bias


def test_reference_is_sensitive_to_cross_modal_weights():
    """Guard against a reference that agrees trivially: changing W_q of audio changes the image stream's output."""
    torch.manual_seed(0)
    model = CTMFusion(DIMS, d=16, layers=1, heads=2, dropout=0.0, T=8).eval()
    x, valid, present = inputs()
    with torch.no_grad():
        a = reference_ctm(model, x, valid, present)
        model.layers[0].W_qkv[2, :, 16:32] += torch.randn(16, 16)  # K of audio
        b = reference_ctm(model, x, valid, present)
    assert (a[0] - b[0]).abs().max() > 1e-3  # video 0 has audio: its output moves
    torch.testing.assert_close(a[2], b[2])  # video 2 has no audio: unchanged


@pytest.mark.parametrize("fusion,options", [(f, {}) for f in FUSIONS] + [
    ("ctm", {"rel_bias": 8, "centre": True}), ("cross", {"rel_bias": 2}), ("inner", {"centre": True})])
def test_padding_and_missing_modality_never_influence_valid_outputs(fusion, options):
    torch.manual_seed(0)
    model = build_model(ModelConfig(fusion=fusion, d=16, layers=2, heads=4, dropout=0.0, T=8, **options), DIMS, 5)
    model.eval()
    for name, p in model.named_parameters():
        if name.endswith("b_rel"):
            p.data.normal_()  # a trained bias, not the zeros it starts at
    x, valid, present = inputs()
    x2 = {m: v.clone() for m, v in x.items()}
    x2["image"][1, 4:] = 1e3 * torch.randn(3, 12)  # garbage in the padded segments of video 1
    x2["audio"][2] = 1e3 * torch.randn(7, 6)  # garbage in the absent audio of video 2
    with torch.no_grad():
        a, b = model.forward_features(x, valid, present), model.forward_features(x2, valid, present)
        la, lb = model(x, valid, present), model(x2, valid, present)
    ok = a.valid[..., None]
    torch.testing.assert_close(a.f * ok, b.f * ok, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(la, lb, atol=1e-5, rtol=1e-5)
    assert (a.f[1, 5:] == 0).all()  # padded rows of f are zero


def test_missing_modality_equals_model_without_it():
    """Eq. (6) and Eq. (4) average over the present modalities only: a video without audio gives exactly what
    the same weights give when audio is not a modality of the model at all (CTM with M-1 modalities)."""
    torch.manual_seed(0)
    full = CTMFusion(DIMS, d=16, layers=2, heads=4, dropout=0.0, T=8).eval()
    two = CTMFusion({"image": 12, "motion": 20}, d=16, layers=2, heads=4, dropout=0.0, T=8).eval()
    sd = full.state_dict()
    two_sd = {k: v for k, v in sd.items() if "audio" not in k}
    two_sd["embed.X0"] = sd["embed.X0"][:2]
    for i in range(2):
        two_sd[f"layers.{i}.W_qkv"] = sd[f"layers.{i}.W_qkv"][:2]
    two.load_state_dict(two_sd)
    x, valid, present = inputs()
    present[:, 2] = False
    with torch.no_grad():
        a = full(x, valid, present).f
        b = two({m: x[m] for m in ("image", "motion")}, valid, present[:, :2]).f
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("fusion,options", [(f, {}) for f in FUSIONS] + [  # with f^0 the last layer's bias gets none:
    ("ctm", {"rel_bias": 6, "centre": True, "readout": "mean"})])  # it only moves segment rows, which f^0 never reads
@pytest.mark.parametrize("outputs", [8, 2])
def test_every_parameter_gets_a_gradient(fusion, options, outputs):
    torch.manual_seed(0)
    model = build_model(ModelConfig(fusion=fusion, d=16, layers=2, heads=4, T=8, **options), DIMS, outputs)
    x, valid, present = inputs()
    present[2, 2] = True
    out = model(x, valid, present)
    assert out.shape == (3, outputs) and torch.isfinite(out).all()
    out.square().sum().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, f"{name} got a zero gradient"


@pytest.mark.parametrize("subset", [["image"], ["motion", "audio"], ["image", "motion", "audio"]])
def test_modality_subsets(subset):
    model = build_model(ModelConfig(fusion="ctm", modalities=subset, d=16, layers=1, heads=2, T=8), DIMS, 3)
    x, valid, present = inputs()
    idx = [list(DIMS).index(m) for m in subset]
    out = model({m: x[m] for m in subset}, valid, present[:, idx] | True)
    assert out.shape == (3, 3) and torch.isfinite(out).all()


def test_order_matters_through_position_embedding():
    torch.manual_seed(0)
    model = CTMFusion(DIMS, d=16, layers=1, heads=2, dropout=0.0, T=8).eval()
    with torch.no_grad():
        model.embed.P_e.normal_()
    x, valid, present = inputs()
    xr = {m: v.flip(1) for m, v in x.items()}
    v = torch.ones_like(valid)
    with torch.no_grad():
        assert (model(x, v, present).f0 - model(xr, v, present).f0).abs().max() > 1e-4


def test_attention_maps_match_the_forward_and_mask_padding():
    """attention_maps: rows sum to 1, padded keys get 0, and weights · V reproduce the layer's attention."""

    from tam.models.fusion import CTMFusion, attention_maps, layer_attention, token_mask

    torch.manual_seed(0)
    dims = {"image": 6, "motion": 5, "audio": 4}
    fusion = CTMFusion(dims, d=8, layers=2, heads=2, T=5, dropout=0.0).eval()
    x = {m: torch.randn(2, 5, D) for m, D in dims.items()}
    valid = torch.tensor([[True] * 5, [True, True, True, False, False]])
    present = torch.ones(2, 3, dtype=torch.bool)
    maps = attention_maps(fusion, x, valid, present)
    assert len(maps) == 2 and maps[0].shape == (2, 9, 2, 6, 6)  # 3 inner + 6 cross pairs, T+1 = 6 tokens
    assert torch.allclose(maps[1].sum(-1), torch.ones(2, 9, 2, 6))
    assert (maps[1][1, :, :, :, 4:] == 0).all()  # the padded segments 4, 5 (tokens) are never attended
    layer = fusion.layers[0]
    Z = fusion.embed(x)
    key_ok = token_mask(valid)[:, None, :] & present[:, :, None]
    A = layer_attention(layer, Z, key_ok)
    V = torch.einsum("bmld,mde->bmle", layer.norm1(Z), layer.W_qkv).chunk(3, -1)[2]
    V = V.reshape(2, 3, 6, 2, 4).transpose(2, 3)[:, layer.k_idx]  # [B, P, h, L, dh]
    Q, K = (t.reshape(2, 3, 6, 2, 4).transpose(2, 3) for t in torch.einsum(
        "bmld,mde->bmle", layer.norm1(Z), layer.W_qkv).chunk(3, -1)[:2])
    ref = F.scaled_dot_product_attention(Q[:, layer.q_idx], K[:, layer.k_idx], V,
                                         attn_mask=key_ok[:, layer.k_idx][:, :, None, None, :])
    assert torch.allclose(A @ V, ref, atol=1e-5)


def test_position_embedding_starts_sinusoidal_or_vit_normal():
    from tam.models.fusion import ModalityEmbedding, sinusoidal

    torch.manual_seed(0)
    sin = ModalityEmbedding({"image": 8, "audio": 4}, d=16, T=20).P_e.detach()
    assert torch.allclose(sin, sinusoidal(21, 16))
    assert torch.allclose(sin[0], torch.tensor([0.0, 1.0] * 8))  # t = 0: sin 0, cos 0
    assert torch.allclose(sin[3, :2], torch.tensor([math.sin(3.0), math.cos(3.0)]))  # the fastest frequency is 1
    normal = ModalityEmbedding({"image": 8}, d=64, T=200, pos_init="normal").P_e.detach()
    assert 0.018 < normal.std().item() < 0.022 and normal.abs().max().item() < 0.15  # ViT's trunc_normal_(std=0.02)
    with pytest.raises(ValueError, match="pos_init"):
        ModalityEmbedding({"image": 8}, d=16, T=4, pos_init="zeros")


@pytest.mark.parametrize("M", [1, 2, 4])
@pytest.mark.parametrize("attention", ["both", "inner", "cross"])
def test_block_attention_matches_reference_for_any_number_of_modalities(M, attention):
    """The fast path takes a softmax within each (m, n) block of one [M·L, M·L] score matrix: for M = 1 (no cross
    pair), M = 2 and M = 4 it is the reference, with a padded video and a missing modality (the last of video 2, so
    the weights of Eq. (4) see an absent n for every other m)."""
    dims = dict(list({"image": 12, "motion": 20, "audio": 6, "text": 5}.items())[:M])
    torch.manual_seed(M)
    model = CTMFusion(dims, d=16, layers=2, heads=4, ffn_mult=2, dropout=0.0, T=8, attention=attention).eval()
    g = torch.Generator().manual_seed(1)
    x = {m: torch.randn(3, 7, D, generator=g) for m, D in dims.items()}
    valid = torch.ones(3, 7, dtype=torch.bool)
    valid[1, 3:] = False
    present = torch.ones(3, M, dtype=torch.bool)
    present[2, M - 1] = M == 1  # a video without its last modality (all present when M = 1)
    with torch.no_grad():
        fast, ref = model(x, valid, present).f, reference_ctm(model, x, valid, present)
    torch.testing.assert_close(fast, ref, atol=1e-5, rtol=1e-5)


def test_relative_bias_init_draws_the_bias_in_logits_and_leaves_the_rest():
    """rel_bias_init σ: B^{mn} (= scale · b_rel) ~ N(0, σ²) whatever the scale; σ = 0 keeps b = 0, and the other
    weights drawn before it are the same draws (built through the config, as `tam train` builds it)."""
    def fusion(**kw):
        torch.manual_seed(0)
        return build_model(ModelConfig(d=16, layers=2, heads=4, T=8, rel_bias=8, rel_bias_scale=10.0, **kw),
                           DIMS, 2).fusion

    zero, drawn = fusion(), fusion(rel_bias_init=1.0)
    b = torch.stack([layer.rel_scale * layer.b_rel for layer in drawn.layers]).detach()
    assert all((layer.b_rel == 0).all() for layer in zero.layers)
    assert 0.8 < b.std().item() < 1.2 and b.abs().max() > 1.5  # σ in logits (not σ / scale: 0.1)
    torch.testing.assert_close(zero.layers[0].W_qkv, drawn.layers[0].W_qkv)


def test_baseline_attention_under_vmap_is_the_fused_kernels():
    """Under vmap (tam.train.multiseed) the baselines' attention is a matmul and a masked softmax: per lane it is
    scaled_dot_product_attention's, masked keys included, within 1e-5."""
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(3, 2, 4, 6, 8, generator=g) for _ in range(3))  # [K lanes, N, h, L, dh]
    ok = torch.rand(3, 2, 1, 1, 6, generator=g) > 0.3
    ok[..., 0] = True
    got = torch.func.vmap(attention)(q, k, v, ok)
    for lane in range(3):
        want = F.scaled_dot_product_attention(q[lane], k[lane], v[lane], attn_mask=ok[lane])
        torch.testing.assert_close(got[lane], want, atol=1e-5, rtol=1e-5)
