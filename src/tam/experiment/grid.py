"""An experiment grid: a base run config, the data (or a world to generate), and axes whose product is the runs.

Grid YAML (paths relative to the current directory, like every tam config; see docs/experiments.md)::

    name: timing
    out: runs/out/experiments/timing   # run folders go to OUT/runs/<name>, pre-training to OUT/pretrain/...
    world: {name: timing, out: runs/out/worlds/timing, train: 400, test: 1000, seed: 0}   # optional
    config: configs/ve8.yaml           # optional base config for `tam train`
    set: {model.d: 32, optim.epochs: 20}   # base overrides (dotted paths)
    metric: accuracy                   # a key of results.json's "test"
    axes:
      fusion: [ctm, concat]            # shorthand for model.fusion; modalities -> model.modalities
      labelled: [40, 100, all]         # training rows kept (stratified, per seed; never test rows)
      pretrained: [false, true]        # train.init_from = the pre-training checkpoint of the run's seed
      seed: [0, 1, 2, 3, 4]            # shorthand for train.seed (also seeds the subsample)
      optim.lr: [1e-3, 1e-4]           # any config field by dotted path
      pretrain.loss.lambda_t: [0, 1]   # a field of the pre-training step's config
    pretrain:                          # needed by `pretrained: true`
      checkpoint: ckpt/{seed}.safetensors   # either a given checkpoint ({seed} filled in) ...
      config: configs/pretrain/paper.yaml   # ... or a `tam pretrain run` step, once per seed and model
      store: ..., corpus: ...
      set: {optim.epochs: 10}
      finetune: {optim.fusion_lr: 1e-5}     # overrides of the pre-trained arm only
    claims:
      - [ctm, ">", concat]             # at every number of labels; a 4th item restricts: max, min or a number
      - [inner, ">", 0.9, max]         # a number on the right: the arm's interval lies above it
    tables: [fusion]                   # extra tables with this axis as columns (the paper's layouts)
    curve: {axis: pretrain.data.corpus, x: [100, 300], label: unlabelled videos}   # curves over another axis too
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import itertools
import json
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tam.errors import TamError

SHORTHANDS = {"fusion": "model.fusion", "modalities": "model.modalities", "seed": "train.seed"}
SPECIAL = ("labelled", "pretrained")
KNOWN_KEYS = {"name", "out", "world", "config", "set", "metric", "axes", "pretrain", "claims", "jobs", "tables",
              "batch", "curve"}
# the overrides in which the runs of one seed group may differ (tam.train.multiseed.VARY checks it again)
SEED_VARYING = ("train.seed=", "data.labels=", "train.init_from=")


@dataclass
class PretrainStep:
    """One `tam pretrain run` (per seed and model) whose checkpoint a pre-trained arm starts from."""

    run_dir: Path
    config: str | None
    overrides: list[str]

    @property
    def checkpoint(self) -> Path:
        return self.run_dir / "pretrained.safetensors"

    def argv(self) -> list[str]:
        return (["pretrain", "run"] + (["--config", self.config] if self.config else [])
                + ["--run-dir", str(self.run_dir)] + [a for o in self.overrides for a in ("--set", o)])


@dataclass
class Run:
    name: str
    values: dict[str, Any]  # axis -> value
    run_dir: Path
    config: str | None
    overrides: list[str]
    seed: int
    labelled: int | None  # None: every training row
    labels: str  # the grid's labels CSV (before subsampling)
    store: str
    task: str = "classification"
    classes: list[str] = field(default_factory=list)
    pretrain: PretrainStep | None = None
    checkpoint: str | None = None  # a given checkpoint (no pre-training step)

    def argv(self) -> list[str]:
        return (["train"] + (["--config", self.config] if self.config else []) + ["--run-dir", str(self.run_dir)]
                + [a for o in self.overrides for a in ("--set", o)])

    def command(self, prefix: str = "tam") -> str:
        return prefix + " " + " ".join(shlex.quote(a) for a in self.argv())


@dataclass
class Grid:
    path: Path
    name: str
    out: Path
    metric: str
    axes: dict[str, list]
    runs: list[Run]
    claims: list[list]
    world: dict | None = None
    pretrain_steps: list[PretrainStep] = field(default_factory=list)
    jobs: int = 2
    tables: list[str] = field(default_factory=list)  # extra tables: the axis whose values are the columns
    batch: int = 5  # runs that differ only in seed trained in one process, at most this many (1: one per run)
    curve: dict | None = None  # another x of the learning curves: axis, x {value label: number}, label, file


def _value_text(v: Any) -> str:
    if isinstance(v, list | tuple):
        return "+".join(str(x) for x in v)
    return "all" if v is None else str(v)


def arm_label(axis: str, v: Any) -> str:
    """How a value is named in run folders, tables and claims (pretrained: `pretrained` / `scratch`)."""
    if axis == "pretrained":
        return "pretrained" if v else "scratch"
    return _value_text(v)


def _set(path: str, v: Any) -> str:
    return f"{path}={json.dumps(v)}"


def _read(path: Path) -> dict:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as e:
        raise TamError(f"{path}: cannot read the grid ({e.__class__.__name__}: {str(e).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise TamError(f"{path}: a grid is a mapping (name, out, axes, ...)")
    unknown = set(data) - KNOWN_KEYS
    if unknown:
        raise TamError(f"{path}: unknown keys {sorted(unknown)} (known: {sorted(KNOWN_KEYS)})")
    if not isinstance(data.get("axes"), dict) or not data["axes"]:
        raise TamError(f"{path}: `axes` must map axis names to lists of values")
    for k, v in data["axes"].items():
        if not isinstance(v, list) or not v:
            raise TamError(f"{path}: axis {k!r} must be a non-empty list, got {v!r}")
    return data


def _world_paths(path: Path, w) -> dict[str, str]:
    if not isinstance(w, dict) or not w.get("out") or not w.get("name"):
        raise TamError(f"{path}: world: needs at least name and out, got {w!r}")
    root = Path(w["out"])
    paths = {"data.store": str(root / "store"), "data.labels": str(root / "labels.csv")}
    if w.get("name") == "pretrain":
        paths |= {"pretrain.store": str(root / "unlabelled" / "store"), "pretrain.corpus": str(root / "unlabelled"
                                                                                              / "corpus")}
    return paths


def load_grid(path: str | Path) -> Grid:
    """Read and expand a grid; every run's config is resolved and validated (nothing runs here)."""
    path = Path(path)
    data = _read(path)
    world = data.get("world")
    if not isinstance(data.get("set") or {}, dict):
        raise TamError(f"{path}: `set` maps dotted config paths to values, got {data['set']!r}")
    base_set = {**(_world_paths(path, world) if world else {}), **(data.get("set") or {})}
    pre = dict(data.get("pretrain") or {})
    for k in ("store", "corpus"):
        if f"pretrain.{k}" in base_set:
            pre.setdefault(k, base_set.pop(f"pretrain.{k}"))
    out = Path(data.get("out") or f"runs/out/experiments/{data.get('name', path.stem)}")
    axes = data["axes"]
    runs, steps = [], {}
    for combo in itertools.product(*axes.values()):
        runs.append(_make_run(path, data, dict(zip(axes, combo)), base_set, pre, out, steps))
    _check_same_data(path, runs)
    claims = [_check_claim(path, c, axes) for c in data.get("claims") or []]
    return Grid(path, str(data.get("name", path.stem)), out, str(data.get("metric", "accuracy")), axes, runs,
                claims, world, list(steps.values()), int(data.get("jobs", 2)), _check_tables(path, data, axes),
                _positive(path, "batch", data.get("batch", 5)), _check_curve(path, data.get("curve"), axes))


