"""TSC pre-training (section 4.2, settings of section 5.2): fusion module + video-TSC decoder trained with
Eq. (10) on the clips of a comment corpus; 1 or N processes under torchrun.

A run directory holds:
    config.yaml                 the resolved PretrainConfig (with the code version)
    metrics.csv                 per epoch: train loss, L_wp, L_tp
    last.pt                     resume state (weights, optimiser, scheduler, epoch); `pretrain` resumes from it
    pretrained.safetensors      `fusion.*` and `decoder.*` weights; fine-tune with
    pretrained.json               `train.init_from=<run>/pretrained.safetensors` (model, dims, features manifest)
    results.json, results.md    held-out EWP top-1/top-5 and ATP accuracy beside their baselines
"""

from __future__ import annotations

import csv
import io
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from tam.comments.pairs import PretrainDataset, TscPairs, build_pairs, pairing, pretrain_collate, read_id_map
from tam.comments.process import SPECIAL_TOKENS
from tam.config import ModelConfig, OptimConfig, TrainConfig, apply_overrides, from_dict, read_yaml_mapping, to_dict
from tam.errors import TamError, first_line
from tam.features.clips import GlobalBatchSampler
from tam.features.normalize import compute_stats
from tam.features.store import FeatureStore
from tam.io import write_json, write_text
from tam.models.decoder import TscPretrainModel, VideoTSCDecoder
from tam.models.model import build_fusion
from tam.objectives.pretrain import accuracy_counts, pretrain_losses
from tam.train import distributed
from tam.train.checkpoint import load_state, restore_state, save_model, save_state
from tam.train.loop import autocast, every_due
from tam.train.readout_init import readout_query, write_query
from tam.train.threads import set_threads
from tam.version import code_version


@dataclass
class DecoderConfig:
    layers: int = 8  # L of the video-TSC decoder (paper: 8); its width is model.d
    heads: int = 8
    ffn_mult: int = 4
    dropout: float = 0.1
    max_len: int = 32  # longest comment in tokens, [#S] included (the corpus keeps 3..15 words)


@dataclass
class PretrainDataConfig:
    store: str = ""  # feature store holding the corpus videos
    corpus: str = ""  # folder made by `tam comments prepare` (segments.parquet, comments.parquet, vocab.json)
    comments_per_clip: int = 64  # comments drawn per clip per training step (all of them at evaluation)
    # CSV comments_id,video_id: the store id of each corpus video named otherwise ("" = equal ids pair);
    # `tam comments pair` reports the pairing (docs/pretraining.md)
    id_map: str = ""
    # feature normalisation with the statistics of the training clips (see RunConfig's data.normalize); saved in
    # pretrained.safetensors (`norm.*`), and fine-tuning from it uses them
    normalize: str = "zscore"
    normalize_clip: float = 5.0


@dataclass
class LossConfig:
    lambda_w: float = 1.0  # λ_w of Eq. (10): emotional-word prediction; 0 = off
    lambda_t: float = 1.0  # λ_t: appearing-time prediction; 0 = off
    # λ_v: each masked word predicted from its clip's f^0 by one linear layer (`f0_words.*`), which asks f^0, the
    # token the paper's head reads, for what the comments say. Not in the paper: 0 = off (docs/pretraining.md)
    lambda_v: float = 0.0


def _paper_optim() -> OptimConfig:
    return OptimConfig(optimizer="adam", lr=1e-3, weight_decay=0.0, batch_size=32, epochs=200, lr_step_epochs=50)


