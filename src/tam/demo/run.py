"""`tam demo`: the whole pipeline on the built-in synthetic video + danmaku world, and (`--features-only`) the
fusion strategies of Table 2 on the feature-level world.

`run_pipeline` renders real MP4 + Bilibili XML files (tam.demo.worlds.videos, tam.demo.worlds.danmaku), then calls the
library function of each stage: comments prepare -> extract (tiny random-init encoders) -> TSC pre-training ->
fine-tuning and evaluation of every table's runs -> the report folder (tam.report). `run_demo` is the
feature-level fusion table of issue 2. Every number either prints comes from runs made by this command: each
model is trained with several seeds (model selection on a validation split carved from the training videos),
tested once, and reported as mean ± std over seeds beside the majority-class baseline.
"""

from __future__ import annotations

import os
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from tam.config import DataConfig, ModelConfig, OptimConfig, RunConfig, TrainConfig
from tam.demo.checks import FUSION_NAMES, expectations
from tam.demo.worlds.features import CLASSES, WorldSpec, make_world
from tam.eval.statistics import mean_ci
from tam.io import write_json, write_text


@dataclass
class DemoSpec:
    videos: int = 800
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    fusions: list[str] = field(default_factory=lambda: list(FUSION_NAMES))
    epochs: int = 8
    d: int = 64
    layers: int = 2
    heads: int = 4
    T: int = 16
    lr: float = 1e-3
    batch_size: int = 16
    workers: int = 2  # runs trained in parallel
    threads: int = 1  # torch threads per training process (workers * threads <= cores avoids oversubscription)

    @classmethod
    def quick(cls) -> DemoSpec:
        return cls(videos=400, seeds=[0], fusions=["concat", "ctm"], epochs=4)


def run_config(spec: DemoSpec, store: Path, labels: Path, fusion: str, seed: int) -> RunConfig:
    return RunConfig(
        model=ModelConfig(fusion=fusion, d=spec.d, layers=spec.layers, heads=spec.heads, T=spec.T, dropout=0.1),
        data=DataConfig(store=str(store), labels=str(labels), classes=list(CLASSES)),
        optim=OptimConfig(optimizer="adamw", lr=spec.lr, batch_size=spec.batch_size, epochs=spec.epochs),
        train=TrainConfig(seed=seed, num_workers=0, device="cpu", progress=False, threads=spec.threads))


def _fit_one(args) -> dict:
    cfg, run_dir = args
    import torch

    from tam.train.loop import fit

    torch.set_num_threads(1)
    t0 = time.perf_counter()
    results = fit(cfg, run_dir, log=lambda s: None)
    results["seconds"] = time.perf_counter() - t0
    return results


def run_demo(out: str | Path, spec: DemoSpec, log=print) -> dict:
    """Generate the world, train every (fusion, seed), write report.md + results.json; return the summary."""
    out = Path(out)
    t0 = time.perf_counter()
    log(f"[1/3] synthetic world: {spec.videos} videos with features at the paper's dims -> {out / 'world'}")
    store, labels = make_world(out / "world", WorldSpec(n_videos=spec.videos, min_segments=6,
                                                        max_segments=spec.T, seed=0))
    jobs = [(run_config(spec, store, labels, f, s), out / "runs" / f"{f}-seed{s}") for f in spec.fusions
            for s in spec.seeds]
    log(f"[2/3] training {len(jobs)} runs ({len(spec.fusions)} fusions x {len(spec.seeds)} seeds, "
        f"d={spec.d}, L={spec.layers}, {spec.epochs} epochs), {spec.workers} at a time")
    results: dict[str, list[dict]] = {f: [] for f in spec.fusions}
    with _workers(spec.workers) as pool:
        for (cfg, _), r in zip(jobs, pool.map(_fit_one, jobs)):
            results[cfg.model.fusion].append(r)
            log(f"      {cfg.model.fusion:<7} seed {cfg.train.seed}: test accuracy {r['test']['accuracy']:.3f} "
                f"({r['seconds']:.0f} s)")
    summary = summarise(results, spec)
    summary["seconds"] = time.perf_counter() - t0
    table = table2(summary)
    write_text(out / "report.md", table)
    write_json(out / "results.json", summary)
    log("[3/3] results\n\n" + table)
    log(f"report: {out / 'report.md'}  ({summary['seconds']:.0f} s in all)")
    return summary


def _mp_context():
    import multiprocessing as mp

    return mp.get_context("forkserver" if os.name == "posix" else "spawn")


def _workers(n: int) -> ProcessPoolExecutor:
    """A pool of `n` worker processes that exit when this process is gone (a killed demo leaves no orphan
    training or extracting on; forkserver workers are not this process's children, so they are not killed with
    it)."""
    return ProcessPoolExecutor(max_workers=n, mp_context=_mp_context(), initializer=_exit_with, initargs=(os.getpid(),))


