"""The paper's baseline fusions (section 5.3, Table 2), at the same width d, depth L and head count.

All start from the same Eq. (1) embedding as CTM (`ModalityEmbedding`) and use pre-norm Transformer
blocks (multi-head self-attention and FFN, each with a residual). Masks: True = valid.

  - concat (simple concatenation [38]): M parallel L-layer encoders, one per modality, attention within
    the modality only; the first outputs of the M encoders are concatenated (f^0 has M·d dims).
  - divide (divide attention [3]): as concat, with a second self-attention inserted between the two
    sub-layers of every layer, over the M modality tokens of the same segment: temporal relations and
    cross-modal relations are captured separately.
  - joint (joint attention [15]): one L-layer encoder over the joint sequence of all M(T+1) tokens: full
    pairwise attention between all segments of all modalities; first outputs concatenated as in concat.

For every baseline, `f` (for pre-training) is the mean over present modalities of the last layer's
tokens, as in Eq. (6).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tam.models.fusion import FeedForward, FusionOutput, ModalityEmbedding, token_mask
from tam.models.stochastic import Dropout, DropPath, depth_rates


class SelfAttention(nn.Module):
    """Multi-head self-attention over the second-to-last axis with a key mask (True = valid)."""

    def __init__(self, d: int, heads: int, dropout: float):
        super().__init__()
        self.h = heads
        self.qkv = nn.Linear(d, 3 * d)
        self.out = nn.Linear(d, d)
        self.drop = Dropout(dropout)

    def forward(self, x: Tensor, key_ok: Tensor) -> Tensor:
        """x [N, L, d], key_ok [N, L] -> [N, L, d]."""
        N, L, d = x.shape
        q, k, v = (t.reshape(N, L, self.h, d // self.h).transpose(1, 2) for t in self.qkv(x).chunk(3, dim=-1))
        key_ok = key_ok | ~key_ok.any(-1, keepdim=True)  # all keys masked (absent modality): finite, ignored later
        a = attention(q, k, v, key_ok[:, None, None, :])
        return self.drop(self.out(a.transpose(1, 2).reshape(N, L, d)))


def attention(q: Tensor, k: Tensor, v: Tensor, key_ok: Tensor) -> Tensor:
    """σ(q kᵀ/√d_h) v with masked keys (key_ok broadcast to the scores, True = valid): PyTorch's fused kernel, or
    under `torch.func.vmap` (tam.train.multiseed) the same as a matmul and a masked softmax, which batch over the
    vmapped runs where the fused kernel has no batching rule (torch would loop over them)."""
    if not torch._C._functorch.is_batchedtensor(q):
        return F.scaled_dot_product_attention(q, k, v, attn_mask=key_ok)
    S = (q / q.shape[-1] ** 0.5) @ k.transpose(-1, -2)
    return S.masked_fill(~key_ok, float("-inf")).softmax(-1) @ v


class Block(nn.Module):
    """Pre-norm Transformer layer; with `divide=True` a cross-modal attention sits between the two sub-layers.
    `drop_path`: stochastic depth on every residual branch (training only)."""

    def __init__(self, d: int, heads: int, ffn_hidden: int, dropout: float, divide: bool = False,
                 drop_path: float = 0.0):
        super().__init__()
        self.drop_path = DropPath(drop_path)
        self.norm1, self.attn = nn.LayerNorm(d), SelfAttention(d, heads, dropout)
        self.divide = divide
        if divide:
            self.norm_x, self.attn_x = nn.LayerNorm(d), SelfAttention(d, heads, dropout)
        self.norm2, self.ffn = nn.LayerNorm(d), FeedForward(d, ffn_hidden, dropout)

    def forward(self, x: Tensor, key_ok: Tensor) -> Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x), key_ok))
        return x + self.drop_path(self.ffn(self.norm2(x)))


class _FirstTokens(nn.Module):
    """Shared read-out: f^0 = concatenated first tokens of the present modalities, f = mean over modalities."""

    def readout(self, Z: Tensor, tok: Tensor, present: Tensor) -> FusionOutput:
        O = self.norm(Z)  # [B, M, L, d]
        p = present.to(O.dtype)
        f0 = (O[:, :, 0] * p[..., None]).flatten(1)  # [B, M·d], absent modalities zero
        f = torch.einsum("bm,bmld->bld", p / p.sum(-1, keepdim=True).clamp(min=1), O) * tok[..., None].to(O.dtype)
        return FusionOutput(f=f, f0=f0, valid=tok)


class ConcatFusion(_FirstTokens):
    """Simple concatenation and, with `divide=True`, divide attention."""

    def __init__(self, dims: dict[str, int], d: int = 768, layers: int = 12, heads: int = 8, ffn_mult: int = 4,
                 dropout: float = 0.1, T: int = 64, divide: bool = False, drop_path: float = 0.0, noise: float = 0.0,
                 pos_init: str = "sinusoidal"):
        super().__init__()
        self.modalities = list(dims)
        self.d, self.out_dim = d, d * len(dims)
        self.embed = ModalityEmbedding(dims, d, T, noise, pos_init)
        self.towers = nn.ModuleList([
            nn.ModuleList([Block(d, heads, ffn_mult * d, dropout, divide, p) for p in depth_rates(drop_path, layers)])
            for _ in dims])
        self.divide = divide
        self.norm = nn.LayerNorm(d)

    def forward(self, x: dict[str, Tensor], valid: Tensor, present: Tensor) -> FusionOutput:
        Z = self.embed(x)  # Eq. (1): [B, M, L, d]
        B, M, L, d = Z.shape
        tok = token_mask(valid)  # [B, L]
        for i in range(len(self.towers[0])):
            outs = []
            for m, tower in enumerate(self.towers):  # temporal self-attention within each modality
                blk = tower[i]
                outs.append(Z[:, m] + blk.drop_path(blk.attn(blk.norm1(Z[:, m]), tok)))
            Z = torch.stack(outs, dim=1)
            if self.divide:  # then self-attention across the M modalities of each segment
                seg = Z.transpose(1, 2).reshape(B * L, M, d)
                ok = present[:, None, :].expand(B, L, M).reshape(B * L, M)
                Z = torch.stack([Z[:, m] + self.towers[m][i].drop_path(
                    self.towers[m][i].attn_x(self.towers[m][i].norm_x(seg), ok).view(B, L, M, d)[:, :, m])
                    for m in range(M)], dim=1)
            Z = torch.stack([Z[:, m] + tower[i].drop_path(tower[i].ffn(tower[i].norm2(Z[:, m])))
                             for m, tower in enumerate(self.towers)], dim=1)
        return self.readout(Z, tok, present)


class JointFusion(_FirstTokens):
    """Joint attention: one encoder over all M(T+1) tokens."""

    def __init__(self, dims: dict[str, int], d: int = 768, layers: int = 12, heads: int = 8, ffn_mult: int = 4,
                 dropout: float = 0.1, T: int = 64, drop_path: float = 0.0, noise: float = 0.0,
                 pos_init: str = "sinusoidal"):
        super().__init__()
        self.modalities = list(dims)
        self.d, self.out_dim = d, d * len(dims)
        self.embed = ModalityEmbedding(dims, d, T, noise, pos_init)
        self.blocks = nn.ModuleList([Block(d, heads, ffn_mult * d, dropout, drop_path=p)
                                     for p in depth_rates(drop_path, layers)])
        self.norm = nn.LayerNorm(d)

    def forward(self, x: dict[str, Tensor], valid: Tensor, present: Tensor) -> FusionOutput:
        Z = self.embed(x)  # Eq. (1): [B, M, L, d]
        B, M, L, d = Z.shape
        tok = token_mask(valid)
        key_ok = (tok[:, None, :] & present[:, :, None]).reshape(B, M * L)
        J = Z.reshape(B, M * L, d)  # the joint sequence
        for blk in self.blocks:
            J = blk(J, key_ok)
        return self.readout(J.view(B, M, L, d), tok, present)