@dataclass
class PretrainConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    decoder: DecoderConfig = field(default_factory=DecoderConfig)
    data: PretrainDataConfig = field(default_factory=PretrainDataConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=_paper_optim)
    train: TrainConfig = field(default_factory=TrainConfig)

    def validate(self) -> PretrainConfig:
        if self.loss.lambda_v < 0:
            raise TamError(f"loss.lambda_v must be >= 0, got {self.loss.lambda_v}")
        if self.loss.lambda_w < 0 or self.loss.lambda_t < 0 or self.loss.lambda_w + self.loss.lambda_t == 0:
            raise TamError(f"loss.lambda_w and loss.lambda_t must be >= 0 and not both 0, got {self.loss}")
        if self.model.d % self.decoder.heads:
            raise TamError(f"model.d = {self.model.d} is not divisible by decoder.heads = {self.decoder.heads}")
        if self.optim.optimizer not in ("adam", "adamw"):
            raise TamError(f"optim.optimizer must be adam or adamw, got {self.optim.optimizer!r}")
        if self.data.normalize not in ("zscore", "log1p", "none") or self.data.normalize_clip < 0:
            raise TamError(f"data.normalize must be zscore, log1p or none and data.normalize_clip >= 0, got "
                           f"{self.data.normalize!r}, {self.data.normalize_clip}")
        return self


def load_pretrain_config(path: str | None = None, overrides: list[str] | None = None) -> PretrainConfig:
    """Read a pre-training YAML (sections model/decoder/data/loss/optim/train) with `section.key=value` overrides."""
    data = read_yaml_mapping(path, "config") if path else {}
    return from_dict(PretrainConfig, apply_overrides(data, overrides or [], PretrainConfig)).validate()


