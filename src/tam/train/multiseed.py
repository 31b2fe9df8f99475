"""Several runs that differ only in their seed, trained in one process as one batched computation.

The K runs' weights are stacked along a leading axis (one parameter [K, ...] per parameter of the model) and
one `torch.func.vmap` of the model's own forward (`functional_call`: the fusion is not re-implemented) trains
them together, with one optimiser, scheduler and EMA over the stacked tensors (all elementwise, so each slice
moves exactly as its run's would alone). What stays per run is what makes it that run:

  - initialisation: each run builds its model with `torch.manual_seed(train.seed)` as `fit` does, then stacked;
  - data order, crops and augmentation: each run's own loader (seeded sampler and dataset), one batch per step;
  - normalisation: each run's own statistics, applied before the batched forward (`model.norm`);
  - dropout, stochastic depth and feature noise: the per-sample streams of `tam.models.stochastic`, seeded from
    each run's (seed, epoch, sample) as alone; `LaneRNG` serves lane k the rows of run k's samples;
  - gradient clipping: the norm of each run's own gradient;
  - evaluation, selection, early stopping and every output file: `end_epoch` / `finish` of `tam.train.loop`
    on each run's model after the weights are copied back each epoch (a run directory looks the same either way,
    last.pt included: optimiser moments, scheduler and RNG state of its run).

Results equal the separate runs' within floating-point tolerance (tests/train/test_multiseed.py). On CPU the
vmap step is faster than the K runs' own steps only for small steps (`pays`: batch · M · (T+1) · d <= VMAP_WORK);
above that each run takes its own steps in turn in this process (bit-identical to running alone; the process,
imports and the feature store are still shared). Runs that cannot share a step (other configs beyond `VARY`,
other numbers of training rows or resume epochs, several processes) are trained one after another by `fit`,
with the reason logged.

    python -m tam.train.multiseed GROUP.json   # [{"config": ..., "overrides": [...], "run_dir": ...}, ...]
"""

from __future__ import annotations

import copy
import json
import sys
import time
import warnings
from pathlib import Path

import torch
from torch import Tensor, nn
from torch.func import functional_call, vmap

from tam.config import RunConfig, to_dict
from tam.errors import TamError
from tam.features.store import FeatureStore
from tam.models import stochastic
from tam.models.stochastic import SampleRNG
from tam.train.augment import loss_sum
from tam.train.groups import drop_frozen_grads, param_groups
from tam.train.loop import Data, Run, autocast, end_epoch, finish, fit, open_run, prepare_data, stopping
from tam.train.schedule import EMA, build_scheduler

VARY = ("train.seed", "data.labels", "train.init_from")  # what may differ between the runs of one batch
# work per training step (tokens batch_size · M · (T+1), times the width d) up to which one vmap step of K runs beats
# their K own steps on CPU. Whole training epochs (bench/bench_multiseed.py `epochs`: K = 5, 1 thread, data, loss,
# backward, optimiser, the timing grid's cells at n = 1000, CPU seconds, own / vmap): at 34,816 (d = 32, batch 32,
# M = 2) 1.15-1.39x for all five fusions (ctm 1.19, joint 1.15, concat 1.31, inner 1.18, divide 1.39), where the
# forward + backward alone measured 0.79-1.02x: the vmap also takes one optimiser step for the K runs. 69,632 and
# above unmeasured as whole epochs (the step alone: 0.62-0.85x). The own steps are bit-identical to separate runs,
# the vmap equal within floating-point tolerance (docs/training.md)
VMAP_WORK = 40_000


def batch_key(cfg: RunConfig) -> str:
    """Runs with equal keys can be trained as one batch: their configs differ at most in `VARY`."""
    d = to_dict(cfg)
    for path in VARY:
        section, key = path.split(".")
        d[section] = {k: v for k, v in d[section].items() if k != key}
    return json.dumps(d, sort_keys=True)


