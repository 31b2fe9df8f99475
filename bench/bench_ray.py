"""The cost of the Ray engine (issue 25): each stage run by the same command with `--engine local` and `--engine ray`,
side by side on the same inputs and the same resources, outputs compared, a YES/NO line per target (ray within
1.3x of local, outputs identical).

A one-node cluster of 2 CPUs on loopback (`tam.engines.cluster.LocalCluster`; its start-up is reported apart: a
cluster is started once for many jobs) against the local engines with 2 workers / jobs. Each stage at two sizes, a
`small` row (jobs of seconds: the engine's fixed cost dominates) and a `large` row (`TAM_BENCH_RAY_LARGE=0` skips it):
- extraction: synthetic 4 s videos (small `TAM_BENCH_RAY_VIDEOS`, default 12; large `TAM_BENCH_RAY_VIDEOS_LARGE`,
  default 96), tiny random-init encoders, `--batch 1` (encoder calls of one decoded part each, so that the arrays
  can be compared bit for bit); locally one decoding thread beside the encoders (1 torch thread), on Ray one actor
  of 1 CPU and its decoding task of 1 CPU;
- corpus: the real danmaku of ../shared/realdata as they are (11 k comments; large: replicated to
  `TAM_BENCH_RAY_COMMENTS_LARGE`, default 1,000,000, as bench_comments does), with the DUTIR lexicon (synthetic
  sources when ../shared is absent);
- grid: a tiny timing world, 2 cells (ctm, concat) of 2 seeds (small) or 10 seeds (large, 20 runs): a process per
  seed group (5 seeds at most) on both engines.
Each stage and size runs local, ray, local, ray; the figure is the best wall time of each (the machine may be
shared). From the two sizes, each engine's wall = fixed + per item x items: the fixed cost (process start, imports,
for Ray joining the cluster and starting workers / actors) and the cost per item (a video, 1,000 comments, a run)
are printed apart, and Ray's over local for both. `TAM_BENCH_RAY_STAGES` picks some (default `extract,corpus,grid`).
`costs`: what the engine itself costs in a new driver (joining the cluster, the first task in a new worker process,
a task after that, an actor, moving a decoded part of 12 MB through the object store).

What a row times: the whole command on each engine, `python -m tam ...` from its start to its exit (Python's start,
imports, for Ray `import ray` and joining the running cluster, the job, writing the outputs, Ray's shutdown); the
cluster is started once before the rows (`cluster_start_s`, not in them), as a cluster serves many jobs. Beside the
wall time each row gives the CPU seconds of each engine: the command and every process it waited for (the local
pools, a grid's run processes) plus, for Ray, every process of the cluster while the command ran (daemons, workers,
actors; sampled every 0.1 s). On a shared machine wall ratios favour the engine with more processes (each gets its
share of the CPUs); CPU seconds are the fairer cost there. The cluster's nodes run their workers at the niceness of
the bench (`tam.engines.cluster.NICE`), as the local engines' processes run.

Time: about 7 minutes on 2 idle cores with the default sizes (inputs ~1 min, small rows ~1.5, large rows ~4); each
command is stopped after `COMMAND_LIMIT_S` (the bench then fails), so a run is bounded by ~25 x that.
"""

from __future__ import annotations

import importlib.util
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
REAL = ROOT.parent / "shared" / "realdata"
DUTIR = REAL / "lexicon" / "dutir" / "情感词汇本体.stxupengyu.xlsx"


