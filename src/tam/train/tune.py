"""Hyper-parameter search on the validation split (`tam tune`), with Optuna.

Each trial is a `tam train` run (`fit(..., test=False)`: the test split is never evaluated) in its own folder
under the study folder; its value is the best validation selection score (accuracy, or mean PCC). A seeded TPE
sampler proposes configs from a YAML search space whose keys are dotted config paths (`optim.lr`,
`model.dropout`, any field of tam.config); a median pruner, fed the per-epoch validation score, stops poor trials.

A study folder holds:
    study.db               the Optuna study (SQLite) unless --storage names an RDB URL shared by several machines
    space.yaml, base.yaml  the search space and the base config the study was made with
    trials/NNNN/           each trial's run directory (config.yaml, metrics.csv, best.safetensors, results.json)
    trials.csv, summary.md every trial (state, value, params, epochs, reason) and the best ones
    history.png, importances.png, intermediate.png   optimisation history, parameter importances, curves
    best.yaml              the best trial's config: `tam train --config best.yaml` scores test once

Resume: the study's fingerprint (search space, base config, labels, store, seed) is in its user attrs; a study
made with other ones is refused. Trials left running by a killed `tam tune` are marked failed and re-queued with
their parameters; finished trials are never repeated. The sampler's random state is derived per trial from
(seed, number of earlier trials that did not fail), so a resumed study proposes what the uninterrupted one would.
"""

from __future__ import annotations

import csv
import fcntl
import hashlib
import io
import json
import math
import os
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from tam.config import RunConfig, dump_config, from_dict, to_dict
from tam.errors import TamError
from tam.io import atomic_write, write_json, write_text

TYPES = ("float", "int", "categorical")
FIXED = ("data.store", "data.labels", "data.task", "data.classes", "data.val_fraction", "data.split_seed")
"""Config paths a search may not vary: they define the data the trials are compared on."""
HEARTBEAT_S, GRACE_S = 60, 180  # a trial whose process stops beating for GRACE_S is failed and re-queued
STUDY_DB = "study.db"


@dataclass
class Param:
    """One searched config field: `float`/`int` in [low, high] (optionally log-scaled or stepped), or `categorical`."""

    type: str
    low: float | int | None = None
    high: float | int | None = None
    log: bool = False
    step: float | int | None = None
    choices: list = field(default_factory=list)


def load_space(path: str | Path, base: RunConfig) -> dict[str, Param]:
    """Read a search space YAML (`section.field: {type: ..., ...}`), checked against the config schema."""
    try:
        raw = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as e:
        raise TamError(f"{path}: cannot read search space ({e.__class__.__name__}: {str(e).splitlines()[0]})") from None
    if not isinstance(raw, dict) or not raw:
        raise TamError(f"{path}: a search space is a non-empty mapping `section.field: {{type: ..., ...}}`")
    return {name: _param(path, name, spec, base) for name, spec in raw.items()}


def _param(path, name: str, spec: Any, base: RunConfig) -> Param:
    where = f"{path}: {name}"
    if not isinstance(spec, dict) or spec.get("type") not in TYPES:
        raise TamError(f"{where}: expected a mapping with type one of {TYPES}, got {spec!r}")
    known = {"type", "low", "high", "log", "step"} if spec["type"] != "categorical" else {"type", "choices"}
    if set(spec) - known:
        raise TamError(f"{where}: unknown keys {sorted(set(spec) - known)} for type {spec['type']} "
                       f"(known: {sorted(known)})")
    if name in FIXED:
        raise TamError(f"{where}: {name} is fixed during a search (it defines the data the trials are compared on)")
    current = _get(base, name, where)
    num = float if spec["type"] == "float" else int
    try:
        if spec["type"] == "categorical":
            p = Param("categorical", choices=list(spec["choices"]))
            if not p.choices or any(c is not None and not isinstance(c, bool | int | float | str) for c in p.choices):
                raise ValueError("choices must be a non-empty list of numbers, strings, booleans or null")
        else:
            p = Param(spec["type"], num(spec["low"]), num(spec["high"]), bool(spec.get("log", False)),
                      num(spec["step"]) if spec.get("step") is not None else None)
            if not p.low <= p.high or (p.log and p.low <= 0) or (p.log and p.step is not None):
                raise ValueError("need low <= high, low > 0 with log, and no step with log")
    except (KeyError, TypeError, ValueError) as e:
        raise TamError(f"{where}: {e.__class__.__name__}: {e}") from None
    if spec["type"] != "categorical" and type(current) is not num and not (num is int and type(current) is float):
        raise TamError(f"{where}: a {spec['type']} range for a {type(current).__name__} field")
    values = [_get(apply_params(base, {name: v}, where=where), name, where) for v in p.choices or [p.low, p.high]]
    if p.type == "categorical":  # a value of the wrong type is an error now, not in trial 7; "1e-4" -> 0.0001
        p.choices = values
    return p


