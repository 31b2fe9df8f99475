"""VideoMAE: preprocessing, a tiny saved model loaded back (fc_norm kept), clear errors, `tam extract`."""

import json

import numpy as np
import pytest
import torch

from tam.cli import main
from tam.encoders import videomae
from tam.encoders.table import ENCODERS, build_encoder
from tam.encoders.weights import sha256_of
from tam.errors import TamError
from tam.features.store import FeatureStore

TINY = {"hidden_size": 768, "num_hidden_layers": 1, "num_attention_heads": 12, "intermediate_size": 64,
        "image_size": 224, "patch_size": 32, "num_frames": 16, "tubelet_size": 2, "use_mean_pooling": True}


@pytest.fixture(scope="module")
def tiny_videomae(tmp_path_factory):
    """A tiny `VideoMAEForVideoClassification` (as the Kinetics checkpoint is) saved with `save_pretrained`."""
    from transformers import VideoMAEConfig, VideoMAEForVideoClassification

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("videomae")
    model = VideoMAEForVideoClassification(VideoMAEConfig(num_labels=3, **TINY))
    with torch.no_grad():  # a visible fc_norm, so that leaving it out would change the features
        model.fc_norm.weight.uniform_(0.5, 2.0)
        model.fc_norm.bias.uniform_(-1.0, 1.0)
    model.save_pretrained(folder)
    return folder


def _clips(n: int, seed: int = 0) -> np.ndarray:
    return (np.random.default_rng(seed).random((n, 16, 224, 224, 3)) * 255).astype(np.uint8)


def test_preprocessing_matches_the_image_processor_with_imagenet_stats():
    from transformers import VideoMAEImageProcessor

    clip = _clips(1)[0]
    processor = VideoMAEImageProcessor(image_mean=list(videomae.IMAGENET_MEAN), image_std=list(videomae.IMAGENET_STD))
    ref = processor(list(clip), do_resize=False, do_center_crop=False, return_tensors="np")["pixel_values"]
    mine = videomae.clips_to_input(torch.from_numpy(clip[None])).numpy()
    assert mine.shape == ref.shape == (1, 16, 3, 224, 224)
    np.testing.assert_allclose(mine, ref, atol=1e-5)


def test_tiny_folder_loads_frozen_deterministic_768_with_fc_norm(tiny_videomae):
    from transformers import VideoMAEForVideoClassification

    enc = build_encoder("videomae-base", weights=str(tiny_videomae))
    assert enc.record.dim == 768 and enc.record.weights_sha256 == sha256_of(tiny_videomae)
    assert not any(p.requires_grad for p in enc.model.parameters()) and not enc.model.training
    x = _clips(2)
    y = enc.encode(x)
    assert y.shape == (2, 768) and y.dtype == np.float32 and np.isfinite(y).all() and not np.allclose(y[0], y[1])
    assert np.array_equal(y, build_encoder("videomae-base", weights=str(tiny_videomae)).encode(x))
    ref = VideoMAEForVideoClassification.from_pretrained(tiny_videomae, local_files_only=True).eval()
    with torch.no_grad():
        hidden = ref.videomae(pixel_values=videomae.clips_to_input(torch.from_numpy(x))).last_hidden_state
        np.testing.assert_allclose(y, ref.fc_norm(hidden.mean(1)).numpy(), atol=1e-4)
    with pytest.raises(TamError, match="16 frames of 224 px"):
        enc.encode(x[:, :8])


def test_processor_file_sets_mean_and_std(tiny_videomae, tmp_path):
    import shutil

    folder = tmp_path / "with-processor"
    shutil.copytree(tiny_videomae, folder)
    (folder / "preprocessor_config.json").write_text(json.dumps({"image_mean": [0.5] * 3, "image_std": [0.5] * 3}))
    enc = build_encoder("videomae-base", weights=str(folder))
    assert enc.model.mean == (0.5, 0.5, 0.5) and enc.record.weights_sha256 != sha256_of(tiny_videomae)
    x = _clips(1)
    assert not np.allclose(enc.encode(x), build_encoder("videomae-base", weights=str(tiny_videomae)).encode(x))
    (folder / "preprocessor_config.json").write_text("{}")
    with pytest.raises(TamError, match="preprocessor_config.json: no usable image_mean"):
        build_encoder("videomae-base", weights=str(folder))


def test_wrong_or_missing_weights_are_one_line_errors(tmp_path):
    from transformers import VideoMAEConfig, VideoMAEModel

    with pytest.raises(TamError, match="MCG-NJU/videomae-base-finetuned-kinetics"):  # HF_HUB_OFFLINE=1
        build_encoder("videomae-base")
    with pytest.raises(TamError, match="neither a model folder nor a hub id"):
        build_encoder("videomae-base", weights=str(tmp_path / "nope"))
    VideoMAEModel(VideoMAEConfig(**{**TINY, "num_frames": 8})).save_pretrained(tmp_path / "f8")
    with pytest.raises(TamError, match="frames 8 \\(table: 16\\)"):
        build_encoder("videomae-base", weights=str(tmp_path / "f8"))


def test_plain_videomae_model_checkpoint_gives_the_mean_pooled_state(tmp_path):
    from transformers import VideoMAEConfig, VideoMAEModel

    torch.manual_seed(1)
    src = VideoMAEModel(VideoMAEConfig(**TINY)).eval()
    src.save_pretrained(tmp_path / "plain")
    enc = build_encoder("videomae-base", weights=str(tmp_path / "plain"))
    assert enc.model.fc_norm is None
    x = _clips(1, seed=2)
    with torch.no_grad():
        ref = src(pixel_values=videomae.clips_to_input(torch.from_numpy(x))).last_hidden_state.mean(1).numpy()
    np.testing.assert_allclose(enc.encode(x), ref, atol=1e-4)


def test_tam_extract_with_the_tiny_videomae(tiny_videomae, video_maker, tmp_path, capsys):
    video = video_maker(tmp_path / "change.mp4", seconds=3.0, change_at=1.0, tone_at=None)
    out = tmp_path / "feats"
    args = ["extract", str(video), "-o", str(out), "--modalities", "motion", "--motion", "videomae-base",
            "--motion-weights", str(tiny_videomae), "--device", "cpu", "--no-progress"]
    assert main(args) == 0
    store = FeatureStore.open(out)
    record = store.manifest.encoders["motion"]
    assert (record.name, record.dim, record.weights_sha256) == ("videomae-base", 768, sha256_of(tiny_videomae))
    assert not store.manifest.random_init and record.preprocessing == ENCODERS["videomae-base"].preprocessing
    motion = np.asarray(store.read("change").features["motion"])
    assert motion.shape == (3, 768) and np.isfinite(motion).all()
    assert np.abs(motion[1] - motion[2]).max() < 1e-3 < np.abs(motion[0] - motion[1]).max()  # red, then blue
    assert "videos written        1" in capsys.readouterr().out
