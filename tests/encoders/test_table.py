"""The encoder table: documented dims, strict weights, random init recorded, frozen outputs, clear errors."""

import numpy as np
import pytest
import torch

from tam import PAPER_DIMS
from tam.encoders.table import DEFAULTS, ENCODERS, TINY, build_encoder
from tam.errors import TamError


def test_defaults_are_the_papers_dims():
    assert {m: ENCODERS[n].dim for m, n in DEFAULTS.items()} == PAPER_DIMS
    assert {m: ENCODERS[n].dim for m, n in TINY.items()} == PAPER_DIMS
    assert all(ENCODERS[n].modality == m for table in (DEFAULTS, TINY) for m, n in table.items())


@pytest.mark.parametrize("name,shape,dtype", [("clip-tiny", (3, 224, 224, 3), np.uint8),
                                              ("r3d-tiny", (2, 16, 112, 112, 3), np.uint8),
                                              ("vggish", (3, 96, 64), np.float32)])
def test_random_init_encoders_are_frozen_deterministic_and_recorded(name, shape, dtype):
    a, b = build_encoder(name, random_init=True), build_encoder(name, random_init=True)
    x = (np.random.default_rng(0).random(shape) * 255).astype(dtype)
    ya = a.encode(x)
    assert ya.shape == (shape[0], ENCODERS[name].dim) and ya.dtype == np.float32 and np.isfinite(ya).all()
    assert np.array_equal(ya, b.encode(x))  # the seed fixes the weights
    assert not any(p.requires_grad for p in a.model.parameters())
    assert a.record.random_init and a.record.weights_sha256 == "" and a.record.dim == ENCODERS[name].dim
    assert a.encode(x[:0]).shape == (0, ENCODERS[name].dim)


def test_missing_weights_say_where_to_get_them(tmp_path):
    with pytest.raises(TamError, match="r3d50_K_200ep.pth.*--random-init|3D-ResNets-PyTorch"):
        build_encoder("r3d50")
    with pytest.raises(TamError, match="not found"):
        build_encoder("vggish", weights=str(tmp_path / "nope.pth"))
    with pytest.raises(TamError, match="random-init"):
        build_encoder("r3d-tiny")
    with pytest.raises(TamError, match="unknown encoder"):
        build_encoder("resnet-9000")
    with pytest.raises(TamError, match="hub"):  # HF_HUB_OFFLINE=1: the hub id fails fast, with a clear line
        build_encoder("clip-vit-b32", weights="nobody/no-such-clip")


def test_weights_files_are_loaded_and_hashed(tmp_path):
    from tam.encoders import motion
    from tam.encoders.weights import sha256_of

    torch.manual_seed(3)
    src = motion.build_resnet3d("resnet-tiny", with_fc=True)
    path = tmp_path / "tiny.pth"
    torch.save({"arch": "resnet-tiny", "state_dict": {"module." + k: v for k, v in src.state_dict().items()}}, path)
    from tam.encoders import table

    # r3d-tiny is random-init only in the table; its family builder still loads a checkpoint strictly
    model, digest, _ = table._build_r3d("r3d-tiny", ENCODERS["r3d-tiny"], str(path), False, "", False)
    assert digest == sha256_of(path)
    x = torch.randn(1, 3, 16, 112, 112)
    with torch.inference_mode():
        assert torch.allclose(model.eval()(x), src.eval().forward_features(x), atol=1e-5)


def test_clip_from_a_local_folder_records_its_hash(tmp_path):
    from tam.encoders import image
    from tam.encoders.weights import sha256_of

    image.random_clip("tiny").save_pretrained(tmp_path)
    enc = build_encoder("clip-vit-b32", weights=str(tmp_path))
    assert enc.record.weights_sha256 == sha256_of(tmp_path) and not enc.record.random_init
    assert enc.encode(np.zeros((1, 224, 224, 3), np.uint8)).shape == (1, 512)


def test_vggish_with_pca_is_recorded(tmp_path):
    torch.save({"pca_eigen_vectors": torch.eye(128), "pca_means": torch.zeros(128, 1)}, tmp_path / "pca.pth")
    plain = build_encoder("vggish", random_init=True)
    enc = build_encoder("vggish", random_init=True, pca=str(tmp_path / "pca.pth"))
    assert "PCA" in enc.record.preprocessing and "+pca:" in enc.record.weights_sha256
    x = np.random.default_rng(0).normal(size=(2, 96, 64)).astype(np.float32)
    assert np.allclose(enc.encode(x), plain.encode(x), atol=1e-5)  # identity PCA changes nothing


def test_rows_name_their_reference_preprocessing():
    from tam.encoders import audio, motion
    from tam.encoders.video_io import OFFSETS, RESAMPLE

    for name, c in ENCODERS.items():
        if c.modality in ("image", "motion"):
            assert c.size and c.resample in RESAMPLE and c.offset in OFFSETS, name
            assert f"PIL {c.resample}" in c.preprocessing, name
        if c.family == "r3d":
            assert c.norm in motion.NORMS and c.offset == "round" and c.resample == "bilinear", name
        if c.family in ("clip", "videomae"):
            assert c.offset == "floor", name  # transformers' center_crop
        if c.family == "vggish":
            assert c.framing in audio.FRAMINGS, name
    assert ENCODERS["resnext101"].norm == "activitynet-mean-255" and "old-models" in ENCODERS["resnext101"].where
    assert "ActivityNet mean" in ENCODERS["resnext101"].preprocessing
    mel = np.random.default_rng(0).normal(size=(500, 64)).astype(np.float32)
    times = np.array([[1.0, 2.0]])
    for name, framing in (("vggish", "reference"), ("vggish-centred", "centred")):
        _, examples_of = build_encoder(name, random_init=True).audio_front
        assert np.array_equal(examples_of(mel, times), audio.segment_examples(mel, times, framing=framing))
    assert not np.array_equal(audio.segment_examples(mel, times), audio.segment_examples(mel, times, "centred"))