def _tests(folder: str):
    spec = importlib.util.spec_from_file_location(f"bench_ray_{folder}", ROOT / "tests" / folder / "conftest.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


COMMAND_LIMIT_S = 900  # one command past this fails the bench, rather than the bench waiting for ever


class _ClusterCPU:
    """CPU seconds used by the cluster's processes (daemons, workers, actors) while a command runs: each process
    of the cluster's process group and its descendants sampled every 0.1 s (a process's last < 0.1 s before it
    exits can be missed). The local engines' processes are all waited for by the command: `RUSAGE_CHILDREN`."""

    def __init__(self, pgid: int | None) -> None:
        self.pgid, self.seen, self.stop = pgid, {}, threading.Event()

    def _sample(self) -> dict:
        from tam.engines.cluster import _tree

        out, hz = {}, os.sysconf("SC_CLK_TCK")
        for pid in _tree(self.pgid):
            try:
                f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            out[(pid, f[19])] = (int(f[11]) + int(f[12])) / hz  # (pid, start time): user + system
        return out

    def __enter__(self) -> _ClusterCPU:
        if self.pgid is not None:
            self.base = self._sample()
            self.seen = dict(self.base)
            self.thread = threading.Thread(target=self._poll, daemon=True)
            self.thread.start()
        return self

    def _poll(self) -> None:
        while not self.stop.wait(0.1):
            self.seen.update(self._sample())

    def __exit__(self, *exc) -> None:
        if self.pgid is not None:
            self.stop.set()
            self.thread.join()
            self.seen.update(self._sample())

    @property
    def seconds(self) -> float:
        return sum(v - self.base.get(k, 0.0) for k, v in self.seen.items()) if self.pgid is not None else 0.0


def _timed(args: list[str], cwd: Path, cluster_pgid: int | None = None) -> tuple[float, float]:
    """Wall seconds of `python -m tam ARGS` (the whole command: Python's start, imports, joining the cluster, the
    job, its outputs, exit) and its CPU seconds (the command and the processes it waited for, plus the cluster's
    processes when `cluster_pgid` is given)."""
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0")
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    with _ClusterCPU(cluster_pgid) as cluster:
        done = subprocess.run([sys.executable, "-m", "tam", *args], cwd=cwd, env=env, capture_output=True, text=True,
                              timeout=COMMAND_LIMIT_S)
        wall = time.perf_counter() - t0
    if done.returncode != 0:
        raise RuntimeError(f"tam {' '.join(args[:2])} failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, r1.ru_utime + r1.ru_stime - r0.ru_utime - r0.ru_stime + cluster.seconds


def _same_store(a: Path, b: Path) -> bool:
    from tam.features.store import FeatureStore

    x, y = FeatureStore.open(a), FeatureStore.open(b)
    return x.videos() == y.videos() and all(
        np.array_equal(np.asarray(x.read(v).features[m]), np.asarray(y.read(v).features[m]))
        for v in x.videos() for m in x.read(v).features)


def _same_corpus(a: Path, b: Path) -> bool:
    return all((a / n).read_bytes() == (b / n).read_bytes() for n in ("comments.parquet", "segments.parquet",
                                                                       "vocab.json"))


def _same_grid(a: Path, b: Path) -> bool:
    def results(d: Path) -> dict:
        out = {}
        for p in sorted((d / "runs").glob("*/results.json")):
            r = json.loads(p.read_text())
            out[p.parent.name] = {k: v for k, v in r.items() if k not in ("data_wait_seconds", "code_version")}
        return out

    return results(a) == results(b) and len(results(a)) == len(list((a / "runs").iterdir())) > 0


def _videos(folder: Path, n: int) -> None:
    folder.mkdir()
    for i in range(n):
        _tests("encoders").make_video(folder / f"c{i:03d}.mp4", seconds=4.0, change_at=1.0 + 0.2 * (i % 12),
                                      tone_at=1.5 if i % 2 else None)


def _danmaku(folder: Path, comments: int) -> tuple[str, int]:
    """The real danmaku as they are (`comments` 0) or replicated to `comments`; returns the lexicon and the number
    of comments."""
    folder.mkdir()
    if (REAL / "danmaku").is_dir() and DUTIR.is_file():
        from bench.bench_comments import _real_files, _replicate

        files, texts = _real_files()
        return str(DUTIR), len(texts) * _replicate(files, len(texts), comments, folder)
    for i in range(200 * max(1, comments // 600)):
        rows = "".join(f"v{i},{t},{x}\n" for t, x in ((1, "我今天很开心"), (50, "我真的好难过呀"), (90, "很开心")))
        (folder / f"s{i}.csv").write_text("video,time,text\n" + rows, encoding="utf-8")
    (folder.parent / "lex.txt").write_text("开心\n难过\n", encoding="utf-8")
    return str(folder.parent / "lex.txt"), 3 * 200 * max(1, comments // 600)


SIZES = {"small": {"videos": int(os.environ.get("TAM_BENCH_RAY_VIDEOS", "12")), "comments": 0, "seeds": 2},
         "large": {"videos": int(os.environ.get("TAM_BENCH_RAY_VIDEOS_LARGE", "96")),
                   "comments": int(os.environ.get("TAM_BENCH_RAY_COMMENTS_LARGE", "1000000")), "seeds": 10}}
UNIT = {"extract": "video", "corpus": "1,000 comments", "grid": "run"}


def _inputs(work: Path, size: str) -> dict[str, tuple]:
    """stage -> (its command without --out and --engine, local-only and ray-only options, output comparison, items)
    for `size` (SIZES), under `work`."""
    work.mkdir()
    n = SIZES[size]
    _videos(work / "videos", n["videos"])
    lexicon, comments = _danmaku(work / "danmaku", n["comments"])
    from tam.demo.worlds.power import PowerSpec, make_power_world

    world = make_power_world(work / "world", PowerSpec(world="timing", n_train=60, n_test=40,
                                                       dims={"image": 8, "audio": 8}, rank=4, min_segments=8,
                                                       max_segments=10))
    grid = _tests("experiment").write_grid(work / "grid.yaml", world, work / "OUT",  # seed groups on both
                                           {"fusion": ["ctm", "concat"], "seed": list(range(n["seeds"]))})
    return {"extract": (["extract", "videos", "--tiny", "--batch", "1", "--threads", "1", "--no-progress"],
                        ["--workers", "1"], ["--actors", "1", "--actor-cpus", "1", "--workers", "1"], _same_store,
                        n["videos"]),
            "corpus": (["comments", "prepare", str(work / "danmaku"), "--lexicon", lexicon, "--n", "500",
                        "--no-progress"], ["--workers", "2"], [], _same_corpus, comments / 1000),
            "grid": (["experiment", "run", str(grid)], ["--jobs", "2"], [], _same_grid, 2 * n["seeds"])}


def _out_args(stage: str, out: Path, work: Path) -> list[str]:
    if stage == "grid":  # the grid's out folder is in its YAML: one grid file per engine and round
        text = (work / "grid.yaml").read_text().replace(str(work / "OUT"), str(out))
        (out.parent / f"{out.name}.yaml").write_text(text)
        return []
    return ["-o" if stage == "extract" else "--out", str(out)]


COSTS = """
import json, sys, time
import numpy as np
t = time.perf_counter()
import ray
out = {"import_ray_s": time.perf_counter() - t}
t = time.perf_counter()
ray.init(address=sys.argv[1], log_to_driver=False, logging_level="ERROR")
out["connect_s"] = time.perf_counter() - t

@ray.remote(num_cpus=1)
def noop(x=None):
    return 0

@ray.remote(num_cpus=1)
def imports():
    import tam.comments.corpus, tam.encoders.extract  # what a corpus task, an actor import
    return 0

@ray.remote(num_cpus=1)
class Actor:
    def ping(self):
        return 0

t = time.perf_counter(); ray.get(noop.remote()); out["first_task_s"] = time.perf_counter() - t
t = time.perf_counter()
for _ in range(20):
    ray.get(noop.remote())
out["task_round_trip_ms"] = (time.perf_counter() - t) / 20 * 1e3
t = time.perf_counter()
ray.get([noop.remote() for _ in range(100)])
out["task_pipelined_ms"] = (time.perf_counter() - t) * 10
t = time.perf_counter(); ray.get(imports.remote()); out["import_tam_in_worker_s"] = time.perf_counter() - t
t = time.perf_counter(); a = Actor.remote(); ray.get(a.ping.remote()); out["actor_start_s"] = time.perf_counter() - t
part = np.zeros((4, 16, 224, 224, 3), np.uint8)  # a decoded part: 4 segments of CLIP frames, ~9.6 MB
t = time.perf_counter()
for _ in range(5):
    ray.get(noop.remote(ray.put(part)))
out["part_through_store_ms"] = (time.perf_counter() - t) / 5 * 1e3
print(json.dumps({k: round(v, 3) for k, v in out.items()}))
"""


def _costs(address: str) -> dict[str, float]:
    env = dict(os.environ, RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0", RAY_USAGE_STATS_ENABLED="0", OMP_NUM_THREADS="1")
    done = subprocess.run([sys.executable, "-c", COSTS, address], env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"engine costs failed:\n{done.stderr[-2000:]}")
    return {f"costs_{k}": v for k, v in json.loads(done.stdout.strip().splitlines()[-1]).items()}


def _stage(stage: str, spec: tuple, work: Path, address: str, pgid: int) -> tuple[dict, dict, bool]:
    """Best wall time and least CPU time per engine of local, ray, local, ray; whether both rounds' outputs are
    identical."""
    args, local_args, ray_args, same, _ = spec
    best = {"local": float("inf"), "ray": float("inf")}
    cpu = dict(best)
    for rnd in range(2):
        for engine, extra in (("local", local_args), ("ray", [*ray_args, "--address", address])):
            out = work / f"{stage}-{engine}-{rnd}"
            cmd = [*args, *_out_args(stage, out, work), "--engine", engine, *extra]
            if stage == "grid":
                cmd[2] = str(out.parent / f"{out.name}.yaml")
            wall, seconds = _timed(cmd, work, pgid if engine == "ray" else None)
            best[engine], cpu[engine] = min(best[engine], wall), min(cpu[engine], seconds)
    return best, cpu, all(same(work / f"{stage}-local-{r}", work / f"{stage}-ray-{r}") for r in range(2))


def _split(stage: str, rows: dict[str, tuple[float, dict, dict]], figures: dict) -> None:
    """Each engine's wall (and CPU) = fixed + per item x items, from the small and the large row."""
    for k, what in ((1, ""), (2, "_cpu")):
        (n0, t0), (n1, t1) = (rows["small"][0], rows["small"][k]), (rows["large"][0], rows["large"][k])
        parts = {}
        for engine in ("local", "ray"):
            per = (t1[engine] - t0[engine]) / (n1 - n0)
            parts[engine] = (t0[engine] - per * n0, per)
            figures[f"{stage}_{engine}{what}_fixed_s"] = round(parts[engine][0], 2)
            figures[f"{stage}_{engine}{what}_per_item_s"] = round(per, 4)
        (fl, pl), (fr, pr) = parts["local"], parts["ray"]
        print(f"   {stage}{' CPU' if what else ' wall'}: fixed local {fl:.1f} s, ray {fr:.1f} s (ray's own: "
              f"{fr - fl:+.1f} s); per {UNIT[stage]} local {pl * 1e3:.0f} ms, ray {pr * 1e3:.0f} ms ({pr / pl:.2f}x)",
              flush=True)


def run() -> dict[str, float | str]:
    from tam.engines.cluster import LocalCluster

    work = Path(tempfile.mkdtemp(prefix="bench-ray-"))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # a `timeout` still stops the cluster (its `with`)
    figures: dict[str, float | str] = {"load_average_1min": round(os.getloadavg()[0], 2)}  # > cores: not comparable
    sizes = ["small"] + (["large"] if os.environ.get("TAM_BENCH_RAY_LARGE", "1") != "0" else [])
    wanted = os.environ.get("TAM_BENCH_RAY_STAGES", "extract,corpus,grid").split(",")
    try:
        inputs = {size: _inputs(work / size, size) for size in sizes}
        t0 = time.perf_counter()
        with LocalCluster(head_cpus=2, node_cpus=()) as cluster:
            figures["cluster_start_s"] = round(time.perf_counter() - t0, 1)
            print(f"   a cluster of 2 CPUs started in {figures['cluster_start_s']} s (not in the rows); each row: the "
                  "whole command on both engines (Python's start, imports, joining the cluster, the job, exit), best "
                  "wall of two and least CPU of two (the command, its waited children, the cluster's processes)",
                  flush=True)
            figures.update(_costs(cluster.address))
            print("   engine costs: " + ", ".join(f"{k[6:]} {v}" for k, v in figures.items() if k.startswith("costs_")),
                  flush=True)
            for stage in (k for k in inputs["small"] if k in wanted):
                rows = {}
                for size in sizes:
                    spec = inputs[size][stage]
                    best, cpu, same_out = _stage(stage, spec, work / size, cluster.address, cluster.nodes[0].pid)
                    rows[size] = (spec[4], best, cpu)
                    key, ratio, cpu_ratio = f"{stage}_{size}", best["ray"] / best["local"], cpu["ray"] / cpu["local"]
                    met = ratio <= 1.3 and same_out
                    c = {f"{key}_local_cpu_s": round(cpu["local"], 1), f"{key}_ray_cpu_s": round(cpu["ray"], 1)}
                    figures.update({**c, f"{key}_items": spec[4], f"{key}_local_s": round(best["local"], 1),
                                    f"{key}_ray_s": round(best["ray"], 1), f"{key}_ray_over_local": round(ratio, 3),
                                    f"{key}_cpu_ray_over_local": round(cpu_ratio, 3),
                                    f"{key}_outputs_identical": str(same_out), f"{key}_target": "YES" if met else "NO"})
                    print(f"   {stage} {size} ({spec[4]:g} x {UNIT[stage]}): local {best['local']:.1f} s, ray "
                          f"{best['ray']:.1f} s ({ratio:.2f}x), outputs identical {same_out}: {'YES' if met else 'NO'} "
                          f"(target: ray <= 1.3x local, outputs identical); CPU local {cpu['local']:.1f} s, ray "
                          f"{cpu['ray']:.1f} s ({cpu_ratio:.2f}x); load {os.getloadavg()[0]:.1f}", flush=True)
                if len(rows) == 2:
                    _split(stage, rows, figures)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return figures


if __name__ == "__main__":
    for k, v in run().items():
        print(k, v)
