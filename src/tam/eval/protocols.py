"""The paper's protocols: seeded train/test splits, and run directories collected into its tables.

Splits: `stratified_splits` draws, for each class separately, a seeded permutation of the sorted
video ids and puts round(n_c * train_fraction) of them in train; split k uses the generator seeded
with (seed, k), so each split is reproducible on its own and independent of the order in which the
videos were listed. `write_split_set` writes them as shareable files (the common list format plus
the engine's labels CSVs and a `splits.json` recording seed, fraction and a hash of the video list).

Tables: `collect_runs` reads `results.json` of run directories, `build_table` places every run in
its cell of Table 1, 2, 5 or 6 (mean ± std over repeats, number of runs and test clips, trivial
baseline beside it), and `to_markdown` / `to_csv` render it. Cells never run show "—"; the paper's
published numbers only ever appear in their own, labelled column.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tam import MODALITIES
from tam.datasets.common import LabelRow, LabelSet, labels_csv_text
from tam.errors import TamError
from tam.io import write_json, write_text


# ---- splits -------------------------------------------------------------------------------------
def stratified_splits(items: Sequence[tuple[str, str]], n_splits: int = 10, train_fraction: float = 2 / 3,
                      seed: int = 0) -> list[dict[str, str]]:
    """`n_splits` assignments {video: "train" | "test"} keeping each class in the train_fraction proportion.

    `items` are (video, class) pairs with distinct videos. A class with at least two videos always
    has one in each part.
    """
    if not 0 < train_fraction < 1:
        raise TamError(f"train fraction must be in (0, 1), got {train_fraction}")
    if n_splits < 1:
        raise TamError(f"number of splits must be at least 1, got {n_splits}")
    videos = [v for v, _ in items]
    if len(set(videos)) != len(videos):
        dup = next(v for v in videos if videos.count(v) > 1)
        raise TamError(f"video {dup!r} is listed twice; split ids must be distinct")
    by_class: dict[str, list[str]] = {}
    for v, c in items:
        by_class.setdefault(c, []).append(v)
    out = []
    for k in range(n_splits):
        rng = np.random.default_rng([seed, k])
        assign = {}
        for c in sorted(by_class):
            vids = sorted(by_class[c])
            n_train = _n_train(len(vids), train_fraction)
            order = rng.permutation(len(vids))
            for rank, i in enumerate(order):
                assign[vids[i]] = "train" if rank < n_train else "test"
        out.append({v: assign[v] for v in videos})
    return out


def _n_train(n: int, fraction: float) -> int:
    k = int(np.floor(n * fraction + 0.5))
    return min(max(k, 1), n - 1) if n >= 2 else n


def video_list_hash(items: Sequence[tuple[str, str]]) -> str:
    """sha256 of the sorted `video<TAB>class` lines: two people with the same dataset get the same hash."""
    text = "".join(f"{v}\t{c}\n" for v, c in sorted(items))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def write_split_set(out: str | os.PathLike, prefix: str, classes: list[str], items: Sequence[tuple[str, str]],
                    splits: list[dict[str, str]], meta: dict) -> list[Path]:
    """Write splits as `classInd.txt`, `trainlistNN.txt` / `testlistNN.txt` and `<prefix>_splitNN.csv`.

    Also writes `splits.json` (meta + counts + video-list hash). Files whose content is unchanged are
    not rewritten; returns the labels CSV paths in split order.
    """
    out = Path(out)
    label_of = dict(items)
    index = {c: i + 1 for i, c in enumerate(classes)}
    _put(out / "classInd.txt", "".join(f"{i} {c}\n" for c, i in index.items()))
    csvs, counts = [], []
    for k, assign in enumerate(splits, 1):
        train = sorted(v for v, s in assign.items() if s == "train")
        test = sorted(v for v, s in assign.items() if s == "test")
        _put(out / f"trainlist{k:02d}.txt", "".join(f"{v} {index[label_of[v]]}\n" for v in train))
        _put(out / f"testlist{k:02d}.txt", "".join(f"{v}\n" for v in test))
        rows = [LabelRow(v, label=label_of[v], split="train") for v in train]
        rows += [LabelRow(v, label=label_of[v], split="test") for v in test]
        path = out / f"{prefix}_split{k:02d}.csv"
        _put(path, labels_csv_text(LabelSet("classification", rows, list(classes))))
        csvs.append(path)
        counts.append({"train": len(train), "test": len(test)})
    info = dict(meta, n_splits=len(splits), classes=list(classes), videos=len(items),
                video_list_sha256=video_list_hash(items), counts=counts)
    if not (out / "splits.json").is_file() or json.loads((out / "splits.json").read_text()) != info:
        write_json(out / "splits.json", info)
    return csvs


def _put(path: Path, text: str) -> None:
    if not (path.is_file() and path.read_text(encoding="utf-8") == text):
        write_text(path, text)


# ---- run directories -> the paper's tables ----------------------------------------------------------
DATASET_TITLES = {"ve8": "VE-8", "yf6": "YF-6", "mediaeval2015_valence": "MediaEval2015 valence",
                  "mediaeval2015_arousal": "MediaEval2015 arousal", "mediaeval2016": "MediaEval2016",
                  "liris": "LIRIS-ACCEDE"}
PRETRAIN_KEYS = ("init_from", "init", "pretrained", "pretrain", "init_checkpoint", "finetune_from")
"""Config keys (any section) whose non-empty value marks a run fine-tuned from TSC pre-training."""


@dataclass
class RunResult:
    """One run directory's `results.json`, plus what `collect_runs` infers from it."""

    path: Path
    task: str
    config: dict
    n: dict
    test: dict
    baseline_name: str
    baseline: dict
    random_init: bool
    code_version: str
    dataset: str = ""
    linear: dict = field(default_factory=dict)  # test metrics of the run's linear baseline (tam.eval.linear)

    @property
    def setting(self) -> dict:
        m = self.config.get("model", {})
        mods = tuple(m.get("modalities", MODALITIES))
        return {"fusion": m.get("fusion", "ctm"), "modalities": frozenset(mods),
                "paper_features": set(mods) <= set(MODALITIES), "pretrained": _pretrained(self.config)}


