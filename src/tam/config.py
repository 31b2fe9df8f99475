"""Typed configuration: the schema and the defaults (the paper's settings, section 5.2).

A YAML file holds an instance: `model:`, `data:`, `optim:`, `train:` sections whose keys are the
fields below. `load_config(path, overrides=["optim.lr=1e-3"])` reads one; unknown keys are errors.
Only `build_*(cfg)` functions see these objects; layers take explicit keyword arguments.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_args, get_origin, get_type_hints

import yaml

from tam import MODALITIES
from tam.errors import TamError, first_line

FUSIONS = ("ctm", "inner", "cross", "concat", "divide", "joint")
"""Fusion strategies: the paper's CTM, its two ablations (Table 2, lower) and three baselines (section 5.3)."""

READOUTS = ("f0", "mean", "attentive")
"""What the head reads from the fusion output f: the paper's f^0, or a pooling over the valid segments."""

POS_INITS = ("sinusoidal", "normal")
"""Where the learnable position embedding P_e starts (tam.models.fusion.ModalityEmbedding)."""


@dataclass
class ModelConfig:
    fusion: str = "ctm"
    # modality keys of the feature store: the paper's image/motion/audio, or any named groups of a clip table
    modalities: list[str] = field(default_factory=lambda: list(MODALITIES))
    d: int = 768  # width of the fusion module
    layers: int = 12  # L
    heads: int = 8
    ffn_mult: int = 4  # FFN hidden width = ffn_mult * d
    dropout: float = 0.1
    T: int = 64  # segments per training clip; evaluation slides windows of T over the whole video
    # what the head reads: f0 (the paper's video token f^0) | mean (mean of f over the valid segments) |
    # attentive (a learned query's softmax over the valid segments of f; docs/pretraining.md "Readout")
    readout: str = "f0"
    # where the learnable position embedding P_e starts: sinusoidal (sine/cosine code) | normal (ViT's σ = 0.02);
    # the paper does not say. Measured: with `normal` CTM memorises the cross-modal timing world (docs/synthetic.md)
    pos_init: str = "sinusoidal"
    # regularisation, training only (docs/training.md "Regularisation and schedules"; 0 = off = the paper)
    drop_path: float = 0.0  # stochastic depth of the last fusion layer (linear from 0 in the first)
    noise: float = 0.0  # σ of Gaussian noise added to the (normalised) input features
    # CTM fusions only (ctm, inner, cross), both off = the paper; measured in docs/synthetic.md (a), 2026-12-07:
    # learned relative-position bias in Eqs. (3)-(4) per (m, n) pair, head and segment offset in [-R, R]; 0 = off
    rel_bias: int = 0
    rel_bias_scale: float = 1.0  # the bias is stored as b / this: Adam moves it this many times faster (lr-limited)
    rel_bias_init: float = 0.0  # σ of the bias's normal init (0: starts at 0, the paper's scores)
    centre: bool = False  # per-video centring: each modality's features minus their mean over the clip's segments
    tie_projections: bool = False  # one W_q, W_k, W_v per CTM layer shared by every modality (off = the paper)


@dataclass
class DataConfig:
    store: str = ""  # feature store folder (see tam.features.store)
    labels: str = ""  # labels CSV: video,label[,split] or video,valence,arousal[,split]
    task: str = "classification"  # classification | regression
    classes: list[str] = field(default_factory=list)  # class names in index order; [] = sorted names in the CSV
    val_fraction: float = 0.15  # validation carved from training rows that have no split
    split_seed: int = 0
    # encoder name expected for each modality, e.g. {image: clip-vit-b32}; a store made by other encoders is
    # refused. Modalities not listed are not checked (the paper's configs list all three)
    encoders: dict[str, str] = field(default_factory=dict)
    # feature normalisation with training statistics (tam.features.normalize): zscore | log1p (signed log1p, then
    # z-score; for heavy-tailed hand-crafted features) | none (the paper-exact setting of configs/)
    normalize: str = "zscore"
    normalize_clip: float = 5.0  # clip normalised values at ±this many σ; 0 = off


