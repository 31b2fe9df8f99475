"""The report's figures as PNG bytes (matplotlib, Agg backend, no CJK fonts needed: comment texts go in
tables, not in the plots)."""

from __future__ import annotations

import colorsys
import io

import numpy as np


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    _plt().close(fig)
    return buf.getvalue()


def training_curves(fits: dict[str, list[dict]], pretrain: list[dict]) -> bytes:
    """Validation accuracy and training loss per epoch of each fine-tuning run; pre-training losses."""
    plt = _plt()
    fig, ax = plt.subplots(1, 3, figsize=(14, 3.8))
    for name, rows in fits.items():
        ep = [int(r["epoch"]) + 1 for r in rows]
        ax[0].plot(ep, [float(r["val_accuracy"]) for r in rows], marker="o", ms=3, label=name)
        ax[1].plot(ep, [float(r["train_loss"]) for r in rows], marker="o", ms=3, label=name)
    ax[0].set(title="fine-tuning: validation accuracy", xlabel="epoch", ylim=(0, 1))
    ax[1].set(title="fine-tuning: training loss", xlabel="epoch")
    ax[0].legend(fontsize=7)
    ep = [int(r["epoch"]) for r in pretrain]
    for key, label in (("loss", "L (Eq. 10)"), ("l_wp", "L_wp (EWP)"), ("l_tp", "L_tp (ATP)")):
        ax[2].plot(ep, [float(r[key]) for r in pretrain], marker="o", ms=3, label=label)
    ax[2].set(title="TSC pre-training losses", xlabel="epoch")
    ax[2].legend(fontsize=7)
    for a in ax:
        a.grid(alpha=0.3)
    return _png(fig)


def confusion(matrix: list[list[int]], classes: list[str], title: str) -> bytes:
    """A confusion matrix (rows: true class, columns: predicted) with the counts written in."""
    plt = _plt()
    m = np.asarray(matrix)
    fig, ax = plt.subplots(figsize=(5.5, 4.8))
    ax.imshow(m, cmap="Blues")
    ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(len(classes)), classes, fontsize=8)
    for i, j in np.ndindex(m.shape):
        ax.text(j, i, str(m[i, j]), ha="center", va="center", fontsize=8,
                color="white" if m[i, j] > m.max() / 2 else "black")
    ax.set(xlabel="predicted", ylabel="true", title=title)
    return _png(fig)


def timeline(plan: dict, comments: list[tuple[float, bool]], hues: tuple[float, ...]) -> bytes:
    """A video's latent affect per segment, its events (cue, scene tints, movements) and its comments' times
    (filled: with an emotional word of the lexicon; hollow: without)."""
    plt = _plt()
    T = plan["T"]
    fig, ax = plt.subplots(2, 1, figsize=(10, 4.6), sharex=True, gridspec_kw={"height_ratios": [3, 1.3]})
    x = np.arange(T + 1)
    ax[0].step(x, plan["valence"] + plan["valence"][-1:], where="post", label="valence (latent)", color="#c05621")
    ax[0].step(x, plan["arousal"] + plan["arousal"][-1:], where="post", label="arousal (latent)", color="#2b6cb0")
    ax[0].axvspan(plan["cue"], plan["cue"] + 1, color="#f6e05e", alpha=0.4, label="audio cue t*")
    ax[0].set(ylim=(-1.1, 1.1), ylabel="affect", title=f"video {plan['video']}: latent affect and events")
    ax[0].legend(fontsize=7, loc="lower right")
    for t in range(T):
        if plan["scene"][t] >= 0:
            ax[1].add_patch(plt.Rectangle((t + 0.1, 0.7), 0.8, 0.25,
                                          color=colorsys.hsv_to_rgb(hues[plan["scene"][t]], 0.85, 0.9)))
        if plan["move"][t]:
            ax[1].annotate("", (t + 0.5, 0.45 + 0.18 * plan["move"][t]), (t + 0.5, 0.45 - 0.18 * plan["move"][t]),
                           arrowprops={"arrowstyle": "->", "lw": 2})
    for time, emotional in comments:
        ax[1].plot(time, 0.12, "o", ms=5, color="#805ad5", mfc="#805ad5" if emotional else "none")
    ax[1].set(ylim=(0, 1), yticks=[], xlabel="time (s); one segment = 1 s",
              title="scene tints, movements (arrows), comments (filled: emotional word)")
    ax[1].set_xlim(0, T)
    return _png(fig)