def _get(cfg: RunConfig, name: str, where: str) -> Any:
    parts = name.split(".")
    data = to_dict(cfg)
    if len(parts) != 2 or parts[0] not in data or parts[1] not in data[parts[0]]:
        raise TamError(f"{where}: not a config field (section.field, e.g. optim.lr; sections {sorted(data)})")
    return data[parts[0]][parts[1]]


def apply_params(base: RunConfig, params: dict[str, Any], where: str = "search space") -> RunConfig:
    """The base config with `params` (dotted paths) set, type-checked and validated like a config file."""
    data = to_dict(base)
    for name, value in params.items():
        section, key = name.split(".")
        data[section][key] = value
    try:
        return from_dict(RunConfig, data).validate()
    except TamError as e:
        raise TamError(f"{where}: {e}") from None


def suggest(trial, space: dict[str, Param]) -> dict[str, Any]:
    """Draw one value per searched field from an Optuna trial."""
    out = {}
    for name, p in space.items():
        if p.type == "categorical":
            out[name] = trial.suggest_categorical(name, p.choices)
        elif p.type == "float":
            out[name] = trial.suggest_float(name, p.low, p.high, log=p.log, step=p.step)
        else:
            out[name] = trial.suggest_int(name, p.low, p.high, log=p.log, step=p.step or 1)
    return out


def _sha(text: str | bytes) -> str:
    return hashlib.sha256(text.encode() if isinstance(text, str) else text).hexdigest()[:16]


def fingerprint(base: RunConfig, space: dict[str, Param], seed: int) -> dict[str, str]:
    """What a study is bound to: search space, base config, labels file, feature store, sampler seed."""
    from tam.features.store import FeatureStore

    store = FeatureStore.open(base.data.store)
    try:
        labels = Path(base.data.labels).read_bytes()
    except OSError as e:
        raise TamError(f"{base.data.labels}: cannot read labels ({e.__class__.__name__})") from None
    results_free = to_dict(base)
    for k in ("progress", "num_workers", "eval_batch_size", "threads", "linear_baseline"):  # change no trial's value
        results_free["train"].pop(k, None)
    for k in ("store", "labels"):  # paths: their contents are fingerprinted below
        results_free["data"].pop(k)
    return {"search space": _sha(json.dumps({k: asdict(p) for k, p in space.items()}, sort_keys=True)),
            "base config": _sha(json.dumps(results_free, sort_keys=True)),
            "labels": _sha(labels),
            "feature store": _sha(json.dumps([store.manifest.identity(), sorted(store.videos())], default=str)),
            "seed": str(seed)}


@dataclass
class TuneOptions:
    study_dir: str
    trials: int = 20
    jobs: int = 1  # processes, each running its own trials against the shared storage
    seed: int = 0
    storage: str = ""  # RDB URL (postgresql://, mysql://, sqlite:///...); "" = sqlite study.db in study_dir
    study_name: str = "tam-tune"
    startup: int = 10  # the first trials are sampled at random and never pruned
    threads: int = 1  # torch intra-op threads per process

    def url(self) -> str:
        return self.storage or f"sqlite:///{(Path(self.study_dir) / STUDY_DB).resolve()}"


