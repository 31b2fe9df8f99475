"""One training loop for 1 or N processes: fit on train, select on validation, test once.

A run directory holds:
    config.yaml            the resolved config (with the code version)
    features_manifest.json the manifest of the feature store the run read
    skipped.csv            label rows whose video has no features (counted and skipped)
    metrics.csv, tb/       per-epoch metrics (CSV and TensorBoard)
    best.safetensors/.json the best model on validation (rebuilds alone: `load_model(run_dir)`)
    last.pt                resume state (weights, optimiser, scheduler, RNG, epoch); `fit` resumes from it
    results.json, results.md   final validation and test metrics beside the trivial baseline
"""

from __future__ import annotations

import csv
import io
import math
import sys
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import torch
import yaml
from torch.utils.data import DataLoader
from tqdm import tqdm

from tam.config import RunConfig, changed_fields, dump_config, to_dict
from tam.datasets.labels import Labels, carve_validation, read_labels
from tam.errors import TamError, first_line
from tam.eval.linear import linear_baseline, loses_to
from tam.eval.metrics import classification_metrics, confusion_matrix, regression_metrics, selection_score
from tam.features.clips import ClipDataset, GlobalBatchSampler, collate
from tam.features.normalize import compute_stats
from tam.features.store import FeatureStore, Manifest
from tam.io import read_json, write_json, write_text
from tam.models.model import build_model
from tam.models.stochastic import sample_rng
from tam.train import distributed
from tam.train.augment import build_augment, loss_sum
from tam.train.checkpoint import (
    load_state,
    restore_state,
    safetensors_header,
    save_model,
    save_state,
)
from tam.train.groups import drop_frozen_grads, param_groups
from tam.train.readout_init import init_readout
from tam.train.schedule import EMA, build_scheduler, should_stop
from tam.train.threads import set_threads
from tam.version import code_version


@dataclass
class Data:
    store: FeatureStore
    labels: Labels  # after dropping videos without features
    skipped: list[str]
    train: Labels
    val: Labels
    test: Labels


def prepare_data(cfg: RunConfig, store: FeatureStore | None = None) -> Data:
    """Open the store (or use `store`, opened from cfg.data.store), read labels, drop (and list) videos without
    features, carve validation."""
    for key, option in (("store", "--store FOLDER"), ("labels", "--labels CSV")):
        if not getattr(cfg.data, key):
            raise TamError(f"no {key} given: pass {option} (or set data.{key} in --config)")
    store = store or FeatureStore.open(cfg.data.store)
    missing = [m for m in cfg.model.modalities if m not in store.manifest.dims]
    if missing:
        raise TamError(f"{cfg.data.store}: the store has no {missing} features (it has {sorted(store.manifest.dims)})")
    for m, name in cfg.data.encoders.items():
        have = store.manifest.encoders.get(m)
        if have is None or have.name != name:
            raise TamError(f"{cfg.data.store}: the config expects {m} features from {name!r}, the store's manifest "
                           f"says {have.name if have else 'none'!r}")
    labels = read_labels(cfg.data.labels, cfg.data.task, cfg.data.classes)
    store.require_valid(labels.videos)  # damaged entries are named now, not as a traceback after the epochs
    have = set(store.videos())
    keep = [i for i, v in enumerate(labels.videos) if v in have]
    skipped = [v for v in labels.videos if v not in have]
    if not keep:
        raise TamError(no_overlap(cfg.data.labels, labels.videos, cfg.data.store, have))
    labels = carve_validation(labels.take(keep), cfg.data.val_fraction, cfg.data.split_seed)
    parts = {s: labels.subset(s) for s in ("train", "val", "test")}
    for s in ("train", "val"):
        if len(parts[s]) == 0:
            raise TamError(f"{cfg.data.labels}: the {s} split is empty after skipping {len(skipped)} videos "
                           "without features")
    return Data(store, labels, skipped, parts["train"], parts["val"], parts["test"])


def no_overlap(labels_path: str, videos: list[str], store_path: str, have: set[str]) -> str:
    """No labelled video has features: say so with example ids from each side."""
    return (f"{labels_path}: none of its {len(videos)} videos has features in {store_path} (labels e.g. "
            f"{', '.join(videos[:3])}; store e.g. {', '.join(sorted(have)[:3]) or 'none'}): the video column must "
            f"hold the store's ids (`tam store {store_path} --list`)")


