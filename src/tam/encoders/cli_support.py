"""Small helpers behind `tam extract`: choosing encoders, the device and the shard from arguments."""

from __future__ import annotations

import re
from collections.abc import Mapping

from tam import MODALITIES
from tam.encoders.table import ENCODERS, TINY, FrozenEncoder, build_encoder
from tam.errors import TamError


def parse_shard(text: str, env: Mapping[str, str]) -> tuple[int, int]:
    """`i/n` -> (i, n); without it, torchrun's RANK / WORLD_SIZE; else (0, 1)."""
    if text:
        m = re.fullmatch(r"(\d+)/(\d+)", text.strip())
        if not m or not 0 <= int(m.group(1)) < int(m.group(2)):
            raise TamError(f"--shard {text!r}: expected i/n with 0 <= i < n, e.g. 0/4")
        return int(m.group(1)), int(m.group(2))
    if "RANK" in env and "WORLD_SIZE" in env:
        return int(env["RANK"]), int(env["WORLD_SIZE"])
    return 0, 1


def pick_device(name: str, env: Mapping[str, str]) -> str:
    """`auto` -> cuda:LOCAL_RANK when CUDA is there, else cpu."""
    import torch

    if name != "auto":
        if name.startswith("cuda") and not torch.cuda.is_available():
            raise TamError(f"--device {name}: CUDA is not available here")
        return name
    return f"cuda:{int(env.get('LOCAL_RANK', 0))}" if torch.cuda.is_available() else "cpu"


def chosen_encoders(modalities: str, names: Mapping[str, str], tiny: bool) -> dict[str, str]:
    """modality -> encoder name, checked against the table."""
    wanted = [m.strip() for m in modalities.split(",") if m.strip()]
    bad = [m for m in wanted if m not in MODALITIES]
    if bad or not wanted:
        raise TamError(f"--modalities: expected names from {MODALITIES}, got {modalities!r}")
    out = {}
    for m in wanted:
        name = TINY[m] if tiny else names[m]
        if name not in ENCODERS or ENCODERS[name].modality != m:
            choices = sorted(k for k, v in ENCODERS.items() if v.modality == m)
            raise TamError(f"--{m} {name!r}: not a {m} encoder; choose from {choices}")
        out[m] = name
    return out


def build_encoders(args, device: str) -> dict[str, FrozenEncoder]:
    """Build the encoders named by the arguments, in the paper's modality order."""
    names = chosen_encoders(args.modalities, {m: getattr(args, m) for m in MODALITIES}, args.tiny)
    random_init = args.random_init or args.tiny
    out = {}
    for m in MODALITIES:
        if m in names:
            extra = {"pca": args.audio_pca, "quantize": args.quantize} if m == "audio" else {}
            out[m] = build_encoder(names[m], getattr(args, f"{m}_weights"), random_init, device, **extra)
    return out
