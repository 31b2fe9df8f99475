"""The attentive readout's query from TSC pre-training: where viewers comment (docs/pretraining.md "Readout").

Appearing-time prediction (Eq. 8) scores segment t of a clip for a comment by ĝ · W_k f^t, with ĝ the
comment's [#S] token in the query space of the decoder's first video attention. Averaged over the training
comments, ĝ̄ · W_k f^t = (W_kᵀ ĝ̄) · f^t + const says where comments appear in a video: the segments viewers
react to. `readout_query` is that vector w = W_kᵀ ĝ̄ / √d; pre-training writes it beside its checkpoint
(`pretrained.readout.safetensors`, key `query`), and fine-tuning with `model.readout: attentive` starts the
pooling's query there (`init_readout`): the head reads, from the first step, the segments that pre-training
learned to find, instead of f^0, which nothing in pre-training trains.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from tam.io import atomic_write


def sidecar(checkpoint: str | Path) -> Path:
    """`<run>/pretrained.readout.safetensors` beside `<run>/pretrained.safetensors`."""
    p = Path(checkpoint)
    return p.with_name(p.stem + ".readout.safetensors")


@torch.no_grad()
def readout_query(model, pairs, clips: np.ndarray, max_comments: int = 4096, batch: int = 256) -> torch.Tensor:
    """w [d] = W_kᵀ mean(ĝ) / √d over up to `max_comments` comments of `clips` (ĝ needs only the comment's tokens)."""
    dec = model.decoder
    first = dec.layers[0]
    ids = np.concatenate([np.arange(pairs.clip_off[c], pairs.clip_off[c + 1]) for c in clips]) if len(clips) else []
    ids = ids[:max_comments]
    if not len(ids):
        return torch.zeros(dec.d)
    was = dec.training
    dec.eval()
    device = next(dec.parameters()).device
    total = torch.zeros(dec.d, device=device)
    for i in range(0, len(ids), batch):
        toks = [torch.as_tensor(np.asarray(pairs.comment(int(j))[0]), dtype=torch.long) for j in ids[i:i + batch]]
        S = max(len(t) for t in toks)
        tokens = torch.zeros(len(toks), S, dtype=torch.long, device=device)
        valid = torch.zeros(len(toks), S, dtype=torch.bool, device=device)
        for k, t in enumerate(toks):
            tokens[k, :len(t)], valid[k, :len(t)] = t.to(device), True
        h = first.attend_self(dec.embed(tokens) + dec.pos[:S], valid)
        total += first.video_attn.W_q(first.norm2(h[:, 0])).float().sum(0)  # ĝ of each comment
    dec.train(was)
    g = total / len(ids)
    return (first.video_attn.W_k.weight.float().T @ g / math.sqrt(dec.d)).cpu()


def write_query(checkpoint: str | Path, w: torch.Tensor) -> Path:
    from safetensors.torch import save_file

    path = sidecar(checkpoint)
    atomic_write(path, lambda p: save_file({"query": w.detach().float().contiguous()}, str(p)))
    return path


def init_readout(model, checkpoint: str | Path) -> bool:
    """Start an attentive readout's query at the pre-training's (if the checkpoint has one); True if it did."""
    from safetensors.torch import load_file

    pool = getattr(model.head, "pool", None)
    path = sidecar(checkpoint)
    if pool is None or pool.kind != "attentive" or not path.is_file():
        return False
    w = load_file(str(path))["query"]
    if w.shape != (pool.query.in_features,):
        return False
    with torch.no_grad():
        pool.query.weight.copy_(w[None].to(pool.query.weight))
    return True