def _make_run(path: Path, data: dict, values: dict, base_set: dict, pre: dict, out: Path, steps: dict) -> Run:
    from tam.config import load_config, to_dict

    sets = dict(base_set)
    pre_sets = dict(pre.get("set") or {})
    for axis, v in values.items():
        if axis in SPECIAL:
            continue
        if axis.startswith("pretrain."):
            pre_sets[axis.removeprefix("pretrain.")] = v
        else:
            sets[SHORTHANDS.get(axis, axis)] = v
    sets.setdefault("train.progress", False)
    sets = {**_threads(), **sets}
    labelled = values.get("labelled")
    labelled = None if labelled in (None, "all") else labelled
    if labelled is not None and (not isinstance(labelled, int) or labelled < 1):
        raise TamError(f"{path}: labelled must be a positive number of videos or `all`, got {labelled!r}")
    name = "__".join(f"{a.split('.')[-1]}-{arm_label(a, v)}" for a, v in values.items()).replace("/", "_")
    run_dir = out / "runs" / name
    pretrained = bool(values.get("pretrained", False))
    config = str(data["config"]) if data.get("config") else None
    overrides = [_set(k, v) for k, v in sets.items()]
    try:
        cfg = load_config(config, overrides)
    except TamError as e:
        raise TamError(f"{path}: run {name}: {e}") from None
    run = Run(name, values, run_dir, config, overrides, cfg.train.seed, labelled, cfg.data.labels, cfg.data.store,
              cfg.data.task, list(cfg.data.classes))
    if labelled is not None:
        run.overrides = [o for o in run.overrides if not o.startswith("data.labels=")]
        run.overrides.append(_set("data.labels", str(run_dir / "labels.csv")))
    if pretrained:
        _attach_pretrain(path, run, pre, pre_sets, to_dict(cfg.model), out, steps)
    return run


