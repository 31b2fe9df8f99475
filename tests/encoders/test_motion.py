"""3D ResNets: the original module names, strict loading of checkpoints in their published format, shapes."""

import pytest
import torch

from tam.encoders import motion
from tam.encoders.weights import load_strict, load_torch_state
from tam.errors import TamError


def _checkpoint(model: motion.ResNet3D, path, arch: str) -> None:
    """Save like 3D-ResNets-PyTorch: DataParallel `module.` keys, the fc layer, and the `arch` string."""
    state = {"module." + k: v for k, v in model.state_dict().items()}
    torch.save({"epoch": 200, "arch": arch, "state_dict": state, "optimizer": {}}, path)


def test_resnet50_module_names():
    keys = set(motion.build_resnet3d("resnet-50", with_fc=True).state_dict())
    for k in ("conv1.weight", "bn1.running_mean", "layer1.0.conv1.weight", "layer1.0.bn3.bias",
              "layer1.0.downsample.0.weight", "layer1.0.downsample.1.running_var", "layer2.3.conv3.weight",
              "layer3.5.bn2.weight", "layer4.2.conv2.weight", "fc.weight", "fc.bias"):
        assert k in keys, k
    assert "layer3.6.conv1.weight" not in keys  # [3, 4, 6, 3]
    assert motion.build_resnet3d("resnet-50").layer1[0].conv2.weight.shape == (64, 64, 3, 3, 3)


@pytest.mark.slow
def test_resnet101_and_resnext101_shapes():
    r101 = motion.build_resnet3d("resnet-101")
    assert len(r101.layer3) == 23 and r101.dim == 2048
    rx = motion.build_resnet3d("resnext-101")
    assert rx.layer1[0].conv2.groups == 32 and rx.layer1[0].conv2.weight.shape == (128, 4, 3, 3, 3)
    assert rx.layer4[0].conv3.weight.shape == (2048, 1024, 1, 1, 1) and rx.dim == 2048
    n = sum(p.numel() for p in rx.parameters())
    assert 46e6 < n < 49e6  # ResNeXt-101 3D (32x4d): ~47.5M parameters without fc


@pytest.mark.parametrize("arch", [pytest.param("resnet-50", marks=pytest.mark.slow), "resnet-tiny"])
def test_published_format_loads_strictly_and_gives_2048(tmp_path, arch):
    torch.manual_seed(1)
    src = motion.build_resnet3d(arch, with_fc=True).eval()
    for m in src.modules():  # non-trivial BN statistics, so that loading them is visible
        if isinstance(m, torch.nn.BatchNorm3d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    path = tmp_path / "r3d.pth"
    _checkpoint(src, path, arch)
    dst = motion.build_resnet3d(arch).eval()
    load_strict(dst, motion.checkpoint_state(load_torch_state(path)), path, arch)
    x = torch.randn(2, 3, 16, 112, 112)
    with torch.inference_mode():
        feats = dst(x)
        assert feats.shape == (2, 2048) and not feats.requires_grad
        assert torch.allclose(feats, src.forward_features(x), atol=1e-5)


def test_mismatching_checkpoints_are_refused(tmp_path):
    src = motion.build_resnet3d("resnet-tiny", with_fc=True)
    state = {k: v for k, v in src.state_dict().items() if not k.startswith("layer4.0.downsample")}
    torch.save({"state_dict": {"module." + k: v for k, v in state.items()}}, tmp_path / "a.pth")
    with pytest.raises(TamError, match="missing layer4.0.downsample"):
        load_strict(motion.build_resnet3d("resnet-tiny"), load_torch_state(tmp_path / "a.pth"), tmp_path / "a.pth", "x")
    _checkpoint(src, tmp_path / "tiny.pth", "resnet-tiny")
    with pytest.raises(TamError, match="does not fit"):  # a ResNet-50 is not this checkpoint
        state = motion.checkpoint_state(load_torch_state(tmp_path / "tiny.pth"))
        load_strict(motion.build_resnet3d("resnet-50"), state, tmp_path / "tiny.pth", "3D resnet-50")
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(TamError, match="junk.pth: not a readable PyTorch checkpoint"):
        load_torch_state(tmp_path / "junk.pth")


def test_old_checkpoints_without_num_batches_tracked_load(tmp_path):
    src = motion.build_resnet3d("resnet-tiny", with_fc=True)
    state = {k: v for k, v in src.state_dict().items() if not k.endswith("num_batches_tracked")}  # PyTorch 0.3
    torch.save({"state_dict": {"module." + k: v for k, v in state.items()}, "arch": "resnet"}, tmp_path / "o.pth")
    load_strict(motion.build_resnet3d("resnet-tiny"), motion.checkpoint_state(load_torch_state(tmp_path / "o.pth")),
                tmp_path / "o.pth", "tiny")


def test_normalisation():
    clips = torch.full((1, 2, 4, 4, 3), 255, dtype=torch.uint8)
    x = motion.clips_to_input(clips, "kinetics")
    assert x.shape == (1, 3, 2, 4, 4)
    assert x[0, 0, 0, 0, 0].item() == pytest.approx((1 - 0.4345) / 0.2768, rel=1e-5)
    x = motion.clips_to_input(clips, "activitynet-mean-255")
    assert x[0, 2, 0, 0, 0].item() == pytest.approx(255 - 99.4750, rel=1e-4)