class PretrainRun:
    """Model, optimiser and data of one pre-training run."""

    def __init__(self, cfg: PretrainConfig, run_dir: Path, d: distributed.Dist, device: torch.device):
        self.cfg, self.run_dir, self.d, self.device = cfg, run_dir, d, device
        self.store = FeatureStore.open(cfg.data.store)
        missing = [m for m in cfg.model.modalities if m not in self.store.manifest.dims]
        if missing:
            raise TamError(f"{cfg.data.store}: the store has no {missing} features")
        id_map = read_id_map(cfg.data.id_map) if cfg.data.id_map else None
        self.pairs = build_pairs(cfg.data.corpus, self.store, cfg.model.T, cfg.decoder.max_len, id_map)
        if self.pairs.vocab_size <= len(SPECIAL_TOKENS):
            raise TamError(f"{cfg.data.corpus}/vocab.json: only the special tokens (no training comment): nothing to "
                           "pre-train on; rebuild the corpus with more videos, a larger --n or a smaller "
                           "--test-fraction")
        self.train_clips, self.test_clips = self.pairs.split(True), self.pairs.split(False)
        if not len(self.train_clips):
            raise TamError(_unpaired(cfg.data.corpus, self.store, id_map))
        torch.manual_seed(cfg.train.seed)
        self.model = build_pretrain_model(cfg, self.store.manifest.dims, self.pairs.vocab_size).to(device)
        self.model.norm.set_stats(self.norm_stats(), cfg.data.normalize, cfg.data.normalize_clip)
        opt = torch.optim.AdamW if cfg.optim.optimizer == "adamw" else torch.optim.Adam
        self.opt = opt(self.model.parameters(), lr=cfg.optim.lr, weight_decay=cfg.optim.weight_decay)
        self.sched = torch.optim.lr_scheduler.StepLR(self.opt, step_size=cfg.optim.lr_step_epochs or 10**9,
                                                     gamma=cfg.optim.lr_gamma)
        both = cfg.loss.lambda_w > 0 and cfg.loss.lambda_t > 0
        self.ddp = (torch.nn.parallel.DistributedDataParallel(
            self.model, device_ids=[device] if device.type == "cuda" else None, find_unused_parameters=not both)
            if d.enabled else self.model)
        mods, seed = cfg.model.modalities, cfg.train.seed
        ds = PretrainDataset(self.store, self.pairs, self.train_clips, mods, cfg.data.comments_per_clip, seed)
        self.sampler = GlobalBatchSampler(len(ds), cfg.optim.batch_size, seed, d.rank, d.world)
        nw = cfg.train.num_workers
        self.loader = DataLoader(ds, batch_sampler=self.sampler, collate_fn=pretrain_collate, num_workers=nw,
                                 persistent_workers=nw > 0, pin_memory=device.type == "cuda",
                                 generator=torch.Generator().manual_seed(seed))
        self.start_epoch, self.rows = 0, []

    def norm_stats(self) -> dict:
        """Normalisation statistics over the feature rows of the training clips only (never held-out ones)."""
        cfg, p = self.cfg, self.pairs
        if cfg.data.normalize == "none":
            return {}
        clips = self.train_clips
        rows = [slice(int(p.clip_row0[c]), int(p.clip_row0[c] + p.clip_rows[c])) for c in clips]
        return compute_stats(self.store, [p.videos[p.clip_video[c]] for c in clips], cfg.model.modalities,
                             cfg.data.normalize, rows)

    def step(self, batch) -> dict:
        """One optimiser step; the means of Eqs. (7) and (9) are over the global batch."""
        cfg, b = self.cfg, batch.to(self.device)
        den = torch.tensor([(b.word_targets != -100).sum().item(), b.segment.numel()], dtype=torch.float64)
        if self.d.enabled:
            den = den.to(self.device)
            torch.distributed.all_reduce(den)
        with autocast(self.device):
            out = self.ddp(b.x, b.valid, b.present, b.tokens, b.token_valid, b.clip, words=cfg.loss.lambda_w > 0)
        losses = pretrain_losses(out, b.word_targets, b.segment, cfg.loss.lambda_w, cfg.loss.lambda_t,
                                 (float(den[0]), float(den[1])), self.d.world, cfg.loss.lambda_v,
                                 getattr(out, "f0_logits", None), b.clip)
        self.opt.zero_grad(set_to_none=True)
        losses["loss"].backward()
        if cfg.optim.grad_clip:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.optim.grad_clip)
        self.opt.step()
        return losses

    def train_epoch(self, epoch: int) -> dict:
        self.model.train()
        self.sampler.set_epoch(epoch)
        sums = np.zeros(4)
        bar = tqdm(self.loader, desc=f"pretrain epoch {epoch + 1}", leave=False,
                   disable=not (self.cfg.train.progress and self.d.main))
        for batch in bar:
            losses = self.step(batch)
            sums += [1, float(losses["l_wp"]), float(losses["l_tp"]), float(losses["l_v"])]
        if self.d.enabled:  # each rank holds its share of the global means: their sum is the global loss
            part = torch.tensor(sums[1:], device=self.device)
            torch.distributed.all_reduce(part)
            sums[1:] = part.cpu().numpy()
        n, lw = max(sums[0], 1), self.cfg.loss
        row = {"epoch": epoch + 1, "lr": self.opt.param_groups[0]["lr"], "l_wp": sums[1] / n, "l_tp": sums[2] / n,
               "loss": (lw.lambda_w * sums[1] + lw.lambda_t * sums[2] + lw.lambda_v * sums[3]) / n}
        return row | ({"l_v": sums[3] / n} if lw.lambda_v else {})

    def state(self, epoch: int) -> dict:
        return {"model": self.model.state_dict(), "opt": self.opt.state_dict(), "sched": self.sched.state_dict(),
                "epoch": epoch, "rng": torch.get_rng_state()}

    def resume(self) -> None:
        path = self.run_dir / "last.pt"
        if path.is_file():
            s = load_state(path)
            restore_state(path, s, self.model, self.opt, self.sched)
            torch.set_rng_state(s["rng"])
            self.start_epoch = int(s["epoch"]) + 1
            self.rows = _read_rows(self.run_dir / "metrics.csv", self.start_epoch)

    def meta(self) -> dict:
        cfg = self.cfg
        return {"model": to_dict(cfg.model), "dims": {m: self.store.manifest.dims[m] for m in cfg.model.modalities},
                "features": self.store.manifest.to_json(), "decoder": to_dict(cfg.decoder),
                "vocab_size": self.pairs.vocab_size, "loss": to_dict(cfg.loss), "code_version": code_version(),
                "stage": "tsc-pretraining"}


