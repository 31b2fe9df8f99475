"""Running a grid: the world (if the grid names one), the labels subsamples, the pre-training steps, then the runs,
as parallel `python -m tam ...` processes. Resumable: a run is finished when its results.json exists (skipped),
a pre-training step when its pretrained.safetensors exists; a killed run resumes through the engine's last.pt.
A failed process leaves `error.txt` in its folder (its last error line and the log's tail) and the rest go on.

Each run and step records what it was started from (`grid.json`: its command line, its config file's digest, the
grid's world settings, its labels file's digest). When the grid changes under a folder that has one (another
world, config or labels, the same run name), `run_grid` refuses in one line before running anything, and
`make_world` refuses a world folder made with other settings: results of different settings are never mixed.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from tam.errors import TamError
from tam.experiment.grid import Grid, PretrainStep, Run, seed_groups, subsample_labels
from tam.io import read_json, write_json, write_text


def make_world(grid: Grid) -> None:
    """Generate the grid's world (`world:` section) unless it exists."""
    if not grid.world:
        return
    from tam.demo.worlds.power import CorpusSpec, PowerSpec, make_power_world, make_pretrain_corpus

    w = grid.world
    names = {"name": "world", "train": "n_train", "test": "n_test"}
    known = {f.name for f in dataclasses.fields(PowerSpec)}
    kw = {names.get(k, k): v for k, v in w.items() if k not in ("out", "unlabelled")}
    if set(kw) - known or kw.get("world") not in ("timing", "order", "cooccur", "pretrain"):
        raise TamError(f"{grid.path}: world: needs name (timing, order, cooccur or pretrain) and out; other keys: "
                       f"train, test, unlabelled, {', '.join(sorted(known - set(names.values())))}; got {sorted(w)}")
    spec = PowerSpec(**kw)
    root = Path(w["out"])
    _check_world(grid, root, spec)
    with tqdm(total=spec.n_train + spec.n_test, desc=f"world {spec.world}", leave=False) as bar:
        make_power_world(root, spec, progress=lambda i, n: bar.update(1))
    if spec.world == "pretrain":
        n = int(w.get("unlabelled", 600))
        with tqdm(total=n, desc="unlabelled videos", leave=False) as bar:
            make_pretrain_corpus(root / "unlabelled", spec, CorpusSpec(n_videos=n), progress=lambda i, n: bar.update(1))
    write_json(root / "grid_world.json", w)


def _check_world(grid: Grid, root: Path, spec) -> None:
    """Refuse a world folder made from other settings (`grid_world.json`, else the world's own `world.json`)."""
    made = root / "grid_world.json"
    if made.is_file():
        old = read_json(made, "grid world record")
        if old != json.loads(json.dumps(grid.world)):
            keys = sorted(k for k in set(old) | set(grid.world) if old.get(k) != grid.world.get(k))
            raise TamError(f"{grid.path}: the world in {root} was made with other settings (differs in "
                           f"{', '.join(keys)}); delete {root} (and the grid's runs made on it) or set world.out to a "
                           "new folder")
    elif (root / "world.json").is_file() and read_json(root / "world.json", "world description").get(
            "spec") != json.loads(json.dumps(vars(spec))):
        raise TamError(f"{grid.path}: the world in {root} was made with other settings (its world.json); delete "
                       f"{root} (and the grid's runs made on it) or set world.out to a new folder")


def _digest(path: str | None) -> str | None:
    from tam.encoders.weights import sha256_of

    return sha256_of(path) if path and Path(path).is_file() else None


def fingerprint(grid: Grid, r: Run | PretrainStep) -> dict:
    """What a run or pre-training step is started from, as recorded in its `grid.json`: its resolved config (the
    config file with the overrides applied: the order of the grid's keys does not matter), the grid's world
    settings and the digest of its labels file."""
    from tam.config import load_config, to_dict

    if isinstance(r, Run):
        config = to_dict(load_config(r.config, r.overrides))
    else:
        from tam.train.pretrain import load_pretrain_config

        config = to_dict(load_pretrain_config(r.config, r.overrides))
    return json.loads(json.dumps({"config": config, "world": grid.world,
                                  "labels_sha256": _digest(r.labels) if isinstance(r, Run) else None}))


def stale(grid: Grid, r: Run | PretrainStep) -> list[str]:
    """The fingerprint keys in which the folder's `grid.json` differs from what the grid starts it from now
    (empty: same, or a folder without one)."""
    from tam.config import changed_fields

    path = r.run_dir / "grid.json"
    if not path.is_file():
        return []
    old, new = read_json(path, "run record"), fingerprint(grid, r)
    keys = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k) and k != "config")
    a, b = old.get("config"), new["config"]
    if a != b:
        keys = changed_fields(a if isinstance(a, dict) else {}, b, _defaults(r)) + keys
    return keys


