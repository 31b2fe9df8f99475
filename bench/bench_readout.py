"""Readout and fine-tuning after TSC pre-training (docs/pretraining.md "Readout and fine-tuning").

On the pre-training world of `tam.demo.worlds.pretrain` (unlabelled videos with comments; the labelled world of
`tam.demo.worlds.features`, whose label is the scene after the audio cue and the movement at it), per seed:

1. pre-train the fusion module (EWP + ATP);
2. linear probes (scikit-learn logistic regression on the few labelled training videos, scored on the test
   videos) on the frozen fusion output: f^0, f at the cued segment t*, at t*+1, both, the mean of the segments;
   the same on a randomly initialised fusion (the control); and how much of f^0's attention (last layer, inner
   pairs, mean over heads and modalities) falls on t* and t*+1, against the uniform share 2/T_v;
3. fine-tune with the paper's rates (head 1e-4, fusion 1e-5) from scratch and from the pre-trained fusion for
   each readout (f0, mean, attentive), and the alternatives (frozen-then-unfrozen fusion, layer-wise decay,
   one lr for both);
4. the paired difference pre-trained − scratch per readout over seeds: mean and 95% t-interval.

`python -m bench readout` runs the default sizes (about 25 min on 2 idle cores); `python bench/bench_readout.py
--out DIR --seeds 0 1 2 3 4 [--quick]` runs it standalone and resumes (finished runs are reused).
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np


@dataclass
class ReadoutSpec:
    world: str = "power"  # power: the pretrain world of tam.demo.worlds.power; features: worlds.features + pretrain
    train_labelled: int = 40  # labelled videos for fine-tuning (15% of them carved for validation)
    test: int = 1000
    unlabelled: int = 600
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2, 3, 4])
    d: int = 32
    layers: int = 2
    heads: int = 4
    T: int = 16
    pretrain_epochs: int = 10
    pretrain_lr: float = 1e-3
    finetune_epochs: int = 50
    head_lr: float = 1e-4
    fusion_lr: float = 1e-5
    batch_size: int = 8
    workers: int = 2
    arms: list[str] = field(default_factory=lambda: list(ARMS))


ARMS = {  # name -> (readout, pre-trained, optim overrides)
    "scratch-f0": ("f0", False, {}),
    "pre-f0": ("f0", True, {}),
    "scratch-attentive": ("attentive", False, {}),
    "pre-attentive": ("attentive", True, {}),
    "scratch-mean": ("mean", False, {}),
    "pre-mean": ("mean", True, {}),
    "pre-attentive-freeze10": ("attentive", True, {"freeze_fusion_epochs": 10}),
    "pre-attentive-decay0.5": ("attentive", True, {"layer_decay": 0.5}),
    "pre-attentive-fusion1e-4": ("attentive", True, {"fusion_lr": 1e-4}),
    "pre-f0-fusion1e-4": ("f0", True, {"fusion_lr": 1e-4}),
    "scratch-attentive-lr1e-3": ("attentive", False, {"lr": 1e-3}),
    "pre-attentive-lr1e-3": ("attentive", True, {"lr": 1e-3}),
}


def worlds(out: Path, spec: ReadoutSpec):
    if spec.world == "power":
        from tam.demo.worlds.power import CorpusSpec, PowerSpec, make_power_world, make_pretrain_corpus

        lab = PowerSpec(world="pretrain", n_train=spec.train_labelled, n_test=spec.test,
                        min_segments=min(10, spec.T), max_segments=spec.T)
        store, labels = make_power_world(out / "labelled", lab)
        make_pretrain_corpus(out / "unlabelled", lab, CorpusSpec(n_videos=spec.unlabelled))
        return lab, store, labels
    from tam.demo.worlds.features import WorldSpec, make_world
    from tam.demo.worlds.pretrain import CommentWorldSpec, make_comment_world

    n = spec.train_labelled + spec.test
    lab = WorldSpec(n_videos=n, min_segments=6, max_segments=spec.T, test_fraction=spec.test / n)
    store, labels = make_world(out / "labelled", lab)
    make_comment_world(out / "unlabelled", WorldSpec(min_segments=6, max_segments=spec.T),
                       CommentWorldSpec(n_videos=spec.unlabelled))
    return lab, store, labels


def _model(spec: ReadoutSpec, readout: str = "f0"):
    from tam.config import ModelConfig

    mods = ["image", "audio"] if spec.world == "power" else ["image", "motion", "audio"]
    return ModelConfig(modalities=mods, d=spec.d, layers=spec.layers, heads=spec.heads, T=spec.T, dropout=0.1,
                       readout=readout)


def _classes(spec: ReadoutSpec) -> list[str]:
    if spec.world == "power":
        from tam.demo.worlds.power import CLASSES
        return CLASSES["pretrain"]
    from tam.demo.worlds.features import CLASSES
    return list(CLASSES)


def _train(seed: int, init: str = ""):
    from tam.config import TrainConfig

    kw = {"threads": 1} if "threads" in TrainConfig.__dataclass_fields__ else {}
    return TrainConfig(seed=seed, num_workers=0, device="cpu", progress=False, init_from=init, **kw)


def pretrain_config(out: Path, spec: ReadoutSpec, seed: int):
    from tam.config import OptimConfig
    from tam.train.pretrain import DecoderConfig, LossConfig, PretrainConfig, PretrainDataConfig

    return PretrainConfig(model=_model(spec), decoder=DecoderConfig(layers=1, heads=spec.heads),
                          data=PretrainDataConfig(store=str(out / "unlabelled" / "store"),
                                                  corpus=str(out / "unlabelled" / "corpus"), comments_per_clip=32),
                          loss=LossConfig(), train=_train(seed),
                          optim=OptimConfig(optimizer="adam", lr=spec.pretrain_lr, weight_decay=0.0,
                                            batch_size=16, epochs=spec.pretrain_epochs))


def finetune_config(out: Path, spec: ReadoutSpec, arm: str, seed: int):
    from tam.config import DataConfig, OptimConfig, RunConfig

    readout, pre, over = ARMS[arm]
    init = str(out / "runs" / f"pretrain-seed{seed}" / "pretrained.safetensors") if pre else ""
    optim = OptimConfig(**{"lr": spec.head_lr, "fusion_lr": spec.fusion_lr if pre else 0.0,
                           "batch_size": spec.batch_size, "epochs": spec.finetune_epochs, **over})
    return RunConfig(model=_model(spec, readout), data=DataConfig(store=str(out / "labelled" / "store"),
                     labels=str(out / "labelled" / "labels.csv"), classes=_classes(spec)), optim=optim,
                     train=_train(seed, init))


def _job(args) -> dict:
    from tam.demo.run import run_one

    kind, cfg, run_dir = args
    return {"run": Path(run_dir).name, **run_one(kind, cfg, run_dir)}


def _pool(jobs: list, workers: int) -> list[dict]:
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    if workers <= 1:
        return [_job(j) for j in jobs]
    with ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn")) as pool:
        return list(pool.map(_job, jobs))


# ---------------------------------------------------------------- probes on the frozen fusion output

def _cues(store, videos: list[str], lab) -> np.ndarray:
    """The audio cue's segment t* of each video, read back from its features (the world's cue direction)."""
    if hasattr(lab, "world"):  # a power world
        from tam.demo.worlds.power import detect, world_dirs
        dirs = world_dirs(lab)
        return np.array([detect(store.read(v).features, dirs, lab.amp)["audio"][0][0] for v in videos])
    from tam.demo.worlds.pretrain import detect_events, world_dirs

    dirs, _ = world_dirs(lab)
    return np.array([int(np.flatnonzero(detect_events(store.read(v).features, dirs, lab.amp)["cue"])[0])
                     for v in videos])


def fused(model, store, videos: list[str], modalities: list[str], T: int):
    """f [N, T+1, d], valid [N, T+1] and f^0's last-layer attention over segments [N, T] (inner pairs)."""
    import torch

    from tam.features.clips import ClipDataset, collate
    from tam.models.fusion import attention_maps

    ds = ClipDataset(store, videos, np.zeros(len(videos)), modalities, T, train=False)
    fs, vs, att = [], [], []
    model.eval()
    with torch.no_grad():
        for i in range(0, len(videos), 64):
            b = collate([ds[(j, 0)] for j in range(i, min(i + 64, len(videos)))])
            x = model.norm(b.x, b.valid) if hasattr(model, "norm") else b.x
            fo = model.fusion(x, b.valid, b.present)
            maps = attention_maps(model.fusion, x, b.valid, b.present)[-1]  # [B, P, h, L, L] last layer
            M = len(modalities)
            att.append(maps[:, :M, :, 0, 1:].mean((1, 2)))  # f^0 row, inner pairs, mean over heads: [B, T]
            fs.append(fo.f)
            vs.append(fo.valid)
    return torch.cat(fs).numpy(), torch.cat(vs).numpy(), torch.cat(att).numpy()