def target_stats(train: Labels) -> tuple[list[float], list[float]]:
    """Regression targets are standardised with training statistics (undone at prediction)."""
    if train.task != "regression":
        return [], []
    return train.targets.mean(0).tolist(), (train.targets.std(0) + 1e-8).tolist()


def autocast(device: torch.device):
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")


@torch.no_grad()
def predict(model, ds: ClipDataset, device: torch.device, d: distributed.Dist, batch_size: int,
            mean: list[float], std: list[float], task: str) -> np.ndarray:
    """Whole-video predictions: windows of T over each video, averaged (probabilities or values) per video."""
    model.eval()
    windows = ds.windows()[d.rank::d.world]
    rows, outs = [], []
    for i in range(0, len(windows), batch_size):
        b = collate([ds[w] for w in windows[i:i + batch_size]]).to(device)
        with autocast(device):
            out = model(b.x, b.valid, b.present).float()
        out = out.softmax(-1) if task == "classification" else out * out.new_tensor(std) + out.new_tensor(mean)
        rows.append(b.index.numpy())
        outs.append(out.cpu().numpy())
    local = (np.concatenate(rows) if rows else np.zeros(0, np.int64),
             np.concatenate(outs) if outs else np.zeros((0, 0), np.float32))
    width = model.head.fc.out_features
    sums, counts = np.zeros((len(ds), width)), np.zeros(len(ds))
    for r, o in distributed.gather_objects(d, local):
        if len(r):
            np.add.at(sums, r, o)
            np.add.at(counts, r, 1)
    return sums / counts[:, None]


def evaluate(task: str, targets: np.ndarray, pred: np.ndarray) -> dict:
    return classification_metrics(targets, pred) if task == "classification" else regression_metrics(targets, pred)


def baseline(train: Labels, test: Labels) -> dict:
    """The trivial baseline: majority training class, or the constant training mean."""
    if len(test) == 0:
        return {}
    if train.task == "classification":
        C = len(train.classes)
        probs = np.zeros((len(test), C))
        probs[:, np.bincount(train.targets, minlength=C).argmax()] = 1
        return {"name": "majority class", "test": classification_metrics(test.targets, probs)}
    const = np.broadcast_to(train.targets.mean(0), test.targets.shape)
    return {"name": "training mean", "test": regression_metrics(test.targets, const)}