class LaneRNG(SampleRNG):
    """The per-sample streams of K runs' batches (seeds run-major, K·B) inside a vmap over the runs: `rand(n)` and
    `randn(n)` draw for all K·B samples and give lane `lane` (a batched index) the B rows of its own run."""

    def __init__(self, seeds: Tensor, K: int, device: torch.device):
        super().__init__(seeds, device)
        self.K, self.lane = K, None

    def __len__(self) -> int:
        return len(self.gens) // self.K

    def rand(self, n: int) -> Tensor:
        return super().rand(n).view(self.K, -1, n)[self.lane]

    def randn(self, n: int) -> Tensor:
        return super().randn(n).view(self.K, -1, n)[self.lane]


class _Normalised(nn.Module):
    """Stands in for `model.norm` in the batched model: each run's features are normalised before the vmap."""

    def forward(self, x: dict[str, Tensor], valid: Tensor | None = None) -> dict[str, Tensor]:
        return x


class Stacked:
    """K models of one architecture as one: a copy of the first whose parameters are the K models' stacked
    [K, ...]; `forward` is a vmap of the model's own forward over them (`functional_call`)."""

    def __init__(self, models: list[nn.Module], device: torch.device):
        self.K, self.device = len(models), device
        self.module = copy.deepcopy(models[0])
        self.module.norm = _Normalised()
        for name, p in models[0].named_parameters():
            mod_name, _, leaf = name.rpartition(".")
            stacked = torch.stack([m.get_parameter(name).detach() for m in models])
            setattr(self.module.get_submodule(mod_name), leaf, nn.Parameter(stacked, requires_grad=p.requires_grad))
        self.lanes = torch.arange(self.K, device=device)

    def forward(self, x: dict[str, Tensor], valid: Tensor, present: Tensor, seeds: Tensor) -> Tensor:
        """x[m] [K, B, T, D_m] (normalised), valid [K, B, T], present [K, B, M], seeds [K·B] -> outputs [K, B, C]."""
        rng = LaneRNG(seeds, self.K, self.device)

        def one(params, x, valid, present, lane):
            rng.lane = lane
            return functional_call(self.module, params, (x, valid, present))

        prev = stochastic.current()
        stochastic._local.rng = rng  # what `sample_rng` installs, here with the K runs' streams
        try:
            with warnings.catch_warnings():  # ops without a vmap rule (SDPA of the decoder) loop over K
                warnings.filterwarnings("ignore", message=".*batching rule.*")
                return vmap(one, randomness="same")(dict(self.module.named_parameters()), x, valid, present,
                                                    self.lanes)
        finally:
            stochastic._local.rng = prev


def _stack_state(states: list[dict]) -> dict:
    """The optimiser state dicts of K runs as one state dict over stacked parameters (`step` is shared)."""
    out = copy.deepcopy(states[0])
    for i, s in out["state"].items():
        for key in [k for k in s if k != "step"]:
            s[key] = torch.stack([st["state"][i][key] for st in states])
    return out


def _slice_state(state: dict, k: int) -> dict:
    out = {"state": {i: {key: v if key == "step" else v[k].clone() for key, v in s.items()}
                     for i, s in state["state"].items()},
           "param_groups": copy.deepcopy(state["param_groups"])}
    return out


def why_not(runs: list[Run]) -> str:
    """Why these opened runs cannot be trained as one batch ('' when they can)."""
    r0 = runs[0]
    if len({batch_key(r.cfg) for r in runs}) > 1:
        return f"their configs differ beyond {', '.join(VARY)}"
    if r0.d.enabled:
        return "several processes (torchrun)"
    if len({len(r.sampler) for r in runs}) > 1 or len({len(r.data.train) for r in runs}) > 1:
        return "their training splits differ in size"
    if len({r.start_epoch for r in runs}) > 1:
        return "they resume from different epochs"
    buffers = [(n, b) for n, b in r0.model.named_buffers() if not n.startswith("norm.")]
    if any(not torch.equal(b, r.model.get_buffer(n)) for r in runs for n, b in buffers):
        return "their models' buffers differ"
    return ""


