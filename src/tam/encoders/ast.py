"""Audio: the Audio Spectrogram Transformer (AST, Gong, Chung and Glass 2021) on each segment's audio -> 768-d.

Through `transformers.ASTModel` (its `pooler_output`, the mean of the CLS and distillation tokens after the
final layer norm), from a local `save_pretrained` folder first, else a hub id such as
`MIT/ast-finetuned-audioset-10-10-0.4593` (the classifier head of an `ASTForAudioClassification` checkpoint
is ignored; every backbone weight must be there).

Front end (numpy, no torchaudio), as Kaldi's `compute-fbank-feats` through `torchaudio.compliance.kaldi.fbank`
with the settings of `ASTFeatureExtractor`: 16 kHz mono in [-1, 1]; frames of 25 ms (400 samples) every
10 ms (160 samples), no padding at the edges (`snip_edges`); per frame: DC offset removed, pre-emphasis 0.97,
symmetric Hann window, zero-padded to 512, power spectrum; 128 triangular mel bands 20-8000 Hz (Kaldi mel
scale, triangles in mel space); log with floor 1.19e-7. Each segment takes the frames whose window lies in
[start, end] (98 frames for 1 s), zero-padded (or cut) to the model's `max_length` (1024) frames, and the
result is normalised as AST was trained: (x - (-4.2677393)) / (2 * 4.5689974).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from tam.errors import TamError

SAMPLE_RATE = 16000
WINDOW = 400  # 25 ms
HOP = 160  # 10 ms
FFT = 512
MEL_BANDS = 128
LOW_HZ = 20.0
PREEMPHASIS = 0.97
LOG_FLOOR = float(np.finfo(np.float32).eps)  # 1.1920929e-07
AST_MEAN, AST_STD = -4.2677393, 4.5689974
MAX_LENGTH = 1024  # frames (10.24 s), the AudioSet models' input length


# ---- front end ---------------------------------------------------------------------------------------
def kaldi_mel(hz: np.ndarray | float) -> np.ndarray:
    """Kaldi's mel scale: 1127 ln(1 + f / 700)."""
    return 1127.0 * np.log1p(np.asarray(hz, dtype=np.float64) / 700.0)


def mel_banks(bands: int = MEL_BANDS, fft: int = FFT, rate: int = SAMPLE_RATE, low: float = LOW_HZ,
              high: float = 0.0) -> np.ndarray:
    """[fft // 2 + 1, bands] triangular weights as Kaldi's `MelBanks` (the Nyquist bin weighted 0)."""
    high = high if high > 0 else rate / 2
    edges = np.linspace(kaldi_mel(low), kaldi_mel(high), bands + 2)
    left, center, right = edges[:-2], edges[1:-1], edges[2:]
    mel = kaldi_mel(np.arange(fft // 2) * rate / fft)[:, None]
    weights = np.maximum(0.0, np.minimum((mel - left) / (center - left), (right - mel) / (right - center)))
    return np.concatenate([weights, np.zeros((1, bands))])


def fbank(wave: np.ndarray, bands: int = MEL_BANDS) -> np.ndarray:
    """float32 [frames, bands] Kaldi log-mel filter bank of 16 kHz mono audio (frame i starts at sample 160 i)."""
    wave = np.asarray(wave, dtype=np.float64)
    if len(wave) < WINDOW:
        return np.zeros((0, bands), dtype=np.float32)
    frames = np.lib.stride_tricks.sliding_window_view(wave, WINDOW)[::HOP]
    frames = frames - frames.mean(axis=1, keepdims=True)
    frames = frames - PREEMPHASIS * np.concatenate([frames[:, :1], frames[:, :-1]], axis=1)
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(WINDOW) / (WINDOW - 1))  # symmetric Hann
    power = np.abs(np.fft.rfft(frames * window, n=FFT)) ** 2
    return np.log(np.maximum(power @ mel_banks(bands), LOG_FLOOR)).astype(np.float32)


def segment_inputs(bank: np.ndarray, times: np.ndarray, max_length: int = MAX_LENGTH) -> np.ndarray:
    """float32 [T, max_length, bands]: each segment's frames, zero-padded or cut, then AST-normalised."""
    out = np.zeros((len(times), max_length, bank.shape[1]), dtype=np.float32)
    for t, (start, end) in enumerate(np.asarray(times, dtype=np.float64)):
        first = max(int(np.ceil(start * SAMPLE_RATE / HOP - 1e-6)), 0)  # the first frame starting in the segment
        stop = int(np.floor((end * SAMPLE_RATE - WINDOW) / HOP + 1e-6)) + 1  # frames ending within it
        rows = bank[first:min(stop, len(bank), first + max_length)]
        out[t, :len(rows)] = rows
    return (out - AST_MEAN) / (2 * AST_STD)


# ---- network -----------------------------------------------------------------------------------------
class ASTFeatures(nn.Module):
    """`ASTModel` -> `pooler_output` [N, hidden]; input [N, max_length, bands] normalised filter banks."""

    def __init__(self, backbone: nn.Module):
        super().__init__()
        self.backbone = backbone
        self.max_length = backbone.config.max_length
        self.bands = backbone.config.num_mel_bins

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if tuple(x.shape[1:]) != (self.max_length, self.bands):
            raise TamError(f"AST expects [N, {self.max_length}, {self.bands}] filter banks, got {list(x.shape)}")
        return self.backbone(input_values=x).pooler_output


def random_ast(**config) -> ASTFeatures:
    """A randomly initialised AST (the library default is the AudioSet base model; seed before calling)."""
    from transformers import ASTConfig, ASTModel

    return ASTFeatures(ASTModel(ASTConfig(**config)))


def load_ast(source: str, local: bool) -> ASTFeatures:
    """A pre-trained AST from a folder or hub id; every backbone weight must be in the checkpoint."""
    from transformers import ASTModel

    try:
        model, info = ASTModel.from_pretrained(source, output_loading_info=True, local_files_only=local)
    except (OSError, ValueError) as e:
        raise TamError(f"AST weights {source}: cannot load ({str(e).splitlines()[0][:200]})") from None
    missing = sorted(info.get("missing_keys") or []) + sorted(k for k, *_ in info.get("mismatched_keys") or [])
    if missing:
        raise TamError(f"AST weights {source}: checkpoint lacks {missing[:4]} ({len(missing)} keys)")
    if model.config.num_mel_bins != MEL_BANDS:
        raise TamError(f"AST weights {source}: num_mel_bins {model.config.num_mel_bins}, the front end gives "
                       f"{MEL_BANDS}")
    return ASTFeatures(model)