def run_curves(rows: list[dict], metric: str) -> bytes:
    """One training run: training vs validation loss, and the metric on a fixed training subset vs validation
    (the gap between the two is what memorisation looks like)."""
    plt = _plt()
    fig, ax = plt.subplots(1, 2, figsize=(10, 3.6))
    ep = [int(r["epoch"]) + 1 for r in rows]

    def series(key):
        return [float(r[key]) if r.get(key) not in (None, "") else np.nan for r in rows]

    for key, label in (("train_loss", "training loss (optimised)"), ("train_eval_loss", "training subset"),
                       ("val_loss", "validation")):
        if any(key in r for r in rows):
            ax[0].plot(ep, series(key), marker="o", ms=3, label=label)
    for key, label in ((f"train_{metric}", "training subset"), (f"val_{metric}", "validation")):
        if any(key in r for r in rows):
            ax[1].plot(ep, series(key), marker="o", ms=3, label=label)
    ax[0].set(title="loss", xlabel="epoch")
    ax[1].set(title=metric, xlabel="epoch")
    for a in ax:
        a.grid(alpha=0.3)
        a.legend(fontsize=7)
    return _png(fig)


def cross_attention(maps, modalities: list[str], pairs: list[tuple[int, int]], n_valid: int, title: str,
                    events: dict[str, list[int]] | None = None) -> bytes:
    """CTM attention of one video, one layer: a heatmap per (query modality, key modality) pair, mean over heads
    ([P, h, T+1, T+1] → rows: the query's tokens X_0, 1..T; columns: the key modality's tokens). `events` marks
    segments (e.g. {"audio": [cue]}) on both axes."""
    plt = _plt()
    A = np.asarray(maps)[:, :, : n_valid + 1, : n_valid + 1].mean(1)  # [P, L, L] over heads, valid tokens only
    cols = min(len(pairs), 3)
    rows = (len(pairs) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.9 * rows), squeeze=False)
    ticks = ["X0"] + [str(t) for t in range(n_valid)]
    for k, (q, kk) in enumerate(pairs):
        ax = axes[k // cols][k % cols]
        ax.imshow(A[k], cmap="viridis", vmin=0, vmax=max(float(A[k][1:].max()), 1e-6))
        step = max(1, (n_valid + 1) // 8)
        ax.set_xticks(range(0, n_valid + 1, step), ticks[::step], fontsize=7)
        ax.set_yticks(range(0, n_valid + 1, step), ticks[::step], fontsize=7)
        ax.set(xlabel=f"{modalities[kk]} (key)", ylabel=f"{modalities[q]} (query)",
               title=("inner " if q == kk else "cross ") + f"{modalities[q]} → {modalities[kk]}")
        for m, ts in (events or {}).items():
            for t in ts:
                if m == modalities[kk]:
                    ax.axvline(t + 1, color="#e53e3e", lw=0.8, ls="--")
                if m == modalities[q]:
                    ax.axhline(t + 1, color="#e53e3e", lw=0.8, ls="--")
    for k in range(len(pairs), rows * cols):
        axes[k // cols][k % cols].axis("off")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    return _png(fig)


def readout_weights(weights: dict[str, list[float]], events: dict[str, list[int]] | None = None,
                    title: str = "what the video-level readout reads") -> bytes:
    """Per readout (e.g. f^0's attention over segments, the attentive pooling's weights), its weight per segment
    of one video; dashed lines at the marked segments (e.g. the audio cue)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 3))
    for name, w in weights.items():
        ax.plot(range(len(w)), w, marker="o", ms=3, label=name)
    for m, ts in (events or {}).items():
        for t in ts:
            ax.axvline(t, color="#e53e3e", lw=0.8, ls="--", label=f"{m} event" if t == ts[0] else None)
    ax.set(xlabel="segment", ylabel="weight", title=title, ylim=(0, None))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return _png(fig)
