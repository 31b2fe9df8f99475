"""Motion: VideoMAE (Tong et al. 2022), 16 frames per segment at 224 px -> the mean-pooled tokens, 768-d (base).

Through `transformers.VideoMAEForVideoClassification`'s backbone, from a local `save_pretrained` folder first,
else a hub id such as `MCG-NJU/videomae-base-finetuned-kinetics`. The feature is what the Kinetics classifier
sees: the mean of the last hidden states over all tube tokens, then `fc_norm` when the checkpoint has one
(the fine-tuned models, `use_mean_pooling=True`); a checkpoint without `fc_norm` (a plain `VideoMAEModel`)
gives the mean of its last hidden states (after its final layer norm when it has one). The classifier is
ignored; every backbone weight must be in the checkpoint.

Preprocessing as `VideoMAEImageProcessor` (PIL path), without torchvision: the decoder converts each frame to
RGB at full size, resizes it with PIL bilinear so that the shorter side is 224 px (long side truncated) and
crops the centre at offset (side - 224) // 2 (`tam.encoders.video_io`); here pixels go to [0, 1] and are
normalised with the `image_mean` / `image_std` of the folder's `preprocessor_config.json` when it has one, else
the ImageNet mean and std that VideoMAE was trained with (note: `VideoMAEImageProcessor`'s own class default is
0.5 / 0.5, so a folder's processor file wins). Input [N, 16, 224, 224, 3] uint8 -> pixel_values [N, 16, 3, 224, 224].
"""

from __future__ import annotations

import torch
from torch import nn

from tam.errors import TamError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class VideoMAEFeatures(nn.Module):
    """A VideoMAE backbone (+ the classifier's `fc_norm`) -> mean-pooled [N, hidden] clip features."""

    def __init__(self, backbone: nn.Module, fc_norm: nn.Module | None, mean=IMAGENET_MEAN, std=IMAGENET_STD):
        super().__init__()
        self.backbone, self.fc_norm = backbone, fc_norm
        self.frames, self.size = backbone.config.num_frames, backbone.config.image_size
        self.mean, self.std = tuple(mean), tuple(std)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """[N, F, 3, H, W] normalised pixels -> [N, hidden]."""
        if tuple(pixels.shape[1:]) != (self.frames, 3, self.size, self.size):
            raise TamError(f"VideoMAE expects {self.frames} frames of {self.size} px, got {list(pixels.shape)}")
        pooled = self.backbone(pixel_values=pixels).last_hidden_state.mean(1)
        return pooled if self.fc_norm is None else self.fc_norm(pooled)


def clips_to_input(clips: torch.Tensor, mean=IMAGENET_MEAN, std=IMAGENET_STD) -> torch.Tensor:
    """uint8 [N, F, H, W, 3] -> normalised float [N, F, 3, H, W] (ImageNet mean/std unless given)."""
    mean = torch.tensor(mean, device=clips.device).view(1, 1, 3, 1, 1)
    std = torch.tensor(std, device=clips.device).view(1, 1, 3, 1, 1)
    return (clips.permute(0, 1, 4, 2, 3).float().div_(255.0) - mean) / std


def random_videomae(**config) -> VideoMAEFeatures:
    """A randomly initialised VideoMAE (the library default is ViT-B, 16 x 224 px; seed before calling)."""
    from transformers import VideoMAEConfig, VideoMAEForVideoClassification

    model = VideoMAEForVideoClassification(VideoMAEConfig(**config))
    return VideoMAEFeatures(model.videomae, model.fc_norm)


def load_videomae(source: str, local: bool) -> VideoMAEFeatures:
    """A pre-trained VideoMAE from a folder or hub id; every backbone weight must be in the checkpoint."""
    from transformers import VideoMAEForVideoClassification

    try:
        model, info = VideoMAEForVideoClassification.from_pretrained(source, output_loading_info=True,
                                                                     local_files_only=local)
    except (OSError, ValueError) as e:
        raise TamError(f"VideoMAE weights {source}: cannot load ({str(e).splitlines()[0][:200]})") from None
    missing = set(info.get("missing_keys") or []) | {k for k, *_ in info.get("mismatched_keys") or []}
    head = {k for k in missing if k.startswith("classifier.")}
    norm = {k for k in missing if k.startswith("fc_norm.")}
    if missing - head - norm:
        rest = sorted(missing - head - norm)
        raise TamError(f"VideoMAE weights {source}: checkpoint lacks {rest[:4]} ({len(rest)} keys)")
    return VideoMAEFeatures(model.videomae, None if norm else model.fc_norm, *_mean_std(source))


def _mean_std(folder: str) -> tuple[tuple, tuple]:
    """`image_mean` / `image_std` from the folder's `preprocessor_config.json`, else ImageNet's."""
    import json
    from pathlib import Path

    path = Path(folder) / "preprocessor_config.json"
    if not path.is_file():
        return IMAGENET_MEAN, IMAGENET_STD
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
        mean, std = tuple(map(float, config["image_mean"])), tuple(map(float, config["image_std"]))
    except (ValueError, KeyError, TypeError) as e:
        raise TamError(f"{path}: no usable image_mean / image_std ({type(e).__name__}: {e})") from None
    if len(mean) != 3 or len(std) != 3:
        raise TamError(f"{path}: image_mean / image_std need 3 values, got {mean}, {std}")
    return mean, std