def probes(out: Path, spec: ReadoutSpec, lab, seed: int, pretrained: bool) -> dict:
    """Linear-probe test accuracy of each view of f, and f^0's attention on the cued segments."""
    import torch
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from tam.datasets.labels import read_labels
    from tam.features.store import FeatureStore
    from tam.models.model import build_model
    from tam.train.loop import init_fusion

    store = FeatureStore.open(out / "labelled" / "store")
    classes = _classes(spec)
    labels = read_labels(str(out / "labelled" / "labels.csv"), "classification", classes)
    torch.manual_seed(seed)
    model = build_model(_model(spec), store.manifest.dims, len(classes))
    if pretrained:
        init_fusion(model, str(out / "runs" / f"pretrain-seed{seed}" / "pretrained.safetensors"), store)
    mods = model.modalities
    res = {}
    split = {s: [i for i, x in enumerate(labels.split) if (x == "test") == (s == "test")] for s in ("train", "test")}
    views = {}
    for s, idx in split.items():
        vids = [labels.videos[i] for i in idx]
        f, valid, att = fused(model, store, vids, mods, spec.T)
        t = _cues(store, vids, lab) + 1  # token index of t* (f^0 is token 0)
        n = np.arange(len(vids))
        segs = valid[:, 1:].sum(1)
        mean = (f[:, 1:] * valid[:, 1:, None]).sum(1) / segs[:, None]
        t1 = np.minimum(t + 1, segs)  # t*+1 (the last segment when the cue is at the end)
        views[s] = {"f0": f[:, 0], "f[t*]": f[n, t], "f[t*+1]": f[n, t1],
                    "f[t*] ⊕ f[t*+1]": np.concatenate([f[n, t], f[n, t1]], 1), "mean of f": mean,
                    "y": labels.targets[idx]}
        if s == "test":
            res["f0_attention_on_cue"] = float(np.mean(att[n, t - 1] + att[n, t1 - 1] * (t1 != t)))
            res["uniform_share"] = float(np.mean(2 / segs))
    for k in views["train"]:
        if k == "y":
            continue
        clf = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=2000))
        clf.fit(views["train"][k], views["train"]["y"])
        res[k] = float((clf.predict(views["test"][k]) == views["test"]["y"]).mean())
    return res


