"""The demo's claims (tam.demo.checks): an ordering holds only when the paired 95% interval is above 0."""

from __future__ import annotations

from tam.demo.checks import expectations, paired_claim, pipeline_expectations


def test_paired_claim_needs_the_whole_interval_above_zero():
    text, verdict = paired_claim([0.5, 0.52, 0.55, 0.51, 0.53], [0.4, 0.41, 0.43, 0.40, 0.42])
    assert verdict == "yes" and "95% CI [+" in text and "over 5 seeds" in text
    # a higher mean whose interval crosses 0 is not a claim
    assert paired_claim([0.5, 0.3, 0.6, 0.2, 0.5], [0.4, 0.4, 0.4, 0.4, 0.4])[1] == "NO"
    assert paired_claim([0.9], [0.1]) == (": +80.0 points, 1 seed (no interval)", "NO")


def _row(acc):
    return {"accuracy_mean": sum(acc) / len(acc), "accuracy": acc}


def test_expectations_use_the_paired_interval():
    rows = {"ctm": _row([0.6, 0.62, 0.61]), "concat": _row([0.4, 0.42, 0.41]), "inner": _row([0.6, 0.7, 0.5])}
    out = dict((t.split(":")[0], v) for t, v in expectations({"rows": rows, "baseline": {"test": {"accuracy": 0.1}}}))
    assert out["Cross-temp multimodal beats simple concatenation by more than the 95% CI"] == "yes"
    assert out["Cross-temp multimodal beats inner-modal only by more than the 95% CI"] == "NO"
    assert out["Joint attention beats simple concatenation by more than the 95% CI"] == "not run"


def test_small_label_check_per_readout():
    s = {"extraction": {"failed": []}, "corpus": {"filters": {"a": {"all": 3}, "b": {"all": 2}}},
         "comment_kinds": {}, "baseline": {"test": {"accuracy": 0.1}},
         "pretrain_runs": {"p": {"heldout": {"ewp_top1": 0.5, "atp_top1": 0.5, "atp_chance": 0.2},
                                 "baseline": {"ewp_top1": 0.1}}},
         "subsets": {}, "pretraining": {},
         "small": {"attentive": {"scratch": _row([0.2, 0.21, 0.19]), "pretrained": _row([0.5, 0.55, 0.52]),
                                 "n": {"train": 20, "val": 4, "test": 40}},
                   "f0": {"scratch": _row([0.2, 0.21, 0.19]), "pretrained": _row([0.2, 0.25, 0.15]),
                          "n": {"train": 20, "val": 4, "test": 40}}}}
    out = [(t, v) for t, v in pipeline_expectations(s) if t.startswith("24 labelled videos")]
    assert [v for _, v in out] == ["yes", "NO"]
    assert "attentive pooling" in out[0][0] and "f^0 (the paper's)" in out[1][0]


def test_each_modality_alone_is_checked_against_the_majority_baseline():
    s = {"extraction": {"failed": []}, "corpus": {"filters": {"a": {"all": 3}, "b": {"all": 2}}},
         "comment_kinds": {}, "baseline": {"test": {"accuracy": 0.25}},
         "pretrain_runs": {"p": {"heldout": {"ewp_top1": 0.5, "atp_top1": 0.5, "atp_chance": 0.2},
                                 "baseline": {"ewp_top1": 0.1}}},
         "subsets": {"image": _row([0.3, 0.3]), "motion": _row([0.5, 0.6]), "audio": _row([0.25, 0.26])},
         "pretraining": {}}
    out = {t.split(" (")[0]: (t, v) for t, v in pipeline_expectations(s) if " alone (" in t}
    assert [out[f"{m} alone"][1] for m in ("image", "motion", "audio")] == ["yes", "NO", "yes"]
    assert "55.0% against 25.0%" in out["motion alone"][0]