class Batched:
    """K opened runs trained as one: stacked weights, one optimiser / scheduler / EMA, one vmap per step."""

    def __init__(self, runs: list[Run]):
        self.runs, r0 = runs, runs[0]
        cfg = r0.cfg
        self.K, self.device, self.fine_tuning = len(runs), r0.device, bool(cfg.train.init_from)
        self.stacked = Stacked([r.model for r in runs], r0.device)
        self.module = self.stacked.module
        groups = param_groups(self.module, cfg.optim, cfg.model.layers, fine_tuning=self.fine_tuning)
        self.opt = type(r0.opt)(groups, lr=cfg.optim.lr, weight_decay=cfg.optim.weight_decay)
        self.sched = build_scheduler(self.opt, cfg.optim, len(r0.sampler))
        if r0.opt.state:  # resumed: the runs' optimiser moments, stacked
            self.opt.load_state_dict(_stack_state([r.opt.state_dict() for r in runs]))
            self.sched.load_state_dict(r0.sched.state_dict())
        self.ema = None
        if r0.ema is not None:
            self.ema = EMA(self.module, cfg.train.ema_decay)
            with torch.no_grad():
                for name, e in self.ema.module.named_parameters():
                    e.copy_(torch.stack([r.ema.module.get_parameter(name) for r in runs]))

    def train_epoch(self, epoch: int) -> list[float]:
        """One epoch of every run; returns each run's training loss (as `Run.train_epoch`)."""
        runs, cfg = self.runs, self.runs[0].cfg
        self.module.train()
        for r in runs:
            r.model.train()
            r.sampler.set_epoch(epoch)
        totals, seen = [0.0] * self.K, [0] * self.K
        steps = zip(zip(*(r.sampler.global_batches() for r in runs), strict=True), zip(*(r.loader for r in runs)))
        t_wait = time.perf_counter()
        for gs, bs in steps:
            wait = time.perf_counter() - t_wait
            bs = [b.to(self.device) for b in bs]
            with autocast(self.device):
                xs = [r.model.norm(b.x, b.valid) for r, b in zip(runs, bs, strict=True)]  # each run's statistics
                out = self.stacked.forward({m: torch.stack([x[m] for x in xs]) for m in xs[0]},
                                   torch.stack([b.valid for b in bs]), torch.stack([b.present for b in bs]),
                                   torch.cat([b.seed for b in bs]))
            losses = [loss_sum(cfg.data.task, out[k], b.target, r.mean, r.std, cfg.augment.label_smoothing,
                               b.target_b, b.lam) / len(g) for k, (r, b, g) in enumerate(zip(runs, bs, gs))]
            self.opt.zero_grad(set_to_none=True)
            torch.stack(losses).sum().backward()  # run k's parameters get run k's gradient alone
            self.step(epoch)
            for k, (r, loss, g) in enumerate(zip(runs, losses, gs, strict=True)):
                r.data_wait += wait
                totals[k] += loss.item() * len(g)
                seen[k] += len(g)
            t_wait = time.perf_counter()
        return [t / max(1, n) for t, n in zip(totals, seen, strict=True)]

    def step(self, epoch: int) -> None:
        optim = self.runs[0].cfg.optim
        drop_frozen_grads(self.module, optim, epoch, fine_tuning=self.fine_tuning)
        if optim.grad_clip > 0:
            self.clip(optim.grad_clip)
        self.opt.step()
        self.sched.step()
        if self.ema is not None:
            self.ema.update(self.module)

    @torch.no_grad()
    def clip(self, max_norm: float) -> None:
        """`clip_grad_norm_` of each run's own gradient (the norm over its slices of every parameter)."""
        grads = [p.grad for p in self.module.parameters() if p.grad is not None]
        norms = torch.stack([g.flatten(1).norm(dim=1) for g in grads]).norm(dim=0)  # [K]
        coef = (max_norm / (norms + 1e-6)).clamp(max=1.0)
        for g in grads:
            g.mul_(coef.view(-1, *([1] * (g.dim() - 1))))

    @torch.no_grad()
    def sync(self, which: list[int]) -> None:
        """Copy the stacked weights, EMA, optimiser and scheduler state back into the runs `which` (before they
        record the epoch)."""
        state, sched = self.opt.state_dict(), self.sched.state_dict()
        stacked = dict(self.module.named_parameters())
        ema = dict(self.ema.module.named_parameters()) if self.ema is not None else {}
        for k in which:
            r = self.runs[k]
            for name, p in r.model.named_parameters():
                p.copy_(stacked[name][k])
            if r.ema is not None:
                for name, p in r.ema.module.named_parameters():
                    p.copy_(ema[name][k])
            r.opt.load_state_dict(_slice_state(state, k))
            r.sched.load_state_dict(sched)


