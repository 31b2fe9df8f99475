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

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from tam.errors import TamError

MAX_VOCAB = 1 << 24


@dataclass
class WordModel:
    model: torch.nn.Module  # TscPretrainModel
    meta: dict
    vocab: list[str]
    T: int
    where: str


def load_word_model(run_dir: str | Path, vocab: str = "", device: str = "cpu") -> WordModel:
    """Rebuild fusion + decoder from `run_dir/pretrained.{json,safetensors}`; `vocab` defaults to the corpus's."""
    from tam.io import read_json
    from tam.train.checkpoint import build_checked, check_dims, check_features, check_model_config
    from tam.train.pretrain import PretrainConfig, build_pretrain_model

    run_dir = Path(run_dir)
    meta_path, weights = run_dir / "pretrained.json", run_dir / "pretrained.safetensors"
    if not meta_path.is_file() or not weights.is_file():
        raise TamError(f"{run_dir}: no pre-trained decoder (pretrained.json + pretrained.safetensors)")
    meta = read_json(meta_path)
    cfg = check_model_config(meta, meta_path)
    dims = check_dims(meta, cfg, meta_path)
    check_features(meta, dims, meta_path)
    dc = _decoder_config(meta, cfg, meta_path)
    tokens = _vocab(run_dir, vocab, meta["vocab_size"])
    pcfg = PretrainConfig(model=cfg, decoder=dc)
    model = build_checked(lambda: build_pretrain_model(pcfg, dims, meta["vocab_size"]), weights, device, meta_path)
    return WordModel(model.to(device).eval(), meta, tokens, cfg.T, str(run_dir))


def _decoder_config(meta: dict, cfg, path: Path):
    """`meta["decoder"]` and `meta["vocab_size"]`, type- and range-checked (nothing is built yet)."""
    from tam.comments.process import SPECIAL_TOKENS
    from tam.config import from_dict
    from tam.train.pretrain import DecoderConfig

    if not isinstance(meta.get("decoder"), dict):
        raise TamError(f"{path}: no 'decoder' section")
    try:
        dc = from_dict(DecoderConfig, meta["decoder"], "decoder")
    except TamError as e:
        raise TamError(f"{path}: {e}") from None
    ranges = {"layers": (0, 256), "heads": (1, 4096), "ffn_mult": (1, 256), "max_len": (2, 1 << 16)}
    for key, (lo, hi) in ranges.items():
        if not lo <= getattr(dc, key) <= hi:
            raise TamError(f"{path}: decoder.{key} = {getattr(dc, key)} is outside [{lo}, {hi}]")
    if cfg.d % dc.heads or not 0 <= dc.dropout < 1:
        raise TamError(f"{path}: decoder.heads = {dc.heads} does not divide model.d = {cfg.d}, or bad dropout")
    n = meta.get("vocab_size")
    if not isinstance(n, int) or isinstance(n, bool) or not len(SPECIAL_TOKENS) < n <= MAX_VOCAB:
        raise TamError(f"{path}: 'vocab_size' must be an integer in ({len(SPECIAL_TOKENS)}, {MAX_VOCAB}], got "
                       f"{str(n)[:40]}")
    return dc


def _vocab(run_dir: Path, vocab: str, size: int) -> list[str]:
    """The corpus's tokens (from `vocab`, or the corpus named in run_dir/config.yaml), checked against `size`."""
    import yaml

    from tam.comments.process import SPECIAL_TOKENS
    from tam.io import read_json

    if not vocab and (run_dir / "config.yaml").is_file():
        try:
            corpus = (yaml.safe_load((run_dir / "config.yaml").read_text(encoding="utf-8")) or {}).get("data", {})
        except (OSError, UnicodeDecodeError, yaml.YAMLError, AttributeError):
            raise TamError(f"{run_dir / 'config.yaml'}: unreadable config") from None
        vocab = str(Path(corpus.get("corpus", "")) / "vocab.json") if isinstance(corpus, dict) and \
            isinstance(corpus.get("corpus"), str) and corpus.get("corpus") else ""
    if not vocab or not Path(vocab).is_file():
        raise TamError(f"{run_dir}: cannot find the corpus vocabulary ({vocab or 'no corpus in config.yaml'}); "
                       "pass --vocab CORPUS/vocab.json")
    tokens = read_json(vocab, "vocabulary", limit=256 << 20).get("tokens")
    if not isinstance(tokens, list) or not all(isinstance(t, str) for t in tokens):
        raise TamError(f"{vocab}: 'tokens' must be a list of strings")
    if len(tokens) != size or tuple(tokens[:len(SPECIAL_TOKENS)]) != SPECIAL_TOKENS:
        raise TamError(f"{vocab}: {len(tokens)} tokens, but the decoder in {run_dir} was trained on "
                       f"{size} (or the special tokens differ)")
    return tokens


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
            x = wm.model.norm(b.x, b.valid)  # the features as pre-training normalised them
            fo = wm.model.fusion(x, b.valid, b.present)
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
