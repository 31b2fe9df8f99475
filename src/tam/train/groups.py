"""Optimiser parameter groups of a training run: the head at `optim.lr`, the fusion module at its own rate.

From scratch every parameter gets `optim.lr`. When fine-tuning (`train.init_from`), the fusion module gets
`optim.fusion_lr` (paper: 1e-5 against 1e-4 for the head), and with `optim.layer_decay` < 1 layer-wise decay:
the fusion's depth k (0 = the Eq. 1 embedding, 1..L = its layers, L+1 = the final norm) gets
fusion_lr × layer_decay^(L + 1 - k), so the layers nearest the head move most. `optim.freeze_fusion_epochs`
keeps the fusion module fixed for the first epochs (`drop_frozen_grads`): the new head first learns to read
the pre-trained representation, then both train.
"""

from __future__ import annotations

from torch import nn

from tam.config import OptimConfig


def fusion_depth(name: str, layers: int) -> int:
    """Depth of a parameter of the fusion module from its name (relative to `fusion.`), 0..layers+1."""
    parts = name.split(".")
    if parts[0] == "embed":
        return 0
    if "towers" in parts:  # concat / divide: towers.<modality>.<layer>
        return int(parts[parts.index("towers") + 2]) + 1
    for key in ("layers", "blocks"):
        if key in parts:
            return int(parts[parts.index(key) + 1]) + 1
    return layers + 1  # the final norm and anything after the layers


def param_groups(model: nn.Module, optim: OptimConfig, layers: int, fine_tuning: bool) -> list[dict]:
    """[head group, fusion group(s)]; every group names its part (`name`) for the logs and the tests."""
    head = [p for n, p in model.named_parameters() if not n.startswith("fusion.")]
    groups = [{"name": "head", "params": head, "lr": optim.lr}]
    base = (optim.fusion_lr or optim.lr) if fine_tuning else optim.lr
    decay = optim.layer_decay if fine_tuning else 1.0
    by_depth: dict[int, list] = {}
    for n, p in model.fusion.named_parameters():
        by_depth.setdefault(fusion_depth(n, layers) if decay != 1.0 else 0, []).append(p)
    for k in sorted(by_depth):
        lr = base * decay ** (layers + 1 - k) if decay != 1.0 else base
        groups.append({"name": f"fusion.{k}" if decay != 1.0 else "fusion", "params": by_depth[k], "lr": lr})
    return groups


def drop_frozen_grads(model: nn.Module, optim: OptimConfig, epoch: int, fine_tuning: bool) -> None:
    """While the fusion module is frozen (fine-tuning, epoch < optim.freeze_fusion_epochs), drop its gradients:
    the optimiser then skips its parameters (no update, no weight decay, no moment)."""
    if fine_tuning and epoch < optim.freeze_fusion_epochs:
        for p in model.fusion.parameters():
            p.grad = None