def load_result(path: str | os.PathLike) -> RunResult:
    """Read and check one `results.json` (a run directory or the file itself)."""
    path = Path(path)
    file = path / "results.json" if path.is_dir() else path
    try:
        obj = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise TamError(f"{file}: unreadable results ({e.__class__.__name__}: {e})") from None
    missing = [k for k in ("task", "config", "n", "test", "baseline") if k not in obj]
    if missing:
        raise TamError(f"{file}: results lack {missing}")
    if obj["task"] not in ("classification", "regression"):
        raise TamError(f"{file}: task must be classification or regression, got {obj['task']!r}")
    base = obj["baseline"] if isinstance(obj["baseline"], dict) else {}
    linear = obj.get("linear") if isinstance(obj.get("linear"), dict) else {}
    return RunResult(file.parent, obj["task"], obj["config"] or {}, obj["n"] or {}, obj["test"] or {},
                     str(base.get("name", "")), base.get("test", {}) or {}, bool(obj.get("random_init_features")),
                     str(obj.get("code_version", "")), linear=linear.get("test", {}) or {})


def find_results(paths: Sequence[str | os.PathLike]) -> list[Path]:
    """`results.json` files: each path is a results file, a run directory, or a folder searched recursively."""
    found: list[Path] = []
    for p in map(Path, paths):
        if p.is_file():
            found.append(p)
        elif (p / "results.json").is_file():
            found.append(p / "results.json")
        elif p.is_dir():
            found += sorted(p.rglob("results.json"))
        else:
            raise TamError(f"{p}: no such run directory")
    return list(dict.fromkeys(found))