def _json_safe(x):
    if isinstance(x, dict):
        return {k: _json_safe(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_json_safe(v) for v in x]
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def init_fusion(model, path: str, store: FeatureStore) -> None:
    """Load the `fusion.*` weights of a checkpoint (e.g. TSC pre-training) strictly into `model.fusion`.

    The checkpoint is untrusted input: its description and safetensors header are read with bounded reads and
    checked before any tensor is loaded; every problem is a one-line TamError naming the file.
    """
    from safetensors.torch import load_file

    path = Path(path)
    meta_path = path.with_suffix(".json")
    if not path.is_file() or not meta_path.is_file():
        raise TamError(f"{path}: no checkpoint to fine-tune from (need {path.name} and {meta_path.name})")
    meta = read_json(meta_path)
    if "features" in meta:
        store.check_matches(manifest_from(meta["features"], meta_path), f"the pre-trained checkpoint {path}")
    header = safetensors_header(path)
    want = {k: (v.dtype, tuple(v.shape)) for k, v in model.fusion.state_dict().items()}
    have = {k.removeprefix("fusion."): v for k, v in header.items() if k.startswith("fusion.")}
    if have != want:
        diff = sorted(set(have) ^ set(want)) or sorted(k for k in want if have[k] != want[k])
        raise TamError(f"{path}: fusion weights do not fit this model config (first difference: {diff[0]!r}; "
                       f"{len(diff)} in all)")
    try:
        state = {k.removeprefix("fusion."): v for k, v in load_file(str(path)).items() if k.startswith("fusion.")}
        model.fusion.load_state_dict(state, strict=True)
    except Exception as e:  # noqa: BLE001 - safetensors and torch raise several types for damaged files
        raise TamError(f"{path}: unreadable fine-tuning checkpoint ({first_line(e)})") from None


def manifest_from(obj, where: Path) -> Manifest:
    """A feature manifest recorded in a run or checkpoint file; a malformed one is a one-line TamError."""
    try:
        return Manifest.from_json(obj)
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise TamError(f"{where}: malformed feature manifest ({first_line(e)})") from None


def init_norm(model, cfg: RunConfig, data: Data) -> str:
    """Fill `model.norm`: the statistics of the pre-trained checkpoint when fine-tuning from one that has them
    (the fusion was trained on inputs normalised so; `train.init_norm: checkpoint`), else those of the training rows
    (`train.init_norm: data`: the target's own statistics). Returns where they came from; the run saves them.
    """
    if cfg.train.init_from and cfg.train.init_norm == "checkpoint":
        from safetensors import safe_open

        try:
            with safe_open(cfg.train.init_from, "pt") as f:
                state = {k.removeprefix("norm."): f.get_tensor(k) for k in f.keys() if k.startswith("norm.")}
            if state:
                model.norm.load_state_dict(state, strict=True)
        except Exception as e:  # noqa: BLE001 - damaged file or statistics of another shape
            raise TamError(f"{cfg.train.init_from}: unusable feature statistics ({first_line(e)})") from None
        if state:
            return f"statistics of the pre-trained {cfg.train.init_from} ({model.norm.mode})"
    mode = cfg.data.normalize
    stats = compute_stats(data.store, data.train.videos, cfg.model.modalities, mode) if mode != "none" else {}
    model.norm.set_stats(stats, mode, cfg.data.normalize_clip)
    return f"{mode}, clip {cfg.data.normalize_clip:g}, training rows" if mode != "none" else "none"


def video_loss(task: str, targets: np.ndarray, pred: np.ndarray, mean: list[float], std: list[float]) -> float:
    """The training loss on whole-video predictions: NLL of the averaged probabilities, or the MSE of
    standardised targets (comparable across epochs and between the training subset and validation)."""
    if not len(targets):
        return math.nan
    if task == "classification":
        return float(-np.log(np.clip(pred[np.arange(len(targets)), targets], 1e-12, None)).mean())
    m, s = np.asarray(mean), np.asarray(std)
    return float((((pred - m) / s - (targets - m) / s) ** 2).mean())


MIN_VAL = 20  # fewer validation videos than this: one video moves accuracy by > 5 points


def small_validation(cfg: RunConfig, data: Data) -> list[str]:
    """A warning when the validation split is too small to select an epoch on (none with train.select=last: no
    epoch is selected)."""
    n = len(data.val)
    if n >= MIN_VAL or cfg.train.select == "last":
        return []
    head = f"the validation split has only {n} videos (one video moves accuracy by {100 / n:.0f} points)"
    if cfg.train.select == "loss":
        return [f"{head}: even its loss (train.select=loss) is a noisy choice of epoch. Consider a larger "
                "data.val_fraction, train.select=last (a fixed schedule), or k-fold on the training rows "
                "(docs/training.md, Model selection)"]
    return [f"{head}: too few to select an epoch on. Consider train.select=loss (selection on the smoother "
            "validation loss), a larger data.val_fraction, or k-fold on the training rows (docs/training.md, "
            "Model selection)"]


def diagnose(task: str, rows: list[dict], val_baseline: dict, n_val: int = 0) -> list[str]:
    """Memorisation: the training loss collapsed while the validation metric stayed near its trivial baseline
    ("near": within 2 standard errors of the baseline on `n_val` videos, at least 5 accuracy points / 0.1 PCC;
    the best of many noisy epochs is itself biased upwards)."""
    if len(rows) < 2 or not val_baseline:
        return []
    loss = [float(r["train_loss"]) for r in rows]
    key = "val_accuracy" if task == "classification" else None
    if key:
        best, base = max(float(r[key]) for r in rows), val_baseline["accuracy"]
        margin = max(0.05, 2 * math.sqrt(base * (1 - base) / n_val) if n_val else 0.0)
    else:
        best = max(np.nanmean([_num(r["val_valence_pcc"]), _num(r["val_arousal_pcc"])]) for r in rows)
        base = 0.0  # the constant-mean baseline has no correlation
        margin = max(0.1, 2 / math.sqrt(n_val - 3) if n_val > 3 else 0.0)
    if not (loss[0] > 0 and min(loss) < 0.1 * loss[0]) or best >= base + margin:
        return []
    return [f"memorisation: the training loss fell from {loss[0]:.3g} to {min(loss):.3g} but the best validation "
            f"{'accuracy' if key else 'mean PCC'} is {best:.3f} against {base:.3f} for the trivial baseline: the "
            "model fits the training videos without learning what generalises (see curves.png)"]


class Run:
    """State of one training run (model, optimiser, data) and its steps."""

    def __init__(self, cfg: RunConfig, run_dir: Path, d: distributed.Dist, device: torch.device, data: Data):
        self.cfg, self.run_dir, self.d, self.device, self.data = cfg, run_dir, d, device, data
        task = cfg.data.task
        self.outputs = len(data.labels.classes) if task == "classification" else 2
        torch.manual_seed(cfg.train.seed)
        self.model = build_model(cfg.model, data.store.manifest.dims, self.outputs).to(device)
        self.mean, self.std = target_stats(data.train)
        if cfg.train.init_from:
            init_fusion(self.model, cfg.train.init_from, data.store)
            init_readout(self.model, cfg.train.init_from)  # an attentive readout starts at the pre-training's query
        self.norm_source = init_norm(self.model, cfg, data)
        n_sub = min(len(data.train), cfg.train.train_eval_videos)
        sub = np.sort(np.random.default_rng([cfg.train.seed, 7]).permutation(len(data.train))[:n_sub]).tolist()
        self.train_eval = data.train.take(sub)  # fixed training videos scored like validation (train curves)
        groups = param_groups(self.model, cfg.optim, cfg.model.layers, fine_tuning=bool(cfg.train.init_from))
        opt = torch.optim.AdamW if cfg.optim.optimizer == "adamw" else torch.optim.Adam
        self.opt = opt(groups, lr=cfg.optim.lr, weight_decay=cfg.optim.weight_decay)
        self.ddp = (torch.nn.parallel.DistributedDataParallel(self.model, device_ids=[device] if device.type == "cuda"
                                                              else None) if d.enabled else self.model)
        mods, T, seed = cfg.model.modalities, cfg.model.T, cfg.train.seed
        self.train_ds = ClipDataset(data.store, data.train.videos, data.train.targets, mods, T, seed, train=True,
                                    min_fraction=cfg.augment.crop_min_fraction, augment=build_augment(cfg))
        self.sampler = GlobalBatchSampler(len(data.train), cfg.optim.batch_size, seed, d.rank, d.world)
        self.sched = build_scheduler(self.opt, cfg.optim, len(self.sampler))  # per optimiser step
        self.ema = EMA(self.model, cfg.train.ema_decay) if cfg.train.ema_decay > 0 else None
        nw = cfg.train.num_workers
        # training batches are padded to T: a sample's random draws have one shape whatever shares its batch
        self.loader = DataLoader(self.train_ds, batch_sampler=self.sampler, collate_fn=partial(collate, pad_to=T),
                                 num_workers=nw, persistent_workers=nw > 0, pin_memory=device.type == "cuda",
                                 generator=torch.Generator().manual_seed(seed))
        self.start_epoch, self.best, self.best_epoch = 0, -math.inf, -1
        self.best_loss = math.inf
        self.data_wait = 0.0

    def meta(self, epoch: int) -> dict:
        cfg = self.cfg
        dims = self.data.store.manifest.dims
        return {"model": to_dict(cfg.model), "dims": {m: dims[m] for m in cfg.model.modalities},
                "outputs": self.outputs, "task": cfg.data.task, "classes": self.data.labels.classes,
                "target_mean": self.mean, "target_std": self.std, "epoch": epoch, "code_version": code_version(),
                "features": self.data.store.manifest.to_json()}

    def train_epoch(self, epoch: int) -> float:
        self.model.train()
        self.sampler.set_epoch(epoch)
        total, n_seen = 0.0, 0
        bar = tqdm(self.loader, desc=f"epoch {epoch + 1}/{self.cfg.optim.epochs}", leave=False, file=sys.stderr,
                   disable=True if not (self.cfg.train.progress and self.d.main) else None)
        t_wait = time.perf_counter()
        for g, b in zip(self.sampler.global_batches(), bar):
            self.data_wait += time.perf_counter() - t_wait
            b = b.to(self.device)
            with autocast(self.device), sample_rng(b.seed, self.device):  # per-sample masks: N processes = 1
                out = self.ddp(b.x, b.valid, b.present)
            loss = loss_sum(self.cfg.data.task, out, b.target, self.mean, self.std, self.cfg.augment.label_smoothing,
                            b.target_b, b.lam) * (self.d.world / len(g))
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            drop_frozen_grads(self.model, self.cfg.optim, epoch, fine_tuning=bool(self.cfg.train.init_from))
            if self.cfg.optim.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.optim.grad_clip)
            self.opt.step()
            self.sched.step()
            if self.ema is not None:
                self.ema.update(self.model)
            total += loss.item() * len(g) / self.d.world
            n_seen += len(g)
            t_wait = time.perf_counter()
        losses = distributed.gather_objects(self.d, total)
        return float(sum(losses) / max(1, n_seen))

    def eval_split(self, labels: Labels) -> tuple[dict, np.ndarray]:
        cfg = self.cfg
        ds = ClipDataset(self.data.store, labels.videos, labels.targets, cfg.model.modalities, cfg.model.T, train=False)
        pred = predict(self.eval_model, ds, self.device, self.d, cfg.train.eval_batch_size, self.mean, self.std,
                       cfg.data.task)
        return evaluate(cfg.data.task, labels.targets, pred), pred

    def improves(self, score: float, loss: float) -> bool:
        """Model selection: the validation metric (ties: the lower validation loss), the validation loss, or none
        (`last`: every epoch replaces the kept model, so the last one is tested)."""
        if self.cfg.train.select == "last":
            return True
        if self.cfg.train.select == "loss":
            return loss < self.best_loss
        return score > self.best or (score == self.best and loss < self.best_loss)

    @property
    def eval_model(self):
        """The model that is evaluated, selected and saved: the EMA weights when train.ema_decay > 0."""
        return self.ema.module if self.ema is not None else self.model

    def state(self, epoch: int) -> dict:
        return {"model": self.model.state_dict(), "opt": self.opt.state_dict(), "sched": self.sched.state_dict(),
                "epoch": epoch, "best": self.best, "best_epoch": self.best_epoch, "rng": torch.get_rng_state(),
                "best_loss": self.best_loss,
                "config": dump_config(self.cfg), **({"ema": self.ema.state_dict()} if self.ema is not None else {})}

    def resume(self) -> None:
        path = self.run_dir / "last.pt"
        if not path.is_file():
            return
        s = load_state(path)
        if s.get("config") != dump_config(self.cfg) and (diff := _config_changes(s.get("config"), self.cfg)):
            raise TamError(f"{path}: the run directory holds a run with another config (differs in "
                           f"{', '.join(diff[:4])}); use a new --run-dir")
        restore_state(path, s, self.model, self.opt, self.sched)  # a mismatch: one line naming last.pt
        if self.ema is not None:
            if "ema" not in s:
                raise TamError(f"{path}: the resume state has no EMA weights (train.ema_decay > 0)")
            self.ema.load_state_dict(s["ema"])
        torch.set_rng_state(s["rng"])
        self.start_epoch, self.best, self.best_epoch = s["epoch"] + 1, s["best"], s["best_epoch"]
        self.best_loss = float(s.get("best_loss", math.inf))