def _defaults(r: Run | PretrainStep) -> dict:
    """The config's defaults: an option added to the code after a folder was started is absent from its record,
    and it ran as the option's default does (new options are off by default)."""
    from tam.config import RunConfig, to_dict

    if isinstance(r, Run):
        return to_dict(RunConfig())
    from tam.train.pretrain import PretrainConfig

    return to_dict(PretrainConfig())


def check_stale(grid: Grid) -> None:
    """Refuse to run a grid whose run or step folders were started from other settings."""
    bad = [(str(r.run_dir), keys) for r in [*grid.pretrain_steps, *grid.runs] if (keys := stale(grid, r))]
    if bad:
        raise TamError(f"{grid.path}: {len(bad)} run folder(s) were started from other settings (first: {bad[0][0]}, "
                       f"differs in {', '.join(bad[0][1])}): delete them (or the grid's out folder) to run them again, "
                       "or give the grid a new out")


def prepare(grid: Grid) -> None:
    """Make the world, refuse folders started from other settings (`check_stale`), then write each run's
    subsampled labels CSV (deterministic; rewritten only when missing)."""
    make_world(grid)
    check_stale(grid)
    for r in grid.runs:
        if not Path(r.labels).is_file():
            raise TamError(f"{grid.path}: the labels file {r.labels} does not exist")
        if not Path(r.store, "manifest.json").is_file():
            raise TamError(f"{grid.path}: the feature store {r.store} does not exist (no manifest.json)")
    for r in tqdm([r for r in grid.runs if r.labelled is not None], desc="labels subsamples", leave=False):
        path = r.run_dir / "labels.csv"
        if not path.is_file():
            write_text(path, subsample_labels(r.labels, r.labelled, r.seed, r.task, r.classes))


def finished(r: Run | PretrainStep) -> bool:
    if isinstance(r, PretrainStep):
        return r.checkpoint.is_file()
    return (r.run_dir / "results.json").is_file()


def _error_summary(log: Path, rc: int) -> str:
    lines = [x for x in log.read_text(encoding="utf-8", errors="replace").splitlines() if x.strip()] \
        if log.is_file() else []
    errors = [x for x in lines if x.startswith(("error:", "Traceback")) or "Error" in x.split(":")[0]]
    head = errors[-1] if errors else f"exit status {rc}"
    return f"{head}\n\n(exit status {rc}; last lines of {log.name}:)\n" + "\n".join(lines[-20:]) + "\n"


_LIVE: set[subprocess.Popen] = set()  # the run processes of this runner, stopped when the runner is stopped
_STOPPING = threading.Event()


