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

The fast path groups the (query modality m, key modality n) pairs by key shift s, n = m + s (mod M): s = 0 are
the M pairs of Eq. (3), s > 0 those of Eq. (4). Each group is one batched scaled-dot-product attention call.
Q, K, V are laid out modality-major over the modalities 0, ..., M-1, 0, ..., M-2 (one stack of the M per-modality
Eq. (2) matmuls), so that the keys and values of group s are the contiguous slice [s, s + M): a view, not a roll
(a copy per group, forward and backward) nor a per-pair gather (whose backward is a scatter-add that cost more
than the attention itself at the paper's size).
`attention="inner"` and `"cross"` give the two ablations of Table 2 (O^m = I^m W_o or C^m W_o).

Two options for learning timing from few labelled videos (both off = the paper; docs/synthetic.md, (a)):
  - `rel_bias` = R > 0: a learned relative-position bias in Eqs. (3)-(4), per (m, n) pair, head and segment
    offset (T5 / ALiBi style): σ(Q^m K^nᵀ/√d_h + B^{mn}) V^n with B^{mn}_{ij} = b^{mn}[clip(j − i, −R, R)] between
    segment tokens i, j ≥ 1 and 0 on the rows and columns of X_0. b starts at 0 (the paper's scores), or with
    `rel_bias_init` σ > 0 at N(0, σ²) (each head starts with its own offset preferences);
    `rel_bias_scale` s stores b as s · b_rel, so that Adam moves it s times faster than the other weights.
  - `centre`: per-video centring before the projections, X^m ← X^m − mean_t X_t^m over the valid segments of the
    clip, which removes the per-video offset a model can memorise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
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
                 drop_path: float = 0.0, rel_bias: int = 0, rel_bias_scale: float = 1.0, rel_bias_init: float = 0.0):
        super().__init__()
        if attention not in ("both", "inner", "cross"):
            raise ValueError(f"attention must be both, inner or cross, got {attention!r}")
        self.M, self.d, self.h, self.attention = M, d, heads, attention
        self.W_qkv = nn.Parameter(torch.empty(M, d, 3 * d))  # [W_q^m | W_k^m | W_v^m] for each modality m
        nn.init.normal_(self.W_qkv, std=1 / math.sqrt(d))
        self.W_o = nn.Linear((2 if attention == "both" else 1) * d, d, bias=False)
        self.norm1, self.norm2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.drop = Dropout(dropout)
        self.drop_path = DropPath(drop_path)
        self.ffn = FeedForward(d, ffn_hidden, dropout)
        q_idx, k_idx = self.pairs(M, attention)
        self.register_buffer("q_idx", torch.tensor(q_idx, dtype=torch.long), persistent=False)
        self.register_buffer("k_idx", torch.tensor(k_idx, dtype=torch.long), persistent=False)
        # key shifts s (n = m + s mod M) the forward runs, and the index in `pairs` of each (m, m + s): [S, M]
        self.shifts = [s for s in range(M) if attention == "both" or (s == 0) == (attention == "inner")]
        pair = {qk: p for p, qk in enumerate(zip(q_idx, k_idx, strict=True))}
        self.register_buffer("shift_pair", torch.tensor([[pair[m, (m + s) % M] for m in range(M)] for s in self.shifts],
                                                        dtype=torch.long).view(len(self.shifts), M), persistent=False)
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
        # Eq. (2): Z^m [W_q^m | W_k^m | W_v^m], one plain matmul per modality (an einsum over m runs as a bmm: 45 vs
        # 30 ms for M = 3 matmuls at the paper size, 2 threads), stacked modality-major as m = 0, ..., M-1, 0, ..., M-2
        # so that the keys and values of n = m + s (mod M) for all m are the contiguous slice [s, s + M) (no roll)
        qkv = [z @ w for z, w in zip(self.norm1(Z).unbind(1), self.W_qkv.unbind(0), strict=True)]  # [B, L, 3d]
        QKV = torch.stack(qkv + qkv[: M - 1], dim=0)  # [2M-1, B, L, 3d]
        Q, K, V = (t.reshape(2 * M - 1, B, L, h, dh).transpose(2, 3) for t in QKV.chunk(3, dim=-1))  # [2M-1,B,h,L,dh]
        mask = (key_ok | ~key_ok.any(-1, keepdim=True)).transpose(0, 1)  # absent key modality: finite, weighted 0 below
        mask = torch.cat([mask, mask[: M - 1]])  # [2M-1, B, L]
        q = Q[:M].reshape(M * B, h, L, dh)  # Q^m
        A = [self.attend(q, K, V, mask, i) for i in range(len(self.shifts))]  # pairs (m, m + s): [M, B, h, L, dh]
        parts = []
        if self.attention in ("both", "inner"):
            parts.append(A[0])  # Eq. (3): I^m
        if self.attention in ("both", "cross"):
            parts.append(self.cross_mean(A[1:] if self.attention == "both" else A, present, Q[:M]))  # Eq. (4): C^m
        IC = torch.stack(parts, dim=2).permute(1, 0, 4, 2, 3, 5).reshape(B, M, L, -1)  # I^m ⊕ C^m, heads merged
        O = self.W_o(IC)  # Eq. (5): O^m = (I^m ⊕ C^m) W_o
        Z = Z + self.drop_path(self.drop(O))
        return Z + self.drop_path(self.ffn(self.norm2(Z)))

    def attend(self, q: Tensor, K: Tensor, V: Tensor, mask: Tensor, i: int) -> Tensor:
        """σ(Q^m K^nᵀ/√d_h + B^{mn}) V^n for the M pairs n = m + s (mod M), s = shifts[i]: q [M·B, h, L, dh] (Q^m),
        K, V [2M-1, B, h, L, dh] and key mask [2M-1, B, L] (modalities 0, ..., M-1, 0, ..., M-2) -> [M, B, h, L, dh]."""
        _, B, h, L, dh = K.shape
        M, s = self.M, self.shifts[i]
        K, V, mask = K[s:s + M], V[s:s + M], mask[s:s + M]  # row m holds n = m + s (mod M): views, no copy
        A = F.scaled_dot_product_attention(q, K.reshape(M * B, h, L, dh), V.reshape(M * B, h, L, dh),
                                           attn_mask=self.score_mask(mask, self.shift_pair[i]))
        return A.view(M, B, h, L, dh)

    def score_mask(self, mask: Tensor, pairs: Tensor) -> Tensor:
        """What the scores of the pairs `pairs` [P] get from their key mask [P, B, L]: the bool mask [P·B, 1, 1, L], or
        with `rel_bias` the additive B^{mn} [P·B, h, L, L] (−inf on masked keys)."""
        P, B, L = mask.shape
        if self.b_rel is None:
            return mask.reshape(P * B, 1, 1, L)
        bias = offset_bias(self.rel_scale * self.b_rel[pairs], L)  # [P, h, L, L]
        bias = bias[:, None].masked_fill(~mask[:, :, None, None, :], float("-inf"))  # [P, B, h, L, L]
        return bias.reshape(P * B, self.h, L, L)

    def cross_mean(self, A_cross: list[Tensor], present: Tensor, Q: Tensor) -> Tensor:
        """Eq. (4)'s 1/(M-1) Σ_{n≠m}: the cross pairs of each m (A_cross[s - 1]: n = m + s, [M, B, h, L, dh]) averaged
        over the present n ≠ m; zeros like Q when M = 1."""
        if not A_cross:
            return torch.zeros_like(Q)
        p = present.t()  # [M, B]
        w = torch.stack([p.roll(-s, dims=0) for s in range(1, self.M)], dim=-1).to(Q.dtype)  # [M, B, M-1]
        w = w / w.sum(-1, keepdim=True).clamp(min=1)  # 1/(number of present n ≠ m) where n = m + s is present
        return sum(w[:, :, s, None, None, None] * a for s, a in enumerate(A_cross))


class CTMFusion(nn.Module):
    """The paper's fusion module: Eq. (1) embedding, L CTM layers (Eqs. 2-5 + FFN), Eq. (6) average.

    Regularisation (training only, all off in the paper): `drop_path` = stochastic depth of the last layer
    (linear from 0 in the first), `noise` = σ of Gaussian noise on the input features. `rel_bias` (max offset R
    of the relative-position bias) and `centre` (per-video centring): see the module docstring; 0 / False = the
    paper."""

    def __init__(self, dims: dict[str, int], d: int = 768, layers: int = 12, heads: int = 8, ffn_mult: int = 4,
                 dropout: float = 0.1, T: int = 64, attention: str = "both", drop_path: float = 0.0,
                 noise: float = 0.0, pos_init: str = "sinusoidal", rel_bias: int = 0, centre: bool = False,
                 rel_bias_scale: float = 1.0, rel_bias_init: float = 0.0):
        super().__init__()
        self.modalities = list(dims)
        self.d = self.out_dim = d
        self.centre = centre
        self.embed = ModalityEmbedding(dims, d, T, noise, pos_init)
        self.layers = nn.ModuleList([CTMLayer(len(dims), d, heads, ffn_mult * d, dropout, attention, p, rel_bias,
                                              rel_bias_scale, rel_bias_init)
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
    QKV = torch.einsum("bmld,mde->bmle", layer.norm1(Z), layer.W_qkv)
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