def _config_changes(recorded, cfg: RunConfig) -> list[str]:
    """The fields in which a resume state's recorded config (YAML text) differs from `cfg`; an option added to the
    code since it was written counts as unchanged at its default."""
    old = yaml.safe_load(recorded) if isinstance(recorded, str) else None
    if not isinstance(old, dict):
        return ["config"]
    return changed_fields(old, to_dict(cfg), to_dict(RunConfig()))


def _write_metrics(path: Path, rows: list[dict]) -> None:
    fields = list(dict.fromkeys(k for r in rows for k in r))
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=fields)
    w.writeheader()
    w.writerows(rows)
    write_text(path, buf.getvalue())


def _read_metrics(path: Path, before_epoch: int) -> list[dict]:
    if not path.is_file():
        return []
    try:
        with path.open(encoding="utf-8") as f:
            return [r for r in csv.DictReader(f) if int(r["epoch"]) < before_epoch]
    except (ValueError, KeyError, TypeError, UnicodeDecodeError, csv.Error) as e:
        raise TamError(f"{path}: damaged metrics file ({first_line(e)}); delete the run directory's last.pt and "
                       "metrics.csv to start afresh") from None


def open_run(cfg: RunConfig, run_dir: str | Path, log=print, data: Data | None = None):
    """Set up a run (data, model, resume), write its config and manifest and open its writers; returns
    (run, tb, rows, logged). `data` is given when runs in one process share it (tam.train.multiseed)."""
    d, device = distributed.init(cfg.train.device)
    threads = set_threads(cfg.train.threads, cfg.train.num_workers)
    run_dir = Path(run_dir)
    data = data or prepare_data(cfg)
    run = Run(cfg, run_dir, d, device, data)
    recorded = run_dir / "features_manifest.json"
    if recorded.is_file():
        if manifest_from(read_json(recorded, "feature manifest"), recorded).identity() != \
                data.store.manifest.identity():
            raise TamError(f"{run_dir}: this run was made on features of other encoders ({recorded}); "
                           "use a new --run-dir")
    run.resume()
    tb, logged = None, small_validation(cfg, data)
    if d.main and run.start_epoch >= cfg.optim.epochs:
        log(f"already complete: {run_dir} holds all {cfg.optim.epochs} epochs; its best checkpoint is scored again "
            "(a new --run-dir, or a larger optim.epochs, trains more)")
    if d.main:
        run_dir.mkdir(parents=True, exist_ok=True)
        write_text(run_dir / "config.yaml", f"# code_version: {code_version()}\n" + dump_config(cfg))
        write_json(run_dir / "features_manifest.json", data.store.manifest.to_json())
        write_text(run_dir / "skipped.csv", "video,reason\n" + "".join(f"{v},no features\n" for v in data.skipped))
        if data.skipped:
            log(f"skipped {len(data.skipped)} videos without features (listed in {run_dir / 'skipped.csv'})")
        log(f"threads {threads}, loader workers {cfg.train.num_workers}; feature normalisation: {run.norm_source}")
        for w in logged:
            log("warning: " + w)
        if cfg.train.select == "loss":
            log("selecting the epoch of the lowest validation loss (train.select=loss): * marks it")
        from torch.utils.tensorboard import SummaryWriter
        tb = SummaryWriter(str(run_dir / "tb"), purge_step=run.start_epoch)
    rows = _read_metrics(run_dir / "metrics.csv", run.start_epoch) if d.main else []
    return run, tb, rows, logged


