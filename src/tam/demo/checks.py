"""What each demo world should show, from its construction (docs/synthetic.md), checked on a run's summary.

Each check returns (text, verdict) with verdict "yes", "NO" or "not run"; the demo prints them and the report
shows them. Kept apart from the runner so that the report and the runner both read them without a cycle."""

from __future__ import annotations

import numpy as np

from tam.eval.statistics import paired_difference_ci

FUSION_NAMES = {"concat": "Simple concatenation", "divide": "Divide attention", "joint": "Joint attention",
                "inner": "Inner-modal only", "cross": "Cross-modal only", "ctm": "Cross-temp multimodal (CTM)"}

READOUT_NAMES = {"f0": "f^0 (the paper's)", "mean": "mean over segments", "attentive": "attentive pooling"}

SUBSET_NAMES = {"image": "image", "motion": "motion", "audio": "audio", "image+motion": "image + motion",
                "image+audio": "image + audio", "motion+audio": "motion + audio",
                "image+motion+audio": "image + motion + audio"}


ALONE = {"image": "it shows the scene's kind, and every class goes with each kind",
         "motion": "it sees the same tint and the distractor sweeps",
         "audio": "it holds the sound's kind and time, and every class goes with each kind"}
"""Why each modality alone carries no class in the video + danmaku world (docs/demo.md, "The world")."""


def paired_claim(a: list[float], b: list[float]) -> tuple[str, str]:
    """(" +x.x points [lo, hi] over n seeds", verdict) for accuracies a − b paired by seed: 'yes' when the whole
    95% t-interval of the paired difference is above 0, 'NO' otherwise (also with fewer than 2 seeds)."""
    iv = paired_difference_ci(a, b)
    if iv.n < 2:
        return f": {100 * iv.mean:+.1f} points, {iv.n} seed (no interval)", "NO"
    return (f": {100 * iv.mean:+.1f} points, 95% CI [{100 * iv.low:+.1f}, {100 * iv.high:+.1f}] over {iv.n} seeds",
            "yes" if iv.low > 0 else "NO")


def expectations(summary: dict) -> list[tuple[str, str]]:
    """Each expectation of docs/synthetic.md with 'yes', 'NO' or 'not run': an ordering holds when the 95% interval
    of the paired difference over seeds lies above 0."""
    rows = summary["rows"]
    acc = {f: r["accuracy_mean"] for f, r in rows.items()}
    base = summary["baseline"]["test"]["accuracy"]

    def beats(a: str, b: str) -> tuple[str, str]:
        text = f"{FUSION_NAMES[a].split(' (')[0]} beats {FUSION_NAMES[b].lower()} by more than the 95% CI"
        if a not in rows or b not in rows:
            return text, "not run"
        numbers, verdict = paired_claim(rows[a]["accuracy"], rows[b]["accuracy"])
        return text + numbers, verdict

    out = [("every fusion beats the majority-class baseline", "yes" if min(acc.values()) > base else "NO")]
    out += [beats("ctm", b) for b in ("concat", "inner")]
    out += [beats("joint", b) for b in ("concat", "inner")]
    return out


def pipeline_expectations(s: dict) -> list[tuple[str, str]]:
    """The expectations of docs/synthetic.md for the video + danmaku world, each with 'yes', 'NO' or 'not run'."""
    def yn(ok: bool) -> str:
        return "yes" if ok else "NO"

    e, c, base = s["extraction"], s["corpus"], s["baseline"]["test"]["accuracy"]
    steps = [v["all"] for v in c["filters"].values()]
    out = [("every video was decoded and written to the feature store", yn(not e["failed"])),
           ("every filter of the corpus removes some of the noisy comments", yn(all(b < a for a, b in
                                                                                  zip(steps, steps[1:])))),
           ("the lexicon filter drops every neutral chatter comment the generator wrote",
            yn(steps[0] - steps[1] >= s["comment_kinds"].get("unlabelled", {}).get("chatter", 0)))]
    pre = list(s["pretrain_runs"].values())

    def mean(part: str, key: str) -> float:
        return float(np.mean([p[part][key] for p in pre]))

    out.append(("pre-training: held-out EWP top-1 beats the most-frequent-word baseline (mean over seeds)",
                yn(mean("heldout", "ewp_top1") > mean("baseline", "ewp_top1"))))
    out.append(("pre-training: held-out ATP top-1 beats chance (mean over seeds)",
                yn(mean("heldout", "atp_top1") > mean("heldout", "atp_chance"))))
    sub, pt = s["subsets"], s["pretraining"]
    full = sub.get("image+motion+audio", {}).get("accuracy_mean")
    if full is None:
        out.append(("CTM on all three modalities beats each single modality", "not run"))
    else:
        out.append(("CTM on all three modalities beats the majority-class baseline", yn(full > base)))
        singles = [sub[m]["accuracy_mean"] for m in ("image", "motion", "audio") if m in sub]
        out.append(("CTM on all three modalities beats each single modality",
                    yn(bool(singles) and full > max(singles)) if singles else "not run"))
    for m in ("image", "motion", "audio"):
        if m in sub:
            acc = sub[m]["accuracy_mean"]
            out.append((f"{m} alone ({ALONE[m]}) is within 10 points of the majority baseline: {100 * acc:.1f}% "
                        f"against {100 * base:.1f}%", yn(acc <= base + 0.10)))
    reg = s.get("regression")
    if reg:
        b, m = reg["baseline"]["test"], reg["mean"]
        out.append(("CTM regression beats the training mean on valence and arousal MSE (mean over seeds)",
                    yn(m["valence_mse"] < b["valence_mse"] and m["arousal_mse"] < b["arousal_mse"])))
    if len(pt) == 2:
        numbers, verdict = paired_claim(pt["TSC pre-training"]["accuracy"], pt["no pre-training"]["accuracy"])
        out.append(("all labels: fine-tuning from TSC pre-training beats training from scratch by more than the "
                    "95% CI (CTM, readout f^0, one lr)" + numbers, verdict))
    for readout, r in s.get("small", {}).items():
        numbers, verdict = paired_claim(r["pretrained"]["accuracy"], r["scratch"]["accuracy"])
        sp = s.get("spec", {})
        out.append((f"{r['n']['train'] + r['n']['val']} labelled videos: fine-tuning from TSC pre-training beats "
                    f"training from scratch by more than the 95% CI (CTM, readout {READOUT_NAMES.get(readout, readout)}"
                    f", fusion lr {sp.get('fusion_lr', 1e-5):g})" + numbers, verdict))
    return out