def _threads() -> dict:
    """The runs of a grid run side by side: one torch thread each unless the grid says otherwise."""
    from tam.config import TrainConfig

    return {"train.threads": 1} if "threads" in {f.name for f in dataclasses.fields(TrainConfig)} else {}


def _attach_pretrain(path: Path, run: Run, pre: dict, pre_sets: dict, model: dict, out: Path, steps: dict) -> None:
    """Point a pre-trained arm at its checkpoint: a given file, or the pre-training step of its seed and model."""
    if not pre:
        raise TamError(f"{path}: run {run.name} is pre-trained but the grid has no `pretrain:` section")
    if pre.get("checkpoint"):
        ckpt = str(pre["checkpoint"]).replace("{seed}", str(run.seed))
        run.checkpoint = ckpt
    else:
        if not (pre.get("store") and pre.get("corpus")):
            raise TamError(f"{path}: `pretrain:` needs `checkpoint`, or `store` and `corpus` for a pre-training step")
        sets = {**{f"model.{k}": v for k, v in model.items()}, "data.store": pre["store"], "data.corpus": pre["corpus"],
                "train.seed": run.seed, "train.progress": False, **_threads(), **pre_sets}
        overrides = [_set(k, v) for k, v in sets.items()]
        key = hashlib.sha256(json.dumps([pre.get("config"), overrides]).encode()).hexdigest()[:8]
        step_dir = out / "pretrain" / f"{model.get('fusion', 'fusion')}-{key}-seed{run.seed}"
        if str(step_dir) not in steps:
            _check_pretrain_config(path, run.name, pre.get("config"), overrides)
        run.pretrain = steps.setdefault(str(step_dir), PretrainStep(step_dir, pre.get("config"), overrides))
        ckpt = str(run.pretrain.checkpoint)
    run.overrides.append(_set("train.init_from", ckpt))
    run.overrides += [_set(k, v) for k, v in (pre.get("finetune") or {}).items()]


def _check_pretrain_config(path: Path, name: str, config: str | None, overrides: list[str]) -> None:
    from tam.train.pretrain import load_pretrain_config

    try:
        load_pretrain_config(config, overrides)
    except TamError as e:
        raise TamError(f"{path}: the pre-training step of run {name}: {e}") from None


def _check_same_data(path: Path, runs: list[Run]) -> None:
    """A grid compares arms on one dataset and one feature store; anything else is refused before running."""
    for what, attr in (("feature store", "store"), ("dataset (labels)", "labels")):
        seen = sorted({getattr(r, attr) for r in runs})
        if len(seen) > 1:
            raise TamError(f"{path}: the runs disagree on the {what}: {seen}; a grid compares arms on one "
                           "dataset and one feature store (make one grid per dataset)")


def _positive(path: Path, key: str, v) -> int:
    if not isinstance(v, int) or isinstance(v, bool) or v < 1:
        raise TamError(f"{path}: {key} must be a positive whole number, got {v!r}")
    return v


