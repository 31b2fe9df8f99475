"""Audio: the VGGish log-mel front end (numpy) and the VGGish network (Hershey et al. 2017) -> 128-d.

Front end, as the original `tensorflow/models` `research/audioset/vggish/mel_features.py`: 16 kHz mono;
STFT magnitude with a periodic Hann window of 25 ms (400 samples), hop 10 ms (160 samples), FFT size 512
(the next power of two), no padding; 64 triangular mel bands from 125 to 7500 Hz on the HTK mel scale
(mel = 1127 ln(1 + f / 700)), the DC bin weighted 0; log(mel + 0.01). An example is 96 frames (0.96 s).

Alignment: segment t gets the one example of 96 frames centred on the segment's midpoint (silence, i.e.
log(0.01), outside the audio). The network and its key names follow the common PyTorch port
(harritaylor/torchvggish): `features.{0,3,6,8,11,13}` convolutions, `embeddings.{0,2,4}` linear layers, ReLU
after the last layer as in the port. The optional PCA post-processing (`vggish_pca_params-*.pth`:
`pca_eigen_vectors` [128, 128], `pca_means` [128]) whitens the embedding; `quantize=True` also clips to
[-2, 2] and maps to 0..255 as in the AudioSet release.
"""

from __future__ import annotations

import os
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


def segment_examples(mel: np.ndarray, times: np.ndarray) -> np.ndarray:
    """float32 [T, 96, 64]: for each segment (start, end) the 96 log-mel frames centred on its midpoint."""
    silence = np.float32(np.log(LOG_OFFSET))
    out = np.full((len(times), EXAMPLE_FRAMES, MEL_BANDS), silence, dtype=np.float32)
    half_window = WINDOW / 2 / SAMPLE_RATE
    for t, (start, end) in enumerate(np.asarray(times, dtype=np.float64)):
        # frame i is centred at i / 100 + 12.5 ms; the example's centres span mid +- 0.475 s
        first = int(round(((start + end) / 2 - half_window) * FRAME_RATE - (EXAMPLE_FRAMES - 1) / 2))
        lo, hi = max(first, 0), min(first + EXAMPLE_FRAMES, len(mel))
        if hi > lo:
            out[t, lo - first:hi - first] = mel[lo:hi]
    return out


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
    """PCA parameters from the port's `vggish_pca_params-*.pth` (or the original `.npz`)."""
    path = Path(path)
    try:
        if path.suffix == ".npz":
            params = {k: torch.from_numpy(v) for k, v in np.load(path).items()}
        else:
            params = torch.load(path, map_location="cpu", weights_only=True)
            params = {k: torch.as_tensor(v) for k, v in params.items()}
        return PCA(params["pca_eigen_vectors"], params["pca_means"], quantize)
    except (KeyError, RuntimeError, OSError, ValueError) as e:
        raise TamError(f"{path}: not VGGish PCA parameters (need pca_eigen_vectors, pca_means): {e}") from None


def examples_to_input(examples: np.ndarray | torch.Tensor) -> torch.Tensor:
    """[N, 96, 64] log-mel examples -> [N, 1, 96, 64] float tensor."""
    return torch.as_tensor(examples, dtype=torch.float32).unsqueeze(1)