def stopping(run: Run, epoch: int, log=print) -> bool:
    """Early stopping before `epoch` (also after a resume); logged on the main process."""
    if should_stop(epoch, run.best_epoch, run.cfg.train.patience):  # early stopping (also after a resume)
        if run.d.main:
            log(f"early stopping: no better validation score in the {run.cfg.train.patience} epochs after epoch "
                f"{run.best_epoch + 1}")
        return True
    return False


def checkpoint_due(run: Run, epoch: int) -> bool:
    """Whether epoch `epoch` writes the resume state: every `train.checkpoint_every` epochs and after the run's last
    epoch (the schedule's last, or the one early stopping ends the run after; `run.best_epoch` already updated)."""
    t = run.cfg.train
    return every_due(t, epoch, epoch + 1 >= run.cfg.optim.epochs or should_stop(epoch + 1, run.best_epoch, t.patience))


def every_due(t, epoch: int, last: bool) -> bool:
    """`train.checkpoint_every` (a TrainConfig `t`): epoch `epoch` writes the resume state, `last` being whether it
    ends the run (fine-tuning here, pre-training in tam.train.pretrain)."""
    return last or (t.checkpoint_every > 0 and (epoch + 1) % t.checkpoint_every == 0)


def end_epoch(run: Run, epoch: int, lr: float, loss: float, tb, rows: list[dict], log=print,
              on_epoch=None) -> None:
    """After training epoch `epoch`: evaluate, record (metrics.csv, TensorBoard, last.pt), keep the best model
    (main process), call `on_epoch`, then share the selection with the other processes."""
    cfg, data, d, run_dir = run.cfg, run.data, run.d, run.run_dir
    val, val_pred = run.eval_split(data.val)
    score = selection_score(cfg.data.task, val)
    val_loss = video_loss(cfg.data.task, data.val.targets, val_pred, run.mean, run.std)
    tr = {}
    if len(run.train_eval):
        tr, tr_pred = run.eval_split(run.train_eval)
        tr["eval_loss"] = video_loss(cfg.data.task, run.train_eval.targets, tr_pred, run.mean, run.std)
    if d.main:
        row = {"epoch": epoch, "lr": lr, "train_loss": loss, **{f"train_{k}": v for k, v in tr.items()},
               "val_loss": val_loss, **{f"val_{k}": v for k, v in val.items()}}
        rows.append(row)
        for k, v in row.items():
            if k != "epoch":
                tb.add_scalar(k, v, epoch)
        kept = run.improves(score, val_loss)
        if kept:
            run.best, run.best_epoch, run.best_loss = score, epoch, val_loss
        due = checkpoint_due(run, epoch)
        if kept and (due or cfg.train.select != "last"):  # under `last` the kept model is the one at the checkpoint
            save_model(run_dir, "best", run.eval_model, run.meta(epoch))
        if due:
            _write_metrics(run_dir / "metrics.csv", rows)
            save_state(run_dir / "last.pt", run.state(epoch))
        shown = {"loss": val_loss, **val} if cfg.train.select == "loss" else val
        log(f"epoch {epoch + 1:>3}/{cfg.optim.epochs}  loss {loss:.4f}  val {_fmt(shown)}"
            + ("  *" if run.best_epoch == epoch else ""))
        if on_epoch is not None:
            try:
                on_epoch(epoch, score, row)
            except BaseException:
                tb.close()
                distributed.shutdown(d)
                raise
    run.best, run.best_epoch, run.best_loss = distributed.broadcast_object(d, (run.best, run.best_epoch,
                                                                              run.best_loss))
    distributed.barrier(d)


