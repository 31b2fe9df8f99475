"""Collecting a grid: per arm and number of labelled videos, the test metric's mean and 95% interval over seeds;
learning curves (PNG + HTML report); the table in the paper's layout (arms as rows) with the trivial baseline;
each claimed ordering tested on the seeds both arms share (paired t-test, Wilcoxon, interval of the paired
difference) with a YES / NO; train-vs-validation diagnostics; and what failed or is missing."""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tam.eval.statistics import Interval, compare, mean_ci
from tam.experiment.grid import Grid, Run, arm_label
from tam.report.document import Checks, Document, Figure, Section, Table, write_document


@dataclass
class Outcome:
    run: Run
    status: str  # done | failed | missing
    test: float = math.nan
    val: float = math.nan
    train_loss: float = math.nan  # last epoch
    train_metric: float = math.nan  # last epoch, when the engine records train_<metric> in metrics.csv
    baseline: float = math.nan
    linear: float = math.nan  # the engine's linear baseline (results.json "linear"), when it fits one
    n_train: int = 0  # training + validation rows the run used
    best_epoch: int = -1
    error: str = ""


def _read_metrics_csv(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    with path.open(encoding="utf-8") as f:
        return list(csv.DictReader(f))


def outcome(r: Run, metric: str, grid: Grid | None = None) -> Outcome:
    """A run's result; with `grid`, a run folder started from other settings than the grid's now (`stale`) is
    reported as failed, so that its numbers are left out."""
    from tam.experiment.run import stale

    res, err = r.run_dir / "results.json", r.run_dir / "error.txt"
    if grid is not None and (keys := stale(grid, r)):
        return Outcome(r, "failed", error=f"started from other settings (differs in {', '.join(keys)}): left out; "
                                          "delete the folder and run the grid again")
    if not res.is_file():
        if err.is_file():
            return Outcome(r, "failed", error=err.read_text(encoding="utf-8").splitlines()[0] if err.stat().st_size
                           else "failed")
        return Outcome(r, "missing")
    d = json.loads(res.read_text(encoding="utf-8"))

    def get(m: dict | None) -> float:
        v = (m or {}).get(metric)
        return math.nan if v is None else float(v)

    rows = _read_metrics_csv(r.run_dir / "metrics.csv")
    last = rows[-1] if rows else {}

    def col(key: str) -> float:
        try:
            return float(last.get(key) or "nan")
        except ValueError:
            return math.nan

    return Outcome(r, "done", get(d.get("test")), get(d.get("val")), col("train_loss"), col(f"train_{metric}"),
                   get((d.get("baseline") or {}).get("test")), get((d.get("linear") or {}).get("test")),
                   int(d["n"]["train"]) + int(d["n"]["val"]), int(d.get("best_epoch", -1)))


def arm_key(grid: Grid, r: Run) -> tuple:
    return tuple((a, arm_label(a, r.values[a])) for a in grid.axes if a not in ("seed", "labelled"))


def arm_name(grid: Grid, key: tuple) -> str:
    varying = [a for a in grid.axes if a not in ("seed", "labelled") and len(grid.axes[a]) > 1]
    parts = [v for a, v in key if a in varying]
    return ", ".join(parts) or "model"


def _n_key(r: Run) -> float:
    return math.inf if r.labelled is None else r.labelled


def _n_text(n: float) -> str:
    return "all" if n == math.inf else str(int(n))


@dataclass
class Collected:
    grid: Grid
    outcomes: list[Outcome]
    cells: dict  # (arm key, n) -> {seed: test value}
    arms: list[tuple]
    ns: list[float]


def gather(grid: Grid) -> Collected:
    outs = [outcome(r, grid.metric, grid) for r in grid.runs]
    cells: dict = {}
    for o in outs:
        slot = cells.setdefault((arm_key(grid, o.run), _n_key(o.run)), {})
        if o.status == "done" and math.isfinite(o.test):
            slot[o.run.seed] = o.test
    arms = list(dict.fromkeys(arm_key(grid, r) for r in grid.runs))
    ns = sorted({_n_key(r) for r in grid.runs})
    return Collected(grid, outs, cells, arms, ns)


def _fmt(ci: Interval, scale: float) -> str:
    if ci.n == 0:
        return "—"
    if ci.n == 1 or not math.isfinite(ci.low):
        return f"{ci.mean * scale:.1f} (1 run)"
    return f"{ci.mean * scale:.1f} [{ci.low * scale:.1f}, {ci.high * scale:.1f}]"


def _scale(grid: Grid) -> float:
    return 100.0 if grid.metric in ("accuracy", "macro_f1") else 1.0


def cell_ci(c: Collected, arm: tuple, n: float) -> Interval:
    """Mean and 95% CI over the seeds of one cell (arm, number of labelled videos)."""
    return mean_ci(list(c.cells.get((arm, n), {}).values()))


def main_table(c: Collected) -> Table:
    """Arms as rows, numbers of labelled videos as columns: mean [95% CI] (runs), trivial baseline last."""
    g, s = c.grid, _scale(c.grid)
    seeds = len(g.axes.get("seed", [0]))
    rows = []
    for arm in c.arms:
        cells = [_fmt(cell_ci(c, arm, n), s)
                 + f" ({len(c.cells.get((arm, n), {}))}/{seeds})" for n in c.ns]
        rows.append([arm_name(g, arm), *cells])
    for attr, name in (("linear", "linear baseline (engine's, on pooled features)"),
                       ("baseline", "trivial baseline (majority class / training mean)")):
        per_n = [[getattr(o, attr) for o in c.outcomes if _n_key(o.run) == n and math.isfinite(getattr(o, attr))]
                 for n in c.ns]
        if any(per_n):
            rows.append([name, *[_fmt(mean_ci(v), s) if v else "—" for v in per_n]])
    unit = " (%)" if s == 100 else ""
    return Table(["arm", *[f"n = {_n_text(n)}" for n in c.ns]], rows,
                 f"test {g.metric}{unit}: mean [95% t-interval over seeds] (runs finished / seeds)")


def layout_table(c: Collected, col_axis: str) -> Table:
    """The paper's layout: one axis as the columns (e.g. fusion, or a pre-training setting as in Tables 3/4), every
    other combination (but the seed) as a row; cells mean [95% CI] over seeds."""
    g, s = c.grid, _scale(c.grid)
    row_axes = [a for a in g.axes if a not in ("seed", col_axis)]
    cols = list(dict.fromkeys(arm_label(col_axis, v) for v in g.axes[col_axis]))
    cells: dict = {}
    for o in c.outcomes:
        if o.status == "done" and math.isfinite(o.test):
            row = tuple(arm_label(a, o.run.values[a]) for a in row_axes)
            cells.setdefault(row, {}).setdefault(arm_label(col_axis, o.run.values[col_axis]), []).append(o.test)
    rows_keys = list(dict.fromkeys(tuple(arm_label(a, r.values[a]) for a in row_axes) for r in g.runs))
    rows = [[", ".join(f"{a.split('.')[-1]} {v}" for a, v in zip(row_axes, k)) or "model",
             *[_fmt(mean_ci(cells.get(k, {}).get(col, [])), s) for col in cols]] for k in rows_keys]
    return Table([" / ".join(a.split(".")[-1] for a in row_axes) or "", *cols], rows,
                 f"test {g.metric}: mean [95% CI over seeds], columns: {col_axis}")


def claim_rows(c: Collected) -> tuple[Table, list[tuple[str, str]]]:
    """Every claim at every number of labels it concerns: paired comparison on shared seeds, YES / NO."""
    g, s = c.grid, _scale(c.grid)
    rows, checks = [], []
    for claim in g.claims:
        a, b = claim[0], claim[2]
        at = claim[3] if len(claim) == 4 else None
        ns = c.ns if at is None else [max(c.ns)] if at == "max" else [min(c.ns)] if at == "min" else [
            math.inf if at == "all" else float(at)]
        for arm in c.arms:
            if str(a) not in dict(arm).values():
                continue
            axis = next(k for k, v in arm if v == str(a))
            other = None if isinstance(b, int | float) else tuple((k, str(b) if k == axis else v) for k, v in arm)
            if other is not None and other not in c.arms:
                continue
            for n in ns:
                rows.append(_claim_row(c, arm, other, claim, n, s, checks))
    header = ["claim", "arm", "n", "A", "B", "A − B [95% CI]", "paired t p", "Wilcoxon p", "seeds", "holds"]
    return Table(header, rows, "claimed orderings, paired across seeds (YES: the 95% interval of the "
                               "difference excludes 0 on the claimed side)"), checks


def _claim_row(c: Collected, arm: tuple, other: tuple | None, claim: list, n: float, s: float, checks: list) -> list:
    a, op, b = claim[0], claim[1], claim[2]
    va = c.cells.get((arm, n), {})
    text = f"{a} {op} {b}"
    where = arm_name(c.grid, arm)
    if other is None:  # against a number: the arm's interval lies above / below it
        ci = mean_ci(list(va.values()))
        ok = ci.n >= 2 and (ci.low > float(b) if op == ">" else ci.high < float(b))
        verdict = "YES" if ok else ("not enough runs" if ci.n < 2 else "NO")
        checks.append((f"{text} at n = {_n_text(n)} ({where})", _check(verdict)))
        return [text, where, _n_text(n), _fmt(ci, s), f"{float(b) * s:.1f}", "—", "—", "—", str(ci.n), verdict]
    vb = c.cells.get((other, n), {})
    cmp = compare(va, vb)
    enough = len(cmp.seeds) >= 2
    verdict = ("YES" if cmp.holds(op) else "NO") if enough else "not enough runs"
    checks.append((f"{text} at n = {_n_text(n)} ({where})", _check(verdict)))
    return [text, where, _n_text(n), _fmt(cmp.a, s), _fmt(cmp.b, s), _fmt(cmp.diff, s), _p(cmp.p_t),
            _p(cmp.p_wilcoxon), str(len(cmp.seeds)), verdict]


def _p(x: float) -> str:
    return "—" if not math.isfinite(x) else f"{x:.3g}"


def _check(verdict: str) -> str:
    return {"YES": "yes", "NO": "NO"}.get(verdict, "not run")


def diagnostics(c: Collected) -> Table:
    """Per arm and n, means over finished seeds: final training loss, validation and test metric, best epoch."""
    g, s = c.grid, _scale(c.grid)
    rows = []
    for arm in c.arms:
        for n in c.ns:
            done = [o for o in c.outcomes if o.status == "done" and arm_key(g, o.run) == arm and _n_key(o.run) == n]
            if not done:
                continue
            rows.append([arm_name(g, arm), _n_text(n), *(_mean_attr(done, a, k) for a, k in (
                ("n_train", 1), ("train_loss", 1), ("train_metric", s), ("val", s), ("test", s), ("best_epoch", 1)))])
    return Table(["arm", "n", "train+val rows", "final train loss", f"final train {g.metric}", f"val {g.metric}",
                  f"test {g.metric}", "best epoch (0-based)"], rows,
                 "train vs validation (means over finished seeds): a training metric far above a validation metric "
                 "near the baseline is memorisation")


def pretraining(grid: Grid) -> Table | None:
    """The pre-training steps' held-out accuracies beside their baselines: EWP top-1 / top-5 against the most
    frequent training words (and their ratio), ATP top-1 against chance; a mean [95% CI] row over the steps."""
    rows, vals = [], {k: [] for k in ("ewp1", "base1", "ratio", "ewp5", "base5", "atp", "chance")}
    for step in grid.pretrain_steps:
        path = step.run_dir / "results.json"
        if not path.is_file():
            rows.append([step.run_dir.name, *["not run"] + ["—"] * 6])
            continue
        r = json.loads(path.read_text(encoding="utf-8"))
        h, b = r.get("heldout", {}), r.get("baseline", {})
        v = {"ewp1": h.get("ewp_top1", math.nan), "base1": b.get("ewp_top1", math.nan),
             "ewp5": h.get("ewp_top5", math.nan), "base5": b.get("ewp_top5", math.nan),
             "atp": h.get("atp_top1", math.nan), "chance": h.get("atp_chance", math.nan)}
        v["ratio"] = v["ewp1"] / v["base1"] if v["base1"] else math.nan
        for k, x in v.items():
            vals[k].append(x)
        rows.append([step.run_dir.name, *(f"{v[k]:.3f}" for k in ("ewp1", "base1")), f"{v['ratio']:.2f}x",
                     *(f"{v[k]:.3f}" for k in ("ewp5", "base5", "atp", "chance"))])
    if not rows:
        return None
    if len(vals["ewp1"]) > 1:
        def ci(k: str, unit: str = "") -> str:
            iv = mean_ci(vals[k])
            return f"{iv.mean:.3f}{unit} [{iv.low:.3f}, {iv.high:.3f}]"
        rows.append(["mean [95% CI]", ci("ewp1"), ci("base1"), ci("ratio", "x"), ci("ewp5"), ci("base5"), ci("atp"),
                     ci("chance")])
    return Table(["pre-training step", "EWP top-1", "most frequent word", "ratio", "EWP top-5", "5 most frequent",
                  "ATP top-1", "ATP chance"], rows,
                 "held-out comments of the pre-training corpus: what the fusion learnt from the comments, beside what "
                 "guessing without the video gets")


def _mean_attr(outs: list[Outcome], attr: str, scale: float) -> str:
    v = [getattr(o, attr) for o in outs if math.isfinite(getattr(o, attr))]
    return f"{np.mean(v) * scale:.3g}" if v else "—"


def curves_png(c: Collected) -> bytes:
    """Test metric vs labelled videos per arm: mean over seeds with its 95% interval as a band."""
    sizes = {n: [o.n_train for o in c.outcomes if _n_key(o.run) == n and o.status == "done"] for n in c.ns}
    xs = {n: (n if n != math.inf else (np.mean(sizes[n]) if sizes[n] else math.nan)) for n in c.ns}
    lines = {arm_name(c.grid, arm): [(xs[n], cell_ci(c, arm, n)) for n in c.ns] for arm in c.arms}
    return _curves_figure(c, lines, "labelled videos (training + validation rows)")


def axis_curves(c: Collected) -> dict[str, list[tuple[float, Interval]]]:
    """The grid's `curve:` axis as the x of the learning curves: per arm without that axis (and per number of
    labelled videos when there are several), the points (x of the axis value, mean [95% CI] over seeds)."""
    axis, xs = c.grid.curve["axis"], c.grid.curve["x"]
    lines: dict = {}
    for arm in c.arms:
        rest = tuple(kv for kv in arm if kv[0] != axis)
        for n in c.ns:
            name = arm_name(c.grid, rest) + ("" if len(c.ns) == 1 else f", {_n_text(n)} labelled")
            lines.setdefault(name, []).append((xs[dict(arm)[axis]], cell_ci(c, arm, n)))
    return {k: sorted(v, key=lambda p: p[0]) for k, v in lines.items()}


def _curves_figure(c: Collected, lines: dict, xlabel: str) -> bytes:
    from tam.report.plots import _plt, _png

    plt = _plt()
    g, s = c.grid, _scale(c.grid)
    fig, ax = plt.subplots(figsize=(7, 4.2))
    ticks = set()
    for name, pts in lines.items():
        pts = [(x, ci) for x, ci in pts if ci.n and math.isfinite(x)]
        if not pts:
            continue
        x = [p[0] for p in pts]
        ticks |= {float(v) for v in x}
        ax.plot(x, [p[1].mean * s for p in pts], marker="o", ms=4, label=name)
        lo = [(p[1].low if math.isfinite(p[1].low) else p[1].mean) * s for p in pts]
        hi = [(p[1].high if math.isfinite(p[1].high) else p[1].mean) * s for p in pts]
        ax.fill_between(x, lo, hi, alpha=0.18)
    base = [o.baseline * s for o in c.outcomes if math.isfinite(o.baseline)]
    if base:
        ax.axhline(float(np.mean(base)), color="grey", ls="--", lw=1, label="trivial baseline")
    ax.set(xlabel=xlabel, ylabel=f"test {g.metric}", title=f"{g.name}: learning curves (mean, 95% CI over seeds)")
    if len(ticks) > 1:
        ax.set_xscale("log")
        ax.minorticks_off()
        ax.set_xticks(sorted(ticks), [f"{t:g}" for t in sorted(ticks)])
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return _png(fig)


def problems(c: Collected) -> tuple[list[str], list[str]]:
    failed = [f"{o.run.name}: {o.error}" for o in c.outcomes if o.status == "failed"]
    missing = [o.run.name for o in c.outcomes if o.status == "missing"]
    return failed, missing


def runs_csv(c: Collected) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    axes = list(c.grid.axes)
    w.writerow(["run", *axes, "status", "test", "val", "final_train_loss", "baseline", "error"])
    for o in c.outcomes:
        w.writerow([o.run.name, *[arm_label(a, o.run.values[a]) for a in axes], o.status, o.test, o.val,
                    o.train_loss, o.baseline, o.error])
    return buf.getvalue()


def report(c: Collected) -> Document:
    g = c.grid
    claims, checks = claim_rows(c)
    failed, missing = problems(c)
    done = sum(o.status == "done" for o in c.outcomes)
    intro = [f"Grid `{g.path}`: {len(g.runs)} runs, {done} finished, {len(failed)} failed, {len(missing)} missing. "
             f"Metric: test {g.metric}; intervals are two-sided 95% t-intervals over seeds; claims are paired on "
             "the seeds both arms share."]
    if failed or missing:
        intro.append(f"**Partial results: {len(failed)} failed and {len(missing)} missing runs are left out of every "
                     "mean below (listed at the end).**")
    figures = [Figure("curves.png", curves_png(c), "test metric vs labelled videos")]
    if g.curve:
        figures.append(Figure(f"curves_{g.curve['file']}.png", _curves_figure(c, axis_curves(c), g.curve["label"]),
                              f"test metric vs {g.curve['label']}"))
    sections = [Section("Learning curves", figures),
                Section("Results (arms × labelled videos)", [main_table(c), *[layout_table(c, a) for a in g.tables]]),
                Section("Claims", [Checks(checks) if checks else "No claims in the grid.", claims]),
                Section("Diagnostics: train vs validation", [diagnostics(c)])]
    pre = pretraining(g)
    if pre is not None:
        sections.append(Section("Pre-training (held-out EWP / ATP beside their baselines)", [pre]))
    if failed or missing:
        sections.append(Section("Failed and missing runs", [[f"failed: {x}" for x in failed]
                                                            + [f"missing (not run yet): {x}" for x in missing]]))
    return Document(f"Experiment {g.name}", intro, sections)


def collect(grid: Grid, out: str | Path | None = None) -> tuple[Document, Collected, dict[str, Path]]:
    """Write OUT (default GRID_OUT/report): index.md, index.html, curves.png, runs.csv."""
    from tam.io import write_text

    c = gather(grid)
    doc = report(c)
    folder = Path(out) if out else grid.out / "report"
    paths = write_document(doc, folder)
    write_text(folder / "runs.csv", runs_csv(c))
    return doc, c, paths | {"csv": folder / "runs.csv"}
