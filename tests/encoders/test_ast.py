"""AST: the numpy Kaldi front end against transformers' extractor, a tiny saved model loaded back, `tam extract`."""

import numpy as np
import pytest
import torch

from tam.cli import main
from tam.encoders import ast
from tam.encoders.table import ENCODERS, build_encoder
from tam.encoders.weights import sha256_of
from tam.errors import TamError
from tam.features.store import FeatureStore

TINY = {"hidden_size": 768, "num_hidden_layers": 1, "num_attention_heads": 12, "intermediate_size": 64,
        "max_length": 128, "num_mel_bins": 128, "patch_size": 16, "frequency_stride": 16, "time_stride": 16}


@pytest.fixture(scope="module")
def tiny_ast(tmp_path_factory):
    """A tiny `ASTForAudioClassification` (as the AudioSet checkpoint is) saved with `save_pretrained`."""
    from transformers import ASTConfig, ASTForAudioClassification

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("ast")
    ASTForAudioClassification(ASTConfig(num_labels=3, **TINY)).save_pretrained(folder)
    return folder


@pytest.mark.filterwarnings("ignore:At least one mel filter")
def test_front_end_matches_transformers_extractor():
    from transformers import ASTFeatureExtractor

    wave = (np.random.default_rng(0).standard_normal(3 * 16000) * 0.1).astype(np.float32)
    bank = ast.fbank(wave)
    assert bank.shape == (1 + (len(wave) - 400) // 160, 128)
    extractor = ASTFeatureExtractor()  # torchaudio is absent here: its numpy path, 1024 frames
    for start, end in [(0.0, 1.0), (1.0, 2.0), (2.0, 3.0)]:
        ref = extractor(wave[int(start * 16000):int(end * 16000)], sampling_rate=16000,
                        return_tensors="np")["input_values"][0]
        mine = ast.segment_inputs(bank, np.array([[start, end]]))[0]
        assert mine.shape == ref.shape == (1024, 128)
        np.testing.assert_allclose(mine, ref, atol=1e-4)


def test_mel_banks_and_segment_frames_by_hand():
    banks = ast.mel_banks()
    assert banks.shape == (257, 128) and (banks[-1] == 0).all() and (banks >= 0).all() and banks.max() <= 1
    tone = np.sin(2 * np.pi * 1000 * np.arange(16000) / 16000)
    peak = ast.fbank(tone).mean(0).argmax()
    hz = 700 * (np.exp(np.linspace(ast.kaldi_mel(20), ast.kaldi_mel(8000), 130)[1:-1] / 1127) - 1)
    assert abs(hz[peak] - 1000) < 60  # the band centred nearest 1 kHz
    bank = np.arange(300, dtype=np.float32)[:, None].repeat(128, 1)
    x = ast.segment_inputs(bank, np.array([[1.0, 2.0], [2.5, 2.6]]), max_length=120) * 2 * ast.AST_STD + ast.AST_MEAN
    assert np.allclose(x[0, :98, 0], np.arange(100, 198)) and np.allclose(x[0, 98:], 0, atol=1e-5)
    assert np.allclose(x[1, :8, 0], np.arange(250, 258)) and np.allclose(x[1, 8:], 0, atol=1e-5)  # 10 ms < 25 ms


def test_tiny_folder_loads_frozen_deterministic_768(tiny_ast):
    from transformers import ASTModel

    enc = build_encoder("ast-audioset", weights=str(tiny_ast))
    assert enc.record.dim == 768 and enc.record.weights_sha256 == sha256_of(tiny_ast) and not enc.record.random_init
    assert not any(p.requires_grad for p in enc.model.parameters()) and not enc.model.training
    x = ast.segment_inputs(ast.fbank(np.random.default_rng(1).standard_normal(32000)), np.array([[0, 1.0], [1, 2]]),
                           max_length=128)
    y = enc.encode(x)
    assert y.shape == (2, 768) and y.dtype == np.float32 and np.isfinite(y).all()
    assert np.array_equal(y, build_encoder("ast-audioset", weights=str(tiny_ast)).encode(x))
    assert not np.allclose(y[0], y[1])
    ref = ASTModel.from_pretrained(tiny_ast, local_files_only=True).eval()
    with torch.no_grad():
        np.testing.assert_allclose(y, ref(input_values=torch.from_numpy(x)).pooler_output.numpy(), atol=1e-5)
    with pytest.raises(TamError, match="AST expects"):
        enc.encode(x[:, :100])


def test_wrong_or_missing_weights_are_one_line_errors(tmp_path):
    from transformers import ASTConfig, ASTModel

    with pytest.raises(TamError, match="MIT/ast-finetuned-audioset-10-10-0.4593"):  # HF_HUB_OFFLINE=1
        build_encoder("ast-audioset")
    with pytest.raises(TamError, match="neither a model folder nor a hub id"):
        build_encoder("ast-audioset", weights=str(tmp_path / "nope"))
    ASTModel(ASTConfig(**{**TINY, "hidden_size": 64, "num_attention_heads": 2})).save_pretrained(tmp_path / "small")
    with pytest.raises(TamError, match="dim 64 \\(table: 768\\)"):
        build_encoder("ast-audioset", weights=str(tmp_path / "small"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(TamError, match="AST weights .*cannot load"):
        build_encoder("ast-audioset", weights=str(tmp_path / "empty"))


def test_tam_extract_with_the_tiny_ast(tiny_ast, video_maker, tmp_path, capsys):
    video = video_maker(tmp_path / "tone.mp4", seconds=3.0, tone_at=1.0)
    out = tmp_path / "feats"
    args = ["extract", str(video), "-o", str(out), "--modalities", "audio", "--audio", "ast-audioset",
            "--audio-weights", str(tiny_ast), "--device", "cpu", "--no-progress"]
    assert main(args) == 0
    store = FeatureStore.open(out)
    record = store.manifest.encoders["audio"]
    assert (record.name, record.dim, record.weights_sha256) == ("ast-audioset", 768, sha256_of(tiny_ast))
    assert not store.manifest.random_init and record.preprocessing == ENCODERS["ast-audioset"].preprocessing
    feats = store.read("tone")
    audio = np.asarray(feats.features["audio"])
    assert feats.present["audio"] and audio.shape == (3, 768) and np.isfinite(audio).all()
    assert np.abs(audio[1] - audio[2]).max() < np.abs(audio[0] - audio[1]).max()  # silence, then the same tone
    assert "videos written        1" in capsys.readouterr().out
