"""VGGish front end against hand-computed expectations; the network's keys, shapes, strict loading and PCA."""

import os

import numpy as np
import pytest
import torch

from tam.encoders import audio
from tam.encoders.weights import load_strict
from tam.errors import TamError

PORT_KEYS = [f"features.{i}.{p}" for i in (0, 3, 6, 8, 11, 13) for p in ("weight", "bias")] + \
            [f"embeddings.{i}.{p}" for i in (0, 2, 4) for p in ("weight", "bias")]


def test_mel_matrix_is_htk_triangles():
    W = audio.mel_matrix()
    assert W.shape == (257, 64)
    assert np.all(W[0] == 0)  # DC bin excluded
    hz = np.linspace(0, 8000, 257)
    assert np.all(W[hz < 125] == 0) and np.all(W[hz > 7500] == 0)
    assert audio.hertz_to_mel(700.0) == pytest.approx(1127 * np.log(2))
    assert np.all(W <= 1.0) and W.max() > 0.9


def test_periodic_hann():
    w = audio.periodic_hann(400)
    assert w[0] == 0 and w[200] == pytest.approx(1.0) and w[1] == pytest.approx(w[399])


def _band_of(hz: float) -> int:
    """The mel band whose centre is nearest to `hz`, from the band edges (hand computation)."""
    edges = np.linspace(audio.hertz_to_mel(125), audio.hertz_to_mel(7500), 66)
    return int(np.argmin(np.abs(edges[1:-1] - audio.hertz_to_mel(hz))))