def _data_key(c: RunConfig) -> str:
    return json.dumps([to_dict(c)["data"], c.model.modalities], sort_keys=True)


def shared_data(cfgs: list[RunConfig]) -> list[Data]:
    """Each config's Data, prepared once per distinct data section, over one open feature store per store folder
    (its memory maps are shared: K stores of thousands of videos would exhaust the open-file limit)."""
    stores: dict[str, FeatureStore] = {}
    cache: dict[str, Data] = {}
    for c in cfgs:
        key = _data_key(c)
        if key not in cache:
            if c.data.store not in stores:
                stores[c.data.store] = FeatureStore.open(c.data.store)
            cache[key] = prepare_data(c, stores[c.data.store])
    return [cache[_data_key(c)] for c in cfgs]


def cells(cfgs: list[RunConfig]) -> list[list[int]]:
    """The indices of the runs that can share a batch (equal `batch_key`), in order of first appearance."""
    out: dict[str, list[int]] = {}
    for i, c in enumerate(cfgs):
        out.setdefault(batch_key(c), []).append(i)
    return list(out.values())


def fit_many(cfgs: list[RunConfig], run_dirs: list[str | Path], logs: list | None = None, test: bool = True,
             batched: bool | None = None) -> list[dict]:
    """`fit` for each (config, run directory) in this process; returns each run's results. The runs are trained
    cell by cell (`cells`: runs whose configs differ only in `VARY`), over one feature store and one prepared Data
    per data section for all of them (cells of one grid that differ in the model share the data, the normalisation
    statistics and the linear baseline: the per-process caches of tam.features.normalize and tam.eval.linear).
    In a cell, one vmap step for all when the runs allow it (`why_not`) and `batched` (None: `pays(cfg)`), else
    each run's own steps in turn. `logs[k]` receives run k's log lines."""
    logs = logs or [print] * len(cfgs)
    data = shared_data(cfgs)
    results: list[dict] = [{}] * len(cfgs)
    for idx in cells(cfgs):
        done = _fit_cell(*([xs[i] for i in idx] for xs in (cfgs, run_dirs, logs, data)), test, batched)
        for i, r in zip(idx, done, strict=True):
            results[i] = r
    return results