def storage(opts: TuneOptions):
    """An Optuna RDB storage with heartbeats: trials whose process died are failed and re-queued."""
    import optuna

    kwargs = {"connect_args": {"timeout": 60}} if opts.url().startswith("sqlite") else {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        try:
            return optuna.storages.RDBStorage(
                opts.url(), engine_kwargs=kwargs, heartbeat_interval=HEARTBEAT_S, grace_period=GRACE_S,
                heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback())
        except Exception as e:  # bad URL, unreachable server, missing driver
            raise TamError(f"{opts.url()}: cannot open the study storage ({e.__class__.__name__}: "
                           f"{str(e).splitlines()[0] if str(e) else ''})") from None


def make_sampler(seed: int, startup: int):
    """TPE whose random state is re-derived for each trial from (seed, earlier trials not interrupted): a trial
    killed or interrupted (failed without a reason of its own) does not shift what later trials draw."""
    import optuna
    from optuna.trial import TrialState

    class TrialSeededTPE(optuna.samplers.BaseSampler):
        def __init__(self):
            self.cache: dict[int, optuna.samplers.TPESampler] = {}

        def tpe(self, study, trial):
            if trial.number not in self.cache:
                trials = study.get_trials(deepcopy=False)
                k = sum(t.number < trial.number and (t.state != TrialState.FAIL or "fail_reason" in t.user_attrs)
                        for t in trials)
                s = int(np.random.SeedSequence([seed, k]).generate_state(1)[0])
                self.cache = {trial.number: optuna.samplers.TPESampler(seed=s, n_startup_trials=startup)}
            return self.cache[trial.number]

        def infer_relative_search_space(self, study, trial):
            return self.tpe(study, trial).infer_relative_search_space(study, trial)

        def sample_relative(self, study, trial, search_space):
            return self.tpe(study, trial).sample_relative(study, trial, search_space)

        def sample_independent(self, study, trial, param_name, param_distribution):
            return self.tpe(study, trial).sample_independent(study, trial, param_name, param_distribution)

        def before_trial(self, study, trial):
            self.tpe(study, trial).before_trial(study, trial)

        def after_trial(self, study, trial, state, values):
            self.tpe(study, trial).after_trial(study, trial, state, values)

    return TrialSeededTPE()


def load_study(opts: TuneOptions, create: bool = False):
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    pruner = optuna.pruners.MedianPruner(n_startup_trials=opts.startup, n_warmup_steps=1)
    kw = {"study_name": opts.study_name, "storage": storage(opts), "sampler": make_sampler(opts.seed, opts.startup),
          "pruner": pruner}
    if create:
        return optuna.create_study(direction="maximize", load_if_exists=True, **kw)
    return optuna.load_study(**kw)


def check_fingerprint(study, fp: dict[str, str], opts: TuneOptions) -> None:
    """Record the fingerprint in a new study; refuse a study made with another space, config, data or seed."""
    have = study.user_attrs.get("fingerprint")
    if have is None:
        if study.get_trials(deepcopy=False):
            raise TamError(f"{opts.url()}: study {opts.study_name!r} was not made by tam tune (no fingerprint)")
        study.set_user_attr("fingerprint", fp)
        return
    for part, value in fp.items():
        if have.get(part) != value:
            raise TamError(f"{opts.url()}: study {opts.study_name!r} was made with another {part} "
                           f"({have.get(part)} != {value}); use a new --study-dir or --study-name")


def requeue_interrupted(study) -> list[int]:
    """Fail the trials left running by a killed local `tam tune` and queue their parameters again."""
    import optuna
    from optuna.trial import TrialState

    numbers = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        retry = optuna.storages.RetryHeartbeatStaleTrialCallback()
        for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            study.tell(t.number, state=TrialState.FAIL)
            study.set_user_attr(f"interrupted_{t.number}", "the tam tune process running it was killed; re-queued")
            retry(study, study.get_trials(deepcopy=False)[t.number])
            numbers.append(t.number)
    return numbers


def counted(study) -> int:
    """Trials that count towards the budget: finished ones (complete, pruned, failed on their own) and running."""
    from optuna.trial import TrialState

    def counts(t):
        return t.state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING) or \
            (t.state == TrialState.FAIL and "fail_reason" in t.user_attrs)

    return sum(counts(t) for t in study.get_trials(deepcopy=False))


