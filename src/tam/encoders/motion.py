"""Motion: the 3D ResNets of Hara, Kataoka and Satoh (CVPR 2018), 16 frames at 112 px -> 2048-d.

Written for this project with the module names of kenshohara/3D-ResNets-PyTorch (`conv1`, `bn1`,
`layer1..4` of Bottleneck blocks with `conv1/bn1/conv2/bn2/conv3/bn3` and a `downsample.0/.1` projection
shortcut, i.e. shortcut type B, `fc`), so their published Kinetics checkpoints
(`{'state_dict': ..., 'arch': ...}`, keys prefixed `module.`) load strictly; only `fc` is dropped (700
Kinetics-700 classes in the 2020 `r3d*_K_200ep.pth` checkpoints, 400 Kinetics-400 classes in the 2017
`resnext-101-kinetics.pth` one), because the feature is the global average pool before it.

Input as the reference pipeline feeds them at test time: 16 consecutive frames at the video's native rate
(the temporal centre crop of `temporal_transforms.TemporalCenterCrop`; see `tam.encoders.video_io`), each
resized with PIL bilinear so that the shorter side is 112 px (long side truncated, `int(112 * long /
short)`), centre-cropped to 112 with the offset `int(round((side - 112) / 2))`, then normalised (`NORMS`).

- ResNet-50 / -101: Bottleneck (expansion 4) with widths 64..512, blocks [3,4,6,3] / [3,4,23,3].
- ResNeXt-101: ResNeXt bottleneck (cardinality 32, expansion 2) with widths 128..1024, blocks [3,4,23,3].
Stem: conv 7x7x7, stride (1,2,2), then 3x3x3 max-pool with stride 2. Input [N, 3, 16, 112, 112].
"""

from __future__ import annotations

import torch
from torch import nn


class Bottleneck(nn.Module):
    """1x1x1 -> 3x3x3 (grouped for ResNeXt) -> 1x1x1, plus the (projection) shortcut."""

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None,
                 cardinality: int = 1, expansion: int = 4):
        super().__init__()
        mid = planes if cardinality == 1 else cardinality * planes // 32
        self.conv1 = nn.Conv3d(inplanes, mid, kernel_size=1, bias=False)
        self.bn1 = nn.BatchNorm3d(mid)
        self.conv2 = nn.Conv3d(mid, mid, kernel_size=3, stride=stride, padding=1, groups=cardinality, bias=False)
        self.bn2 = nn.BatchNorm3d(mid)
        self.conv3 = nn.Conv3d(mid, planes * expansion, kernel_size=1, bias=False)
        self.bn3 = nn.BatchNorm3d(planes * expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + (x if self.downsample is None else self.downsample(x)))


class ResNet3D(nn.Module):
    """3D ResNet / ResNeXt; `forward_features` gives the pooled [N, 2048] feature, `forward` the logits."""

    def __init__(self, layers: tuple[int, ...], widths: tuple[int, ...] = (64, 128, 256, 512), cardinality: int = 1,
                 expansion: int = 4, stem: int = 64, num_classes: int = 400, with_fc: bool = False):
        super().__init__()
        self.cardinality, self.expansion, self.inplanes = cardinality, expansion, stem
        self.conv1 = nn.Conv3d(3, stem, kernel_size=7, stride=(1, 2, 2), padding=3, bias=False)
        self.bn1 = nn.BatchNorm3d(stem)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool3d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(widths[0], layers[0], 1)
        self.layer2 = self._make_layer(widths[1], layers[1], 2)
        self.layer3 = self._make_layer(widths[2], layers[2], 2)
        self.layer4 = self._make_layer(widths[3], layers[3], 2)
        self.dim = widths[3] * expansion
        self.fc = nn.Linear(self.dim, num_classes) if with_fc else None
        for m in self.modules():
            if isinstance(m, nn.Conv3d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm3d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def _make_layer(self, planes: int, blocks: int, stride: int) -> nn.Sequential:
        out = planes * self.expansion
        downsample = None
        if stride != 1 or self.inplanes != out:
            downsample = nn.Sequential(nn.Conv3d(self.inplanes, out, kernel_size=1, stride=stride, bias=False),
                                       nn.BatchNorm3d(out))
        kw = {"cardinality": self.cardinality, "expansion": self.expansion}
        layers = [Bottleneck(self.inplanes, planes, stride, downsample, **kw)]
        self.inplanes = out
        layers += [Bottleneck(out, planes, **kw) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """[N, 3, F, H, W] -> [N, dim] (global average pool after layer4)."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return x.mean(dim=(2, 3, 4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.forward_features(x)
        return f if self.fc is None else self.fc(f)


ARCHS = {
    # name: constructor kwargs (the published Kinetics models are all shortcut type B)
    "resnet-50": {"layers": (3, 4, 6, 3)},
    "resnet-101": {"layers": (3, 4, 23, 3)},
    "resnext-101": {"layers": (3, 4, 23, 3), "widths": (128, 256, 512, 1024), "cardinality": 32, "expansion": 2},
    # tests and demos only: the same blocks, one per stage, narrow, and the same 2048-d output
    "resnet-tiny": {"layers": (1, 1, 1, 1), "widths": (16, 32, 64, 512), "stem": 16},
}


def build_resnet3d(arch: str, with_fc: bool = False) -> ResNet3D:
    """One of `ARCHS`."""
    return ResNet3D(**ARCHS[arch], with_fc=with_fc)


def checkpoint_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Their state dict (already without `module.`) minus the classifier, for the feature model."""
    return {k: v for k, v in state.items() if not k.startswith("fc.")}


# Normalisation of the two published families, applied to RGB in [0, 1]:
NORMS = {
    # 3D-ResNets-PyTorch (2020 release, r3d50_K_200ep.pth ...): Kinetics mean and std (`--mean_dataset kinetics`)
    "kinetics": ((0.4345, 0.4051, 0.3775), (0.2768, 0.2713, 0.2737)),
    # the 2017 release (CVPR2018 branch, resnext-101-kinetics.pth ...): its default `--mean_dataset activitynet`,
    # i.e. the ActivityNet mean (114.7748, 107.7354, 99.4750) subtracted from 0..255 values, no std division
    "activitynet-mean-255": ((114.7748 / 255, 107.7354 / 255, 99.4750 / 255), (1 / 255, 1 / 255, 1 / 255)),
}


def clips_to_input(clips: torch.Tensor, norm: str) -> torch.Tensor:
    """uint8 [N, F, H, W, 3] -> normalised float [N, 3, F, H, W]."""
    mean, std = (torch.tensor(v, device=clips.device).view(1, 3, 1, 1, 1) for v in NORMS[norm])
    x = clips.permute(0, 4, 1, 2, 3).float().div_(255.0)
    return (x - mean) / std