def _unpaired(corpus: str, store: FeatureStore, id_map: dict | None) -> str:
    """Why no training clip has features, with example ids from each side."""
    r = pairing(corpus, store, id_map)
    if r["paired"]["train"]:
        return f"{corpus}: no training clip has comments inside the features' time span of {store.root}"
    few = [", ".join(x[:3]) or "none" for x in (r["corpus_only"], r["store_only"])]
    return (f"{corpus}: no training clip has features in {store.root} (corpus ids e.g. {few[0]}; store ids e.g. "
            f"{few[1]}); pair them with --id-map CSV (comments_id,video_id); `tam comments pair --corpus {corpus} "
            f"--store {store.root}` shows the pairing")


def build_pretrain_model(cfg: PretrainConfig, dims: dict[str, int], vocab_size: int) -> TscPretrainModel:
    """The fusion module of `cfg.model` and a decoder of `cfg.decoder` at width model.d."""
    dc = cfg.decoder
    decoder = VideoTSCDecoder(vocab_size, d=cfg.model.d, layers=dc.layers, heads=dc.heads, ffn_mult=dc.ffn_mult,
                              dropout=dc.dropout, max_len=dc.max_len)
    model = F0WordsModel if cfg.loss.lambda_v else TscPretrainModel
    return model(build_fusion(cfg.model, dims), decoder, {m: dims[m] for m in cfg.model.modalities})


class F0WordsModel(TscPretrainModel):
    """`loss.lambda_v` > 0: the pre-training model plus one linear layer reading the masked words from f^0
    (`f0_words.*`, dropped at fine-tuning with the decoder); its output carries `f0_logits` [B, V]."""

    def __init__(self, fusion: torch.nn.Module, decoder: VideoTSCDecoder, dims: dict[str, int]):
        super().__init__(fusion, decoder, dims)
        self.f0_words = torch.nn.Linear(decoder.word_head.in_features, decoder.word_head.out_features)

    def forward(self, x, valid, present, tokens, token_valid, clip, words: bool = True):
        fo = self.fusion(self.norm(x, valid), valid, present)
        out = self.decoder(tokens, token_valid, fo.f[clip], fo.valid[clip], words=words)
        out.f0_logits = self.f0_words(fo.f[:, 0])
        return out


def _read_rows(path: Path, before_epoch: int) -> list[dict]:
    if not path.is_file():
        return []
    try:
        rows = csv.DictReader(io.StringIO(path.read_text(encoding="utf-8")))
        return [r for r in rows if int(r["epoch"]) <= before_epoch]
    except (ValueError, KeyError, TypeError, UnicodeDecodeError, csv.Error) as e:
        raise TamError(f"{path}: damaged metrics file ({first_line(e)}); delete last.pt and metrics.csv to start "
                       "afresh") from None


def _write_rows(path: Path, rows: list[dict]) -> None:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=["epoch", "lr", "loss", "l_wp", "l_tp"] + (["l_v"] if rows and "l_v" in rows[0]
                                                                                  else []))
    w.writeheader()
    w.writerows(rows)
    write_text(path, buf.getvalue())


@torch.no_grad()
def evaluate_heldout(model: TscPretrainModel, store: FeatureStore, pairs: TscPairs, clips: np.ndarray,
                     modalities: list[str], device: torch.device, d: distributed.Dist, batch_size: int = 8) -> dict:
    """Held-out EWP top-1/top-5 and ATP accuracy (every comment of every clip), with the chance level of ATP."""
    model.eval()
    ds = PretrainDataset(store, pairs, clips, modalities, 0)
    mine = list(range(len(ds)))[d.rank::d.world]
    tot: dict[str, float] = {}
    for i in range(0, len(mine), batch_size):
        b = pretrain_collate([ds[(j, 0)] for j in mine[i:i + batch_size]]).to(device)
        with autocast(device):
            out = model(b.x, b.valid, b.present, b.tokens, b.token_valid, b.clip)
        for k, v in accuracy_counts(out, b.word_targets, b.segment).items():
            tot[k] = tot.get(k, 0.0) + v
    for part in distributed.gather_objects(d, tot)[1:]:
        for k, v in part.items():
            tot[k] = tot.get(k, 0.0) + v
    w, c = max(tot.get("words", 0.0), 1.0), max(tot.get("comments", 0.0), 1.0)
    return {"ewp_top1": tot.get("ewp_top1", 0.0) / w, "ewp_top5": tot.get("ewp_top5", 0.0) / w,
            "atp_top1": tot.get("atp_top1", 0.0) / c, "atp_chance": tot.get("atp_chance", 0.0) / c,
            "words": int(tot.get("words", 0)), "comments": int(tot.get("comments", 0))}


