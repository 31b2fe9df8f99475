"""Video-TSC decoder: section 4.2 of Pan, Wang and Fang (ACM MM 2022).

A Transformer decoder of L layers (paper: L = 8) reads a masked time-sync comment, `[#S]` first and
every masked word replaced by `[#M]`, and the whole video representation f [B, T+1, d] from the fusion
module. Each layer is pre-norm: self-attention over the comment's tokens, then attention to f (the
comment's tokens are queries, the video tokens keys and values), then a feed-forward network.

    Eq. (7)  the output at each [#M] goes through the vocabulary classifier (emotional word prediction)
    Eq. (8)  P(t | g, f) = softmax_t(ĝ · f̃^t) over the T segments, where g is the output of the first
             token after the first (self-)attention block, ĝ = W_q g its projection to the query space of
             the second (video) attention block of layer 1, and f̃^t = W_k f^t to its key space

The dot products of Eq. (8) are divided by √d, the scale the attention block itself uses (a temperature:
the argmax is unchanged). The self-attention is bidirectional: the masked words are predicted from the
words on both sides, as in the masked language model the task follows; no token is generated.

Masks (True = valid): `token_valid` [N, S] marks real tokens (padding False); `f_valid` [N, T+1] marks
the video tokens (f^0 and real segments). N counts comments; `f` is given per comment ([N, T+1, d]; the
caller gathers each comment's video with `f[clip]`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tam.features.normalize import FeatureNorm
from tam.models.fusion import FeedForward


@dataclass
class DecoderOutput:
    h: Tensor  # [N, S, d] output of the last layer (after the final norm)
    word_logits: Tensor  # [N, S, V] vocabulary logits at every position (the loss reads the [#M] ones)
    time_logits: Tensor  # [N, T] Eq. (8) logits over segments 1..T; -inf where the segment is padding


class Attention(nn.Module):
    """Multi-head attention with its projections W_q, W_k, W_v, W_o exposed (Eq. 8 reuses W_q and W_k)."""

    def __init__(self, d: int, heads: int, dropout: float):
        super().__init__()
        self.heads, self.dropout = heads, dropout
        self.W_q, self.W_k, self.W_v, self.W_o = (nn.Linear(d, d) for _ in range(4))

    def split(self, x: Tensor) -> Tensor:
        N, L, d = x.shape
        return x.view(N, L, self.heads, d // self.heads).transpose(1, 2)  # [N, h, L, d/h]

    def forward(self, x: Tensor, kv: Tensor, key_ok: Tensor) -> Tensor:
        """x [N, S, d] queries, kv [N, L, d] keys/values, key_ok [N, L] bool -> [N, S, d]."""
        Q, K, V = self.split(self.W_q(x)), self.split(self.W_k(kv)), self.split(self.W_v(kv))
        mask = key_ok[:, None, None, :]  # [N, 1, 1, L]
        A = F.scaled_dot_product_attention(Q, K, V, attn_mask=mask, dropout_p=self.dropout if self.training else 0.0)
        return self.W_o(A.transpose(1, 2).flatten(2))


class DecoderLayer(nn.Module):
    """Self-attention over the comment, attention to the video f, FFN; each pre-norm with a residual."""

    def __init__(self, d: int, heads: int, ffn_hidden: int, dropout: float):
        super().__init__()
        self.norm1, self.norm2, self.norm3 = nn.LayerNorm(d), nn.LayerNorm(d), nn.LayerNorm(d)
        self.self_attn = Attention(d, heads, dropout)
        self.video_attn = Attention(d, heads, dropout)
        self.ffn = FeedForward(d, ffn_hidden, dropout)
        self.drop = nn.Dropout(dropout)

    def attend_self(self, h: Tensor, token_valid: Tensor) -> Tensor:
        x = self.norm1(h)
        return h + self.drop(self.self_attn(x, x, token_valid))

    def attend_video(self, h: Tensor, f: Tensor, f_valid: Tensor) -> Tensor:
        h = h + self.drop(self.video_attn(self.norm2(h), f, f_valid))
        return h + self.ffn(self.norm3(h))


class VideoTSCDecoder(nn.Module):
    """Masked comment + video representation -> word logits (Eq. 7) and appearing-time logits (Eq. 8)."""

    def __init__(self, vocab_size: int, d: int = 768, layers: int = 8, heads: int = 8, ffn_mult: int = 4,
                 dropout: float = 0.1, max_len: int = 32, pad_id: int = 0):
        super().__init__()
        self.d, self.max_len = d, max_len
        self.embed = nn.Embedding(vocab_size, d, padding_idx=pad_id)
        self.pos = nn.Parameter(torch.zeros(max_len, d))
        nn.init.trunc_normal_(self.pos, std=0.02)
        self.layers = nn.ModuleList([DecoderLayer(d, heads, ffn_mult * d, dropout) for _ in range(layers)])
        self.norm = nn.LayerNorm(d)
        self.word_head = nn.Linear(d, vocab_size)  # the vocabulary classifier of Eq. (7)

    def forward(self, tokens: Tensor, token_valid: Tensor, f: Tensor, f_valid: Tensor,
                words: bool = True) -> DecoderOutput:
        """tokens [N, S] ids ([#S] first), token_valid [N, S], f [N, T+1, d], f_valid [N, T+1] (True = valid).

        `words=False` skips the layers after the first and the vocabulary classifier (appearing time only).
        """
        N, S = tokens.shape
        if S > self.max_len:
            raise ValueError(f"comments of {S} tokens, but the decoder holds max_len = {self.max_len}")
        h = self.embed(tokens) + self.pos[:S]  # [N, S, d]
        first = self.layers[0]
        h = first.attend_self(h, token_valid)  # first attention block
        time_logits = self.appearing_time(first, h[:, 0], f, f_valid)  # Eq. (8): [N, T]
        if not words:
            return DecoderOutput(h=h, word_logits=h.new_zeros(N, S, 0), time_logits=time_logits)
        h = first.attend_video(h, f, f_valid)  # second attention block (+ FFN)
        for layer in self.layers[1:]:
            h = layer.attend_video(layer.attend_self(h, token_valid), f, f_valid)
        h = self.norm(h)
        return DecoderOutput(h=h, word_logits=self.word_head(h), time_logits=time_logits)

    def appearing_time(self, layer: DecoderLayer, g: Tensor, f: Tensor, f_valid: Tensor) -> Tensor:
        """Eq. (8) logits: ĝ · f̃^t / √d for t = 1..T; padded segments get -inf (excluded from the softmax)."""
        g_hat = layer.video_attn.W_q(layer.norm2(g))  # [N, d] ĝ: g in the query space of block 2
        f_tilde = layer.video_attn.W_k(f[:, 1:])  # [N, T, d] f̃^t: segments in its key space (f^0 excluded)
        logits = torch.einsum("nd,ntd->nt", g_hat, f_tilde) / math.sqrt(self.d)
        return logits.masked_fill(~f_valid[:, 1:], float("-inf"))


class TscPretrainModel(nn.Module):
    """Fusion module + video-TSC decoder; state keys `fusion.*` (what fine-tuning loads) and `decoder.*`."""

    def __init__(self, fusion: nn.Module, decoder: VideoTSCDecoder, dims: dict[str, int] | None = None):
        super().__init__()
        self.norm = FeatureNorm(dims or {})  # statistics of the corpus videos (`norm.*`, features.normalize)
        self.fusion, self.decoder = fusion, decoder

    def forward(self, x: dict[str, Tensor], valid: Tensor, present: Tensor, tokens: Tensor, token_valid: Tensor,
                clip: Tensor, words: bool = True) -> DecoderOutput:
        """Fuse each clip once, then decode each comment against its clip's f (`clip` [N] indexes the batch)."""
        fo = self.fusion(self.norm(x, valid), valid, present)  # f [B, T+1, d]
        return self.decoder(tokens, token_valid, fo.f[clip], fo.valid[clip], words=words)
