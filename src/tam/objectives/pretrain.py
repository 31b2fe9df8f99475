"""TSC pre-training losses (section 4.2): emotional-word prediction (Eq. 7), appearing-time prediction
(Eq. 9) and their weighted sum (Eq. 10).

    Eq. (7)   L_wp = -1/|W| Σ log P(w^m | w^{\\m}, f)     mean over all masked words of all comments
    Eq. (9)   L_tp = -1/|T| Σ log P(t | g, f)             mean over all comments
    Eq. (10)  L    = λ_w L_wp + λ_t L_tp
    option    L_v  = -1/|W| Σ log P(w^m | f^0)        each masked word read from its clip's f^0 alone (λ_v, off
                                                     by default: not in the paper; docs/pretraining.md)

`pretrain_losses` returns `{"loss": ..., "l_wp", "l_tp", and counts for the accuracies}`. A task whose
weight is 0 is not computed. Under torchrun the means are over the *global* batch: pass `denominators`
(the global number of masked words and of comments) and the loss is scaled so that DDP's gradient
averaging gives the global mean.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from tam.models.decoder import DecoderOutput

IGNORE = -100
"""Target id of a position that is not a masked word."""


def word_loss_sum(word_logits: Tensor, word_targets: Tensor) -> Tensor:
    """Σ -log P(w^m | ...) over the masked positions (targets != IGNORE)."""
    at = word_targets != IGNORE
    return F.cross_entropy(word_logits[at].float(), word_targets[at], reduction="sum")


def time_loss_sum(time_logits: Tensor, segment: Tensor) -> Tensor:
    """Σ -log P(t | g, f) over comments; `segment` [N] is the 0-based index among the T segments."""
    return F.cross_entropy(time_logits.float(), segment, reduction="sum")


def f0_word_loss_sum(f0_logits: Tensor, clip: Tensor, word_targets: Tensor) -> Tensor:
    """Σ -log P(w^m | f^0) over the masked words; `f0_logits` [B, V] per clip, `clip` [N] each comment's clip."""
    at = word_targets != IGNORE
    rows = clip[:, None].expand_as(word_targets)[at]
    return F.cross_entropy(f0_logits[rows].float(), word_targets[at], reduction="sum")


def pretrain_losses(out: DecoderOutput, word_targets: Tensor, segment: Tensor, lambda_w: float, lambda_t: float,
                    denominators: tuple[float, float] | None = None, world: int = 1, lambda_v: float = 0.0,
                    f0_logits: Tensor | None = None, clip: Tensor | None = None) -> dict[str, Tensor]:
    """Eq. (10) from the decoder output; `word_targets` [N, S] (IGNORE off the masked words), `segment` [N];
    with `lambda_v` > 0 also λ_v L_v from `f0_logits` [B, V] and `clip` [N]."""
    n_words = (word_targets != IGNORE).sum()
    n_comments = segment.new_tensor(segment.shape[0])
    den_w, den_t = denominators if denominators is not None else (float(n_words), float(n_comments))
    zero = out.time_logits.new_zeros(())
    l_wp = word_loss_sum(out.word_logits, word_targets) / max(den_w, 1.0) if lambda_w else zero
    l_tp = time_loss_sum(out.time_logits, segment) / max(den_t, 1.0) if lambda_t else zero
    l_v = f0_word_loss_sum(f0_logits, clip, word_targets) / max(den_w, 1.0) if lambda_v else zero
    loss = (lambda_w * l_wp + lambda_t * l_tp + lambda_v * l_v) * world  # DDP averages gradients over `world` ranks
    return {"loss": loss, "l_wp": l_wp.detach(), "l_tp": l_tp.detach(), "l_v": l_v.detach(), "n_words": n_words,
            "n_comments": n_comments}


@torch.no_grad()
def accuracy_counts(out: DecoderOutput, word_targets: Tensor, segment: Tensor) -> dict[str, float]:
    """Correct counts for EWP top-1 / top-5 and ATP top-1, with the ATP chance level summed over comments."""
    res: dict[str, float] = {"words": 0.0, "ewp_top1": 0.0, "ewp_top5": 0.0}
    at = word_targets != IGNORE
    if out.word_logits.shape[-1] and at.any():
        logits, y = out.word_logits[at].float(), word_targets[at]
        top = logits.topk(min(5, logits.shape[-1]), dim=-1).indices
        res.update(words=float(y.numel()), ewp_top1=float((top[:, 0] == y).sum()),
                   ewp_top5=float((top == y[:, None]).any(-1).sum()))
    valid = torch.isfinite(out.time_logits)
    res["comments"] = float(segment.numel())
    res["atp_top1"] = float((out.time_logits.argmax(-1) == segment).sum())
    res["atp_chance"] = float((1.0 / valid.sum(-1).clamp(min=1).float()).sum())
    return res