def _exit_with(pid: int) -> None:
    """Worker initializer: a daemon thread that ends the worker within a second of process `pid` ending."""
    import threading

    def watch() -> None:
        while True:
            time.sleep(1.0)
            try:
                os.kill(pid, 0)
            except (ProcessLookupError, PermissionError):  # gone (PermissionError: its pid now another user's)
                os._exit(1)

    threading.Thread(target=watch, daemon=True, name="exit-with-parent").start()


def summarise(results: dict[str, list[dict]], spec: DemoSpec) -> dict:
    rows = _rows(results)
    first = next(iter(results.values()))[0]
    return {"rows": rows, "baseline": first["baseline"], "linear": first.get("linear") or {}, "n": first["n"],
            "seeds": spec.seeds,
            "model": {"d": spec.d, "layers": spec.layers, "heads": spec.heads, "T": spec.T, "epochs": spec.epochs}}


def table2(summary: dict) -> str:
    """Markdown in the shape of the paper's Table 2, with mean ± std over seeds and the trivial baseline."""
    n, m = summary["n"], summary["model"]
    lines = ["# Fusion strategies on the synthetic world (shape of the paper's Table 2)", "",
             f"Test accuracy (%), mean ± std over seeds {summary['seeds']}; {n['train']} train / {n['val']} val / "
             f"{n['test']} test videos; d={m['d']}, L={m['layers']}, {m['heads']} heads, T={m['T']}, "
             f"{m['epochs']} epochs; model selection on validation. Synthetic data: see docs/synthetic.md.", "",
             "| Fusion strategy | Accuracy (%) | Macro-F1 (%) | runs |", "|---|---|---|---|"]
    for f, r in summary["rows"].items():
        lines.append(f"| {FUSION_NAMES[f]} | {100 * r['accuracy_mean']:.2f} ± {100 * r['accuracy_std']:.2f} | "
                     f"{100 * r['macro_f1_mean']:.2f} | {r['runs']} |")
    b = summary["baseline"]
    lines.append(f"| {b['name']} (trivial baseline) | {100 * b['test']['accuracy']:.2f} | "
                 f"{100 * b['test']['macro_f1']:.2f} | — |")
    lines += ["", "Expectations from the world's construction (docs/synthetic.md), checked on this run:"]
    lines += [f"- {text}: **{verdict}**" for text, verdict in expectations(summary)]
    return "\n".join(lines) + "\n"


# ================================================================ the whole pipeline on video + danmaku files




@dataclass
class PipelineSpec:
    """Sizes of the synthetic video + danmaku world and of the runs of `tam demo` (see docs/demo.md)."""

    # 180 test videos (one video = 0.56 points of accuracy) and a pool of 180 labelled training videos
    labelled: int = 360
    # videos with comments for pre-training: 420 (~355 training clips): pre-training learns the (scene, sound)
    # relation from ~350 clips, not from ~200 (docs/demo.md, "The world")
    unlabelled: int = 420
    min_segments: int = 4
    max_segments: int = 6
    test_fraction: float = 0.5  # of the labelled videos
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2, 3, 4])
    fusions: list[str] = field(default_factory=lambda: list(FUSION_NAMES))
    subsets: list[str] = field(default_factory=lambda: ["image", "motion", "audio"])  # CTM on these alone
    subset_seeds: int = 3  # the first this many of `seeds` train the single-modality rows (keeps the demo < 10 min)
    epochs: int = 12
    pretrain_epochs: int = 20
    # λ_v of the pre-training (`loss.lambda_v`, not in the paper, docs/pretraining.md): f^0 also predicts the comments'
    # words, so the fusion carries the relation the words name into what the head reads
    pretrain_lambda_v: float = 1.0
    d: int = 64
    layers: int = 2
    heads: int = 4
    decoder_layers: int = 1
    lr: float = 1e-3
    batch_size: int = 16
    workers: int = 2  # processes for rendering, corpus, training
    threads: int = 1  # torch threads per training process (workers * threads <= cores avoids oversubscription)
    # pre-trained vs scratch at a small number of labels (docs/demo.md "The headline"): `small_labels` labelled videos
    # per seed (stratified by class), over `small_seeds` (10: with 5 the interval was too wide to decide), each
    # readout. Both arms train alike (lr `head_lr` for the head, `fusion_lr` for the fusion: both 1e-3, 50 epochs; the
    # paper's fusion 1e-5 left the pre-trained arm still improving at its last epoch) and test their last epoch
    # (`small_select`: 5 validation videos cannot choose an epoch); they differ only in the initial weights
    small_labels: int = 32
    small_seeds: list[int] = field(default_factory=lambda: list(range(10)))
    small_select: str = "last"
    # the attentive readout only by default (the paper's f^0 readout: `--readouts f0 attentive`, 20 more runs; its
    # measurement is in docs/pretraining.md)
    readouts: list[str] = field(default_factory=lambda: ["attentive"])
    small_epochs: int = 50
    head_lr: float = 1e-3
    fusion_lr: float = 1e-3
    # pre-training lr ×0.1 every this many epochs (the paper: every 50 of 200); 0 = a quarter of pretrain_epochs
    pretrain_lr_step: int = 10

    @classmethod
    def quick(cls) -> PipelineSpec:
        return cls(labelled=32, unlabelled=24, test_fraction=0.25, min_segments=4, max_segments=6, seeds=[0],
                   fusions=["concat", "ctm"], subsets=["image", "motion", "audio"], epochs=4, pretrain_epochs=3,
                   pretrain_lr_step=0, small_labels=16,
                   small_seeds=[0], readouts=["attentive"], small_epochs=4)

    @property
    def pretrain_seeds(self) -> list[int]:
        """Seeds with a pre-training run: the fine-tuning seeds and the small-label comparison's."""
        return sorted(set(self.seeds) | set(self.small_seeds))

    @property
    def T(self) -> int:
        return self.max_segments