@dataclass
class OptimConfig:
    optimizer: str = "adamw"  # adamw | adam
    lr: float = 1e-4
    weight_decay: float = 5e-3
    batch_size: int = 8  # global batch, split across processes under torchrun
    epochs: int = 100
    lr_step_epochs: int = 0  # multiply lr by lr_gamma every this many epochs; 0 = constant
    lr_gamma: float = 0.1
    grad_clip: float = 1.0  # max global gradient norm; 0 = off
    fusion_lr: float = 0.0  # lr of the fusion module when fine-tuning from train.init_from (paper: 1e-5); 0 = lr
    freeze_fusion_epochs: int = 0  # fine-tuning: the fusion module is not updated in the first this many epochs
    layer_decay: float = 1.0  # fine-tuning: fusion layer l of L gets fusion lr × layer_decay^(L - l); 1 = off
    # learning-rate schedule, applied per optimiser step: step (× lr_gamma every lr_step_epochs, the paper's
    # constant lr when lr_step_epochs = 0) | cosine (to 0 at the last epoch); after a linear warm-up
    schedule: str = "step"
    warmup_epochs: float = 0.0  # linear warm-up from lr / steps to lr over this many epochs; 0 = off


@dataclass
class TrainConfig:
    seed: int = 0
    num_workers: int = 2  # DataLoader worker processes per rank
    device: str = "auto"  # auto | cpu | cuda
    eval_batch_size: int = 32  # windows per evaluation batch
    progress: bool = True
    # fine-tuning: a .safetensors checkpoint (with its .json beside it) whose `fusion.*` weights initialise the
    # fusion module, e.g. the output of TSC pre-training; the head starts fresh. "" = train from scratch
    init_from: str = ""
    # the input normalisation when fine-tuning from init_from: checkpoint (the statistics the fusion was pre-trained
    # with, stored in it) | data (recomputed from this run's training rows, data.normalize; never validation/test)
    init_norm: str = "checkpoint"
    # intra-op CPU threads of torch; 0 = auto: OMP_NUM_THREADS where the environment sets it, else
    # max(1, cores // (1 + num_workers)), so loader workers and the training step do not oversubscribe the cores
    # (tam.train.threads)
    threads: int = 0
    # model selection on validation: metric (accuracy / mean PCC; ties broken by the lower validation loss) |
    # loss (the lowest validation loss; steadier on tiny validation splits) | last (no selection: the last epoch's
    # model is tested, a fixed schedule, for validation splits too small to choose an epoch on)
    select: str = "metric"
    train_eval_videos: int = 64  # training videos scored like validation each epoch (train curves); 0 = off
    linear_baseline: bool = True  # fit the linear baseline (tam.eval.linear) beside every result
    patience: int = 0  # early stopping: stop after this many epochs without a better validation score; 0 = off
    # epochs between writes of the resume state (last.pt, metrics.csv; under select last also the kept model), and
    # always after the run's last epoch; 0 = after the last epoch only (a killed run starts again from epoch 1)
    checkpoint_every: int = 1
    curves: bool = True  # draw curves.png (train / validation curves) beside each run's results; metrics.csv stays
    ema_decay: float = 0.0  # exponential moving average of the weights (evaluated, selected, saved); 0 = off


@dataclass
class AugmentConfig:
    """Training-time augmentation and label regularisation; every draw is a function of (seed, epoch, video)."""

    crop_min_fraction: float = 1.0  # training crops are T·u segments long, u ~ U[this, 1]; 1 = always T (paper)
    # a training clip shorter than T starts at a random slot of the T-slot window (leading slots padded and masked),
    # so that absolute position (P_e) says less about a video; False = slot 0 (the paper)
    shift: bool = False
    token_dropout: float = 0.0  # each segment of a training clip is masked out with this probability
    modality_dropout: float = 0.0  # each clip loses one random present modality with this probability (never all)
    mixup_alpha: float = 0.0  # mixup between videos, λ ~ Beta(α, α) (kept >= 0.5); 0 = off
    label_smoothing: float = 0.0  # classification: cross-entropy against (1 - ε)·one-hot + ε/C


