"""Per-sample random streams for the model's stochastic layers (dropout, stochastic depth, feature noise).

Under `with sample_rng(seeds):` every stochastic layer draws the randomness of sample b from its own
generator, seeded with `seeds[b]` (the training loop derives it from (seed, epoch, global sample index)).
The masks of a sample then do not depend on which other samples share its batch, nor on how many
processes split the global batch: N processes draw exactly what one process draws. Draws must have the
same per-sample shape in both cases, so training batches are padded to a fixed T (see `collate(pad_to=)`).

Outside such a block (pre-training, user code) the layers fall back to the global torch RNG, like
`nn.Dropout`. In eval mode they are the identity.

Layout: the first axis of a tensor given to these functions is the batch, or b-major groups of it
(`[B·L, ...]` with row b·L + l), so that `x.view(B, -1)` holds one sample per row.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import Tensor, nn

_local = threading.local()


class SampleRNG:
    """One torch.Generator per sample, on `device`.

    Draws are served from per-sample buffers refilled CHUNK numbers at a time (one call per sample per refill,
    not per layer); a sample's sequence of requests is the same in any batch, so are its numbers. Uniform draws on
    the CPU are cut-invariant (torch.rand(a) then torch.rand(b) is torch.rand(a + b)), so their chunks are drawn
    lazily, as much at a time as the previous SampleRNG took in all (`used`): the same numbers, without 2^16 a
    sample per step where a small model needs a few thousand (a third of its step for 32-160 samples). Before a
    normal refill the rest of the uniform chunk is drawn, so that both streams interleave in each generator as
    whole chunks did."""

    CHUNK = 1 << 16
    used: dict[str, int] = {}  # numbers per sample the latest SampleRNG took so far, per kind

    def __init__(self, seeds: Tensor | list[int], device: torch.device | str = "cpu"):
        self.device = torch.device(device)
        self.gens = []
        for s in (seeds.tolist() if isinstance(seeds, Tensor) else seeds):
            g = torch.Generator(device=self.device)
            g.manual_seed(int(s) & (2**63 - 1))
            self.gens.append(g)
        self._buf: dict[str, tuple[Tensor, int]] = {}
        self._room, self._drawn, self._taken = 0, None, 0  # lazy uniform chunk: numbers left, drawn ones, total

    def __len__(self) -> int:
        return len(self.gens)

    def _draw(self, draw, size: int) -> Tensor:
        return torch.stack([draw(size, generator=g, device=self.device) for g in self.gens])

    def _take_uniform(self, n: int) -> Tensor:
        """What `_take("uniform", n)` gives, drawing from the generators only what is used (or `used` hints)."""
        k = 0 if self._drawn is None else self._drawn.shape[1]
        if n > self._room:  # where a chunk refill would skip the rest of the chunk: skip it, new chunk
            if self._room > k:
                self._draw(torch.rand, self._room - k)
            self._room, self._drawn, k = max(n, self.CHUNK), None, 0
        if k < n:
            want = min(max(n - k, SampleRNG.used.get("uniform", self.CHUNK) - self._taken), self._room - k)
            fresh = self._draw(torch.rand, want)
            self._drawn = fresh if self._drawn is None else torch.cat([self._drawn, fresh], dim=1)
        out, self._drawn = self._drawn[:, :n], self._drawn[:, n:]
        self._room -= n
        self._taken += n
        SampleRNG.used["uniform"] = self._taken
        return out

    def _complete_uniform(self) -> None:
        """Draw the rest of the lazy uniform chunk before another draw from the same generators (a chunk refill drew
        it whole, so what follows it in each generator's sequence stays the same)."""
        k = 0 if self._drawn is None else self._drawn.shape[1]
        if self._room > k:
            fresh = self._draw(torch.rand, self._room - k)
            self._drawn = fresh if self._drawn is None else torch.cat([self._drawn, fresh], dim=1)

    def _take(self, kind: str, n: int) -> Tensor:
        if kind == "uniform" and self.device.type == "cpu":  # CUDA's Philox offsets are not cut-invariant
            return self._take_uniform(n)
        buf, pos = self._buf.get(kind, (None, 0))
        if buf is None or pos + n > buf.shape[1]:
            self._complete_uniform()
            draw = torch.rand if kind == "uniform" else torch.randn
            size = max(n, self.CHUNK)
            buf, pos = self._draw(draw, size), 0
        self._buf[kind] = (buf, pos + n)
        return buf[:, pos:pos + n]

    def rand(self, n: int) -> Tensor:
        """[B, n] uniform in [0, 1): row b from sample b's generator."""
        return self._take("uniform", n)

    def randn(self, n: int) -> Tensor:
        """[B, n] standard normal: row b from sample b's generator."""
        return self._take("normal", n)


@contextmanager
def sample_rng(seeds: Tensor | list[int] | None, device: torch.device | str = "cpu") -> Iterator[SampleRNG | None]:
    """Make the stochastic layers draw per-sample randomness from `seeds` (one per sample) in this block.

    `seeds=None` (batches without per-sample seeds) leaves the layers on the global RNG."""
    if seeds is None:
        yield None
        return
    prev = getattr(_local, "rng", None)
    _local.rng = SampleRNG(seeds, device)
    try:
        yield _local.rng
    finally:
        _local.rng = prev


def current() -> SampleRNG | None:
    return getattr(_local, "rng", None)


def _per_sample(x: Tensor, rng: SampleRNG) -> int:
    if x.shape[0] % len(rng):
        raise ValueError(f"first axis {x.shape[0]} is not a multiple of the {len(rng)} samples of the batch")
    return x.numel() // len(rng)


def dropout(x: Tensor, p: float, training: bool) -> Tensor:
    """Inverted dropout with per-sample masks (global RNG outside `sample_rng`)."""
    if not training or p <= 0:
        return x
    rng = current()
    if rng is None:
        return F.dropout(x, p, True)
    keep = rng.rand(_per_sample(x, rng)).reshape(x.shape) >= p
    return x * keep.to(x.dtype) / (1 - p)


def drop_path(x: Tensor, p: float, training: bool) -> Tensor:
    """Stochastic depth: zero a residual branch for a whole sample with probability p, else scale by 1/(1-p)."""
    if not training or p <= 0:
        return x
    rng = current()
    if rng is None:
        u = torch.rand(x.shape[0], device=x.device)
    else:
        _per_sample(x, rng)
        u = rng.rand(1).view(-1).repeat_interleave(x.shape[0] // len(rng))
    keep = (u >= p).to(x.dtype).view(-1, *([1] * (x.dim() - 1)))
    return x * keep / (1 - p)


def gaussian_noise(x: Tensor, sigma: float, training: bool) -> Tensor:
    """x + N(0, sigma²) per element, per-sample streams (global RNG outside `sample_rng`)."""
    if not training or sigma <= 0:
        return x
    rng = current()
    if rng is None:
        return x + sigma * torch.randn_like(x)
    return x + sigma * rng.randn(_per_sample(x, rng)).reshape(x.shape).to(x.dtype)


class Dropout(nn.Module):
    """`nn.Dropout` with per-sample masks under `sample_rng` (no parameters; same state-dict keys)."""

    def __init__(self, p: float = 0.1):
        super().__init__()
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        return dropout(x, self.p, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}"


class DropPath(nn.Module):
    """Stochastic depth on a residual branch (Huang et al. 2016), per sample."""

    def __init__(self, p: float = 0.0):
        super().__init__()
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        return drop_path(x, self.p, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}"


def depth_rates(rate: float, layers: int) -> list[float]:
    """Stochastic-depth rate of each layer: linear from 0 (first) to `rate` (last), as in DeiT / timm."""
    if layers <= 1:
        return [rate] * layers
    return [rate * i / (layers - 1) for i in range(layers)]