def _fit_cell(cfgs: list[RunConfig], run_dirs: list, logs: list, data: list[Data], test: bool,
              batched: bool | None) -> list[dict]:
    """The runs of one cell (equal `batch_key`): one batch (`Batched`), own steps in turn (a run alone: as `fit`),
    or one after another by `fit` (`why_not`)."""
    opened = [open_run(cfg, run_dir, log, d) + (torch.get_rng_state(),)  # the RNG state its `fit` would save
              for cfg, run_dir, log, d in zip(cfgs, run_dirs, logs, data, strict=True)]
    runs, rngs = [o[0] for o in opened], [o[4] for o in opened]
    many = len(runs) > 1
    reason = why_not(runs) if many else ""
    if reason:
        for o in opened:
            if o[1] is not None:
                o[1].close()
        return _separately(cfgs, run_dirs, logs, test, reason)
    step = Batched(runs) if many and (pays(cfgs[0]) if batched is None else batched) else None
    if many:
        for log in logs:
            log(f"trained in one process with {len(runs) - 1} run(s) of other seeds (tam.train.multiseed), "
                + ("one vmap step for all" if step else "each run's own steps in turn"))
    active = list(range(len(runs)))
    for epoch in range(runs[0].start_epoch, runs[0].cfg.optim.epochs):
        active = [k for k in active if not stopping(runs[k], epoch, logs[k])]
        if not active:
            break
        lrs = [r.opt.param_groups[0]["lr"] for r in runs]
        losses = step.train_epoch(epoch) if step else {k: _own_epoch(runs[k], epoch, rngs, k) for k in active}
        if step:
            step.sync(active)
        for k in active:
            torch.set_rng_state(rngs[k])
            end_epoch(runs[k], epoch, lrs[k], losses[k], opened[k][1], opened[k][2], logs[k])
    results = []
    for (run, tb, rows, logged, _), log in zip(opened, logs, strict=True):
        results.append(finish(run, score_test=test, rows=rows, log=log, logged=logged))
        if tb is not None:
            tb.close()
    return results


def pays(cfg: RunConfig) -> bool:
    """Whether one vmap step is faster than the K runs' own steps: on CPU only for small steps (bench_multiseed)."""
    return cfg.optim.batch_size * len(cfg.model.modalities) * (cfg.model.T + 1) * cfg.model.d <= VMAP_WORK


def _own_epoch(run: Run, epoch: int, rngs: list[Tensor], k: int) -> float:
    """Run k's own epoch, under its own global RNG state (as in its own process)."""
    torch.set_rng_state(rngs[k])
    loss = run.train_epoch(epoch)
    rngs[k] = torch.get_rng_state()
    return loss


def _separately(cfgs, run_dirs, logs, test: bool, reason: str) -> list[dict]:
    if len(cfgs) > 1:
        logs[0](f"training the {len(cfgs)} runs one after another ({reason})")
    return [fit(c, d, log=log, test=test) for c, d, log in zip(cfgs, run_dirs, logs, strict=True)]


def _file_log(run_dir: Path):
    def log(line: str) -> None:
        with (run_dir / "log.txt").open("a", encoding="utf-8") as f:
            f.write(line + "\n")
    return log


def read_group(path: Path) -> tuple[list[RunConfig], list[Path], bool | None]:
    """A group file: {"runs": [{"config": path or null, "overrides": [...], "run_dir": ...}, ...], "batched": true |
    false | null}; a malformed one is a one-line TamError naming it."""
    from tam.config import load_config
    from tam.io import read_json

    group = read_json(path, "run group")
    runs = group.get("runs")
    ok = isinstance(runs, list) and runs and all(
        isinstance(r, dict) and isinstance(r.get("overrides"), list) and isinstance(r.get("run_dir"), str)
        and isinstance(r.get("config"), str | None) for r in runs)
    if not ok or group.get("batched") not in (True, False, None):
        raise TamError(f"{path}: a run group is {{\"runs\": [{{\"config\", \"overrides\", \"run_dir\"}}, ...], "
                       "\"batched\": true | false | null}")
    return ([load_config(r["config"], r["overrides"]) for r in runs], [Path(r["run_dir"]) for r in runs],
            group.get("batched"))


def main(argv: list[str] | None = None) -> int:
    """`python -m tam.train.multiseed GROUP.json` (also `tam train --group`): each run logs to its run_dir/log.txt."""
    argv = sys.argv[1:] if argv is None else argv
    try:
        cfgs, dirs, batched = read_group(Path(argv[0]))
        for d in dirs:
            d.mkdir(parents=True, exist_ok=True)
        fit_many(cfgs, dirs, [_file_log(d) for d in dirs], batched=batched)
    except TamError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