class Objective:
    """One trial: sample, train with per-epoch reports to the pruner, return the selected checkpoint's validation
    score."""

    def __init__(self, base: RunConfig, space: dict[str, Param], study_dir: Path, threads: int = 1):
        self.base, self.space, self.study_dir, self.threads = base, space, study_dir, threads

    def __call__(self, trial) -> float:
        import optuna

        from tam.eval.metrics import selection_score
        from tam.train.loop import fit

        run_dir = self.study_dir / "trials" / f"{trial.number:04d}"
        trial.set_user_attr("run_dir", str(run_dir.relative_to(self.study_dir)))
        try:
            params = suggest(trial, self.space)
            cfg = apply_params(self.base, params, where=f"trial {trial.number}")
            # trial runs: no progress bars, no linear baseline (not compared between trials), the given threads
            cfg.train.progress, cfg.train.linear_baseline, cfg.train.threads = False, False, self.threads

            def on_epoch(epoch: int, score: float, row: dict) -> None:
                for what, v in (("training loss", row["train_loss"]), ("validation score", score)):
                    if not math.isfinite(v):
                        trial.set_user_attr("pruned_reason", f"{what} is {v} at epoch {epoch + 1}")
                        raise optuna.TrialPruned(f"{what} is {v} at epoch {epoch + 1}")
                trial.set_user_attr("epochs", epoch + 1)
                trial.report(score, epoch)
                if trial.should_prune():
                    trial.set_user_attr("pruned_reason", f"median pruner: validation score {score:.4f} at epoch "
                                                         f"{epoch + 1} is below the median of earlier trials")
                    raise optuna.TrialPruned()

            results = fit(cfg, run_dir, log=lambda s: None, on_epoch=on_epoch, test=False)
            # the validation score of the checkpoint `tam train` keeps (train.select may pick it by loss)
            val = {k: math.nan if v is None else v for k, v in results["val"].items()}
            return selection_score(cfg.data.task, val)
        except optuna.TrialPruned:
            raise
        except Exception as e:  # a bad combination or a crash fails this trial; the study goes on
            trial.set_user_attr("fail_reason", f"{e.__class__.__name__}: {str(e).splitlines()[0] if str(e) else ''}")
            raise


def _report(log):
    def callback(study, t) -> None:
        reason = t.user_attrs.get("pruned_reason") or t.user_attrs.get("fail_reason") or ""
        value = f"val {t.value:.4f}" if t.value is not None else "       "
        secs = t.duration.total_seconds() if t.duration else 0
        params = " ".join(f"{k}={_short(v)}" for k, v in t.params.items())
        log(f"trial {t.number:>4} {t.state.name.lower():<8} {value}  {params}  ({secs:.0f} s) {reason}".rstrip())
    return callback


def _short(v) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def work(opts: TuneOptions, base: RunConfig, space: dict[str, Param], parent: int | None = None, log=print) -> None:
    """Run trials against the shared study until the budget is reached (one process of `--jobs`)."""
    import torch

    torch.set_num_threads(opts.threads)
    study_dir = Path(opts.study_dir)
    lock = _lock(study_dir, fcntl.LOCK_SH) if parent is not None else None
    study = load_study(opts)
    report = _report(log)

    def budget(study, t) -> None:
        report(study, t)
        if counted(study) >= opts.trials or (parent is not None and os.getppid() != parent):
            study.stop()

    if counted(study) < opts.trials:
        study.optimize(Objective(base, space, study_dir, opts.threads), callbacks=[budget], catch=(Exception,))
    if lock is not None:
        os.close(lock)


