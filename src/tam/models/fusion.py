"""Cross-temporal multimodal (CTM) fusion: section 4.1 of Pan, Wang and Fang (ACM MM 2022).

For M modalities (image, motion, audio), T segments and width d:

    Eq. (1)  Z^m = [X_0^m; X_1^m; ...; X_T^m] + P_e             learnable token X_0^m, position embedding P_e
    Eq. (2)  Q^m, K^m, V^m = Z^m W_q^m, Z^m W_k^m, Z^m W_v^m      per-modality projections
    Eq. (3)  I^m = σ(Q^m K^mᵀ / √d) V^m                          inner-modal attention
    Eq. (4)  C^m = 1/(M-1) Σ_{n≠m} σ(Q^m K^nᵀ / √d) V^n          cross-modal attention
    Eq. (5)  O^m = (I^m ⊕ C^m) W_o
    Eq. (6)  f = 1/M Σ_m O^m                                      over the last of L layers

X_t^m is the feature of segment t projected to d by a per-modality linear layer (section 5.2). Each
layer is multi-head (every head does Eqs. 3-4 on its d/h slice, with √(d/h) in place of √d) and is
followed by a feed-forward network; both sub-layers have residual connections and layer norm
(pre-norm, as in ViT, which the paper follows for Eq. 1). `f^0` feeds the classifier or regressor; the
whole `f` (T+1 tokens) feeds TSC pre-training.

Masks (one convention everywhere: True = valid):
  - `valid` [B, T]: padded segments of short videos are False; they never serve as keys, so they never
    influence valid outputs; their own rows of `f` are zeroed.
  - `present` [B, M]: a modality missing from a video (no audio track) is False; its tokens are never
    keys, Eq. (4) averages over the *present* other modalities, Eq. (6) over the present modalities.

The fast path computes the scores of all M² pairs (m, n) as one [M(T+1), M(T+1)] product Q Kᵀ per video and head
(the same products as joint attention, 1/√d_h inside the product), takes a softmax within each (m, n) block, and
reads I^m off the diagonal blocks and C^m from one product of all blocks with the present V^n, less the n = m term:
big matmuls, no per-pair gathers, short attention calls or passes over weighted M²L² blocks, and only ops that batch
under `torch.func.vmap` (tam.train.multiseed). Eq. (2) is one batched matmul over the modalities, copied once to
head-major rows.
`attention="inner"` and `"cross"` give the two ablations of Table 2 (O^m = I^m W_o or C^m W_o).

Two options for learning timing from few labelled videos (both off = the paper; docs/synthetic.md, (a)):
  - `rel_bias` = R > 0: a learned relative-position bias in Eqs. (3)-(4), per (m, n) pair, head and segment
    offset (T5 / ALiBi style): σ(Q^m K^nᵀ/√d_h + B^{mn}) V^n with B^{mn}_{ij} = b^{mn}[clip(j − i, −R, R)] between
    segment tokens i, j ≥ 1 and 0 on the rows and columns of X_0. b starts at 0 (the paper's scores), or with
    `rel_bias_init` σ > 0 at N(0, σ²) (each head starts with its own offset preferences);
    `rel_bias_scale` s stores b as s · b_rel, so that Adam moves it s times faster than the other weights.
  - `centre`: per-video centring before the projections, X^m ← X^m − mean_t X_t^m over the valid segments of the
    clip, which removes the per-video offset a model can memorise.
  - `tie_projections`: one W_q, W_k, W_v per layer shared by every modality (W_q^m = W_q for all m; M times fewer
    attention weights); the per-modality input layers of Eq. (1) stay.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from tam.config import POS_INITS
from tam.models.stochastic import Dropout, DropPath, depth_rates, gaussian_noise


@dataclass
class FusionOutput:
    f: Tensor  # [B, T+1, d] video representation (Eq. 6); rows of padded segments are zero
    f0: Tensor  # [B, out_dim] what the head sees (f^0 for CTM; concatenated first tokens for some baselines)
    valid: Tensor  # [B, T+1] True where f is a real token (f^0 and valid segments)


def sinusoidal(L: int, d: int) -> Tensor:
    """[L, d] sine/cosine position code (Vaswani et al. 2017): dims 2i, 2i+1 = sin, cos(t / 10000^(2i/d))."""
    t = torch.arange(L, dtype=torch.float64)[:, None]
    freq = 10000.0 ** (-torch.arange(0, d, 2, dtype=torch.float64) / d)
    pe = torch.zeros(L, d, dtype=torch.float64)
    pe[:, 0::2] = torch.sin(t * freq)
    pe[:, 1::2] = torch.cos(t * freq)[:, : d // 2]
    return pe.float()


class ModalityEmbedding(nn.Module):
    """Eq. (1) with the per-modality input projections: features [B, T, D_m] -> Z [B, M, T+1, d].

    P_e is learnable (the paper); `pos_init` is where it starts: `sinusoidal` (default; the sine/cosine code of
    Vaswani et al., so that W_q^m, W_k^n can read segment offsets from the first step) or `normal` (ViT's truncated
    normal, σ = 0.02). On the cross-modal timing world the init decides whether CTM learns the rule at all
    (docs/synthetic.md, "Worlds with power" (a))."""

    def __init__(self, dims: dict[str, int], d: int, T: int, noise: float = 0.0, pos_init: str = "sinusoidal"):
        super().__init__()
        if pos_init not in POS_INITS:
            raise ValueError(f"pos_init must be one of {POS_INITS}, got {pos_init!r}")
        self.modalities = list(dims)
        self.noise = noise  # σ of Gaussian noise added to the input features in training (0 = off)
        self.proj = nn.ModuleDict({m: nn.Linear(D, d) for m, D in dims.items()})
        self.X0 = nn.Parameter(torch.zeros(len(dims), d))  # X_0^m, one learnable token per modality
        self.P_e = nn.Parameter(torch.zeros(T + 1, d))  # P_e ∈ R^{(T+1)×d}, shared by the modalities
        nn.init.trunc_normal_(self.X0, std=0.02)
        with torch.no_grad():
            if pos_init == "sinusoidal":
                self.P_e.copy_(sinusoidal(T + 1, d))
            else:
                nn.init.trunc_normal_(self.P_e, std=0.02)

    def forward(self, x: dict[str, Tensor]) -> Tensor:
        X = torch.stack([self.proj[m](gaussian_noise(x[m], self.noise, self.training)) for m in self.modalities],
                        dim=1)  # [B, M, T, d]
        B, M, T, d = X.shape
        if T + 1 > self.P_e.shape[0]:
            raise ValueError(f"{T} segments given, but the position embedding holds T = {self.P_e.shape[0] - 1}")
        X0 = self.X0.expand(B, M, d).unsqueeze(2)  # [B, M, 1, d]
        return torch.cat([X0, X], dim=2) + self.P_e[: T + 1]  # Eq. (1): Z^m = [X_0^m; X^m] + P_e


def token_mask(valid: Tensor) -> Tensor:
    """[B, T] segment mask -> [B, T+1] token mask (the prepended token X_0 is always valid)."""
    return torch.cat([valid.new_ones(valid.shape[0], 1), valid], dim=1)


def centre_clip(x: Tensor, valid: Tensor) -> Tensor:
    """Per-video centring: x [B, T, D] minus its mean over the valid segments (valid [B, T]); padded rows stay."""
    w = valid[..., None].to(x.dtype)
    return x - (x * w).sum(1, keepdim=True) / w.sum(1, keepdim=True).clamp(min=1)


def offset_bias(b: Tensor, L: int) -> Tensor:
    """B [P, h, L, L] from b [P, h, 2R+1]: B_ij = b[clip(j − i, −R, R)] between segment tokens i, j ≥ 1, 0 where
    i or j is X_0 (token 0)."""
    R = (b.shape[-1] - 1) // 2
    t = torch.arange(L, device=b.device)
    idx = (t[None, :] - t[:, None]).clamp(-R, R) + R  # [L, L] offset bucket of (query i, key j)
    B = b[:, :, idx]  # [P, h, L, L]
    seg = (t > 0).to(b.dtype)
    return B * (seg[:, None] * seg[None, :])


class FeedForward(nn.Module):
    """FFN(x) = W_2 GELU(W_1 x), with (per-sample) dropout."""

    def __init__(self, d: int, hidden: int, dropout: float):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(d, hidden), nn.GELU(), Dropout(dropout), nn.Linear(hidden, d),
                                 Dropout(dropout))

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class CTMLayer(nn.Module):
    """One cross-temporal multimodal fusion module (Eqs. 2-5) followed by its FFN; `drop_path` is the rate of
    stochastic depth on both residual branches (training only)."""

    def __init__(self, M: int, d: int, heads: int, ffn_hidden: int, dropout: float, attention: str = "both",
                 drop_path: float = 0.0, rel_bias: int = 0, rel_bias_scale: float = 1.0, rel_bias_init: float = 0.0,
                 tie_projections: bool = False):
        super().__init__()
        if attention not in ("both", "inner", "cross"):
            raise ValueError(f"attention must be both, inner or cross, got {attention!r}")
        self.M, self.d, self.h, self.attention = M, d, heads, attention
        # [W_q^m | W_k^m | W_v^m] for each modality m; [1, d, 3d] (shared by every m) with tie_projections
        self.W_qkv = nn.Parameter(torch.empty(1 if tie_projections else M, d, 3 * d))
        nn.init.normal_(self.W_qkv, std=1 / math.sqrt(d))
        self.W_o = nn.Linear((2 if attention == "both" else 1) * d, d, bias=False)
        self.norm1, self.norm2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.drop = Dropout(dropout)
        self.drop_path = DropPath(drop_path)
        self.ffn = FeedForward(d, ffn_hidden, dropout)
        q_idx, k_idx = self.pairs(M, attention)
        self.register_buffer("q_idx", torch.tensor(q_idx, dtype=torch.long), persistent=False)
        self.register_buffer("k_idx", torch.tensor(k_idx, dtype=torch.long), persistent=False)
        # index in `pairs` of each (m, n) [M, M], -1 where this attention mode has no such pair (its block is unused)
        grid = torch.full((M, M), -1, dtype=torch.long)
        grid[q_idx, k_idx] = torch.arange(len(q_idx))
        self.register_buffer("pair_grid", grid, persistent=False)
        # b^{mn}: relative-position bias per pair, head and offset in [−R, R]; None = off (the paper)
        self.b_rel = nn.Parameter(torch.zeros(len(q_idx), heads, 2 * rel_bias + 1)) if rel_bias else None
        self.rel_scale = rel_bias_scale  # b^{mn} = rel_scale · b_rel: with Adam, b moves rel_scale × lr per step
        if self.b_rel is not None and rel_bias_init > 0:  # b^{mn} ~ N(0, rel_bias_init²) instead of 0
            nn.init.normal_(self.b_rel, std=rel_bias_init / rel_bias_scale)

    @staticmethod
    def pairs(M: int, attention: str) -> tuple[list[int], list[int]]:
        """(query modality, key modality) pairs: the M diagonal ones first (Eq. 3), then n ≠ m (Eq. 4)."""
        inner = [(m, m) for m in range(M)] if attention in ("both", "inner") else []
        cross = [(m, n) for m in range(M) for n in range(M) if n != m] if attention in ("both", "cross") else []
        q, k = zip(*(inner + cross), strict=True) if inner + cross else ((), ())
        return list(q), list(k)

    def forward(self, Z: Tensor, key_ok: Tensor, present: Tensor) -> Tensor:
        """Z [B, M, L, d] (L = T+1), key_ok [B, M, L] bool, present [B, M] bool -> Z [B, M, L, d]."""
        B, M, L, d = Z.shape
        h, dh = self.h, d // self.h
        # Eq. (2): Z^m [W_q^m | W_k^m | W_v^m] for all m as one batched matmul over modality-major rows [M, B·L, d]
        W = self.W_qkv.expand(M, -1, -1)  # [M, d, 3d] (one copy per modality when tied)
        QKV = torch.bmm(self.norm1(Z).transpose(0, 1).reshape(M, B * L, d), W)  # [M, B·L, 3d]
        # one copy to head-major rows (m, l) per video and head: Q, K, V [B·h, M·L, dh]
        Q, K, V = QKV.view(M, B, L, 3, h, dh).permute(3, 1, 4, 0, 2, 5).reshape(3, B * h, M * L, dh).unbind(0)
        mask = key_ok | ~key_ok.any(-1, keepdim=True)  # absent key modality: finite, weighted 0 below
        if self.attention == "inner":  # Eq. (3) alone: the M diagonal blocks
            Q, K, V = (t.view(B * h, M, L, dh) for t in (Q, K, V))
            S = (Q @ K.transpose(-1, -2)).mul_(dh**-0.5).view(B, h, M, L, L) + self.bias(L, diagonal=True)
            I = S.masked_fill(~mask[:, None, :, None, :], float("-inf")).softmax(-1) @ V.view(B, h, M, L, dh)
            return self.residual(Z, [I])
        P = self.block_softmax(Q, K, mask, B, M, L)  # [B·h, M, L, M, L]: σ(Q^m K^nᵀ/√d_h + B^{mn}) for every (m, n)
        V = V.view(B * h, M, L, dh)
        I = (P.diagonal(dim1=1, dim2=3).permute(0, 3, 1, 2) @ V).view(B, h, M, L, dh)  # Eq. (3): I^m, n = m
        C = self.cross_mean(P, V, I, present)  # Eq. (4): C^m
        return self.residual(Z, [I, C] if self.attention == "both" else [C])

    def block_softmax(self, Q: Tensor, K: Tensor, mask: Tensor, B: int, M: int, L: int) -> Tensor:
        """All M² blocks of Q^m K^nᵀ/√d_h (+ B^{mn}) as one [M·L, M·L] product per video and head (the 1/√d_h in the
        product), each block its own softmax over its L keys; masked keys -> 0. Q, K [B·h, M·L, dh], mask [B, M, L]."""
        N, dh = M * L, Q.shape[-1]
        S = torch.baddbmm(Q.new_zeros(()), Q, K.transpose(1, 2), beta=0, alpha=dh**-0.5)  # [B·h, N, N]
        if self.b_rel is not None:
            S = (S.view(B, self.h, M, L, M, L) + self.bias(L, diagonal=False)).view(B * self.h, N, N)
        # always (no branch on the data: the ONNX export traces an unpadded batch)
        S = S.view(B, self.h, N, N).masked_fill(~mask.view(B, 1, 1, N), float("-inf")).view(B * self.h, N, N)
        return S.view(-1, N, M, L).softmax(-1).view(-1, M, L, M, L)

    def residual(self, Z: Tensor, parts: list[Tensor]) -> Tensor:
        """Eq. (5) O^m = (I^m ⊕ C^m) W_o from the parts [B, h, M, L, dh] (heads merged), its residual and the FFN."""
        B, M, L, _ = Z.shape
        IC = torch.stack([a.permute(0, 2, 3, 1, 4) for a in parts], dim=3).view(B, M, L, -1)  # I^m ⊕ C^m
        Z = Z + self.drop_path(self.drop(self.W_o(IC)))
        return Z + self.drop_path(self.ffn(self.norm2(Z)))

    def bias(self, L: int, diagonal: bool) -> Tensor | float:
        """B^{mn} of the relative-position bias (0 without `rel_bias`): [h, M, L, L] for the diagonal blocks
        (m, m), else [h, M, L, M, L] for all (m, n) (0 on the blocks of pairs this attention mode leaves out)."""
        if self.b_rel is None:
            return 0.0
        b = offset_bias(self.rel_scale * self.b_rel, L)  # [P, h, L, L]
        b = torch.cat([b, b.new_zeros(1, *b.shape[1:])])  # row -1: the pairs left out
        if diagonal:
            return b[self.pair_grid.diagonal()].transpose(0, 1)
        return b[self.pair_grid].permute(2, 0, 3, 1, 4)

    @staticmethod
    def cross_mean(P: Tensor, V: Tensor, I: Tensor, present: Tensor) -> Tensor:
        """Eq. (4)'s 1/(M-1) Σ_{n≠m} σ(Q^m K^nᵀ/√d_h) V^n, averaged over the present n ≠ m, from the attention P
        [B·h, M, L, M, L] of all pairs, V [B·h, M, L, dh] and I [B, h, M, L, dh] (the n = m terms) -> [B, h, M, L, dh]
        (zeros when no other modality is present): one product of P with the present V^n over all n, minus the n = m
        term, over the number of present n ≠ m (no pass over the M²L² weights)."""
        B, h, M, L, dh = I.shape
        p = present.to(V.dtype)
        c = (p.sum(-1, keepdim=True) - p).clamp(min=1)[:, None, :, None, None]  # present n ≠ m, per (video, m)
        p = p[:, None, :, None, None]
        A = torch.bmm(P.view(B * h, M * L, M * L), (V.view(B, h, M, L, dh) * p).view(B * h, M * L, dh))
        return (A.view(B, h, M, L, dh) - p * I) / c


class CTMFusion(nn.Module):
    """The paper's fusion module: Eq. (1) embedding, L CTM layers (Eqs. 2-5 + FFN), Eq. (6) average.

    Regularisation (training only, all off in the paper): `drop_path` = stochastic depth of the last layer
    (linear from 0 in the first), `noise` = σ of Gaussian noise on the input features. `rel_bias` (max offset R
    of the relative-position bias), `centre` (per-video centring) and `tie_projections`: see the module docstring;
    0 / False = the paper."""

    def __init__(self, dims: dict[str, int], d: int = 768, layers: int = 12, heads: int = 8, ffn_mult: int = 4,
                 dropout: float = 0.1, T: int = 64, attention: str = "both", drop_path: float = 0.0,
                 noise: float = 0.0, pos_init: str = "sinusoidal", rel_bias: int = 0, centre: bool = False,
                 rel_bias_scale: float = 1.0, rel_bias_init: float = 0.0, tie_projections: bool = False):
        super().__init__()
        self.modalities = list(dims)
        self.d = self.out_dim = d
        self.centre = centre
        self.embed = ModalityEmbedding(dims, d, T, noise, pos_init)
        self.layers = nn.ModuleList([CTMLayer(len(dims), d, heads, ffn_mult * d, dropout, attention, p, rel_bias,
                                              rel_bias_scale, rel_bias_init, tie_projections)
                                     for p in depth_rates(drop_path, layers)])
        self.norm = nn.LayerNorm(d)

    def forward(self, x: dict[str, Tensor], valid: Tensor, present: Tensor) -> FusionOutput:
        """x[m] [B, T, D_m], valid [B, T] bool, present [B, M] bool (modality order = self.modalities)."""
        if self.centre:
            x = {m: centre_clip(v, valid) for m, v in x.items()}  # X^m − mean_t X_t^m, per video
        Z = self.embed(x)  # Eq. (1): [B, M, T+1, d]
        tok = token_mask(valid)  # [B, T+1]
        key_ok = tok[:, None, :] & present[:, :, None]  # [B, M, T+1]
        for layer in self.layers:
            Z = layer(Z, key_ok, present)  # Eqs. (2)-(5) + FFN
        O = self.norm(Z)  # output of the last module, O^m  [B, M, T+1, d]
        w = present.to(O.dtype) / present.sum(-1, keepdim=True).clamp(min=1)  # 1/M over present modalities
        f = torch.einsum("bm,bmld->bld", w, O)  # Eq. (6): f [B, T+1, d]
        f = f * tok[..., None].to(f.dtype)
        return FusionOutput(f=f, f0=f[:, 0], valid=tok)


def layer_attention(layer: CTMLayer, Z: Tensor, key_ok: Tensor) -> Tensor:
    """The attention weights σ(Q^m K^nᵀ/√d_h) of one CTM layer for its input Z [B, M, L, d]: [B, P, h, L, L] over
    the layer's (query modality, key modality) pairs (`CTMLayer.pairs`: the M inner ones first); 0 on masked keys."""
    B, M, L, d = Z.shape
    h, dh = layer.h, d // layer.h
    QKV = torch.einsum("bmld,mde->bmle", layer.norm1(Z), layer.W_qkv.expand(M, -1, -1))
    Q, K, _ = (t.reshape(B, M, L, h, dh).transpose(2, 3) for t in QKV.chunk(3, dim=-1))  # [B, M, h, L, dh]
    S = torch.einsum("bphqe,bphke->bphqk", Q[:, layer.q_idx], K[:, layer.k_idx]) / math.sqrt(dh)
    if layer.b_rel is not None:
        S = S + offset_bias(layer.rel_scale * layer.b_rel, L)  # + B^{mn}
    mask = key_ok[:, layer.k_idx]  # [B, P, L]
    mask = mask | ~mask.any(-1, keepdim=True)
    return S.float().masked_fill(~mask[:, :, None, None, :], float("-inf")).softmax(-1)


@torch.no_grad()
def attention_maps(fusion: CTMFusion, x: dict[str, Tensor], valid: Tensor, present: Tensor) -> list[Tensor]:
    """Per CTM layer, the attention weights [B, P, h, T+1, T+1] of a forward pass in eval mode (forward
    pre-hooks read each layer's input; the forward itself is unchanged). Row 0 is f^0's token X_0."""
    if not isinstance(fusion, CTMFusion):
        raise TypeError(f"attention maps are defined for CTM fusions, not {type(fusion).__name__}")
    maps: list[Tensor] = []
    hooks = [layer.register_forward_pre_hook(lambda mod, args: maps.append(layer_attention(mod, args[0], args[1])))
             for layer in fusion.layers]
    was_training = fusion.training
    fusion.eval()
    try:
        fusion(x, valid, present)
    finally:
        for hk in hooks:
            hk.remove()
        fusion.train(was_training)
    return maps