def t_interval(x: np.ndarray) -> tuple[float, float, float]:
    """Mean and 95% t-interval of the mean."""
    from scipy import stats

    m = float(np.mean(x))
    if len(x) < 2:
        return m, float("nan"), float("nan")
    h = float(stats.t.ppf(0.975, len(x) - 1) * np.std(x, ddof=1) / np.sqrt(len(x)))
    return m, m - h, m + h


def summarise(acc: dict[str, dict[int, float]], probe: dict, seeds: list[int]) -> str:
    lines = ["| arm | mean test accuracy | 95% CI | per seed |", "|---|---:|---:|---|"]
    for arm, by in acc.items():
        v = np.array([by[s] for s in seeds if s in by])
        m, lo, hi = t_interval(v)
        lines.append(f"| {arm} | {m:.3f} | [{lo:.3f}, {hi:.3f}] | " + " ".join(f"{x:.3f}" for x in v) + " |")
    lines += ["", "| paired difference (same seeds) | mean | 95% CI | beats the CI? |", "|---|---:|---:|---|"]
    for arm in acc:
        base = "scratch-" + ARMS[arm][0] if ARMS[arm][1] else None
        if base not in acc:
            continue
        common = [s for s in seeds if s in acc[arm] and s in acc[base]]
        diff = np.array([acc[arm][s] - acc[base][s] for s in common])
        m, lo, hi = t_interval(diff)
        lines.append(f"| {arm} − {base} | {m:+.3f} | [{lo:+.3f}, {hi:+.3f}] | {'YES' if lo > 0 else 'NO'} |")
    if probe:
        keys = [k for k in next(iter(probe.values())) if k not in ("f0_attention_on_cue", "uniform_share")]
        lines += ["", "| linear probe (test accuracy) | " + " | ".join(keys) + " | f^0 attention on t*, t*+1 "
                  "(uniform) |", "|---|" + "---:|" * (len(keys) + 1)]
        for kind in ("random init", "pre-trained"):
            rows = [probe[(kind, s)] for s in seeds if (kind, s) in probe]
            if not rows:
                continue
            cells = []
            for k in keys:
                m, lo, hi = t_interval(np.array([r[k] for r in rows]))
                cells.append(f"{m:.3f} [{lo:.3f}, {hi:.3f}]")
            a = np.mean([r["f0_attention_on_cue"] for r in rows])
            u = np.mean([r["uniform_share"] for r in rows])
            lines.append(f"| {kind} | " + " | ".join(cells) + f" | {a:.3f} ({u:.3f}) |")
    return "\n".join(lines)