@dataclass
class RunConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)

    def validate(self) -> RunConfig:
        m = self.model
        if m.fusion not in FUSIONS:
            raise TamError(f"model.fusion must be one of {FUSIONS}, got {m.fusion!r}")
        if not m.modalities or len(set(m.modalities)) != len(m.modalities) or not all(m.modalities):
            raise TamError(f"model.modalities must be distinct, non-empty names (e.g. {list(MODALITIES)}), "
                           f"got {m.modalities}")
        if m.d % m.heads:
            raise TamError(f"model.d = {m.d} is not divisible by model.heads = {m.heads}")
        if m.readout not in READOUTS:
            raise TamError(f"model.readout must be one of {READOUTS}, got {m.readout!r}")
        if m.pos_init not in POS_INITS:
            raise TamError(f"model.pos_init must be one of {POS_INITS}, got {m.pos_init!r}")
        ctm_only = (m.rel_bias or m.centre or m.tie_projections) and m.fusion not in ("ctm", "inner", "cross")
        if not 0 <= m.rel_bias <= m.T or not 0 < m.rel_bias_scale <= 1000 or ctm_only:
            raise TamError(f"model.rel_bias must be in [0, model.T = {m.T}], model.rel_bias_scale in (0, 1000], and "
                           f"like model.centre and model.tie_projections they need a CTM fusion (ctm, inner, cross); "
                           f"got {m.rel_bias}, {m.rel_bias_scale}, centre {m.centre}, tie_projections "
                           f"{m.tie_projections}, fusion {m.fusion!r}")
        if not 0 <= m.rel_bias_init <= 10:
            raise TamError(f"model.rel_bias_init (σ of the bias's init, in logits) must be in [0, 10], got "
                           f"{m.rel_bias_init}")
        if self.optim.freeze_fusion_epochs < 0 or not 0 < self.optim.layer_decay <= 1:
            raise TamError(f"optim.freeze_fusion_epochs must be >= 0 and optim.layer_decay in (0, 1], got "
                           f"{self.optim.freeze_fusion_epochs}, {self.optim.layer_decay}")
        if self.data.task not in ("classification", "regression"):
            raise TamError(f"data.task must be classification or regression, got {self.data.task!r}")
        if self.optim.optimizer not in ("adam", "adamw"):
            raise TamError(f"optim.optimizer must be adam or adamw, got {self.optim.optimizer!r}")
        if self.data.normalize not in ("zscore", "log1p", "none") or self.data.normalize_clip < 0:
            raise TamError(f"data.normalize must be zscore, log1p or none and data.normalize_clip >= 0, got "
                           f"{self.data.normalize!r}, {self.data.normalize_clip}")
        if self.train.init_norm not in ("checkpoint", "data"):
            raise TamError(f"train.init_norm must be checkpoint or data, got {self.train.init_norm!r}")
        if self.train.select not in ("metric", "loss", "last") or self.train.threads < 0:
            raise TamError(f"train.select must be metric, loss or last and train.threads >= 0, got "
                           f"{self.train.select!r}, {self.train.threads}")
        if not 0 <= self.data.val_fraction < 1:
            raise TamError(f"data.val_fraction must be in [0, 1), got {self.data.val_fraction}")
        self._validate_regularisation()
        return self

    def _validate_regularisation(self) -> None:
        a, m, o, t = self.augment, self.model, self.optim, self.train
        probs = {"augment.token_dropout": a.token_dropout, "augment.modality_dropout": a.modality_dropout,
                 "augment.label_smoothing": a.label_smoothing, "model.drop_path": m.drop_path,
                 "model.dropout": m.dropout, "train.ema_decay": t.ema_decay}
        for name, v in probs.items():
            if not 0 <= v < 1:
                raise TamError(f"{name} must be in [0, 1), got {v}")
        if not 0 < a.crop_min_fraction <= 1:
            raise TamError(f"augment.crop_min_fraction must be in (0, 1], got {a.crop_min_fraction}")
        if a.mixup_alpha < 0 or m.noise < 0 or o.warmup_epochs < 0 or t.patience < 0 or t.checkpoint_every < 0:
            raise TamError("augment.mixup_alpha, model.noise, optim.warmup_epochs, train.patience and "
                           "train.checkpoint_every must be >= 0")
        if o.epochs < 1 or o.batch_size < 1:
            raise TamError(f"optim.epochs and optim.batch_size must be at least 1, got {o.epochs}, {o.batch_size}")
        if o.schedule not in ("step", "cosine"):
            raise TamError(f"optim.schedule must be step or cosine, got {o.schedule!r}")


def to_dict(cfg: Any) -> dict:
    return dataclasses.asdict(cfg)


def _coerce(value: Any, tp: Any, where: str) -> Any:
    origin = get_origin(tp)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise TamError(f"config {where}: expected a mapping, got {value!r}")
        return from_dict(tp, value, where)
    if origin is dict:
        if not isinstance(value, dict):
            raise TamError(f"config {where}: expected a mapping, got {value!r}")
        kt, vt = get_args(tp)
        return {_coerce(k, kt, f"{where} key"): _coerce(v, vt, f"{where}.{k}") for k, v in value.items()}
    if origin is list:
        if not isinstance(value, list | tuple):
            raise TamError(f"config {where}: expected a list, got {value!r}")
        (item,) = get_args(tp)
        return [_coerce(v, item, f"{where}[]") for v in value]
    if tp is float and isinstance(value, int | float | str) and not isinstance(value, bool):
        try:
            return float(value)
        except ValueError:
            raise TamError(f"config {where}: expected a number, got {value!r}") from None
    if tp is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if tp is bool and isinstance(value, bool):
        return value
    if tp is str and isinstance(value, str):
        return value
    raise TamError(f"config {where}: expected {getattr(tp, '__name__', tp)}, got {value!r}")


