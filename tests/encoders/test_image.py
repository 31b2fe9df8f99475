"""CLIP through transformers: a tiny random model saved with save_pretrained loads from its folder, offline."""

import numpy as np
import pytest
import torch

from tam.encoders import image
from tam.errors import TamError


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory):
    torch.manual_seed(0)
    model = image.random_clip("tiny")
    d = tmp_path_factory.mktemp("clip")
    model.save_pretrained(d)
    return d, model.eval()


def test_loads_from_folder_and_matches(clip_dir):
    d, src = clip_dir
    model = image.load_clip(str(d), local=True).eval()
    x = torch.randn(2, 3, 224, 224)
    with torch.inference_mode():
        y = image.clip_embed(model, x)
        assert y.shape == (2, 512) and not y.requires_grad
        assert torch.allclose(y, image.clip_embed(src, x), atol=1e-5)


def test_incomplete_checkpoint_is_refused(clip_dir, tmp_path):
    from safetensors.torch import load_file, save_file

    d, _ = clip_dir
    (tmp_path / "config.json").write_text((d / "config.json").read_text())
    state = load_file(d / "model.safetensors")
    state.pop("visual_projection.weight")
    save_file(state, tmp_path / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(TamError, match="visual_projection.weight"):
        image.load_clip(str(tmp_path), local=True)
    with pytest.raises(TamError, match="cannot load"):
        image.load_clip(str(tmp_path / "nowhere"), local=True)


def test_clip_normalisation():
    frames = np.zeros((1, 2, 2, 3), np.uint8)
    frames[..., 0] = 255
    x = image.frames_to_input(torch.from_numpy(frames))
    assert x.shape == (1, 3, 2, 2)
    assert x[0, 0, 0, 0].item() == pytest.approx((1 - 0.48145466) / 0.26862954, rel=1e-5)
    assert x[0, 1, 0, 0].item() == pytest.approx(-0.4578275 / 0.26130258, rel=1e-5)


def test_configs_give_documented_dims():
    from transformers import CLIPVisionConfig

    assert CLIPVisionConfig(**image.CLIP_CONFIGS["vit-b32"]).projection_dim == 512
    assert CLIPVisionConfig(**image.CLIP_CONFIGS["vit-b32"]).patch_size == 32
    assert CLIPVisionConfig(**image.CLIP_CONFIGS["vit-l14"]).projection_dim == 768
