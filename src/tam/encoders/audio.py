"""Audio: the VGGish log-mel front end (numpy) and the VGGish network (Hershey et al. 2017) -> 128-d.

Front end, as the original `tensorflow/models` `research/audioset/vggish/mel_features.py`: 16 kHz mono;
STFT magnitude with a periodic Hann window of 25 ms (400 samples), hop 10 ms (160 samples), FFT size 512
(the next power of two), no padding; 64 triangular mel bands from 125 to 7500 Hz on the HTK mel scale
(mel = 1127 ln(1 + f / 700)), the DC bin weighted 0; log(mel + 0.01). An example is 96 frames (0.96 s).

Examples and segments (`segment_examples`). The reference framing (`waveform_to_examples` of the port and
of the original) tiles the log-mel frames into non-overlapping 96-frame examples from sample 0: example k
holds frames 96k .. 96k + 95, i.e. samples 15360k .. 15360k + 15599 (0.96 k .. 0.96 k + 0.975 s). With
`framing="reference"` (the default) segment t gets the example k = floor(midpoint / 0.96 s) that contains
its midpoint, so every feature is one of the examples the reference would compute; with 1 s segments one
example in 25 is skipped (no segment's midpoint falls in it). Where the reference drops the incomplete
last example, tam completes it with silence rows (log(0.01)) when a segment's midpoint lies in it, and
gives an all-silence example past the end of the audio. `framing="centred"` (the encoder `vggish-centred`,
the framing of stores made before this rule) instead centres one 96-frame example on each segment's
midpoint. The network and its key names follow the common PyTorch port
(harritaylor/torchvggish): `features.{0,3,6,8,11,13}` convolutions, `embeddings.{0,2,4}` linear layers, ReLU
after the last layer as in the port. The optional PCA post-processing (`vggish_pca_params-*.pth`:
`pca_eigen_vectors` [128, 128], `pca_means` [128]) whitens the embedding; `quantize=True` also clips to
[-2, 2] and maps to 0..255 as in the AudioSet release.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import torch
from torch import nn

from tam.errors import TamError

SAMPLE_RATE = 16000
WINDOW = 400  # 25 ms
HOP = 160  # 10 ms
FFT = 512
MEL_BANDS = 64
MEL_MIN_HZ, MEL_MAX_HZ = 125.0, 7500.0
LOG_OFFSET = 0.01
EXAMPLE_FRAMES = 96  # 0.96 s
FRAME_RATE = SAMPLE_RATE / HOP  # log-mel frames per second
EMBEDDING = 128
QUANTIZE_MIN, QUANTIZE_MAX = -2.0, 2.0
FRAMINGS = ("reference", "centred")
WEIGHTS_URL = "https://github.com/harritaylor/torchvggish/releases/download/v0.1/vggish-10086976.pth"
PCA_URL = "https://github.com/harritaylor/torchvggish/releases/download/v0.1/vggish_pca_params-970ea276.pth"


# ---- front end ---------------------------------------------------------------------------------------
def hertz_to_mel(hz: np.ndarray | float) -> np.ndarray:
    """HTK mel scale."""
    return 1127.0 * np.log1p(np.asarray(hz, dtype=np.float64) / 700.0)


def mel_matrix(bands: int = MEL_BANDS, fft: int = FFT, rate: int = SAMPLE_RATE,
               low: float = MEL_MIN_HZ, high: float = MEL_MAX_HZ) -> np.ndarray:
    """[fft // 2 + 1, bands] triangular weights, as `spectrogram_to_mel_matrix` (DC bin zeroed)."""
    bins_mel = hertz_to_mel(np.linspace(0.0, rate / 2, fft // 2 + 1))
    edges = np.linspace(hertz_to_mel(low), hertz_to_mel(high), bands + 2)
    lower, center, upper = edges[:-2], edges[1:-1], edges[2:]
    rising = (bins_mel[:, None] - lower) / (center - lower)
    falling = (upper - bins_mel[:, None]) / (upper - center)
    weights = np.maximum(0.0, np.minimum(rising, falling))
    weights[0, :] = 0.0
    return weights


def periodic_hann(n: int) -> np.ndarray:
    return 0.5 - 0.5 * np.cos(2 * np.pi / n * np.arange(n))


def log_mel(wave: np.ndarray) -> np.ndarray:
    """float32 [frames, 64] log-mel spectrogram of 16 kHz mono audio (frame i starts at sample 160 i)."""
    wave = np.asarray(wave, dtype=np.float64)
    if len(wave) < WINDOW:
        return np.zeros((0, MEL_BANDS), dtype=np.float32)
    frames = np.lib.stride_tricks.sliding_window_view(wave, WINDOW)[::HOP]
    spectrum = np.abs(np.fft.rfft(frames * periodic_hann(WINDOW), n=FFT))
    return np.log(spectrum @ mel_matrix() + LOG_OFFSET).astype(np.float32)


def segment_examples(mel: np.ndarray, times: np.ndarray, framing: str = "reference") -> np.ndarray:
    """float32 [T, 96, 64]: one log-mel example per segment (start, end); see the module docstring."""
    if framing not in FRAMINGS:
        raise ValueError(f"unknown VGGish framing {framing!r}; choose from {FRAMINGS}")
    times = np.asarray(times, dtype=np.float64).reshape(-1, 2)
    mid = times.mean(axis=1)
    if framing == "reference":
        first = np.floor(mid / (EXAMPLE_FRAMES / FRAME_RATE) + 1e-9).astype(np.int64) * EXAMPLE_FRAMES
    else:  # frame i is centred at i / 100 + 12.5 ms; the example's centres span mid +- 0.475 s
        first = np.round((mid - WINDOW / 2 / SAMPLE_RATE) * FRAME_RATE - (EXAMPLE_FRAMES - 1) / 2).astype(np.int64)
    silence = np.float32(np.log(LOG_OFFSET))
    out = np.full((len(times), EXAMPLE_FRAMES, MEL_BANDS), silence, dtype=np.float32)
    for t, f in enumerate(first.tolist()):
        lo, hi = max(f, 0), min(f + EXAMPLE_FRAMES, len(mel))
        if hi > lo:
            out[t, lo - f:hi - f] = mel[lo:hi]
    return out


def reference_examples(mel: np.ndarray) -> np.ndarray:
    """float32 [K, 96, 64]: the reference framing, non-overlapping examples from frame 0, incomplete tail dropped."""
    K = max((len(mel) - EXAMPLE_FRAMES) // EXAMPLE_FRAMES + 1, 0)
    return np.asarray(mel[:K * EXAMPLE_FRAMES], dtype=np.float32).reshape(K, EXAMPLE_FRAMES, MEL_BANDS)


# ---- network -----------------------------------------------------------------------------------------
class VGGish(nn.Module):
    """VGGish: [N, 1, 96, 64] log-mel examples -> [N, 128] (port key names)."""

    def __init__(self):
        super().__init__()
        layers: list[nn.Module] = []
        channels = 1
        for v in (64, "M", 128, "M", 256, 256, "M", 512, 512, "M"):
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(channels, v, 3, padding=1), nn.ReLU(inplace=True)]
                channels = v
        self.features = nn.Sequential(*layers)
        self.embeddings = nn.Sequential(nn.Linear(512 * 4 * 6, 4096), nn.ReLU(True), nn.Linear(4096, 4096),
                                        nn.ReLU(True), nn.Linear(4096, EMBEDDING), nn.ReLU(True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)  # [N, 512, 6, 4]
        x = x.permute(0, 2, 3, 1).flatten(1)  # channels last, as the TensorFlow original flattens
        return self.embeddings(x)


class PCA(nn.Module):
    """The AudioSet PCA/whitening post-processing, optionally with 8-bit quantisation."""

    def __init__(self, eigen_vectors: torch.Tensor, means: torch.Tensor, quantize: bool = False):
        super().__init__()
        self.register_buffer("eigen_vectors", eigen_vectors.float().reshape(EMBEDDING, EMBEDDING))
        self.register_buffer("means", means.float().reshape(1, EMBEDDING))
        self.quantize = quantize

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(x.device.type, enabled=False):  # fp32 under CUDA's bf16 autocast: 8-bit bins need it
            y = (x.float() - self.means) @ self.eigen_vectors.T
        if self.quantize:
            scale = 255.0 / (QUANTIZE_MAX - QUANTIZE_MIN)
            y = torch.round((y.clamp(QUANTIZE_MIN, QUANTIZE_MAX) - QUANTIZE_MIN) * scale)
        return y


def load_vggish_state(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The port's checkpoint (a plain state dict; a `module.` prefix or a `state_dict` wrapper is accepted)."""
    from tam.encoders.weights import load_torch_state

    state = load_torch_state(path)
    return {k: v for k, v in state.items() if not k.startswith("pproc.")}


def load_pca(path: str | os.PathLike, quantize: bool = False) -> PCA:
    """PCA parameters from the port's `vggish_pca_params-*.pth`, the original `.npz` or a `.safetensors`.

    The port's file is a torch pickle of numpy arrays: it is read with `weights_only=True` plus exactly the
    numpy globals that rebuild arrays (nothing else can run), then converted once to a `.safetensors` file
    beside it (reused while the source's sha256 matches). Every failure is a one-line `TamError`.
    """
    path = Path(path)
    try:
        if path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as z:
                params = {k: torch.from_numpy(z[k]) for k in z.files}
        elif path.suffix == ".safetensors":
            from safetensors.torch import load_file

            params = load_file(str(path))
        else:
            params = _pca_from_pickle(path)
        return PCA(params["pca_eigen_vectors"], params["pca_means"], quantize)
    except TamError:
        raise
    except Exception as e:  # unpickling, zip, safetensors and shape errors come in many types
        raise TamError(f"{path}: not VGGish PCA parameters (need pca_eigen_vectors [128, 128], pca_means [128]): "
                       f"{_reason(e)}") from None


def _reason(e: Exception) -> str:
    """One line: the forbidden global a pickle names (refused, never run), else the error's first line."""
    text = str(e)
    forbidden = re.search(r"[Uu]nsupported (?:global: )?GLOBAL ([\w.]+)", text)
    if forbidden:
        return f"the pickle names {forbidden.group(1)}, which is not allowed (refused; nothing was run)"
    return f"{type(e).__name__}: " + (text.strip().splitlines() or [""])[0][:200]


def _numpy_globals() -> list:
    """The globals a pickle of plain numpy arrays names (under numpy 1.x and 2.x module paths), and no others."""
    from numpy import dtypes

    rebuild = np._core.multiarray._reconstruct if hasattr(np, "_core") else np.core.multiarray._reconstruct
    kinds = [getattr(dtypes, n) for n in ("Float16DType", "Float32DType", "Float64DType", "Int8DType", "Int16DType",
                                          "Int32DType", "Int64DType", "UInt8DType", "BoolDType")]
    return [(rebuild, "numpy.core.multiarray._reconstruct"), (rebuild, "numpy._core.multiarray._reconstruct"),
            np.ndarray, np.dtype, *kinds]


def _pca_from_pickle(path: Path) -> dict[str, torch.Tensor]:
    """Read the port's `.pth` safely; reuse or write its `.safetensors` conversion."""
    from safetensors.torch import load_file, save_file

    from tam.encoders.weights import sha256_of

    digest = sha256_of(path)
    converted = path.with_suffix(".safetensors")
    if converted.is_file():
        try:
            from safetensors import safe_open

            with safe_open(str(converted), "pt") as f:
                if (f.metadata() or {}).get("source_sha256") == digest:
                    return load_file(str(converted))
        except Exception:  # a stale or damaged conversion is simply redone
            pass
    with torch.serialization.safe_globals(_numpy_globals()):
        obj = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(obj, dict):
        raise ValueError(f"expected a dict of arrays, got {type(obj).__name__}")
    params = {k: torch.as_tensor(np.asarray(obj[k], dtype=np.float32)).contiguous()
              for k in ("pca_eigen_vectors", "pca_means")}
    try:
        tmp = converted.with_name(f".{converted.name}.tmp{os.getpid()}")
        save_file(params, str(tmp), metadata={"source": path.name, "source_sha256": digest})
        os.replace(tmp, converted)
    except OSError:  # a read-only folder: use the parameters without caching the conversion
        pass
    return params


def examples_to_input(examples: np.ndarray | torch.Tensor) -> torch.Tensor:
    """[N, 96, 64] log-mel examples -> [N, 1, 96, 64] float tensor."""
    return torch.as_tensor(examples, dtype=torch.float32).unsqueeze(1)