def infer_dataset(run: RunResult) -> str:
    """The dataset of a run, from its labels file name (as `tam dataset` writes them) or its classes."""
    data = run.config.get("data", {})
    name = Path(str(data.get("labels", ""))).name.lower().replace("-", "")
    for key, pats in (("mediaeval2015_valence", ("mediaeval2015_valence", "me15_valence")),
                      ("mediaeval2015_arousal", ("mediaeval2015_arousal", "me15_arousal")),
                      ("mediaeval2016", ("mediaeval2016", "me16")), ("ve8", ("ve8", "videoemotion")),
                      ("yf6", ("yf6", "ekman")), ("liris", ("liris", "accede"))):
        if any(p in name for p in pats):
            return key
    classes = [str(c).lower() for c in data.get("classes", [])]
    if run.task == "classification":
        if len(classes) == 8:
            return "ve8"
        if len(classes) == 6:
            return "yf6"
        if classes == ["negative", "neutral", "positive"]:
            return "mediaeval2015_valence"
        if classes == ["calm", "neutral", "active"]:
            return "mediaeval2015_arousal"
    return ""


def _pretrained(config: dict) -> bool:
    for section in config.values():
        if isinstance(section, dict):
            for k, v in section.items():
                if k in PRETRAIN_KEYS and v not in ("", None, False, 0):
                    return True
    return False


def collect_runs(paths: Sequence[str | os.PathLike], dataset: str = "") -> tuple[list[RunResult], list[str]]:
    """Load every run under `paths`; returns (runs, skipped as `path: reason`). `dataset` forces the dataset."""
    runs, skipped = [], []
    for file in find_results(paths):
        try:
            run = load_result(file)
        except TamError as e:
            skipped.append(str(e))
            continue
        run.dataset = dataset or infer_dataset(run)
        if not run.dataset:
            skipped.append(f"{file}: cannot tell the dataset from data.labels; pass --dataset")
            continue
        runs.append(run)
    return runs, skipped


# ---- table layouts --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Column:
    dataset: str
    metric: str  # a key of results.json's "test"
    title: str


@dataclass(frozen=True)
class Row:
    cells: tuple[str, ...]  # the leading cells (e.g. ✓ marks, a method name)
    match: dict | None  # setting this row shows (see RunResult.setting); None = a published method only
    paper: tuple[float | None, ...] = ()  # published numbers, one per column


@dataclass(frozen=True)
class TableSpec:
    title: str
    lead: tuple[str, ...]
    columns: tuple[Column, ...]
    rows: tuple[Row, ...]


ALL3 = frozenset(MODALITIES)
_ACC = (Column("ve8", "accuracy", "VE-8 acc (%)"), Column("yf6", "accuracy", "YF-6 acc (%)"))


def _subset_row(mods: tuple[str, ...], paper: tuple[float, float]) -> Row:
    marks = tuple("✓" if m in mods else "" for m in MODALITIES)
    return Row(marks, {"fusion": "ctm", "modalities": frozenset(mods), "pretrained": False}, paper)


def _fusion_row(name: str, fusion: str, paper: tuple[float, float]) -> Row:
    return Row((name,), {"fusion": fusion, "modalities": ALL3, "pretrained": False}, paper)