def fit(cfg: RunConfig, run_dir: str | Path, log=print, on_epoch=None, test: bool = True) -> dict:
    """Train, select on validation, test the best checkpoint once; returns the results dict.

    `on_epoch(epoch, score, row)` is called on the main process after each epoch is saved (score: the validation
    selection score; row: the metrics.csv row); an exception it raises (e.g. optuna.TrialPruned) ends the run
    after closing its writers. `test=False` never evaluates the test split (hyper-parameter search).
    """
    run, tb, rows, logged = open_run(cfg, run_dir, log)
    for epoch in range(run.start_epoch, cfg.optim.epochs):
        if stopping(run, epoch, log):
            break
        lr = run.opt.param_groups[0]["lr"]
        loss = run.train_epoch(epoch)
        end_epoch(run, epoch, lr, loss, tb, rows, log, on_epoch)
    results = finish(run, score_test=test, rows=rows, log=log, logged=logged)
    if tb is not None:
        tb.close()
    distributed.shutdown(run.d)
    return results


def _fmt(metrics: dict) -> str:
    return "  ".join(f"{k} {v:.4f}" for k, v in metrics.items())


def finish(run: Run, score_test: bool = True, rows: list[dict] | None = None, log=print,
           logged: list[str] | tuple = ()) -> dict:
    """Reload the best checkpoint, evaluate validation and test once, write results.json and results.md.

    With `score_test=False` the test split is neither evaluated nor scored by the baseline (results["test"] = {}).
    Warnings are logged once: those in `logged` were already.
    """
    from safetensors.torch import load_file

    cfg, data, d = run.cfg, run.data, run.d
    distributed.barrier(d)
    run.eval_model.load_state_dict(load_file(str(run.run_dir / "best.safetensors"), device=str(run.device)))
    val, _ = run.eval_split(data.val)
    test, pred = run.eval_split(data.test) if score_test and len(data.test) else ({}, None)
    results = {
        "task": cfg.data.task, "config": to_dict(cfg), "code_version": code_version(),
        "n": {"train": len(data.train), "val": len(data.val), "test": len(data.test), "skipped": len(data.skipped)},
        "best_epoch": run.best_epoch, "val": val, "test": test,
        "baseline": baseline(data.train, data.test) if score_test else {},
        "random_init_features": data.store.manifest.random_init, "classes": data.labels.classes,
        "data_wait_seconds": run.data_wait,
    }
    results.update(diagnostics(run, rows or [], results, score_test))
    for w in results["warnings"]:
        if w not in logged:
            log("warning: " + w)
    if cfg.data.task == "classification" and pred is not None:
        results["confusion"] = confusion_matrix(data.test.targets, pred.argmax(1), len(data.labels.classes)).tolist()
    results = _json_safe(results)
    if d.main:
        write_json(run.run_dir / "results.json", results)
        write_text(run.run_dir / "results.md", results_table(results))
        if rows and cfg.train.curves:
            from tam.io import atomic_write
            from tam.report.plots import run_curves

            png = run_curves(rows, "accuracy" if cfg.data.task == "classification" else "valence_pcc")
            atomic_write(run.run_dir / "curves.png", lambda p: Path(p).write_bytes(png))
    return results


