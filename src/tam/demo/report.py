"""Assemble the `tam demo` report from the run's summary (tam.demo.pipeline_summary) and its run folders.

Every number comes from the summary or from files the run wrote (metrics.csv, comments.parquet, truth.json,
the danmaku XML); nothing is typed in. `write_report(out, summary)` writes `out/report/index.{md,html}` with
the figures, and `out/report.md` (the same markdown, figure links relative to `out/`).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

from tam.demo.checks import FUSION_NAMES, SUBSET_NAMES, expectations, pipeline_expectations
from tam.io import write_text
from tam.report import plots
from tam.report.document import Checks, Document, Figure, Section, Table, to_markdown, write_document


def _ci(r: dict) -> str:
    lo, hi = r.get("accuracy_ci", [None, None])
    return "—" if lo is None or lo != lo else f"[{100 * lo:.1f}, {100 * hi:.1f}]"


def _pct(r: dict) -> list[str]:
    return [f"{100 * r['accuracy_mean']:.2f} ± {100 * r['accuracy_std']:.2f}", _ci(r),
            f"{100 * r['macro_f1_mean']:.2f}", str(r["runs"]), " ".join(f"{100 * a:.1f}" for a in r["accuracy"])]


HEAD = ["", "accuracy (%) mean ± std", "95% CI of the mean", "macro-F1 (%)", "runs", "per seed"]


def _diff(iv: dict) -> str:
    if iv["n"] < 2 or iv["low"] != iv["low"]:
        return f"{100 * iv['mean']:+.1f} (n={iv['n']})"
    return f"{100 * iv['mean']:+.1f} [{100 * iv['low']:+.1f}, {100 * iv['high']:+.1f}]"


def _baseline_row(s: dict) -> list[str]:
    b = s["baseline"]
    return [f"{b['name']} (trivial baseline)", f"{100 * b['test']['accuracy']:.2f}", "—",
            f"{100 * b['test']['macro_f1']:.2f}", "—", "—"]


def _linear_row(s: dict) -> list[list[str]]:
    """The linear baseline (logistic regression on time-pooled, normalised features; the same for every seed)."""
    lin = s.get("linear") or {}
    if not lin.get("test"):
        return []
    return [[f"{lin['name']} (linear baseline)", f"{100 * lin['test']['accuracy']:.2f}", "—",
             f"{100 * lin['test']['macro_f1']:.2f}", "—", "—"]]


def _below_linear(s: dict, r: dict) -> str:
    lin = (s.get("linear") or {}).get("test") or {}
    return " ⚠ below the linear baseline" if lin and r["accuracy_mean"] < lin["accuracy"] else ""


def result_tables(s: dict) -> list[Section]:
    """Fusion strategies, modality subsets, with and without pre-training (mean ± std over seeds)."""
    n, sp = s["n"], s["spec"]
    cap = (f"Test accuracy over seeds {s['seeds']}; {n['train']} train / {n['val']} val / {n['test']} test "
           f"videos; d={sp['d']}, L={sp['layers']}, {sp['heads']} heads, T={sp['max_segments']}, "
           f"{sp['epochs']} epochs; model selection on validation.")
    diffs = s.get("fusion_diffs", {})
    fusion = Table(["fusion strategy"] + HEAD[1:] + ["CTM − this (points, 95% CI)"],
                   [[FUSION_NAMES[f] + _below_linear(s, r)] + _pct(r) + [_diff(diffs[f]) if f in diffs else "—"]
                    for f, r in s["rows"].items()] + [_baseline_row(s) + ["—"]]
                   + [row + ["—"] for row in _linear_row(s)], cap)
    subsets = Table(["modalities (CTM)"] + HEAD[1:], [[SUBSET_NAMES[m]] + _pct(r) for m, r in s["subsets"].items()]
                    + [_baseline_row(s)], cap)
    pre = Table(["CTM fine-tuned from"] + HEAD[1:], [[k] + _pct(r) for k, r in s["pretraining"].items()]
                + [_baseline_row(s)], cap + " Both arms use the same learning rate for fusion and head.")
    return [Section("Fusion strategies (shape of the paper's Table 2)", [fusion]), regression_section(s),
            Section("Modality subsets (shape of the paper's Table 1)", [subsets]),
            Section("With and without TSC pre-training (shape of the paper's Tables 3-4)",
                    [pre, *small_tables(s), _pretrain_table(s)])]


def small_tables(s: dict) -> list:
    """Pre-trained vs scratch at a small number of labelled videos, per readout, with the paired interval."""
    from tam.demo.checks import READOUT_NAMES

    if not s.get("small"):
        return []
    sp = s["spec"]
    rows = []
    for readout, r in s["small"].items():
        name = READOUT_NAMES.get(readout, readout)
        rows.append([f"{name}: from scratch"] + _pct(r["scratch"]) + ["—"])
        rows.append([f"{name}: from TSC pre-training"] + _pct(r["pretrained"]) + [_diff(r["diff"])])
    n = next(iter(s["small"].values()))["n"]
    select = {"last": "the last epoch tested (no selection on the validation videos)",
              "loss": "the epoch of lowest validation loss tested"}.get(sp.get("small_select", ""),
                                                                       "the epoch of best validation accuracy tested")
    cap = (f"CTM at the small-label end, seeds {sp.get('small_seeds', s['seeds'])}: {n['train']} train / {n['val']} "
           f"val labelled videos per seed (a class-stratified draw per seed, the same in both arms), {n['test']} test "
           f"videos; head lr {sp['head_lr']:g}, fusion lr {sp['fusion_lr']:g} from pre-training and "
           f"{sp['head_lr']:g} from scratch, {sp['small_epochs']} epochs, {select}. The last column is the paired "
           "difference pre-trained − scratch over the seeds with its 95% t-interval.")
    return [Table(["CTM, readout: fine-tuned"] + HEAD[1:] + ["pre-trained − scratch (points, 95% CI)"], rows, cap)]


def regression_section(s: dict) -> Section:
    """Valence and arousal of each video (its class's), CTM on all modalities, beside the training mean."""
    r = s["regression"]
    keys = list(r["mean"])
    def num(x) -> str:
        return "—" if x is None else f"{x:.3f}"

    row = ["CTM, image + motion + audio"] + [f"{num(r['mean'][k])} ± {num(r['std'][k])}" for k in keys]
    base = [f"{r['baseline']['name']} (trivial baseline)"] + [num(r["baseline"]["test"].get(k)) for k in keys]
    n = r["n"]
    return Section("Valence and arousal regression (shape of the paper's LIRIS-ACCEDE table)", [
        Table(["model"] + keys, [row, base], f"Test MSE and Pearson correlation (PCC), mean ± std over {r['runs']} "
                                             f"seeds; {n['train']} train / {n['val']} val / {n['test']} test videos; "
                                             "PCC of a constant prediction is undefined (—).")])


def _pretrain_table(s: dict) -> Table:
    rows = []
    for name, p in s["pretrain_runs"].items():
        h, b = p["heldout"], p["baseline"]
        rows.append([name, f"{h['ewp_top1']:.3f} ({b['ewp_top1']:.3f})", f"{h['ewp_top5']:.3f} ({b['ewp_top5']:.3f})",
                     f"{h['atp_top1']:.3f} ({h['atp_chance']:.3f})", str(p["clips"]["train"]),
                     str(p["clips"]["heldout"]), str(h["comments"])])
    return Table(["run", "EWP top-1 (most frequent word)", "EWP top-5 (5 most frequent)", "ATP top-1 (chance)",
                  "train clips", "held-out clips", "held-out comments"], rows,
                 "Held-out pre-training metrics beside their baselines.")


def corpus_section(s: dict) -> Section:
    c = s["corpus"]
    filters = Table(["step", "comments (all segments)", "in selected segments"],
                    [[k, str(v["all"]), str(v["selected"])] for k, v in c["filters"].items()],
                    "Comments left after each filter of section 5.2 (tam comments prepare).")
    kinds = s["comment_kinds"]
    names = sorted({k for v in kinds.values() for k in v})
    drawn = Table(["kind drawn by the generator"] + list(kinds), [[k] + [str(kinds[p].get(k, 0)) for p in kinds]
                                                                 for k in names],
                  "What the world generator wrote (emotional event comments, neutral chatter, and each noise kind).")
    sel = c["segments_selected"]
    facts = [f"sources {c['sources']} (failed {len(c['sources_failed'])}), videos {c['videos']}, "
             f"comments parsed {c['comments_parsed']}, skipped at parsing {c['comments_skipped']}",
             f"segments {c['segments']} (selected negative {sel['negative']} / positive {sel['positive']}), "
             f"comments written {c['comments_written']}, vocabulary {c['vocab_size']}"]
    return Section("Comment corpus statistics at each filter", [filters, drawn, facts])


def extraction_section(s: dict) -> Section:
    e = s["extraction"]
    return Section("Feature extraction", [
        "**The encoders are tiny and randomly initialised (no weights are downloaded): the features are NOT real "
        "CLIP / 3D ResNet / VGGish features; the numbers show that the pipeline runs, not the paper's results.**",
        Table(["videos", "written", "already in the store", "failed", "segments written", "encoders", "seconds"],
              [[str(e["videos"]), str(e["written"]), str(e["resumed"]), str(len(e["failed"])), str(e["segments"]),
                ", ".join(f"{m}: {n}" for m, n in e["encoders"].items()), f"{e['seconds']:.1f}"]])])


def _csv(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    with path.open(encoding="utf-8") as f:
        return list(csv.DictReader(f))


def figures_section(out: Path, s: dict) -> Section:
    seed = s["seeds"][0]
    names = [f"{f}-seed{seed}" for f in s["rows"]] + [f"ctm-pretrained-seed{seed}"]
    fits = {n: _csv(out / "runs" / n / "metrics.csv") for n in names}
    pre = _csv(out / "runs" / f"pretrain-seed{seed}" / "metrics.csv")
    blocks: list = [Figure("curves.png", plots.training_curves({k: v for k, v in fits.items() if v}, pre),
                           f"Training curves (seed {seed}).")]
    best = max((k for k in s["runs"] if s["runs"][k].get("confusion")),
               key=lambda k: s["runs"][k]["test"]["accuracy"], default=None)
    if best:
        blocks.append(Figure("confusion.png", plots.confusion(s["runs"][best]["confusion"], s["classes"], best),
                             f"Test confusion matrix of {best}, the run with the highest test accuracy."))
    return Section("Plots", blocks)


def diagnostics_section(out: Path, s: dict) -> Section | None:
    """Why: for one test video, CTM's attention per modality pair and what the readout reads, after fine-tuning
    from pre-training (f^0 and the attentive readout); train vs validation curves of those runs."""
    from tam.eval.diagnostics import attention_figures, video_attention
    from tam.features.store import FeatureStore
    from tam.train.checkpoint import load_model

    seed = s["seeds"][0]
    truth = json.loads((out / "world" / "truth.json").read_text(encoding="utf-8"))
    labels = (out / "world" / "labels.csv").read_text(encoding="utf-8").splitlines()[1:]
    test = [ln.split(",")[0] for ln in labels if ln.endswith(",test")]
    plans = {p["video"]: p for p in truth["videos"]["labelled"]}
    if not test or test[0] not in plans:
        return None
    plan = plans[test[0]]
    events = {"audio": [plan["cue"]]}
    store = FeatureStore.open(out / "features")
    blocks: list = []
    for readout in s.get("small", {}):
        for arm in ("pretrained", "scratch"):
            name = f"small-{readout}-{arm}-seed{seed}"
            run = out / "runs" / name
            if not (run / "best.safetensors").is_file():
                continue
            model, _ = load_model(run)
            figs = attention_figures(video_attention(model, store, plan["video"], s["spec"]["max_segments"]),
                                     f"{name}: last CTM layer on {plan['video']} (cue at segment {plan['cue']})",
                                     events)
            blocks.append(Figure(f"attention-{readout}-{arm}.png", figs["attention"],
                                 f"{name}: which tokens of each modality every token attends to (mean over heads); "
                                 "dashed: the audio cue. Row X0 is the video token f^0."))
            blocks.append(Figure(f"readout-{readout}-{arm}.png", figs["readout"],
                                 f"{name}: weight per segment of f^0's attention and of the pooling readout."))
            curves = getattr(plots, "run_curves", None)
            rows = _csv(run / "metrics.csv")
            if curves and rows:
                blocks.append(Figure(f"curves-{readout}-{arm}.png", curves(rows, "accuracy"),
                                     f"{name}: training vs validation per epoch."))
    if not blocks:
        return None
    return Section(f"Diagnostics: what the readout reads (test video {plan['video']}, class "
                   f"{truth['classes'][plan['label']]}, seed {seed})", blocks)


def sample_section(out: Path) -> Section:
    """The affect timeline of the unlabelled video with the most comments kept in the corpus, with its comments."""
    import pyarrow.parquet as pq

    from tam.comments.formats import read_bilibili_xml
    from tam.demo.worlds.videos import CLASSES, SCENE_HUES
    from tam.demo.worlds.words import WORDS

    truth = json.loads((out / "world" / "truth.json").read_text(encoding="utf-8"))
    kept = pq.read_table(out / "corpus" / "comments.parquet", columns=["video", "time", "text"]).to_pylist()
    counts: dict[str, int] = {}
    for r in kept:
        counts[r["video"]] = counts.get(r["video"], 0) + 1
    plan = next(p for p in truth["videos"]["unlabelled"] if p["video"] == max(sorted(counts), key=counts.get))
    comments = read_bilibili_xml(out / "world" / "danmaku" / "unlabelled" / f"{plan['video']}.xml").comments
    words = {w for _, _, ws in WORDS.values() for w in ws}
    kept_keys = {(round(r["time"], 3), r["text"]) for r in kept if r["video"] == plan["video"]}
    png = plots.timeline(plan, [(c.time, any(w in c.text for w in words)) for c in comments], SCENE_HUES)
    rows = [[f"{c.time:.2f}", str(int(c.time)), c.text, "yes" if (round(c.time, 3), c.text) in kept_keys else "no"]
            for c in comments]
    return Section(f"A sample video: {plan['video']} (class {CLASSES[plan['label']]}, cue at {plan['cue']} s)", [
        Figure("timeline.png", png, "Latent affect per segment, the rendered events and the comments' times."),
        Table(["time (s)", "segment", "comment", "kept by the filters"], rows, "Its danmaku, as written.")])


def _stage_seconds(stages: dict) -> str:
    """"Seconds by stage: ...": pre-training counts until its last run ended, with the fine-tuning runs that do not
    start from it running beside it (tam.demo.run.run_jobs); fine-tuning, the rest."""
    notes = {"pre-training": " (fine-tuning runs that need none beside it)"}
    return "Seconds by stage: " + ", ".join(f"{k} {v:.0f}{notes.get(k, '')}" for k, v in stages.items()) + "."


def _stage_cpu(cpu: dict, workers: int) -> str:
    """The stages' CPU seconds (each stage's own runs only; what they cost on a shared machine)."""
    from tam.demo.run import cpu_line

    return cpu_line(cpu, workers) + "."


def write_report(out: str | Path, s: dict) -> dict:
    """Write the report folder and out/report.md; return the paths and a short text for the terminal."""

    out = Path(out)
    checks = pipeline_expectations(s) + expectations(s)
    intro = [f"Every number below was computed by this run of `tam demo` ({s['seconds']:.0f} s) on the built-in "
             "synthetic video + danmaku world (docs/synthetic.md); the expectations come from the world's "
             "construction and each is checked against this run.",
             _stage_seconds(s.get("seconds_by_stage", {}))]
    if "cpu_seconds_by_stage" in s:
        intro.append(_stage_cpu(s["cpu_seconds_by_stage"], s["spec"]["workers"]))
    intro.append("**Features come from tiny randomly initialised encoders: these are not real results.**")
    if s["n"]["train"] < 60:
        intro.append(f"**This world is small ({s['n']['train']} training videos, e.g. `--quick`): a smoke test of "
                     "the pipeline; the expectations are not meant to hold at this size.**")
    doc = Document("tam demo: the whole pipeline on a synthetic video + danmaku world", intro, [
        Section("Expectations checked on this run", [Checks(checks)]), *result_tables(s), corpus_section(s),
        extraction_section(s), figures_section(out, s), *[x for x in [diagnostics_section(out, s)] if x],
        sample_section(out)])
    paths = write_document(doc, out / "report")
    md = to_markdown(doc)
    for f in ("curves.png", "confusion.png", "timeline.png"):
        md = md.replace(f"]({f})", f"](report/{f})")
    for prefix in ("attention-", "readout-", "curves-"):
        md = md.replace(f"]({prefix}", f"](report/{prefix}")
    write_text(out / "report.md", md)
    text = "\n".join(f"  {v:<7} {t}" for t, v in checks)
    return {"html": paths["html"], "md": out / "report.md", "text": "expectations:\n" + text}