def _work_entry(args) -> None:
    opts, base, space, parent = args
    work(opts, base, space, parent=parent, log=lambda s: print(s, flush=True))


def _lock(study_dir: Path, mode: int) -> int:
    """A lock on the study folder: exclusive for the `tam tune` that owns it, shared by its worker processes."""
    study_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(study_dir / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, mode | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise TamError(f"{study_dir}: another tam tune is running on this study folder") from None
    return fd


def tune(base: RunConfig, space: dict[str, Param], opts: TuneOptions, log=print) -> dict:
    """Run (or resume) a study; write trials.csv, summary.md, plots and best.yaml; return the summary."""
    from tam.train.loop import prepare_data

    study_dir = Path(opts.study_dir)
    prepare_data(base)  # a bad store or labels file is one error now, not one per trial
    lock = _lock(study_dir, fcntl.LOCK_EX)
    try:
        study = load_study(opts, create=True)
        check_fingerprint(study, fingerprint(base, space, opts.seed), opts)
        write_text(study_dir / "base.yaml", dump_config(base))
        write_text(study_dir / "space.yaml", yaml.safe_dump({k: _spec(p) for k, p in space.items()}, sort_keys=False))
        if not opts.storage:  # only this process can be running local trials: left-over ones were killed
            again = requeue_interrupted(study)
            if again:
                log(f"re-queued {len(again)} trial(s) interrupted by a killed run: {again}")
        log(f"study {opts.study_name!r} in {opts.url()}: {counted(study)} of {opts.trials} trials done; "
            f"{opts.jobs} process(es)")
        t0 = time.perf_counter()
        if opts.jobs <= 1:
            work(opts, base, space, log=log)
        else:
            _parallel(opts, base, space, lock)
        return write_outputs(study, base, space, opts, seconds=time.perf_counter() - t0, log=log)
    finally:
        os.close(lock)


def _parallel(opts: TuneOptions, base: RunConfig, space: dict[str, Param], lock: int) -> None:
    import multiprocessing as mp

    fcntl.flock(lock, fcntl.LOCK_SH)  # workers take shared locks: a new tam tune is refused until they end
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_work_entry, args=((opts, base, space, os.getpid()),)) for _ in range(opts.jobs)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    bad = [p.exitcode for p in procs if p.exitcode]
    if bad:
        raise TamError(f"{opts.study_dir}: {len(bad)} of {opts.jobs} tune processes exited with codes {bad}")


def _spec(p: Param) -> dict:
    if p.type == "categorical":
        return {"type": p.type, "choices": p.choices}
    return {"type": p.type, "low": p.low, "high": p.high, "log": p.log} | ({"step": p.step} if p.step else {})


def trial_rows(study) -> list[dict]:
    rows = []
    for t in study.get_trials(deepcopy=False):
        rows.append({"number": t.number, "state": t.state.name.lower(), "value": t.value,
                     **{f"params.{k}": v for k, v in t.params.items()}, "epochs": t.user_attrs.get("epochs"),
                     "seconds": round(t.duration.total_seconds(), 1) if t.duration else None,
                     "run_dir": t.user_attrs.get("run_dir", ""),
                     "reason": t.user_attrs.get("pruned_reason") or t.user_attrs.get("fail_reason")
                     or study.user_attrs.get(f"interrupted_{t.number}", "")})
    return rows


