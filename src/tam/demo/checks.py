"""What each demo world should show, from its construction (docs/synthetic.md), checked on a run's summary.

Each check returns (text, verdict) with verdict "yes", "NO" or "not run"; the demo prints them and the report
shows them. Kept apart from the runner so that the report and the runner both read them without a cycle."""

from __future__ import annotations

import numpy as np

FUSION_NAMES = {"concat": "Simple concatenation", "divide": "Divide attention", "joint": "Joint attention",
                "inner": "Inner-modal only", "cross": "Cross-modal only", "ctm": "Cross-temp multimodal (CTM)"}

SUBSET_NAMES = {"image": "image", "motion": "motion", "audio": "audio", "image+motion": "image + motion",
                "image+audio": "image + audio", "motion+audio": "motion + audio",
                "image+motion+audio": "image + motion + audio"}


def expectations(summary: dict) -> list[tuple[str, str]]:
    """Each expectation of docs/synthetic.md with 'yes', 'NO' or 'not run' for the measured means."""
    acc = {f: r["accuracy_mean"] for f, r in summary["rows"].items()}
    base = summary["baseline"]["test"]["accuracy"]

    def beats(a: str, b: str) -> str:
        return "not run" if a not in acc or b not in acc else ("yes" if acc[a] > acc[b] else "NO")

    out = [("every fusion beats the majority-class baseline", "yes" if min(acc.values()) > base else "NO")]
    out += [(f"CTM beats {FUSION_NAMES[b].lower()}", beats("ctm", b)) for b in ("concat", "inner")]
    out += [(f"joint attention beats {FUSION_NAMES[b].lower()}", beats("joint", b)) for b in ("concat", "inner")]
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
    if "audio" in sub:
        out.append(("audio alone (it holds only the cue's time) is within 10 points of the majority baseline",
                    yn(sub["audio"]["accuracy_mean"] <= base + 0.10)))
    reg = s.get("regression")
    if reg:
        b, m = reg["baseline"]["test"], reg["mean"]
        out.append(("CTM regression beats the training mean on valence and arousal MSE (mean over seeds)",
                    yn(m["valence_mse"] < b["valence_mse"] and m["arousal_mse"] < b["arousal_mse"])))
    if len(pt) == 2:
        a, b = pt["no pre-training"]["accuracy_mean"], pt["TSC pre-training"]["accuracy_mean"]
        out.append(("fine-tuning from TSC pre-training beats training from scratch (CTM, mean over seeds)",
                    yn(b > a)))
    return out