def frequency_baseline(pairs: TscPairs, train_clips: np.ndarray, test_clips: np.ndarray) -> dict:
    """EWP baseline: always predict the most frequent training target word (top-5: the 5 most frequent)."""
    def targets_of(clips: np.ndarray) -> np.ndarray:
        if not len(clips):
            return np.zeros(0, np.int64)
        ids = np.concatenate([np.arange(pairs.clip_off[c], pairs.clip_off[c + 1]) for c in clips])
        return np.concatenate([pairs.targets[pairs.tgt_off[i]:pairs.tgt_off[i + 1]] for i in ids] or [np.zeros(0)])

    train, test = targets_of(train_clips), targets_of(test_clips)
    if not len(train) or not len(test):
        return {"ewp_top1": math.nan, "ewp_top5": math.nan}
    top = np.argsort(-np.bincount(train.astype(np.int64)), kind="stable")[:5]
    return {"ewp_top1": float(np.mean(test == top[0])), "ewp_top5": float(np.isin(test, top).mean())}


def pretrain(cfg: PretrainConfig, run_dir: str | Path, log=print) -> dict:
    """Pre-train (or resume, or return the results of a finished run) and evaluate on the held-out clips."""
    run_dir = Path(run_dir)
    if (run_dir / "results.json").is_file() and (run_dir / "pretrained.json").is_file():
        import json
        results = json.loads((run_dir / "results.json").read_text(encoding="utf-8"))
        if os.environ.get("RANK", "0") == "0":
            log(f"already complete: {run_dir} holds a finished pre-training (pretrained.safetensors); its results "
                "(a new --run-dir trains again):")
            log(results_table(results))
        return results
    d, device = distributed.init(cfg.train.device)
    set_threads(cfg.train.threads, cfg.train.num_workers)
    run = PretrainRun(cfg, run_dir, d, device)
    if d.main:
        run_dir.mkdir(parents=True, exist_ok=True)
        import yaml
        write_text(run_dir / "config.yaml", yaml.safe_dump({**to_dict(cfg), "code_version": code_version()},
                                                           sort_keys=False, allow_unicode=True))
    run.resume()
    t0 = time.perf_counter()
    for epoch in range(run.start_epoch, cfg.optim.epochs):
        run.rows.append(run.train_epoch(epoch))
        run.sched.step()
        if d.main:
            if every_due(cfg.train, epoch, epoch + 1 >= cfg.optim.epochs):  # train.checkpoint_every
                save_state(run_dir / "last.pt", run.state(epoch))
            _write_rows(run_dir / "metrics.csv", run.rows)
        distributed.barrier(d)
    results = finish(run, time.perf_counter() - t0)
    if d.main:
        log(results_table(results))
    return results