def write_outputs(study, base: RunConfig, space: dict[str, Param], opts: TuneOptions, seconds: float = 0.0,
                  log=print) -> dict:
    """trials.csv, summary.md, the plots and best.yaml (atomically); returns the summary dict."""
    from optuna.trial import TrialState

    study_dir = Path(opts.study_dir)
    rows = trial_rows(study)
    _write_csv(study_dir / "trials.csv", rows)
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    states = {s: sum(r["state"] == s for r in rows) for s in ("complete", "pruned", "fail", "running", "waiting")}
    summary = {"study": opts.study_name, "storage": opts.url(), "trials": len(rows), "states": states,
               "seconds": seconds, "best": None}
    if complete:
        best = study.best_trial
        cfg = apply_params(base, best.params)
        head = (f"# tam tune: best of {len(complete)} complete trials (study {opts.study_name!r}), trial {best.number},"
                f" validation score {best.value:.4f}.\n# The test split was not read. Score it once:\n"
                f"#   tam train --config {study_dir / 'best.yaml'} --run-dir RUN_DIR\n")
        write_text(study_dir / "best.yaml", head + dump_config(cfg))
        summary["best"] = {"number": best.number, "value": best.value, "params": best.params,
                           "run_dir": best.user_attrs.get("run_dir")}
    summary["plots"] = plots(study, study_dir)
    write_json(study_dir / "summary.json", summary)
    write_text(study_dir / "summary.md", summary_table(summary, rows))
    log(summary_table(summary, rows, top=5))
    return summary


def _write_csv(path: Path, rows: list[dict]) -> None:
    fields = list(dict.fromkeys(k for r in rows for k in r)) or ["number"]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=fields)
    w.writeheader()
    w.writerows(rows)
    write_text(path, buf.getvalue())


def summary_table(summary: dict, rows: list[dict], top: int = 10) -> str:
    """Markdown: counts per state, then the best `top` complete trials with their parameters."""
    s = summary["states"]
    lines = [f"# tam tune: study {summary['study']}", "",
             f"{summary['trials']} trials: {s['complete']} complete, {s['pruned']} pruned, {s['fail']} failed, "
             f"{s['running']} running, {s['waiting']} waiting. Values are validation scores; test was not read.", ""]
    done = sorted((r for r in rows if r["state"] == "complete"), key=lambda r: -r["value"])[:top]
    keys = [k for k in rows[0] if k.startswith("params.")] if rows else []
    if done:
        lines += ["| trial | value | " + " | ".join(k.removeprefix("params.") for k in keys) + " | epochs |",
                  "|---|---|" + "---|" * len(keys) + "---|"]
        lines += [f"| {r['number']} | {r['value']:.4f} | " + " | ".join(_short(r.get(k)) for k in keys)
                  + f" | {r['epochs']} |" for r in done]
        lines += ["", f"best config: best.yaml (trial {summary['best']['number']})"]
    else:
        lines.append("no complete trial yet: no best config")
    return "\n".join(lines) + "\n"


def plots(study, study_dir: Path) -> dict[str, str]:
    """Optimisation history, parameter importances and intermediate values as PNG; a plot that cannot be drawn
    (too few trials) is reported with its reason instead of a file."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import optuna
    import optuna.visualization.matplotlib as vm

    optuna.logging.set_verbosity(optuna.logging.ERROR)  # "no complete trials" is said in summary.md
    out = {}
    for name, fn in (("history", vm.plot_optimization_history), ("importances", vm.plot_param_importances),
                     ("intermediate", vm.plot_intermediate_values)):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                ax = fn(study)
                fig = ax.figure if hasattr(ax, "figure") else ax.flat[0].figure
                atomic_write(study_dir / f"{name}.png", lambda p, fig=fig: fig.savefig(p, format="png", dpi=100,
                                                                                       bbox_inches="tight"))
                plt.close(fig)
                out[name] = f"{name}.png"
            except Exception as e:  # e.g. importances need two complete trials with different values
                out[name] = f"not drawn: {e.__class__.__name__}: {str(e).splitlines()[0] if str(e) else ''}"
                plt.close("all")
    return out


def final_run(study_dir: str | Path, log=print) -> dict:
    """`tam train` with best.yaml into study_dir/final: the one run that scores the test split."""
    from tam.config import load_config
    from tam.train.loop import fit

    best = Path(study_dir) / "best.yaml"
    if not best.is_file():
        raise TamError(f"{best}: no best config (no trial completed)")
    return fit(load_config(best), Path(study_dir) / "final", log=log)