def from_dict(cls: type, data: dict, where: str = "") -> Any:
    """Build dataclass `cls` from a dict, rejecting unknown keys and wrong types."""
    hints = get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(data) - names
    if unknown:
        what = f"config {where}: unknown keys" if where else "config: unknown sections"
        raise TamError(f"{what} {sorted(unknown)}{_did_you_mean(sorted(unknown), names)} (known: {sorted(names)})")
    kwargs = {k: _coerce(v, hints[k], f"{where}.{k}".lstrip(".")) for k, v in data.items()}
    return cls(**kwargs)


def _did_you_mean(keys: list[str], names: set[str]) -> str:
    """` (did you mean 'optim'?)` when the first unknown key is close to a known one."""
    import difflib

    close = difflib.get_close_matches(keys[0], sorted(names), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _field_type(cls: type | None, parts: list[str]) -> Any:
    """The declared type of the field `parts` (section, ..., key) of dataclass `cls`; None when not a known field."""
    tp: Any = cls
    for p in parts:
        if not (dataclasses.is_dataclass(tp) and p in {f.name for f in dataclasses.fields(tp)}):
            return None
        tp = get_type_hints(tp)[p]
    return tp


def apply_overrides(data: dict, overrides: list[str], cls: type | None = None) -> dict:
    """Apply `section.key=value` strings to a nested dict. The value is parsed as YAML, except that a field of `cls`
    declared `str` keeps the text as written (`data.store=2024` is the folder "2024", not the number 2024)."""
    for item in overrides:
        if "=" not in item:
            raise TamError(f"--set {item}: write SECTION.KEY=VALUE with no spaces (e.g. model.d=256)")
        key, raw = item.split("=", 1)
        node = data
        parts = key.split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise TamError(f"--set {item}: {key.rsplit('.', 1)[0]} is a value, not a section")
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError as e:
            raise TamError(f"--set {item}: the value is not valid YAML ({first_line(e)})") from None
        keep_text = _field_type(cls, parts) is str and isinstance(value, int | float | bool) and raw.strip() == raw
        node[parts[-1]] = raw if keep_text else value
    return data


def read_yaml_mapping(path: str | os.PathLike, what: str) -> dict:
    """A YAML file holding a mapping (`{}` when empty); a missing, undecodable or non-mapping file is one line."""
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except OSError as e:
        raise TamError(f"{path}: cannot read {what} ({e.strerror or type(e).__name__})") from None
    except (UnicodeDecodeError, yaml.YAMLError) as e:
        raise TamError(f"{path}: not a YAML {what} ({e.__class__.__name__}: {first_line(e)})") from None
    if not isinstance(data, dict):
        raise TamError(f"{path}: a {what} is a mapping of sections (model:, data:, ...), got {type(data).__name__}")
    return data


def load_config(path: str | os.PathLike | None = None, overrides: list[str] | None = None) -> RunConfig:
    data: dict = {}
    if path is not None:
        data = read_yaml_mapping(path, "config")
    data = apply_overrides(data, overrides or [], RunConfig)
    return from_dict(RunConfig, data).validate()


def dump_config(cfg: RunConfig) -> str:
    return yaml.safe_dump(to_dict(cfg), sort_keys=False, allow_unicode=True)


def changed_fields(old: dict, new: dict, default: dict, prefix: str = "") -> list[str]:
    """The dotted config paths whose values differ between a recorded config `old` and `new`. A key that `old` lacks
    and `new` holds at its `default` value is the same: an option added to the code after the record was written
    ran as its default does (new options are off by default)."""
    out = []
    for k in sorted(set(old) | set(new)):
        x, y = old.get(k), new.get(k)
        if isinstance(x, dict) and isinstance(y, dict):
            out += changed_fields(x, y, default.get(k) if isinstance(default.get(k), dict) else {}, f"{prefix}{k}.")
        elif x != y and not (k not in old and k in default and default[k] == y):
            out.append(prefix + k)
    return out