def _execute(argv: list[str], run_dir: Path, threads: int, tied: bool = False) -> str | None:
    """Run `python -m tam ARGV` with its output in run_dir/log.txt; None on success, else the error text. `tied`:
    the process dies with the one that started it (a Ray worker: `tam.engines.TIED`)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    log = run_dir / "log.txt"
    with log.open("a", encoding="utf-8") as f:
        f.write("$ tam " + " ".join(argv) + "\n")
        f.flush()
        from tam.engines import TIED

        cmd = [sys.executable, *(("-c", TIED) if tied else ("-m", "tam")), *argv]
        proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, env=env,
                                stdin=subprocess.DEVNULL)
        _LIVE.add(proc)
        rc = proc.wait()
        _LIVE.discard(proc)
    if rc == 0:
        (run_dir / "error.txt").unlink(missing_ok=True)
        return None
    if _STOPPING.is_set():  # the runner stopped it: not a failure of the run; it resumes next time
        return "stopped with the runner"
    err = _error_summary(log, rc)
    write_text(run_dir / "error.txt", err)
    return err.splitlines()[0]


@dataclass
class Summary:
    done: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)


def _stop(*_) -> None:
    raise KeyboardInterrupt


def _record(summary: Summary, bar, name: str, err: str | None) -> None:
    if err is None:
        summary.done.append(name)
    else:
        summary.failed[name] = err
        tqdm.write(f"failed: {name}: {err}")
    bar.update(1)
    bar.set_postfix(failed=len(summary.failed))


def _pool(jobs: list[tuple[str, list[str], Path]], n_jobs: int, threads: int, desc: str, summary: Summary,
          engine: str = "local", address: str = "") -> None:
    if not jobs:
        return
    if engine == "ray":
        return _on_ray(jobs, threads, desc, summary, address)
    with ThreadPoolExecutor(max_workers=max(1, n_jobs)) as pool, tqdm(total=len(jobs), desc=desc) as bar:
        futures = {pool.submit(_execute, argv, d, threads): name for name, argv, d in jobs}
        try:
            for fut in as_completed(futures):
                _record(summary, bar, futures[fut], fut.result())
        except BaseException:  # interrupted or terminated: stop the runs (each resumes from its last.pt next time)
            _STOPPING.set()
            for f in futures:
                f.cancel()
            for p in list(_LIVE):
                p.terminate()
            raise


def _on_ray(jobs: list[tuple[str, list[str], Path]], threads: int, desc: str, summary: Summary, address: str) -> None:
    """Each job a Ray task (`tam.engines.ray_engine`) with the CPUs and GPU its config declares (`resources`); a
    task whose worker or node died is run again (it resumes from its last.pt)."""
    from tam.engines import ray_engine

    ray_engine.connect(address)
    items = [(argv, d, threads, True) for _, argv, d in jobs]
    with tqdm(total=len(jobs), desc=desc) as bar:
        for i, err in ray_engine.map_tasks(_execute, items, lambda i: resources(jobs[i][2])):
            if isinstance(err, ray_engine.Failure):
                err = f"ray: {err.message}"
                write_text(jobs[i][2] / "error.txt", err + "\n")
            _record(summary, bar, jobs[i][0], err)


def resources(run_dir: Path) -> dict:
    """What a run, a seed group or a pre-training step asks of a Ray cluster: `train.threads` CPUs, and one GPU
    when its `train.device` is CUDA (from the resolved config in its grid.json)."""
    if (run_dir / "group.json").is_file():  # a seed group (`_group_job`): what its runs ask, alike but the seed
        run_dir = Path(read_json(run_dir / "group.json", "seed group")["runs"][0]["run_dir"])
    train = read_json(run_dir / "grid.json", "run record").get("config", {}).get("train", {})
    gpu = str(train.get("device", "cpu")).startswith("cuda")
    return {"num_cpus": max(1, int(train.get("threads") or 1)), "num_gpus": 1 if gpu else 0}


def run_grid(grid: Grid, jobs: int, threads: int = 1, engine: str = "local", address: str = "") -> Summary:
    """Pre-training steps, then the runs, `jobs` processes at a time (`engine` "ray": as Ray tasks on the cluster
    at `address`, as many at a time as it has room for); finished work is skipped (folders started from other
    settings are refused, `check_stale`)."""
    prepare(grid)
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _stop)
    summary = Summary()
    steps = [s for s in grid.pretrain_steps if not finished(s)]
    summary.skipped += [str(s.run_dir) for s in grid.pretrain_steps if finished(s)]
    for x in [*steps, *(r for r in grid.runs if not finished(r))]:
        write_json(x.run_dir / "grid.json", fingerprint(grid, x))
    _pool([(str(s.run_dir), s.argv(), s.run_dir) for s in steps], jobs, threads, "pre-training", summary, engine,
          address)
    todo = []
    for r in grid.runs:
        if finished(r):
            summary.skipped.append(r.name)
        elif r.pretrain is not None and str(r.pretrain.run_dir) in summary.failed:
            msg = f"pre-training {r.pretrain.run_dir} failed: {summary.failed[str(r.pretrain.run_dir)]}"
            write_text(r.run_dir / "error.txt", msg + "\n")
            summary.failed[r.name] = msg
        else:
            todo.append(r)
    procs = processes(seed_groups(todo, grid.batch), grid.batch > 1)
    _pool([_group_job(grid, g) for g in procs], jobs, threads, "runs", summary, engine, address)
    again = _expand(summary, [g for g in procs if len(g) > 1])
    _pool([(r.name, r.argv(), r.run_dir) for r in again], jobs, threads, "runs again alone", summary, engine, address)
    return summary


def cost(r: Run, rows: dict[str, int]) -> int:
    """What a run's time grows with: its training rows times its epochs (the steps it takes). `rows` caches the
    training rows of each labels file."""
    from tam.config import load_config
    from tam.datasets.labels import read_labels

    if r.labelled is None and r.labels not in rows:
        rows[r.labels] = sum(s != "test" for s in read_labels(r.labels, r.task, r.classes or None).split)
    return (rows[r.labels] if r.labelled is None else r.labelled) * load_config(r.config, r.overrides).optim.epochs


def _data_key(r: Run) -> str:
    """Runs with equal keys train on the same data: the same labels and subsample, and the same data settings."""
    data = sorted(o for o in r.overrides if o.startswith("data.") and not o.startswith("data.labels="))
    return json.dumps([r.config, r.labels, r.store, r.labelled, data])


def processes(groups: list[list[Run]], share: bool = True) -> list[list[Run]]:
    """The seed groups as processes, the longest first (`cost`). With `share`, groups on the same data (`_data_key`,
    the same seeds) go into one process while its cost stays within the longest group's: the process start, the
    store, the normalisation statistics and the linear baseline are paid once (tam.train.multiseed trains them cell
    by cell) and no process outlasts the longest group. Longest first, the pool's last processes are the shortest:
    no job is left with a long tail while the others idle."""
    rows: dict[str, int] = {}
    costs = [sum(cost(r, rows) for r in g) for g in groups]
    cap, procs, open_ = max(costs, default=0), [], {}
    for g, c in zip(groups, costs, strict=True):
        key = (_data_key(g[0]), tuple(r.seed for r in g))
        p = open_.get(key) if share else None
        if p is None or p[0] + c > cap:
            p = open_[key] = [0, []]
            procs.append(p)
        p[0] += c
        p[1] += g
    return [runs for _, runs in sorted(procs, key=lambda p: -p[0])]


def _group_name(runs: list[Run]) -> str:
    """OUT/groups/<name>: the cell's axis values (several cells: each axis's values joined by +), then the seeds."""
    parts: list[dict[str, None]] = []
    for r in runs:
        cell = [part for part in r.name.split("__") if not part.startswith("seed-")]
        parts = parts or [{} for _ in cell]
        for values, part in zip(parts, cell, strict=True):
            values[part] = None
    cell = [next(iter(v)) if len(v) == 1 else
            next(iter(v)).split("-", 1)[0] + "-" + "+".join(x.split("-", 1)[1] for x in v) for v in parts]
    return "__".join([*cell, "seeds-" + "+".join(str(s) for s in dict.fromkeys(r.seed for r in runs))])


def _group_job(grid: Grid, runs: list[Run]) -> tuple[str, list[str], Path]:
    """A job of `_pool`: one run as `tam train`, or a seed group (or several, `processes`) as one `tam train --group`
    process (tam.train.multiseed) whose file and output go to OUT/groups/<name>/; each run still logs to its own
    log.txt, which starts with its own `tam train` command (it reproduces the run alone)."""
    if len(runs) == 1:
        return runs[0].name, runs[0].argv(), runs[0].run_dir
    group_dir = grid.out / "groups" / _group_name(runs)
    write_json(group_dir / "group.json", {"runs": [{"config": r.config, "overrides": r.overrides,
                                                    "run_dir": str(r.run_dir)} for r in runs], "batched": None})
    for r in runs:
        r.run_dir.mkdir(parents=True, exist_ok=True)
        with (r.run_dir / "log.txt").open("a", encoding="utf-8") as f:
            f.write(f"{r.command()}\n(trained in one process with its seed group: {group_dir / 'log.txt'})\n")
    return _group_name(runs), ["train", "--group", str(group_dir / "group.json")], group_dir


def _expand(summary: Summary, groups: list[list[Run]]) -> list[Run]:
    """The summary per run, not per seed group; returns the unfinished runs of failed groups, to be run again one by
    one (each resumes from the last epoch its group saved; a failure is then its own)."""
    again = []
    for runs in groups:
        name = _group_name(runs)
        if name in summary.done:
            summary.done.remove(name)
            summary.done += [r.name for r in runs]
            for r in runs:
                (r.run_dir / "error.txt").unlink(missing_ok=True)
        elif summary.failed.pop(name, None) is not None:  # runs it finished are done
            summary.done += [r.name for r in runs if finished(r)]
            again += [r for r in runs if not finished(r)]
    return again


def list_commands(grid: Grid, prefix: str = "tam") -> list[str]:
    """One self-contained shell command per pre-training step (first) and per run (labels subsamples written)."""
    prepare(grid)
    lines = []
    if grid.pretrain_steps:
        lines.append("# stage 1: pre-training (run these first; the runs below start from their checkpoints)")
        lines += [prefix + " " + " ".join(_quote(a) for a in s.argv()) for s in grid.pretrain_steps]
        lines.append("# stage 2: the runs")
    lines += [r.command(prefix) for r in grid.runs]
    return lines


def _quote(a: str) -> str:
    import shlex
    return shlex.quote(a)