def experiment(out: str | Path, spec: ReadoutSpec, log=print) -> dict:
    from tam.io import write_json, write_text

    out = Path(out)
    t0 = time.perf_counter()
    lab, _, _ = worlds(out, spec)
    log(f"worlds ready ({time.perf_counter() - t0:.0f} s)")
    pre = _pool([("pretrain", pretrain_config(out, spec, s), out / "runs" / f"pretrain-seed{s}")
                 for s in spec.seeds], spec.workers)
    log(f"pre-training done ({time.perf_counter() - t0:.0f} s)")
    cache = out / "probes.json"
    done = json.loads(cache.read_text(encoding="utf-8")) if cache.is_file() else {}
    probe = {}
    for s in spec.seeds:
        for kind, p in (("random init", False), ("pre-trained", True)):
            key = f"{kind}|{s}"
            if key not in done:
                done[key] = probes(out, spec, lab, s, p)
                write_json(cache, done)
            probe[(kind, s)] = done[key]
    log(f"probes done ({time.perf_counter() - t0:.0f} s)")
    jobs = [("fit", finetune_config(out, spec, a, s), out / "runs" / f"{a}-seed{s}") for a in spec.arms
            for s in spec.seeds]
    fits = _pool(jobs, spec.workers)
    acc: dict[str, dict[int, float]] = {a: {} for a in spec.arms}
    for (_, cfg, _), r in zip(jobs, fits):
        arm = r["run"].rsplit("-seed", 1)[0]
        acc[arm][cfg.train.seed] = r["test"]["accuracy"]
    table = summarise(acc, probe, spec.seeds)
    heldout = [{k: p["heldout"][k] for k in ("ewp_top1", "atp_top1", "atp_chance")} | {
        "ewp_baseline": p["baseline"]["ewp_top1"]} for p in pre]
    result = {"spec": asdict(spec), "accuracy": acc, "probes": {f"{k}|{s}": v for (k, s), v in probe.items()},
              "pretrain_heldout": heldout, "seconds": time.perf_counter() - t0,
              "best_epochs": {r["run"]: r["best_epoch"] for r in fits}}
    write_json(out / "readout.json", result)
    write_text(out / "readout.md", table + "\n")
    log(table)
    log("held-out pre-training: " + "; ".join(f"EWP {h['ewp_top1']:.3f} ({h['ewp_baseline']:.3f}) ATP "
                                              f"{h['atp_top1']:.3f} ({h['atp_chance']:.3f})" for h in heldout))
    return result


def run() -> dict:
    r = experiment("/tmp/bench_readout", ReadoutSpec())
    out = {"seconds": round(r["seconds"], 1)}
    for arm, by in r["accuracy"].items():
        out[f"{arm}.accuracy"] = round(float(np.mean(list(by.values()))), 4)
    return out


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    ap.add_argument("--arms", nargs="+", default=list(ARMS))
    ap.add_argument("--pretrain-epochs", type=int, default=10)
    ap.add_argument("--finetune-epochs", type=int, default=50)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--world", choices=["power", "features"], default="power")
    ap.add_argument("--unlabelled", type=int, default=600)
    ap.add_argument("--d", type=int, default=32)
    a = ap.parse_args()
    sp = ReadoutSpec(world=a.world, unlabelled=a.unlabelled, d=a.d, seeds=a.seeds, arms=a.arms,
                     pretrain_epochs=a.pretrain_epochs, finetune_epochs=a.finetune_epochs, workers=a.workers)
    if a.quick:
        sp = ReadoutSpec(world=a.world, seeds=a.seeds, arms=a.arms, train_labelled=24, test=40, unlabelled=30,
                         d=16, layers=1, heads=2, T=8, pretrain_epochs=1, finetune_epochs=2, workers=1)
    experiment(a.out, sp)