def finish(run: PretrainRun, seconds: float) -> dict:
    """Held-out metrics, baselines and the checkpoint fine-tuning loads."""
    heldout = evaluate_heldout(run.model, run.store, run.pairs, run.test_clips, run.cfg.model.modalities,
                               run.device, run.d)
    results = {"heldout": heldout, "baseline": frequency_baseline(run.pairs, run.train_clips, run.test_clips),
               "clips": {"train": len(run.train_clips), "heldout": len(run.test_clips)},
               "comments": run.pairs.n_comments, "skipped": run.pairs.skipped, "train_seconds": seconds,
               "final": run.rows[-1] if run.rows else {}, "random_init_features": run.store.manifest.random_init}
    if run.d.main:
        save_model(run.run_dir, "pretrained", run.model, run.meta())
        write_query(run.run_dir / "pretrained.safetensors", readout_query(run.model, run.pairs, run.train_clips))
        write_json(run.run_dir / "results.json", results)
        write_text(run.run_dir / "results.md", results_table(results) + "\n")
    distributed.barrier(run.d)
    return results


def results_table(r: dict) -> str:
    """Held-out pre-training metrics beside their chance / frequency baselines (markdown)."""
    h, b = r["heldout"], r["baseline"]
    rows = [("EWP top-1", h["ewp_top1"], b["ewp_top1"], "most frequent word"),
            ("EWP top-5", h["ewp_top5"], b["ewp_top5"], "5 most frequent words"),
            ("ATP top-1", h["atp_top1"], h["atp_chance"], "chance (1/T per clip)")]
    out = [f"held-out: {r['clips']['heldout']} clips, {h['comments']} comments, {h['words']} masked words "
           f"(train clips {r['clips']['train']}; skipped {r['skipped'] or 'none'})",
           "| task | held-out | baseline | baseline is |", "|---|---:|---:|---|"]
    out += [f"| {n} | {v:.3f} | {bv:.3f} | {what} |" for n, v, bv, what in rows]
    if r.get("random_init_features"):
        out += ["", "**Features come from randomly initialised encoders: the pre-trained weights are for tests and "
                "demos only, not real results.**"]
    return "\n".join(out)


# ---------------------------------------------------------------- Tables 3 and 4 (fine-tuned accuracy per row)

TABLES = {
    3: ("Masking strategy", [("random10", "random 10%", (53.85, 53.55)), ("random20", "random 20%", (49.18, 55.13)),
                             ("random30", "random 30%", (45.33, 50.61)),
                             ("emotion", "emotional words", (57.53, 61.00))]),
    4: ("Pre-training", [("none", "No pre-training", (56.04, 60.64)), ("ewp-only", "EWP only", (51.25, 53.30)),
                         ("atp-only", "ATP only", (42.36, 50.73)), ("w1t2", "λw : λt = 1 : 2", (51.30, 54.59)),
                         ("w2t1", "λw : λt = 2 : 1", (52.29, 59.50)), ("w1t1", "λw : λt = 1 : 1", (57.53, 61.00))]),
}
"""Table number -> (first column, rows of (run folder, label, the paper's VE-8 and YF-6 accuracy in %))."""


def collect_table(number: int, root: str | Path, paper: bool = True) -> str:
    """Markdown of Table 3 or 4 from `root/<row>/<ve8|yf6>/**/results.json` (mean ± std test accuracy, %)."""
    import json

    head, rows = TABLES[number]
    if not Path(root).is_dir():
        raise TamError(f"{root}: no such folder (--runs: the folder holding <row>/<ve8|yf6>/.../results.json)")
    out = [f"| {head} | VE-8 | YF-6 |" + (" VE-8 (paper) | YF-6 (paper) |" if paper else ""),
           "|---|---:|---:|" + ("---:|---:|" if paper else "")]
    for key, label, ref in rows:
        cells = []
        for ds in ("ve8", "yf6"):
            accs = [100 * json.loads(p.read_text(encoding="utf-8"))["test"]["accuracy"]
                    for p in sorted((Path(root) / key / ds).glob("**/results.json"))]
            cells.append(f"{np.mean(accs):.2f} ± {np.std(accs):.2f} (n={len(accs)})" if accs else "—")
        out.append(f"| {label} | {cells[0]} | {cells[1]} |" + (f" {ref[0]:.2f} | {ref[1]:.2f} |" if paper else ""))
    return "\n".join(out)