TABLES: dict[int, TableSpec] = {
    1: TableSpec("Table 1: video emotion recognition accuracy (%) with different modalities",
                 ("Image", "Motion", "Audio"), _ACC, (
                     _subset_row(("image",), (52.75, 57.82)), _subset_row(("motion",), (46.15, 48.04)),
                     _subset_row(("audio",), (40.38, 40.59)), _subset_row(("image", "motion"), (50.82, 57.82)),
                     _subset_row(("image", "audio"), (53.02, 59.17)), _subset_row(("motion", "audio"), (45.05, 52.69)),
                     _subset_row(MODALITIES, (56.04, 60.64)))),
    2: TableSpec("Table 2: video emotion recognition accuracy (%) with different multimodal fusion modules",
                 ("Fusion strategy",), _ACC, (
                     _fusion_row("Simple concatenation", "concat", (50.27, 57.09)),
                     _fusion_row("Divide attention", "divide", (52.20, 58.56)),
                     _fusion_row("Joint attention", "joint", (54.12, 60.27)),
                     _fusion_row("Inner-modal only", "inner", (54.40, 58.44)),
                     _fusion_row("Cross-modal only", "cross", (46.15, 48.29)),
                     _fusion_row("Cross-temp multimodal", "ctm", (56.04, 60.64)))),
    5: TableSpec("Table 5: video emotion recognition accuracy (%) compared with other methods",
                 ("Method", "Auxiliary"), _ACC, (
                     Row(("CFN [4]", ""), None, (50.60, 51.80)), Row(("Kernelized [36]", ""), None, (52.50, 54.40)),
                     Row(("CSS [28]", ""), None, (51.48, 55.62)), Row(("VAANet [38]", ""), None, (54.50, 55.30)),
                     Row(("Dual [20]", ""), None, (53.34, 57.37)),
                     Row(("TAM† w/o TSC (other features)", ""), {"fusion": "ctm", "paper_features": False,
                                                                 "pretrained": False}, (54.25, 58.92)),
                     Row(("TAM w/o TSC", ""), {"fusion": "ctm", "modalities": ALL3, "pretrained": False},
                         (56.04, 60.64)),
                     Row(("ITE [27]", "✓"), None, (52.60, 51.20)), Row(("KeyFrame [25]", "✓"), None, (52.85, 59.51)),
                     Row(("FAEIL [37]", "✓"), None, (57.63, 60.44)),
                     Row(("TAM", "✓"), {"fusion": "ctm", "modalities": ALL3, "pretrained": True}, (57.53, 61.00)))),
    6: TableSpec("Table 6: affective analysis on LIRIS-ACCEDE (MediaEval2015 accuracy %, MediaEval2016 MSE / PCC)",
                 ("Method",), (
                     Column("mediaeval2015_valence", "accuracy", "ME15 valence acc (%)"),
                     Column("mediaeval2015_arousal", "accuracy", "ME15 arousal acc (%)"),
                     Column("mediaeval2016", "valence_mse", "ME16 valence MSE"),
                     Column("mediaeval2016", "valence_pcc", "ME16 valence PCC"),
                     Column("mediaeval2016", "arousal_mse", "ME16 arousal MSE"),
                     Column("mediaeval2016", "arousal_pcc", "ME16 arousal PCC")), (
                     Row(("RBN [9]",), None, (44.26, 64.30, 0.332, 0.387, 0.766, 0.416)),
                     Row(("MMDRBN [23]",), None, (46.73, 65.10, 0.303, 0.450, 0.713, 0.470)),
                     Row(("MML [34]",), None, (46.22, 57.40, 0.198, 0.399, 1.173, 0.446)),
                     Row(("AFRN [35]",), None, (48.61, 58.22, 0.193, 0.468, 0.524, 0.522)),
                     Row(("TAM w/o TSC",), {"fusion": "ctm", "modalities": ALL3, "pretrained": False},
                         (49.33, 65.53, 0.172, 0.529, 1.115, 0.550)),
                     Row(("TAM",), {"fusion": "ctm", "modalities": ALL3, "pretrained": True},
                         (50.18, 66.31, 0.177, 0.533, 0.754, 0.560)))),
}


# ---- building and rendering a table -----------------------------------------------------------------
@dataclass
class Cell:
    """The runs of one setting on one dataset and their test values for one metric."""

    runs: list[RunResult] = field(default_factory=list)
    values: list[float] = field(default_factory=list)
    baselines: list[float] = field(default_factory=list)
    linear: list[float] = field(default_factory=list)  # the linear baseline's test value of each run (NaN: none)


@dataclass
class TableResult:
    spec: TableSpec
    cells: dict[tuple[int, int], Cell]
    notes: list[str]
    random_init_runs: int
    n_runs: int


IGNORED_FOR_IDENTITY = {("data", "labels"), ("data", "store"), ("data", "split_seed")}


def _identity(config: dict) -> str:
    """The config of a run minus what may differ between repeats of one setting (split, seed, machine)."""
    kept = {s: {k: v for k, v in sec.items() if (s, k) not in IGNORED_FOR_IDENTITY}
            for s, sec in config.items() if isinstance(sec, dict) and s != "train"}
    return json.dumps(kept, sort_keys=True, default=str)


def _matches(setting: dict, match: dict) -> bool:
    return all(setting.get(k) == v for k, v in match.items())