def seed_groups(runs: list[Run], size: int) -> list[list[Run]]:
    """The runs in groups that differ only in seed (the same values of the other axes, the same overrides but
    `SEED_VARYING`), at most `size` runs each, in the grid's order: each group trains in one process
    (tam.train.multiseed)."""
    open_: dict[tuple, list[Run]] = {}
    groups: list[list[Run]] = []
    for r in runs:
        cell = json.dumps({k: v for k, v in r.values.items() if SHORTHANDS.get(k, k) != "train.seed"}, sort_keys=True)
        key = (r.config, cell, tuple(o for o in r.overrides if not o.startswith(SEED_VARYING)))
        if key not in open_ or len(open_[key]) >= size:
            open_[key] = []
            groups.append(open_[key])
        open_[key].append(r)
    return groups


def _check_tables(path: Path, data: dict, axes: dict) -> list[str]:
    tables = [str(t) for t in data.get("tables") or []]
    for t in tables:
        if t not in axes or t == "seed":
            raise TamError(f"{path}: tables: {t!r} is not an axis of the grid (other than seed): {sorted(axes)}")
    return tables


def _check_curve(path: Path, c, axes: dict) -> dict | None:
    """`curve: {axis, x, label}`: the learning curves also drawn over an axis (e.g. the unlabelled corpus), x giving
    one number per value of the axis, in its order."""
    if c is None:
        return None
    x = c.get("x") if isinstance(c, dict) else None
    if not (isinstance(c, dict) and c.get("axis") in axes and c["axis"] not in ("seed", "labelled")
            and isinstance(x, list) and len(x) == len(axes[c["axis"]])
            and all(isinstance(v, int | float) and not isinstance(v, bool) for v in x)):
        raise TamError(f"{path}: curve: needs axis (an axis of the grid other than seed and labelled) and x (one "
                       f"number per value of that axis), got {c!r}")
    axis = c["axis"]
    return {"axis": axis, "x": dict(zip((arm_label(axis, v) for v in axes[axis]), x)),
            "label": str(c.get("label") or axis), "file": re.sub(r"[^A-Za-z0-9]+", "_", axis)}


def _check_claim(path: Path, claim, axes: dict) -> list:
    if not isinstance(claim, list) or len(claim) not in (3, 4) or claim[1] not in (">", "<"):
        raise TamError(f"{path}: a claim is [A, '>' or '<', B] with an optional 4th item (max, min or a number "
                       f"of labels), got {claim!r}")
    labels = {arm_label(a, v) for a, vs in axes.items() if a not in ("seed", "labelled") for v in vs}
    for side in (claim[0], claim[2]):
        if not isinstance(side, int | float) and str(side) not in labels:
            raise TamError(f"{path}: claim {claim!r}: {side!r} is not a value of any axis ({sorted(labels)})")
    return claim


def subsample_labels(labels_path: str | Path, n: int, seed: int, task: str, classes: list[str]) -> str:
    """The labels CSV with `n` of its training rows kept (stratified by class, seeded by `seed`, nested in n for a
    seed); validation and test rows are kept as they are. Returns the CSV text."""
    import numpy as np

    from tam.datasets.labels import read_labels

    lab = read_labels(labels_path, task, classes or None)
    train = sorted((i for i, s in enumerate(lab.split) if s == "train"), key=lambda i: lab.videos[i])
    if n > len(train):
        raise TamError(f"{labels_path}: {n} labelled videos asked for, the file has {len(train)} training rows")
    groups = ([[i for i in train if lab.targets[i] == c] for c in range(len(lab.classes))]
              if task == "classification" else [train])
    quota = np.array([n * len(g) / len(train) for g in groups])
    k = np.floor(quota).astype(int)
    for j in np.argsort(-(quota - k), kind="stable")[: n - k.sum()]:
        k[j] += 1
    keep = set()
    for c, (g, kc) in enumerate(zip(groups, k)):
        rng = np.random.default_rng([seed, c, 7919])
        keep.update(int(g[j]) for j in rng.permutation(len(g))[:kc])
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["video", "label", "split"] if task == "classification" else ["video", "valence", "arousal", "split"])
    for i, v in enumerate(lab.videos):
        if lab.split[i] == "train" and i not in keep:
            continue
        y = [lab.classes[lab.targets[i]]] if task == "classification" else [f"{x:.9g}" for x in lab.targets[i]]
        w.writerow([v, *y, lab.split[i]])
    return buf.getvalue()