def pipeline_configs(spec: PipelineSpec, out: Path):
    """(name, kind, config, run dir) of every pre-training and fine-tuning run of the demo."""
    from tam.demo.worlds.videos import CLASSES
    from tam.train.pretrain import DecoderConfig, LossConfig, PretrainConfig, PretrainDataConfig

    store, runs = out / "features", out / "runs"
    data = DataConfig(store=str(store), labels=str(out / "world" / "labels.csv"), classes=list(CLASSES))

    def model(fusion: str = "ctm", subset: str = "image+motion+audio", readout: str = "f0") -> ModelConfig:
        return ModelConfig(fusion=fusion, modalities=subset.split("+"), d=spec.d, layers=spec.layers,
                           heads=spec.heads, T=spec.T, dropout=0.1, readout=readout)

    def train(seed: int, init: str = "", curves: bool = False, linear: bool = False) -> TrainConfig:
        # the resume state once, after the last epoch (a run is seconds; writing it every epoch was ~10% of them);
        # the training subset scored every epoch (`curves`) only in the runs whose train vs validation curves the
        # report draws, and the linear baseline only in the row whose baseline it prints (`linear`): both are
        # results of their own, the runs' other results are the same without them; no curves.png per run (the report
        # draws its own from metrics.csv); pre-training writes its resume state once too
        return TrainConfig(seed=seed, num_workers=0, device="cpu", progress=False, init_from=init,
                           threads=spec.threads, checkpoint_every=0, train_eval_videos=64 if curves else 0,
                           linear_baseline=linear, curves=False)

    def fine(fusion, subset, seed, init="", linear=False) -> RunConfig:
        return RunConfig(model=model(fusion, subset), data=data, train=train(seed, init, linear=linear),
                         optim=OptimConfig(lr=spec.lr, fusion_lr=spec.lr if init else 0.0, batch_size=spec.batch_size,
                                           epochs=spec.epochs))

    pre = [(f"pretrain-seed{s}", "pretrain", PretrainConfig(
        model=model(), decoder=DecoderConfig(layers=spec.decoder_layers, heads=spec.heads),
        data=PretrainDataConfig(store=str(store), corpus=str(out / "corpus"), comments_per_clip=32),
        loss=LossConfig(lambda_v=spec.pretrain_lambda_v), train=train(s), optim=OptimConfig(
            optimizer="adam", lr=spec.lr, weight_decay=0.0, batch_size=spec.batch_size, epochs=spec.pretrain_epochs,
            lr_step_epochs=spec.pretrain_lr_step or max(1, -(-spec.pretrain_epochs // 4)))),
            runs / f"pretrain-seed{s}") for s in spec.pretrain_seeds]
    # the report's linear baseline is the first fusion row's (`summarise`: the same for every seed and fusion)
    fits = [(f"{f}-seed{s}", "fit", fine(f, "image+motion+audio", s, linear=f == spec.fusions[0]),
             runs / f"{f}-seed{s}") for f in spec.fusions for s in spec.seeds]
    fits += [(f"ctm-{m}-seed{s}", "fit", fine("ctm", m, s), runs / f"ctm-{m}-seed{s}")
             for m in spec.subsets for s in spec.seeds[:spec.subset_seeds]]
    va = DataConfig(store=str(store), labels=str(out / "world" / "labels_va.csv"), task="regression")
    fits += [(f"ctm-va-seed{s}", "fit", RunConfig(model=model(), data=va, train=train(s), optim=OptimConfig(
        lr=spec.lr, batch_size=spec.batch_size, epochs=spec.epochs)), runs / f"ctm-va-seed{s}") for s in spec.seeds]
    fits += [(f"ctm-pretrained-seed{s}", "fit", fine("ctm", "image+motion+audio", s,
                                                       str(runs / f"pretrain-seed{s}" / "pretrained.safetensors")),
              runs / f"ctm-pretrained-seed{s}") for s in spec.seeds]
    fits += [small_config(spec, out, model("ctm", readout=r), train, r, arm, s) for r in spec.readouts
             for arm in ("scratch", "pretrained") for s in spec.small_seeds]
    return pre, fits


def small_labels(spec: PipelineSpec, out: Path, seed: int) -> Path:
    """`world/labels_small_seed<seed>.csv`: the test rows and `spec.small_labels` labelled rows drawn by `seed`,
    as evenly over the classes as they allow (the small-label end of the learning curve); 15% of them (the last
    draws) are marked `val`, the rest train."""
    from tam.io import write_text

    path = out / "world" / f"labels_small_seed{seed}.csv"
    lines = (out / "world" / "labels.csv").read_text(encoding="utf-8").splitlines()
    rows = [ln.split(",") for ln in lines[1:] if ln]
    test = [r for r in rows if r[2] == "test"]
    by_class: dict[str, list] = {}
    for r in rows:
        if r[2] != "test":
            by_class.setdefault(r[1], []).append(r)
    rng = np.random.default_rng([seed, 7])
    pools = [list(rng.permutation(len(v))) for v in by_class.values()]
    picked: list = []
    while len(picked) < spec.small_labels and any(pools):
        for (_, v), pool in zip(by_class.items(), pools):
            if pool and len(picked) < spec.small_labels:
                picked.append(v[pool.pop()])
    n_val = max(1, round(0.15 * len(picked)))  # the last draws (spread over the classes) validate
    rows = test + [r[:2] + [""] for r in picked[:-n_val]] + [r[:2] + ["val"] for r in picked[-n_val:]]
    write_text(path, lines[0] + "\n" + "".join(",".join(r) + "\n" for r in rows))
    return path


def small_config(spec: PipelineSpec, out: Path, model: ModelConfig, train, readout: str, arm: str, seed: int):
    """(name, kind, config, run dir) of one run of the small-label comparison; both arms share everything but the
    initialisation of the fusion module (and readout query) and the fusion's lr (spec.fusion_lr from pre-training)."""
    runs = out / "runs"
    init = str(runs / f"pretrain-seed{seed}" / "pretrained.safetensors") if arm == "pretrained" else ""
    from tam.demo.worlds.videos import CLASSES

    data = DataConfig(store=str(out / "features"), labels=str(out / "world" / f"labels_small_seed{seed}.csv"),
                      classes=list(CLASSES))
    optim = OptimConfig(lr=spec.head_lr, fusion_lr=spec.fusion_lr if init else 0.0, batch_size=spec.batch_size,
                        epochs=spec.small_epochs)
    name = f"small-{readout}-{arm}-seed{seed}"
    tc = replace(train(seed, init, curves=True), select=spec.small_select)  # its seed 0: the report's curves
    return name, "fit", RunConfig(model=model, data=data, optim=optim, train=tc), runs / name


def run_one(kind: str, cfg, run_dir) -> dict:
    """One pre-training (`kind` "pretrain") or fine-tuning run, quietly, on one CPU thread; its results plus
    the wall seconds it took (`seconds`)."""
    return run_group(kind, [(cfg, run_dir)])[0]


def run_group(kind: str, runs: list) -> list[dict]:
    """Pre-training runs one after another, or fine-tuning runs (configs alike but for `tam.train.multiseed.VARY`)
    as one `fit_many` (results equal to separate runs), quietly, on one torch thread (the linear baseline's BLAS
    follows it); each run's results plus `seconds`: the group's wall seconds shared equally among its runs."""
    import torch

    torch.set_num_threads(1)  # the linear baseline's BLAS follows it (tam.eval.linear)
    t0, c0 = time.perf_counter(), cpu_seconds()
    if kind == "pretrain":
        from tam.train.pretrain import pretrain
        out = [pretrain(cfg, run_dir, log=lambda s: None) for cfg, run_dir in runs]
    else:
        from tam.train.multiseed import fit_many
        out = fit_many([c for c, _ in runs], [d for _, d in runs], [lambda s: None] * len(runs))
    seconds, cpu = (time.perf_counter() - t0) / len(runs), (cpu_seconds() - c0) / len(runs)
    return [{**r, "seconds": seconds, "cpu_seconds": cpu} for r in out]


def cpu_seconds(children: bool = False) -> float:
    """CPU seconds (user + system, every thread) this process has used; with `children`, also those of its ended
    and waited-for child processes (the world's rendering pool). A run's cost on a shared machine, where its wall
    time says how busy the machine was."""
    import resource

    r = [resource.getrusage(resource.RUSAGE_SELF)] + ([resource.getrusage(resource.RUSAGE_CHILDREN)] if children
                                                       else [])
    return sum(u.ru_utime + u.ru_stime for u in r)


def _job(args) -> list[dict]:
    """One job of `run_jobs` in a worker process: its runs' results, each with its name."""
    kind, named = args
    results = run_group(kind, [(cfg, run_dir) for _, cfg, run_dir in named])
    return [{**r, "name": name} for (name, _, _), r in zip(named, results, strict=True)]


GROUP_RUNS = 5  # fine-tuning runs of one table row per job (fit_many); smaller jobs balance the 2 processes
EPOCH_ROWS = 100  # the per-epoch cost beyond the training videos (evaluation, last.pt), in videos, for the ETA


def demo_jobs(pre: list, fits: list) -> list[dict]:
    """The jobs of stages 4-5: one per pre-training run, and the fine-tuning runs of one table row (the same
    config but the seed, labels file or pre-trained checkpoint: `tam.train.multiseed.batch_key`) in groups of up to
    GROUP_RUNS; each with the pre-training runs it waits for and its cost in epochs x training videos (the ETA)."""
    from tam.train.multiseed import batch_key

    jobs = [{"kind": "pretrain", "runs": [(n, c, d)], "needs": set(), "units": c.optim.epochs} for n, _, c, d in pre]
    made_by = {str(Path(d)): n for n, _, _, d in pre}
    rows: dict[str, list] = {}
    for name, _, cfg, run_dir in fits:
        rows.setdefault(batch_key(cfg), []).append((name, cfg, run_dir))
    for runs in rows.values():
        for i in range(0, len(runs), GROUP_RUNS):
            part = runs[i:i + GROUP_RUNS]
            needs = {made_by[str(Path(c.train.init_from).parent)] for _, c, _ in part if c.train.init_from}
            units = sum(c.optim.epochs * (_labelled_rows(Path(c.data.labels)) + EPOCH_ROWS) for _, c, _ in part)
            jobs.append({"kind": "fit", "runs": part, "needs": needs, "units": units})
    return jobs


def _labelled_rows(labels: Path) -> int:
    """Labelled videos of a labels file that are not test rows (training + validation): a run's cost per epoch."""
    head, *lines = labels.read_text(encoding="utf-8").splitlines()
    split = head.split(",").index("split") if "split" in head.split(",") else -1
    return sum(1 for ln in lines if ln and (split < 0 or ln.split(",")[split:split + 1] != ["test"]))


class _Progress:
    """Stage 4-5's progress lines: runs done, elapsed, and the time left estimated from the seconds per cost unit
    measured on the finished jobs of each kind (no estimate until a job of each kind still to run has finished);
    at most one line every `every` seconds (and always the last)."""

    def __init__(self, jobs: list[dict], workers: int, log, every: float = 10.0):
        self.jobs, self.workers, self.log, self.every = jobs, max(1, workers), log, every
        self.t0 = self.shown = time.perf_counter()
        self.spent = {"pretrain": [0.0, 0], "fit": [0.0, 0]}  # kind -> [worker seconds, units] of finished jobs
        self.started: dict[int, float] = {}
        self.done: set[int] = set()

    def start(self, i: int) -> None:
        self.started[i] = time.perf_counter()

    def finish(self, i: int) -> None:
        job, now = self.jobs[i], time.perf_counter()
        self.done.add(i)
        s = self.spent[job["kind"]]
        s[0] += now - self.started[i]
        s[1] += job["units"]
        if now - self.shown >= self.every or len(self.done) == len(self.jobs):
            self.shown = now
            self.log("      " + self.line(now))

    def left(self, now: float) -> float | None:
        """Wall seconds left: the work not finished (running jobs less their elapsed time) over the workers."""
        work = 0.0
        for i, job in enumerate(self.jobs):
            if i in self.done:
                continue
            seconds, units = self.spent[job["kind"]]
            if not units:
                return None
            work += max(0.0, job["units"] * seconds / units - (now - self.started.get(i, now)))
        return work / self.workers

    def line(self, now: float) -> str:
        runs = sum(len(self.jobs[i]["runs"]) for i in self.done)
        total = sum(len(j["runs"]) for j in self.jobs)
        pre = [i for i, j in enumerate(self.jobs) if j["kind"] == "pretrain"]
        left = self.left(now)
        eta = ("estimating the time left" if left is None else "done" if runs == total
               else f"about {_clock(left)} left")
        return (f"{runs}/{total} runs done (pre-training {sum(i in self.done for i in pre)}/{len(pre)}), "
                f"{_clock(now - self.t0)} elapsed, {eta}")


def _clock(seconds: float) -> str:
    m, s = divmod(int(round(seconds)), 60)
    return f"{m} min {s:02d} s" if m else f"{s} s"


def start_order(jobs: list[dict]) -> list[int]:
    """Pre-training first, then the longest jobs, but the longest fine-tuning job that needs no pre-training second:
    one job of each kind then ends early, and the time left can be estimated from the start (`_Progress`). The
    processes stay busy to the end either way; the order changes no result."""
    order = sorted(range(len(jobs)), key=lambda i: (jobs[i]["kind"] != "pretrain", -jobs[i]["units"]))
    free = [i for i in order if jobs[i]["kind"] == "fit" and not jobs[i]["needs"]]
    if free and order[0] != free[0]:
        order.remove(free[0])
        order.insert(1, free[0])
    return order


def run_jobs(jobs: list[dict], workers: int, log, on_pretrained=None) -> dict[str, dict]:
    """Run `demo_jobs` in `workers` processes (in this process when 1): each job starts as soon as the pre-training
    runs it needs are done, in `start_order`; progress lines with the time left.
    `on_pretrained()` is called once, when the last pre-training run is done. Returns each run's results by name."""
    from concurrent.futures import FIRST_COMPLETED, wait

    progress = _Progress(jobs, workers, log)
    results: dict[str, dict] = {}
    waiting = start_order(jobs)
    pre_left = sum(j["kind"] == "pretrain" for j in jobs)

    def ready() -> list[int]:
        return [i for i in waiting if jobs[i]["needs"] <= results.keys()]

    def done(i: int, out: list[dict]) -> None:
        nonlocal pre_left
        results.update({r["name"]: r for r in out})
        progress.finish(i)
        if jobs[i]["kind"] == "pretrain":
            pre_left -= 1
            if not pre_left and on_pretrained is not None:
                on_pretrained()

    if pre_left == 0 and on_pretrained is not None:
        on_pretrained()
    if workers <= 1:
        while waiting:
            i = ready()[0]
            waiting.remove(i)
            progress.start(i)
            done(i, _job((jobs[i]["kind"], jobs[i]["runs"])))
        return results
    pool, running = _workers(workers), {}
    try:
        while waiting or running:
            for i in ready()[:max(0, workers - len(running))]:
                waiting.remove(i)
                progress.start(i)
                running[pool.submit(_job, (jobs[i]["kind"], jobs[i]["runs"]))] = i
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for f in finished:
                done(running.pop(f), f.result())
    finally:
        pool.shutdown(cancel_futures=True)
    return results


def build_world(out: Path, spec: PipelineSpec, log) -> dict:
    """Stage 1: render the videos, write their danmaku and the project's lexicon (resumes)."""
    from tam.demo.worlds.danmaku import DanmakuSpec, make_danmaku
    from tam.demo.worlds.videos import VideoWorldSpec, make_videos
    from tam.demo.worlds.words import write_lexicon

    t0, c0 = time.perf_counter(), cpu_seconds(children=True)
    world = out / "world"
    vspec = VideoWorldSpec(labelled=spec.labelled, unlabelled=spec.unlabelled, min_segments=spec.min_segments,
                           max_segments=spec.max_segments, test_fraction=spec.test_fraction)
    plans = make_videos(world, vspec, progress=True, workers=spec.workers)
    kinds = make_danmaku(world, plans, DanmakuSpec())
    write_lexicon(world / "lexicon.csv")
    return {"plans": plans, "comment_kinds": kinds, "seconds": time.perf_counter() - t0,
            "cpu_seconds": cpu_seconds(children=True) - c0}


def prepare_comments(out: Path, spec: PipelineSpec, log) -> dict:
    """Stage 2: `tam comments prepare` on the unlabelled videos' danmaku (all segments selected)."""
    from tam.comments.corpus import format_summary, prepare_corpus

    world = out / "world"
    stats = prepare_corpus([world / "danmaku" / "unlabelled"], out / "corpus", str(world / "lexicon.csv"),
                           n_per_polarity=(spec.unlabelled + 1) // 2, durations=str(world / "durations.csv"),
                           workers=1, progress=False)
    log(format_summary(stats))
    return stats


def _extract_shard(args) -> tuple[list, float]:
    """Extract every `count`-th video from the `index`-th into the store (one process, one CPU thread); the
    outcomes and the CPU seconds the shard took."""
    out, index, count = args
    c0 = cpu_seconds()
    import torch

    from tam.encoders.extract import ExtractOptions, find_videos, run_extraction, shard_jobs
    from tam.encoders.table import TINY, build_encoder

    torch.set_num_threads(1)
    encoders = {m: build_encoder(name, random_init=True) for m, name in TINY.items()}
    videos = Path(out) / "world" / "videos"
    jobs = find_videos([str(videos / "labelled")]) + find_videos([str(videos / "unlabelled")])
    outcomes, _ = run_extraction(shard_jobs(jobs, index, count), str(Path(out) / "features"), encoders,
                                 ExtractOptions(batch=32), progress=index == 0)
    return outcomes, cpu_seconds() - c0


def extract_features(out: Path, spec: PipelineSpec, log) -> dict:
    """Stage 3: what `tam extract --tiny --random-init` does, on every video into one store, as `workers`
    shards in parallel processes (resumes: videos already in the store are skipped)."""
    from tam.encoders.extract import summary
    from tam.encoders.table import TINY
    from tam.features.store import FeatureStore

    t0 = time.perf_counter()
    n = max(1, spec.workers)
    if n == 1:
        shards = [_extract_shard((out, 0, 1))]
    else:
        with _workers(n) as pool:
            shards = list(pool.map(_extract_shard, [(out, i, n) for i in range(n)]))
    outcomes = [o for part, _ in shards for o in part]
    wall = time.perf_counter() - t0
    log(summary(outcomes, wall, FeatureStore.open(out / "features").manifest))
    return {"videos": len(outcomes), "written": sum(o.status == "done" for o in outcomes),
            "resumed": sum(o.status == "skipped" for o in outcomes),
            "failed": [o.error for o in outcomes if o.status == "failed"], "segments": sum(o.T for o in outcomes),
            "encoders": dict(TINY), "random_init": True, "seconds": wall, "cpu_seconds": sum(c for _, c in shards)}


def run_pipeline(out: str | Path, spec: PipelineSpec, log=print) -> dict:
    """World -> comments prepare -> extract -> pre-train -> fine-tune -> evaluate -> report folder."""
    from tam.demo.report import write_report

    out = Path(out)
    t0 = time.perf_counter()
    log(f"[1/6] synthetic world: {spec.labelled} labelled + {spec.unlabelled} unlabelled videos -> {out / 'world'}")
    world = build_world(out, spec, log)
    log("[2/6] comments prepare (the unlabelled videos' danmaku)")
    c1 = cpu_seconds()
    corpus = prepare_comments(out, spec, log)
    comments_cpu = cpu_seconds() - c1
    log("[3/6] extract features with tiny RANDOM-INIT encoders (NOT real features: a demo of the pipeline)")
    extraction = extract_features(out, spec, log)
    for s in spec.small_seeds:
        small_labels(spec, out, s)
    pre_jobs, fit_jobs = pipeline_configs(spec, out)
    jobs = demo_jobs(pre_jobs, fit_jobs)
    log(f"[4/6] TSC pre-training: {len(pre_jobs)} run(s), {spec.pretrain_epochs} epochs; beside it the fine-tuning "
        f"runs that do not start from it ({spec.workers} processes, {len(jobs)} jobs)")
    t1 = time.perf_counter()
    t2 = [t1]

    def pretrained() -> None:
        t2[0] = time.perf_counter()
        log(f"[5/6] fine-tuning and evaluation: {len(fit_jobs)} runs ({spec.epochs} epochs; the seeds of a table row "
            "as one process, tam.train.multiseed)")

    runs = run_jobs(jobs, spec.workers, log, pretrained)
    pre = {n: runs[n] for n, *_ in pre_jobs}
    fits = {n: runs[n] for n, *_ in fit_jobs}
    summary = pipeline_summary(spec, world, corpus, extraction, pre, fits)
    summary["seconds_by_stage"] = {"world": world["seconds"], "comments": corpus["seconds"],
                                   "extraction": extraction["seconds"], "pre-training": t2[0] - t1,
                                   "fine-tuning": time.perf_counter() - t2[0]}
    summary["cpu_seconds_by_stage"] = {"world": world["cpu_seconds"], "comments": comments_cpu,
                                       "extraction": extraction["cpu_seconds"],
                                       "pre-training": sum(r["cpu_seconds"] for r in pre.values()),
                                       "fine-tuning": sum(r["cpu_seconds"] for r in fits.values())}
    summary["seconds"] = time.perf_counter() - t0
    log("[6/6] report")
    paths = write_report(out, summary)
    write_json(out / "results.json", summary)
    log("\n" + table2(summary).split("\n\nExpectations")[0])
    log(paths["text"])
    log("seconds: " + ", ".join(f"{k} {v:.0f}" for k, v in summary["seconds_by_stage"].items()))
    log(cpu_line(summary["cpu_seconds_by_stage"], spec.workers))
    log(f"report: {paths['html']}  (and {paths['md']}; {summary['seconds']:.0f} s in all)")
    return summary


def cpu_line(cpu: dict[str, float], workers: int) -> str:
    """The stages' CPU seconds and what they allow: their sum over `workers` processes is the shortest wall time
    the stages could take with every process busy throughout."""
    total = sum(cpu.values())
    return ("CPU seconds: " + ", ".join(f"{k} {v:.0f}" for k, v in cpu.items())
            + f"; {total:.0f} in all, at least {total / max(1, workers):.0f} s of wall time on {workers} processes")


def pipeline_summary(spec: PipelineSpec, world: dict, corpus: dict, extraction: dict, pre: dict, fits: dict) -> dict:
    """Everything the report shows, as plain JSON: per-table rows of mean ± std over seeds, stats, curves."""
    from dataclasses import asdict

    def group(prefix: str, seeds: list[int] | None = None) -> list[dict]:
        return [fits[f"{prefix}-seed{s}"] for s in (spec.seeds if seeds is None else seeds)]

    fusion = {f: group(f) for f in spec.fusions}
    subsets = {m: group(f"ctm-{m}", spec.seeds[:spec.subset_seeds]) for m in spec.subsets}
    if "ctm" in spec.fusions:
        subsets["image+motion+audio"] = fusion["ctm"]
    pretrained = {"no pre-training": group("ctm")} if "ctm" in spec.fusions else {}
    pretrained["TSC pre-training"] = group("ctm-pretrained")
    first = next(iter(fits.values()))
    kinds = world["comment_kinds"]
    return {
        **summarise(fusion, DemoSpec(seeds=spec.seeds, epochs=spec.epochs, d=spec.d, layers=spec.layers,
                                     heads=spec.heads, T=spec.T)),
        "spec": asdict(spec), "subsets": _rows(subsets), "pretraining": _rows(pretrained),
        "pretrain_runs": {k: {"heldout": v["heldout"], "baseline": v["baseline"], "clips": v["clips"],
                              "comments": v["comments"]} for k, v in pre.items()},
        "regression": _regression([fits[f"ctm-va-seed{s}"] for s in spec.seeds]),
        "corpus": corpus, "comment_kinds": kinds, "extraction": extraction, "world_seconds": world["seconds"],
        "classes": first.get("classes", []),
        "runs": {k: {"test": v["test"], "val": v["val"], "best_epoch": v["best_epoch"], "seconds": v["seconds"],
                     "cpu_seconds": v.get("cpu_seconds"), "confusion": v.get("confusion")} for k, v in fits.items()},
        "fusion_diffs": _paired(fusion, "ctm") if "ctm" in fusion else {},
        "small": {r: _small(spec, group, r) for r in spec.readouts},
    }


def _interval(iv) -> dict:
    return {"mean": iv.mean, "low": iv.low, "high": iv.high, "n": iv.n}


def _paired(groups: dict[str, list[dict]], ref: str) -> dict:
    """Paired difference of test accuracy `ref` − each other group over the shared seeds: mean and 95% t-interval."""
    from tam.eval.statistics import paired_difference_ci

    a = [r["test"]["accuracy"] for r in groups[ref]]
    return {k: _interval(paired_difference_ci(a, [r["test"]["accuracy"] for r in rs]))
            for k, rs in groups.items() if k != ref}


def _small(spec: PipelineSpec, group, readout: str) -> dict:
    """Pre-trained vs scratch at `spec.small_labels` labelled videos for one readout, with the paired interval."""
    arms = {arm: group(f"small-{readout}-{arm}", spec.small_seeds) for arm in ("scratch", "pretrained")}
    return {**_rows(arms), "diff": _paired({"pretrained": arms["pretrained"], "scratch": arms["scratch"]},
                                           "pretrained")["scratch"], "n": arms["scratch"][0]["n"]}


def _regression(rs: list[dict]) -> dict:
    """Valence / arousal MSE and PCC of the regression runs, mean and std over seeds, with the baseline."""
    keys = list(rs[0]["test"])
    vals = {k: np.array([r["test"][k] for r in rs], dtype=float) for k in keys}
    def safe(x: float) -> float | None:
        return None if np.isnan(x) else float(x)

    return {"mean": {k: safe(np.mean(v)) for k, v in vals.items()},
            "std": {k: safe(v.std(ddof=1)) if len(v) > 1 else 0.0 for k, v in vals.items()},
            "runs": len(rs), "baseline": rs[0]["baseline"], "n": rs[0]["n"]}


def _rows(groups: dict[str, list[dict]]) -> dict:
    rows = {}
    for name, rs in groups.items():
        acc = np.array([r["test"]["accuracy"] for r in rs])
        f1 = np.array([r["test"]["macro_f1"] for r in rs])
        ci = mean_ci(acc)
        rows[name] = {"accuracy_mean": float(acc.mean()), "accuracy_std": float(acc.std(ddof=1)) if len(acc) > 1
                      else 0.0, "macro_f1_mean": float(f1.mean()), "runs": len(rs), "accuracy": acc.tolist(),
                      "accuracy_ci": [ci.low, ci.high]}
    return rows