def build_table(number: int, runs: Sequence[RunResult], skipped: Sequence[str] = ()) -> TableResult:
    """Place each run in its cells of table `number`; runs that fit no cell are listed in the notes."""
    if number not in TABLES:
        raise TamError(f"no table {number}; the paper's tables with runs are {sorted(TABLES)}")
    spec = TABLES[number]
    cells: dict[tuple[int, int], Cell] = {}
    notes = [f"skipped {s}" for s in skipped]
    for run in runs:
        placed = False
        for i, row in enumerate(spec.rows):
            if row.match is None or not _matches(run.setting, row.match):
                continue
            for j, col in enumerate(spec.columns):
                if col.dataset == run.dataset:
                    placed |= _add(cells.setdefault((i, j), Cell()), run, col, notes)
        if not placed:
            notes.append(f"not in table {number}: {run.path} ({DATASET_TITLES.get(run.dataset, run.dataset)}, "
                         f"fusion {run.setting['fusion']}, modalities {sorted(run.setting['modalities'])}, "
                         f"pretrained {run.setting['pretrained']})")
    for (i, j), cell in sorted(cells.items()):
        _check_cell(cell, f"{' '.join(c for c in spec.rows[i].cells if c)} / {spec.columns[j].title}", notes)
    used = {id(r) for c in cells.values() for r in c.runs}
    n_random = sum(1 for r in runs if id(r) in used and r.random_init)
    return TableResult(spec, cells, notes, n_random, len(used))


def _add(cell: Cell, run: RunResult, col: Column, notes: list[str]) -> bool:
    value = run.test.get(col.metric)
    if value is None:
        notes.append(f"{run.path}: results lack test metric {col.metric!r}")
        return False
    cell.runs.append(run)
    cell.values.append(float(value))
    base = run.baseline.get(col.metric)
    cell.baselines.append(float("nan") if base is None else float(base))
    lin = run.linear.get(col.metric)
    cell.linear.append(float("nan") if lin is None else float(lin))
    return True


def _check_cell(cell: Cell, where: str, notes: list[str]) -> None:
    if len({_identity(r.config) for r in cell.runs}) > 1:
        notes.append(f"{where}: the {len(cell.runs)} runs differ in configuration beyond split and seed")
    keys = [(r.config.get("data", {}).get("labels"), r.config.get("data", {}).get("split_seed"),
             r.config.get("train", {}).get("seed")) for r in cell.runs]
    if len(set(keys)) < len(keys):
        notes.append(f"{where}: some runs repeat the same labels file and seeds (counted twice)")


def _fmt(value: float, metric: str) -> str:
    if value != value:  # NaN, e.g. the PCC of a constant prediction
        return "n/a"
    return f"{100 * value:.2f}" if metric in ("accuracy", "macro_f1") else f"{value:.3f}"


def _stats(values: list[float]) -> tuple[float, float]:
    a = np.asarray(values, dtype=np.float64)
    mean = float(np.mean(a)) if len(a) else float("nan")
    std = float(np.std(a, ddof=1)) if len(a) > 1 else float("nan")
    return mean, std


def _clips(cell: Cell) -> str:
    sizes = sorted({int(r.n.get("test", 0)) for r in cell.runs})
    clips = f"{sizes[0]}" if len(sizes) == 1 else f"{sizes[0]}–{sizes[-1]}"
    return f"{len(cell.runs)} × {clips}"


def _groups(spec: TableSpec) -> list[tuple[str, list[int]]]:
    """Dataset -> column indices, in column order."""
    out: dict[str, list[int]] = {}
    for j, c in enumerate(spec.columns):
        out.setdefault(c.dataset, []).append(j)
    return list(out.items())