def diagnostics(run: Run, rows: list[dict], results: dict, score_test: bool) -> dict:
    """The linear baseline (same normalisation, strength chosen on validation) and the run's warnings."""
    cfg, data = run.cfg, run.data
    test = data.test if score_test else data.test.take([])
    linear = (linear_baseline(data.store, cfg.model.modalities, data.train, data.val, test, run.model.norm.cpu())
              if cfg.train.linear_baseline else {})
    run.model.norm.to(run.device)
    warnings = small_validation(cfg, data) + diagnose(cfg.data.task, rows, baseline(data.train, data.val).get("test"),
                                                      len(data.val))
    if len(rows) > 1 and run.cfg.train.select == "metric":
        ties = sum(selection_score(cfg.data.task, {k[4:]: _num(v) for k, v in r.items() if k.startswith("val_")})
                   == run.best for r in rows)
        if ties > 1:
            warnings.append(f"{ties} of {len(rows)} epochs tie on the best validation score; the lowest validation "
                            "loss among them was kept")
    split = "test" if results["test"] else "val"
    if linear and loses_to(cfg.data.task, results[split], linear.get(split, {})):
        warnings.append(f"the fusion model is below the linear baseline on {split} ({linear['name']})")
    return {"linear": linear, "warnings": warnings, "curves": "curves.png" if rows and cfg.train.curves else ""}


