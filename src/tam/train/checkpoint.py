"""Checkpoints. A model is `NAME.safetensors` (weights) + `NAME.json` (everything needed to rebuild it), so a
run directory rebuilds its model alone. The resume state (`last.pt`: optimiser, scheduler, RNG, epoch) holds
only tensors and plain containers and is read with `torch.load(weights_only=True)`.

Loading treats both files as untrusted: the JSON description is read with a size cap and checked (types,
ranges, classes vs outputs), the safetensors header is parsed here with bounded reads, and the model is first
built on the `meta` device (no memory) so its parameter names, shapes and dtypes are compared with the header
before anything is allocated. Every failure is a one-line `TamError` naming the file.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from tam.config import FUSIONS, ModelConfig, RunConfig, from_dict
from tam.errors import TamError, first_line
from tam.io import atomic_write, read_json, write_json
from tam.models.model import REGRESSION_TARGETS, AffectModel, build_model

MAX_HEADER_BYTES = 100 << 20  # the safetensors format's own cap
MAX_DIM = 1 << 20  # feature width of one modality
MAX_OUTPUTS = 1 << 16
# ranges of the model description; a file beyond them is refused before anything is built
RANGES = {"d": (1, 1 << 16), "layers": (0, 256), "heads": (1, 1 << 12), "ffn_mult": (1, 256), "T": (1, 1 << 20)}
DTYPES = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
          "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
          "BOOL": torch.bool}


def save_model(run_dir: str | Path, name: str, model: torch.nn.Module, meta: dict) -> None:
    """Write NAME.safetensors then NAME.json (the JSON last: a model is complete once its JSON exists)."""
    run_dir = Path(run_dir)
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    atomic_write(run_dir / f"{name}.safetensors", lambda p: save_file(state, str(p)))
    write_json(run_dir / f"{name}.json", meta)


# ---- untrusted files: bounded reads ------------------------------------------------------------
def safetensors_header(path: str | Path) -> dict[str, tuple[torch.dtype, tuple[int, ...]]]:
    """name -> (dtype, shape) from a safetensors file's header, checked against the file's size.

    Reads 8 bytes (little-endian header length, capped) and the header; the tensors' byte ranges must tile
    the data area exactly, so nothing the header promises lies outside the file.
    """
    path = Path(path)
    try:
        size = path.stat().st_size
        with path.open("rb") as f:
            raw = f.read(8)
            n = int.from_bytes(raw, "little") if len(raw) == 8 else -1
            if n < 0:
                raise TamError(f"{path}: not a safetensors file ({size} bytes, no header length)")
            if n > MAX_HEADER_BYTES or 8 + n > size:
                raise TamError(f"{path}: corrupt safetensors file (header of {n} bytes in a {size}-byte file)")
            head = f.read(n)
    except OSError as e:
        raise TamError(f"{path}: cannot read the weights ({e.strerror or e})") from None
    try:
        obj = json.loads(head.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise TamError(f"{path}: corrupt safetensors file (the header is not valid JSON)") from None
    if not isinstance(obj, dict):
        raise TamError(f"{path}: corrupt safetensors file (the header is not a JSON object)")
    obj.pop("__metadata__", None)
    out, spans = {}, []
    for name, info in obj.items():
        dtype, shape, span = _tensor_info(path, name, info)
        out[name] = (dtype, shape)
        spans.append(span)
    end = 0
    for a, b in sorted(spans):
        if a != end:
            raise TamError(f"{path}: corrupt safetensors file (tensor data overlaps or leaves gaps at byte {a})")
        end = b
    if end != size - 8 - n:
        raise TamError(f"{path}: corrupt safetensors file (the header describes {end} bytes of data, the file "
                       f"holds {size - 8 - n}; truncated?)")
    return out


def _tensor_info(path: Path, name: str, info) -> tuple[torch.dtype, tuple[int, ...], tuple[int, int]]:
    bad = f"{path}: corrupt safetensors file (entry {str(name)[:80]!r}"
    if not isinstance(info, dict) or set(info) != {"dtype", "shape", "data_offsets"}:
        raise TamError(f"{bad} is not {{dtype, shape, data_offsets}})")
    dtype, shape, offsets = DTYPES.get(info["dtype"]), info["shape"], info["data_offsets"]
    if dtype is None:
        raise TamError(f"{bad} has an unknown dtype {str(info['dtype'])[:20]!r})")
    if not _ints(shape) or not _ints(offsets) or len(offsets) != 2 or len(shape) > 8:
        raise TamError(f"{bad} has a malformed shape or data_offsets)")
    a, b = offsets
    if b - a != math.prod(shape) * dtype.itemsize:
        raise TamError(f"{bad}: shape {shape} does not match its {b - a} bytes)")
    return dtype, tuple(shape), (a, b)


def _ints(x) -> bool:
    return isinstance(x, list) and all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in x)


# ---- the description ---------------------------------------------------------------------------
def check_model_config(meta: dict, path: Path) -> ModelConfig:
    """`meta["model"]` as a ModelConfig, with every field type- and range-checked."""
    raw = meta.get("model")
    if not isinstance(raw, dict):
        raise TamError(f"{path}: no 'model' section (the model description)")
    try:
        cfg = from_dict(ModelConfig, raw, "model")
    except TamError as e:
        raise TamError(f"{path}: {e}") from None
    if cfg.fusion not in FUSIONS:
        raise TamError(f"{path}: unknown fusion {cfg.fusion!r} (known: {', '.join(FUSIONS)})")
    for key, (lo, hi) in RANGES.items():
        v = getattr(cfg, key)
        if not lo <= v <= hi:
            raise TamError(f"{path}: model.{key} = {v} is outside [{lo}, {hi}]")
    if cfg.d % cfg.heads:
        raise TamError(f"{path}: model.d = {cfg.d} is not divisible by model.heads = {cfg.heads}")
    if not 0 <= cfg.dropout < 1:
        raise TamError(f"{path}: model.dropout = {cfg.dropout} is outside [0, 1)")
    if not (math.isfinite(cfg.noise) and cfg.noise >= 0):
        raise TamError(f"{path}: model.noise = {cfg.noise} must be a finite σ >= 0")
    mods = cfg.modalities
    if not mods or len(set(mods)) != len(mods) or not all(mods):
        raise TamError(f"{path}: model.modalities must be distinct, non-empty names, got {mods}")
    try:  # every other model field (readout, stochastic depth, noise, ...) by the config's own rules
        RunConfig(model=cfg).validate()
    except TamError as e:
        raise TamError(f"{path}: {e}") from None
    return cfg


def check_dims(meta: dict, cfg: ModelConfig, path: Path) -> dict[str, int]:
    """`meta["dims"]`: a positive feature width for every modality of the model."""
    dims = meta.get("dims")
    if not isinstance(dims, dict) or not all(isinstance(v, int) and not isinstance(v, bool) for v in dims.values()):
        raise TamError(f"{path}: 'dims' must map each modality to its feature width, got {str(dims)[:80]}")
    missing = [m for m in cfg.modalities if m not in dims]
    if missing:
        raise TamError(f"{path}: 'dims' has no width for modalities {missing}")
    bad = {m: v for m, v in dims.items() if not 1 <= v <= MAX_DIM}
    if bad:
        raise TamError(f"{path}: feature widths {bad} are outside [1, {MAX_DIM}]")
    return {m: dims[m] for m in cfg.modalities}


def check_head(meta: dict, path: Path) -> int:
    """The task, outputs, classes and target statistics agree: returns the number of outputs."""
    task, outputs, classes = meta.get("task"), meta.get("outputs"), meta.get("classes")
    if task not in ("classification", "regression"):
        raise TamError(f"{path}: 'task' must be classification or regression, got {str(task)[:40]!r}")
    if not isinstance(outputs, int) or isinstance(outputs, bool) or not 1 <= outputs <= MAX_OUTPUTS:
        raise TamError(f"{path}: 'outputs' must be an integer in [1, {MAX_OUTPUTS}], got {str(outputs)[:40]}")
    if not isinstance(classes, list) or not all(isinstance(c, str) for c in classes):
        raise TamError(f"{path}: 'classes' must be a list of names")
    if task == "classification" and (len(classes) != outputs or len(set(classes)) != outputs):
        raise TamError(f"{path}: {len(classes)} distinct class names for {outputs} outputs")
    if task == "regression" and outputs != len(REGRESSION_TARGETS):
        raise TamError(f"{path}: a regression model has {len(REGRESSION_TARGETS)} outputs, not {outputs}")
    for key in ("target_mean", "target_std"):
        v = meta.get(key, [])
        ok = isinstance(v, list) and all(isinstance(x, int | float) and not isinstance(x, bool)
                                         and math.isfinite(x) for x in v)
        n = outputs if task == "regression" else 0  # regression targets are standardised with training stats
        if not ok or len(v) != n:
            raise TamError(f"{path}: '{key}' must be {n} finite numbers for {task}, got {str(v)[:60]}")
    if any(s <= 0 for s in meta.get("target_std", [])):
        raise TamError(f"{path}: 'target_std' must be positive")
    return outputs


def check_features(meta: dict, dims: dict[str, int], path: Path) -> None:
    """The recorded feature manifest (if any) parses and agrees with `dims`."""
    if "features" not in meta:
        return
    from tam.features.store import Manifest

    try:
        manifest = Manifest.from_json(meta["features"])
        widths = manifest.dims
    except (KeyError, TypeError, ValueError, AttributeError):
        raise TamError(f"{path}: unreadable 'features' (the feature store manifest)") from None
    if not isinstance(manifest.segment, str):
        raise TamError(f"{path}: 'features.segment' must be the segment policy's description, got "
                       f"{str(manifest.segment)[:40]}")
    wrong = {m: (widths.get(m), D) for m, D in dims.items() if widths.get(m) != D}
    if wrong:
        raise TamError(f"{path}: 'features' and 'dims' disagree on feature widths {wrong}")


# ---- building ----------------------------------------------------------------------------------
def build_checked(build: Callable[[], torch.nn.Module], weights: Path, device: str | torch.device,
                  what: Path) -> torch.nn.Module:
    """Build on the meta device, compare its state with the header of `weights`, then build and load for real."""
    header = safetensors_header(weights)
    try:
        with torch.device("meta"):
            shell = build()
    except (TamError, ValueError, KeyError, TypeError, RuntimeError) as e:
        raise TamError(f"{what}: cannot build the described model ({first_line(e)})") from None
    _compare(shell, header, weights, what)
    del shell
    model = build()
    try:
        state = load_file(str(weights), device="cpu")
    except Exception as e:  # noqa: BLE001 - the header was checked; anything left is a corrupt file
        raise TamError(f"{weights}: unreadable weights ({type(e).__name__}: {first_line(e, 120)})") from None
    bad = [k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise TamError(f"{weights}: tensors {bad[:3]} contain NaN/Inf")
    model.load_state_dict(state, strict=True)
    return model.to(device)


def _compare(shell: torch.nn.Module, header: dict, weights: Path, what: Path) -> None:
    """Names, shapes and dtypes of the header against the meta-device model (nothing is allocated)."""
    expected = {k: (v.dtype, tuple(v.shape)) for k, v in shell.state_dict().items()}
    unexpected = sorted(set(header) - set(expected))
    if unexpected:
        raise TamError(f"{weights}: the weights do not fit {what.name} (unexpected tensors {unexpected[:3]}"
                       f"{', ...' if len(unexpected) > 3 else ''})")
    for k, (dtype, shape) in header.items():
        if expected[k] != (dtype, shape):
            raise TamError(f"{weights}: tensor {k!r} is {shape} {dtype}, but {what.name} describes "
                           f"{expected[k][1]} {expected[k][0]}")
    try:  # missing keys: the model's own strict loading decides (a module may accept older checkpoints)
        shell.load_state_dict({k: torch.empty(shape, dtype=dtype, device="meta") for k, (dtype, shape)
                               in header.items()}, strict=True)
    except RuntimeError as e:
        raise TamError(f"{weights}: the weights do not fit {what.name} ({' '.join(str(e).split())[:200]})") \
            from None


def load_model(source: str | Path, name: str = "best", device: str | torch.device = "cpu") -> tuple[AffectModel, dict]:
    """Rebuild a model and load its weights strictly (both files checked first) from a run directory
    (`NAME.json` + `NAME.safetensors`), an exported folder (`config.json` + `model.safetensors`, `tam export`) or a
    Hugging Face Hub repo id of such a folder (`tam.hub.resolve`; offline: the local cache)."""
    from tam.hub import config as export
    from tam.hub.card import check_card
    from tam.hub.resolve import CARD, CONFIG, WEIGHTS, resolve

    kind, folder = resolve(source, name)
    meta_path, weights = ((folder / f"{name}.json", folder / f"{name}.safetensors") if kind == "run"
                          else (folder / CONFIG, folder / WEIGHTS))
    if not meta_path.is_file() or not weights.is_file():
        raise TamError(f"{folder}: no model ({meta_path.name} + {weights.name})")
    meta = read_json(meta_path, "model description")
    cfg = check_model_config(meta, meta_path)
    dims = check_dims(meta, cfg, meta_path)
    outputs = check_head(meta, meta_path)
    check_features(meta, dims, meta_path)
    if kind == "export":
        export.check_export(meta, dims, meta_path)
        check_card(folder / CARD)
    model = build_checked(lambda: build_model(cfg, dims, outputs), weights, device, meta_path)
    if kind == "export":
        export.check_stats(model, meta, meta_path)
    return model.eval(), meta


# ---- resume state ------------------------------------------------------------------------------
def save_state(path: str | Path, state: dict) -> None:
    atomic_write(path, lambda p: torch.save(state, p))


def load_state(path: str | Path) -> dict:
    """The resume state, unpickled with `weights_only=True` (no code runs); a one-line TamError if unreadable."""
    path = Path(path)
    try:
        s = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - torch.load raises many types for corrupt or hostile files
        found = re.search(r"Unsupported global: GLOBAL \S+", str(e))  # a hostile or foreign pickle
        first = found.group(0) if found else first_line(e)
        raise TamError(f"{path}: unreadable resume state ({type(e).__name__}: {first}); delete it to start "
                       "afresh") from None
    if not isinstance(s, dict):
        raise TamError(f"{path}: the resume state is a {type(s).__name__}, not a dict")
    kinds = {"model": dict, "opt": dict, "sched": dict, "epoch": int, "best": int | float, "best_epoch": int,
             "config": str, "rng": torch.Tensor}
    for key, tp in kinds.items():
        v = s.get(key)
        if (key in ("model", "epoch") or key in s) and (not isinstance(v, tp) or isinstance(v, bool)):
            raise TamError(f"{path}: the resume state has no valid {key!r}")
    rng = s.get("rng")
    if rng is not None and (rng.dtype != torch.uint8 or rng.shape != torch.get_rng_state().shape):
        raise TamError(f"{path}: the resume state's RNG state is not a CPU generator state")
    return s


def restore_state(path: str | Path, s: dict, model: torch.nn.Module, opt=None, sched=None) -> None:
    """Load the model (strictly), optimiser and scheduler parts of a resume state; a mismatch is a TamError."""
    try:
        model.load_state_dict(s["model"])
        if opt is not None:
            opt.load_state_dict(s["opt"])
        if sched is not None:
            sched.load_state_dict(s["sched"])
    except (KeyError, RuntimeError, ValueError, TypeError, IndexError) as e:
        raise TamError(f"{path}: the resume state does not fit this run ({' '.join(str(e).split())[:200]})") \
            from None