def table_rows(result: TableResult, paper: bool = False) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the display table (ours, baseline, runs × test clips, then published numbers)."""
    spec = result.spec
    header = list(spec.lead)
    for ds, cols in _groups(spec):
        for j in cols:
            header += [spec.columns[j].title, "baseline"]
        header.append(f"{DATASET_TITLES[ds]} runs × test clips")
    if paper:
        header += [f"published (paper): {c.title}" for c in spec.columns]
    rows = []
    for i, row in enumerate(spec.rows):
        if row.match is None and not paper:
            continue
        line = list(row.cells)
        for _, cols in _groups(spec):
            for j in cols:
                line += _display(result.cells.get((i, j)), spec.columns[j].metric)
            cell = result.cells.get((i, cols[0]))
            line.append(_clips(cell) if cell and cell.runs else "—")
        if paper:
            line += [_fmt(v / 100 if c.metric == "accuracy" else v, c.metric) if v is not None else "—"
                     for v, c in zip(row.paper, spec.columns)]
        rows.append(line)
    return header, rows


def _display(cell: Cell | None, metric: str) -> list[str]:
    if cell is None or not cell.values:
        return ["—", "—"]
    mean, std = _stats(cell.values)
    text = _fmt(mean, metric) + (f" ± {_fmt(std, metric)}" if len(cell.values) > 1 else "")
    if any(r.random_init for r in cell.runs):
        text += " ⚠RANDOM-INIT"
    lin = [v for v in cell.linear if v == v]
    if lin and metric != "mse" and not metric.endswith("_mse") and mean < float(np.mean(lin)):
        text += f" ⚠<linear {_fmt(float(np.mean(lin)), metric)}"
    return [text, _fmt(_stats(cell.baselines)[0], metric)]


def to_markdown(result: TableResult, paper: bool = False) -> str:
    """The table as markdown, with the random-init warning first and the notes after it."""
    header, rows = table_rows(result, paper)
    out = [f"## {result.spec.title}", ""]
    if result.random_init_runs:
        out += [f"> **WARNING: {result.random_init_runs} of {result.n_runs} runs used RANDOM-INIT features "
                "(encoders that were NOT pre-trained). Their numbers say nothing about the method; cells "
                "marked ⚠RANDOM-INIT.**", ""]
    out += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    bases = sorted({r.baseline_name for c in result.cells.values() for r in c.runs if r.baseline_name})
    out += ["", f"Ours: test-set mean ± sample std over runs ({result.n_runs} runs placed); — = not run. "
            f"Baseline: the trivial predictor on the same test clips ({', '.join(bases) or 'none recorded'}). "
            "⚠<linear x: below the linear baseline of the same runs (logistic or ridge regression on time-pooled, "
            "normalised features; mean x)."]
    if paper:
        out.append("Published (paper): numbers printed in Pan et al. (ACM MM 2022), not produced by this code.")
    out += [f"- {n}" for n in result.notes]
    return "\n".join(out) + "\n"


def to_csv(result: TableResult, paper: bool = False) -> str:
    """The table as CSV: numeric columns (mean, std, baseline per metric; runs and clips per dataset)."""
    import csv
    import io

    spec = result.spec
    header = list(spec.lead)
    for ds, cols in _groups(spec):
        for j in cols:
            t = spec.columns[j].title
            header += [f"{t} mean", f"{t} std", f"{t} baseline"]
        title = DATASET_TITLES[ds]
        header += [f"{title} runs", f"{title} test clips", f"{title} random-init runs"]
    if paper:
        header += [f"published (paper): {c.title}" for c in spec.columns]
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    for i, row in enumerate(spec.rows):
        if row.match is None and not paper:
            continue
        line = list(row.cells)
        for _, cols in _groups(spec):
            for j in cols:
                line += _csv_values(result.cells.get((i, j)), spec.columns[j].metric)
            cell = result.cells.get((i, cols[0]))
            runs = cell.runs if cell else []
            line += [len(runs) or "", "/".join(str(s) for s in sorted({int(r.n.get("test", 0)) for r in runs})),
                     sum(r.random_init for r in runs) if runs else ""]
        if paper:
            line += ["" if v is None else v for v in row.paper]
        w.writerow(line)
    return buf.getvalue()


def _csv_values(cell: Cell | None, metric: str) -> list:
    if cell is None or not cell.values:
        return ["", "", ""]
    scale = 100.0 if metric in ("accuracy", "macro_f1") else 1.0
    mean, std = _stats(cell.values)
    base = _stats(cell.baselines)[0]
    return [round(v * scale, 6) if v == v else "" for v in (mean, std, base)]
