"""Image: CLIP's vision tower (Radford et al. 2021) on one frame per segment -> `image_embeds` (512-d for ViT-B/32).

Through `transformers.CLIPVisionModelWithProjection`, from a local folder (a CLIPModel or vision-only
checkpoint saved with `save_pretrained`) or a hub id. CLIP preprocessing, as `CLIPImageProcessor` (PIL path):
the decoder converts the frame to RGB at full size, resizes it with PIL bicubic so that the shorter side is
224 px (long side truncated) and crops the centre at offset (side - 224) // 2 (`tam.encoders.video_io`); here
pixels go to [0, 1] and are normalised with CLIP's mean and std.
"""

from __future__ import annotations

import torch

from tam.errors import TamError

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

CLIP_CONFIGS = {
    # name: CLIPVisionConfig kwargs (for random-init models; pre-trained ones bring their own config)
    "vit-b32": {},  # the library default is ViT-B/32: width 768, 12 layers, patch 32, 512-d projection
    "vit-l14": {"hidden_size": 1024, "intermediate_size": 4096, "num_hidden_layers": 24, "num_attention_heads": 16,
                "patch_size": 14, "projection_dim": 768},
    "tiny": {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 2},
}


def random_clip(kind: str) -> torch.nn.Module:
    """A randomly initialised CLIP vision tower of one of `CLIP_CONFIGS` (seed it before calling)."""
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    return CLIPVisionModelWithProjection(CLIPVisionConfig(**CLIP_CONFIGS[kind]))


def load_clip(source: str, local: bool) -> torch.nn.Module:
    """A pre-trained CLIP vision tower from a folder or hub id; every vision weight must be in the checkpoint."""
    from transformers import CLIPVisionModelWithProjection

    try:
        model, info = CLIPVisionModelWithProjection.from_pretrained(source, output_loading_info=True,
                                                                    local_files_only=local)
    except (OSError, ValueError) as e:
        raise TamError(f"CLIP weights {source}: cannot load ({str(e).splitlines()[0][:200]})") from None
    missing = sorted(info.get("missing_keys") or []) + sorted(k for k, *_ in info.get("mismatched_keys") or [])
    if missing:
        raise TamError(f"CLIP weights {source}: checkpoint lacks {missing[:4]} ({len(missing)} keys)")
    return model


def frames_to_input(frames: torch.Tensor) -> torch.Tensor:
    """uint8 [N, H, W, 3] -> CLIP-normalised float [N, 3, H, W]."""
    mean = torch.tensor(CLIP_MEAN, device=frames.device).view(1, 3, 1, 1)
    std = torch.tensor(CLIP_STD, device=frames.device).view(1, 3, 1, 1)
    return (frames.permute(0, 3, 1, 2).float().div_(255.0) - mean) / std


def clip_embed(model: torch.nn.Module, pixels: torch.Tensor) -> torch.Tensor:
    """[N, 3, 224, 224] -> [N, projection_dim] image embeddings (not L2-normalised)."""
    return model(pixel_values=pixels).image_embeds