@pytest.mark.parametrize("hz", [300.0, 1000.0, 4000.0])
def test_pure_tone_lands_in_its_band(hz):
    t = np.arange(16000) / 16000
    mel = audio.log_mel(np.sin(2 * np.pi * hz * t))
    assert mel.shape == (1 + (16000 - 400) // 160, 64)  # 98 frames, no padding
    assert abs(int(np.argmax(mel[50])) - _band_of(hz)) <= 1


def test_reference_framing_tiles_examples_from_sample_zero():
    wave = np.random.default_rng(0).normal(size=int(30.5 * 16000)) * 0.1
    mel = audio.log_mel(wave)
    ref = audio.reference_examples(mel)  # frames 96k .. 96k + 95, incomplete tail dropped
    assert ref.shape == ((len(mel) - 96) // 96 + 1, 96, 64) and np.array_equal(ref[3], mel[288:384])
    times = np.stack([np.arange(30.0), np.arange(30.0) + 1], 1)  # 1 s segments
    ex = audio.segment_examples(mel, times)
    picked = [next(k for k in range(len(ref)) if np.array_equal(e, ref[k])) for e in ex]
    assert picked == [int((t + 0.5) // 0.96) for t in range(30)]  # the example holding each midpoint
    assert picked[:3] == [0, 1, 2] and sorted(set(range(26)) - set(picked[:25])) == [12]  # 1 of 25 unused
    fs = np.array([[0.0, 0.5], [0.5, 1.0]])  # two segments inside one example get the same example
    assert np.array_equal(audio.segment_examples(mel, fs)[0], audio.segment_examples(mel, fs)[1])


def test_reference_framing_completes_the_tail_with_silence():
    wave = np.zeros(3 * 16000)
    wave[2 * 16000:] = np.sin(2 * np.pi * 1000 * np.arange(16000) / 16000)  # tone from 2.0 s
    mel = audio.log_mel(wave)  # 298 frames: examples 0..2 complete, example 3 has 10 frames
    ex = audio.segment_examples(mel, np.array([[0.0, 1.0], [2.0, 3.0], [3.0, 4.0], [4.0, 5.0]]))
    silent = np.float32(np.log(0.01))
    assert np.all(ex[0] == silent)  # before the tone
    assert np.array_equal(ex[1], mel[192:288])  # midpoint 2.5 s lies in example 2
    assert np.array_equal(ex[2][:10], mel[288:298]) and np.all(ex[2][10:] == silent)  # example 3, completed
    assert np.all(ex[3] == silent)  # past the end of the audio
    with pytest.raises(ValueError, match="framing"):
        audio.segment_examples(mel, np.array([[0.0, 1.0]]), framing="middle")


def test_centred_framing_centres_on_segments():
    wave = np.zeros(3 * 16000)
    wave[2 * 16000:] = np.sin(2 * np.pi * 1000 * np.arange(16000) / 16000)  # tone from 2.0 s
    mel = audio.log_mel(wave)
    assert np.allclose(mel[:150], np.log(0.01))
    ex = audio.segment_examples(mel, np.array([[0.0, 1.0], [1.0, 2.0], [2.0, 3.0], [3.0, 4.0]]), framing="centred")
    assert ex.shape == (4, 96, 64)
    silent = np.float32(np.log(0.01))
    assert np.all(ex[0] == silent) and np.all(ex[3] == silent)  # before the tone; past the end of the audio
    # segment 1 spans 1.02..1.98 s: its last frames overlap the onset at 2.0 s only through the 25 ms window
    assert np.all(ex[1][:90] == silent)
    assert ex[2][10:90].max() > 0  # the tone fills segment 2
    first = int(round((2.5 - 0.0125) * 100 - 47.5))  # frame centred times: i / 100 + 12.5 ms
    assert np.array_equal(ex[2], mel[first:first + 96])


def test_vggish_keys_shape_and_frozen_output():
    net = audio.VGGish()
    assert [k for k in net.state_dict()] == PORT_KEYS
    x = torch.randn(3, 1, 96, 64)
    with torch.inference_mode():
        y = net.eval()(x)
    assert y.shape == (3, 128) and not y.requires_grad


@pytest.mark.slow
def test_port_checkpoint_loads_strictly(tmp_path):
    torch.manual_seed(0)
    src = audio.VGGish()
    path = tmp_path / "vggish-10086976.pth"
    torch.save(src.state_dict(), path)
    dst = audio.VGGish()
    load_strict(dst, audio.load_vggish_state(path), path, "VGGish")
    x = torch.randn(2, 1, 96, 64)
    assert torch.equal(src.eval()(x), dst.eval()(x))
    bad = {k: v for k, v in src.state_dict().items() if k != "embeddings.4.bias"}
    torch.save({"state_dict": {"module." + k: v for k, v in bad.items()}}, tmp_path / "bad.pth")
    with pytest.raises(TamError, match="missing embeddings.4.bias"):
        load_strict(audio.VGGish(), audio.load_vggish_state(tmp_path / "bad.pth"), tmp_path / "bad.pth", "VGGish")


def test_pca_matches_hand_computation(tmp_path):
    rng = np.random.default_rng(0)
    E, mu = rng.normal(size=(128, 128)), rng.normal(size=(128, 1))
    path = tmp_path / "vggish_pca_params-970ea276.pth"
    torch.save({"pca_eigen_vectors": torch.tensor(E), "pca_means": torch.tensor(mu)}, path)
    x = rng.normal(size=(5, 128)).astype(np.float32)
    y = audio.load_pca(path)(torch.tensor(x)).numpy()
    assert np.allclose(y, (E @ (x.T - mu)).T, atol=1e-4)
    q = audio.load_pca(path, quantize=True)(torch.tensor(x)).numpy()
    expect = np.round((np.clip((E @ (x.T - mu)).T, -2, 2) + 2) * 255 / 4)
    assert np.abs(q - expect).max() <= 1  # float32 vs float64 rounding at .5
    with pytest.raises(TamError, match="PCA"):
        torch.save({"wrong": torch.zeros(1)}, tmp_path / "x.pth")
        audio.load_pca(tmp_path / "x.pth")


def test_pca_of_numpy_arrays_loads_and_is_converted_once(tmp_path):
    rng = np.random.default_rng(1)
    E, mu = rng.normal(size=(128, 128)), rng.normal(size=(128, 1)).astype(np.float32)
    path = tmp_path / "vggish_pca_params-970ea276.pth"
    torch.save({"pca_eigen_vectors": E, "pca_means": mu}, path)  # as the port's file: numpy inside a torch pickle
    with pytest.raises(Exception, match="Unsupported global"):  # what plain weights_only loading says
        torch.load(path, weights_only=True)
    x = rng.normal(size=(3, 128)).astype(np.float32)
    y = audio.load_pca(path)(torch.tensor(x)).numpy()
    assert np.allclose(y, (E @ (x.T - mu)).T, atol=1e-4)
    converted = tmp_path / "vggish_pca_params-970ea276.safetensors"
    assert converted.is_file()
    assert np.allclose(audio.load_pca(converted)(torch.tensor(x)).numpy(), y, atol=1e-6)
    torch.save({"pca_eigen_vectors": E * 2, "pca_means": mu}, path)  # a changed source is converted again
    assert np.allclose(audio.load_pca(path)(torch.tensor(x)).numpy(), (2 * E @ (x.T - mu)).T, atol=1e-4)
    legacy = tmp_path / "legacy.pth"  # the pre-2019 torch format with numpy 1.x's module path for the rebuild
    torch.save({"pca_eigen_vectors": E, "pca_means": mu}, legacy, _use_new_zipfile_serialization=False)
    data = legacy.read_bytes()
    assert data.count(b"numpy._core.multiarray\n_reconstruct") == 1
    legacy.write_bytes(data.replace(b"numpy._core.multiarray\n", b"numpy.core.multiarray\n"))
    assert np.allclose(audio.load_pca(legacy)(torch.tensor(x)).numpy(), y, atol=1e-6)


def test_pca_truncated_or_malicious_files_are_one_line_errors(tmp_path):
    good = tmp_path / "good.pth"
    torch.save({"pca_eigen_vectors": np.zeros((128, 128)), "pca_means": np.zeros((128, 1))}, good)
    cut = tmp_path / "cut.pth"
    cut.write_bytes(good.read_bytes()[:2000])
    with pytest.raises(TamError, match=r"cut.pth: not VGGish PCA parameters") as err:
        audio.load_pca(cut)
    assert "\n" not in str(err.value)
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return os.system, (f"touch {marker}",)

    evil = tmp_path / "evil.pth"
    torch.save({"pca_eigen_vectors": Evil(), "pca_means": np.zeros(128)}, evil)
    with pytest.raises(TamError, match=r"evil.pth: not VGGish PCA parameters.*(posix|os)\.system") as err:
        audio.load_pca(evil)
    assert "\n" not in str(err.value) and not marker.exists()  # refused before anything ran
    wrong = tmp_path / "wrong.pth"
    torch.save({"pca_eigen_vectors": np.zeros((64, 64)), "pca_means": np.zeros(128)}, wrong)
    with pytest.raises(TamError, match="wrong.pth"):
        audio.load_pca(wrong)