def _num(v) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return math.nan


def results_table(r: dict, warnings: bool = True) -> str:
    """Markdown: the model beside the trivial baseline on test, and on validation; then the warnings (`warnings`:
    `fit` logged them already when the table goes to the terminal)."""
    keys = list(r["test"] or r["val"])
    lines = [f"# Results ({r['task']})", "",
             f"clips: train {r['n']['train']}, val {r['n']['val']}, test {r['n']['test']}, "
             f"skipped {r['n']['skipped']}; best epoch {r['best_epoch'] + 1}", ""]
    if r.get("random_init_features"):
        lines += ["**Features come from randomly initialised encoders: these numbers are not real results.**", ""]
    lines += ["| | " + " | ".join(keys) + " |", "|---|" + "---|" * len(keys)]

    def cells(m):
        return " | ".join("—" if m.get(k) is None else f"{m[k]:.4f}" for k in keys)

    lin = r.get("linear") or {}
    if r["test"]:
        lines.append(f"| model (test) | {cells(r['test'])} |")
        lines.append(f"| {r['baseline']['name']} (test) | {cells(r['baseline']['test'])} |")
        if lin.get("test"):
            lines.append(f"| {lin['name']} (test) | {cells(lin['test'])} |")
    lines.append(f"| model (val) | {cells(r['val'])} |")
    if lin.get("val"):
        lines.append(f"| {lin['name']} (val) | {cells(lin['val'])} |")
    lines += [""] + [f"**Warning:** {w}" for w in (r.get("warnings", []) if warnings else [])]
    if r.get("curves"):
        lines += ["", f"![training and validation curves]({r['curves']})"]
    return "\n".join(lines) + "\n"
