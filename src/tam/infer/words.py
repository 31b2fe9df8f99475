"""Predicted viewer words: the pre-trained video-TSC decoder (section 4.2) read with a masked prompt.

For each window of T segments, the pre-trained fusion module gives f; then
  1. the prompt `[#S] [#M]` (a comment that is one masked emotional word) gives P(w | f) at the `[#M]`
     position (Eq. 7, the emotional-word-prediction head), special tokens excluded;
  2. for each of the `k` most probable words w, the prompt `[#S] w` gives the appearing-time distribution
     P(t | w, f) over the window's segments (Eq. 8, the appearing-time head);
  3. score(w, t) = P(w | f) · P(t | w, f): how likely viewers write w, and write it at segment t.
A segment's track is its `top` words by score (summed over the windows that contain it). Both heads are used
exactly as pre-training trained them, with the pre-trained fusion module they were trained with (the
fine-tuned classifier's fusion has moved away from the decoder's input space).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from tam.errors import TamError


@dataclass
class WordModel:
    model: torch.nn.Module  # TscPretrainModel
    meta: dict
    vocab: list[str]
    T: int
    where: str


def load_word_model(run_dir: str | Path, vocab: str = "", device: str = "cpu") -> WordModel:
    """Rebuild fusion + decoder from `run_dir/pretrained.{json,safetensors}`; `vocab` defaults to the corpus's."""
    import yaml
    from safetensors.torch import load_file

    from tam.comments.process import SPECIAL_TOKENS
    from tam.config import ModelConfig, from_dict
    from tam.models.decoder import TscPretrainModel, VideoTSCDecoder
    from tam.models.model import build_fusion
    from tam.train.pretrain import DecoderConfig

    run_dir = Path(run_dir)
    meta_path, weights = run_dir / "pretrained.json", run_dir / "pretrained.safetensors"
    if not meta_path.is_file() or not weights.is_file():
        raise TamError(f"{run_dir}: no pre-trained decoder (pretrained.json + pretrained.safetensors)")
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    if not vocab and (run_dir / "config.yaml").is_file():
        corpus = (yaml.safe_load((run_dir / "config.yaml").read_text(encoding="utf-8")) or {}).get("data", {})
        vocab = str(Path(corpus.get("corpus", "")) / "vocab.json") if corpus.get("corpus") else ""
    if not vocab or not Path(vocab).is_file():
        raise TamError(f"{run_dir}: cannot find the corpus vocabulary ({vocab or 'no corpus in config.yaml'}); "
                       "pass --vocab CORPUS/vocab.json")
    tokens = json.loads(Path(vocab).read_text(encoding="utf-8"))["tokens"]
    if len(tokens) != meta["vocab_size"] or tuple(tokens[:len(SPECIAL_TOKENS)]) != SPECIAL_TOKENS:
        raise TamError(f"{vocab}: {len(tokens)} tokens, but the decoder in {run_dir} was trained on "
                       f"{meta['vocab_size']} (or the special tokens differ)")
    cfg, dc = from_dict(ModelConfig, meta["model"]), from_dict(DecoderConfig, meta["decoder"])
    decoder = VideoTSCDecoder(meta["vocab_size"], d=cfg.d, layers=dc.layers, heads=dc.heads, ffn_mult=dc.ffn_mult,
                              dropout=dc.dropout, max_len=dc.max_len)
    model = TscPretrainModel(build_fusion(cfg, meta["dims"]), decoder)
    model.load_state_dict(load_file(str(weights), device=str(device)), strict=True)
    return WordModel(model.to(device).eval(), meta, tokens, cfg.T, str(run_dir))


@torch.no_grad()
def predict_words(wm: WordModel, store, video: str, device: torch.device, k: int = 10, top: int = 3) -> dict:
    """{"method", "model", "top": [[word, ...] per segment], "score": [[score, ...] per segment]}."""
    from tam.comments.process import MASK, SPECIAL_TOKENS, START
    from tam.features.clips import ClipDataset, collate
    from tam.train.loop import autocast

    ds = ClipDataset(store, [video], np.zeros(1), list(wm.meta["model"]["modalities"]), wm.T, train=False)
    T_v = ds.lengths()[0]
    score = np.zeros((T_v, len(wm.vocab)))
    s_id, m_id = wm.vocab.index(START), wm.vocab.index(MASK)
    for w in ds.windows():
        b = collate([ds[w]]).to(device)
        with autocast(device):
            fo = wm.model.fusion(b.x, b.valid, b.present)
            tok = torch.tensor([[s_id, m_id]], device=device)
            ok = torch.ones_like(tok, dtype=torch.bool)
            p_w = wm.model.decoder(tok, ok, fo.f, fo.valid).word_logits[0, 1].float()
            p_w[:len(SPECIAL_TOKENS)] = float("-inf")
            p_w = p_w.softmax(-1)  # Eq. (7): P(w | f)
            cand = p_w.topk(min(k, len(wm.vocab) - len(SPECIAL_TOKENS))).indices
            filled = torch.stack([torch.full_like(cand, s_id), cand], 1)  # [k, 2]: `[#S] w`
            n_c = len(cand)
            t_logits = wm.model.decoder(filled, torch.ones_like(filled, dtype=torch.bool), fo.f.expand(n_c, -1, -1),
                                        fo.valid.expand(n_c, -1), words=False).time_logits.float()
            p_t = t_logits.softmax(-1)  # Eq. (8): P(t | w, f), [k, T]
        n = int(b.valid[0].sum())
        joint = (p_w[cand][:, None] * p_t[:, :n]).T.cpu().numpy()  # [n, k]
        np.add.at(score, (slice(w[1], w[1] + n), cand.cpu().numpy()), joint)
    order = np.argsort(-score, 1)[:, :top]
    return {"method": "P(w | [#S] [#M], f) x P(t | [#S] w, f)", "model": wm.where,
            "top": [[wm.vocab[i] for i in row if score[t, i] > 0] for t, row in enumerate(order)],
            "score": [[round(float(score[t, i]), 5) for i in row if score[t, i] > 0] for t, row in enumerate(order)]}
