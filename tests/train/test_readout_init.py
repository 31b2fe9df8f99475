"""The attentive readout's query from appearing-time prediction (tam.train.readout_init)."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import torch

from tam.config import ModelConfig
from tam.models.decoder import TscPretrainModel, VideoTSCDecoder
from tam.models.fusion import CTMFusion
from tam.models.model import build_model
from tam.train.readout_init import init_readout, readout_query, sidecar, write_query

DIMS = {"image": 6, "audio": 4}


def _pairs():
    comments = [np.array([1, 5, 6]), np.array([1, 7]), np.array([1, 5, 8, 9])]
    return SimpleNamespace(clip_off=np.array([0, 2, 3]), comment=lambda i: (comments[i], np.zeros(0)))


def test_query_is_wk_transpose_mean_g(tmp_path):
    torch.manual_seed(0)
    dec = VideoTSCDecoder(12, d=8, layers=1, heads=2, max_len=8).eval()
    model = TscPretrainModel(CTMFusion(DIMS, d=8, layers=1, heads=2, T=4), dec)
    w = readout_query(model, _pairs(), np.array([0, 1]))
    first = dec.layers[0]
    gs = []
    for toks in ([1, 5, 6], [1, 7], [1, 5, 8, 9]):
        t = torch.tensor([toks])
        h = first.attend_self(dec.embed(t) + dec.pos[:len(toks)], torch.ones_like(t, dtype=torch.bool))
        gs.append(first.video_attn.W_q(first.norm2(h[:, 0]))[0])
    ref = first.video_attn.W_k.weight.T @ torch.stack(gs).mean(0) / math.sqrt(8)
    assert torch.allclose(w, ref.detach(), atol=1e-5)
    # ĝ̄ · W_k f^t ranks segments as w · f^t does (the bias of W_k adds the same to every segment)
    f = torch.randn(5, 8)
    atp = (torch.stack(gs).mean(0) @ first.video_attn.W_k(f).T / math.sqrt(8)).detach()
    assert torch.equal((f @ w).argsort(), atp.argsort())

    ckpt = tmp_path / "pretrained.safetensors"
    assert write_query(ckpt, w) == sidecar(ckpt) == tmp_path / "pretrained.readout.safetensors"
    att = build_model(ModelConfig(modalities=list(DIMS), d=8, layers=1, heads=2, T=4, readout="attentive"), DIMS, 3)
    assert init_readout(att, ckpt) and torch.allclose(att.head.pool.query.weight[0], w)
    ref_model = build_model(ModelConfig(modalities=list(DIMS), d=8, layers=1, heads=2, T=4), DIMS, 3)
    assert not init_readout(ref_model, ckpt)  # the paper's f^0 readout has no query
    assert not init_readout(att, tmp_path / "other.safetensors")  # no sidecar: the query stays as initialised
