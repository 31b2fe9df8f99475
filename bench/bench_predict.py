"""`tam predict` speed: wall time per minute of video, and the shares of decoding, encoders and fusion.

Full-size random-init encoders (CLIP ViT-B/32, 3D ResNet-50, VGGish) and a paper-size CTM model (d = 768,
L = 12, T = 64, 8 classes, random init) on a 640x360 H.264 + AAC video (60 s by default;
`TAM_BENCH_PREDICT_SECONDS` changes it). Measured side by side in one run: the whole `tam.predict` call
(building the encoders, extraction with decoding in a background thread, fusion + head + timeline), then
decoding alone and encoding alone on the same video (the helpers of bench_extract), and the fusion step as
timed inside `predict` (per video). Shares are of decode + encode + fusion work; in the pipeline decoding
overlaps encoding, so the wall time is less than their sum plus the encoder build time.
`TAM_BENCH_PREDICT_OCCLUSION=1` also times the occlusion timeline (one forward pass per segment: ~1 min more).
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path


def _model_dir(root: Path, encoders, policy) -> Path:
    """A paper-size random-init CTM classifier saved as a run directory whose manifest names `encoders`."""
    import torch

    from tam.config import ModelConfig, to_dict
    from tam.features.store import Manifest
    from tam.models.model import build_model
    from tam.train.checkpoint import save_model

    cfg = ModelConfig()
    dims = {m: e.record.dim for m, e in encoders.items()}
    torch.manual_seed(0)
    model = build_model(cfg, dims, 8)
    manifest = Manifest(encoders={m: e.record for m, e in encoders.items()}, segment=policy.describe())
    meta = {"model": to_dict(cfg), "dims": dims, "outputs": 8, "task": "classification",
            "classes": ["amusement", "anger", "anticipation", "disgust", "fear", "joy", "sadness", "surprise"],
            "target_mean": [], "target_std": [], "epoch": 0, "features": manifest.to_json()}
    save_model(root, "best", model, meta)
    return root


def run() -> dict[str, float | str]:
    import torch

    from bench.bench_extract import _decode_only, _encode_only, make_video
    from tam.encoders.extract import ExtractOptions
    from tam.encoders.table import DEFAULTS, build_encoder
    from tam.infer.pipeline import predict

    seconds = float(os.environ.get("TAM_BENCH_PREDICT_SECONDS", "60"))
    device = "cuda" if torch.cuda.is_available() else "cpu"
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        path = make_video(tmp / "bench.mp4", seconds)
        t0 = time.perf_counter()
        encoders = {m: build_encoder(n, random_init=True, device=device) for m, n in DEFAULTS.items()}
        build = time.perf_counter() - t0
        options = ExtractOptions()
        run_dir = _model_dir(tmp / "run", encoders, options.policy)
        t0 = time.perf_counter()
        (r,) = predict([path], run_dir, cache=str(tmp / "cache"), device=device, progress=False, log=lambda s: None)
        wall = time.perf_counter() - t0
        assert r["status"] == "ok", r
        decode, parts = _decode_only(path, encoders, options)
        encode = _encode_only(parts, encoders, options.batch)
        occ = {"seconds": float("nan")}
        if os.environ.get("TAM_BENCH_PREDICT_OCCLUSION") == "1":  # ~1 s per segment on a 2-core CPU
            (occ,) = predict(model=run_dir, features=str(tmp / "cache"), timeline="occlusion", device=device,
                             progress=False, log=lambda s: None)
    fusion = r["seconds"]
    work = decode + encode + fusion
    return {"video_seconds": seconds, "device": device, "segments": float(r["segments"]),
            "model": "ctm d=768 L=12 T=64 (random init); encoders " + ", ".join(DEFAULTS.values()) + " (random init)",
            "wall_s": wall, "wall_s_per_video_minute": wall * 60 / seconds, "encoder_build_s": build,
            "decode_s": decode, "encode_s": encode, "fusion_token_s": fusion, "share_decode": decode / work,
            "share_encoders": encode / work, "share_fusion": fusion / work, "fusion_occlusion_s": occ["seconds"],
            "wall_over_decode_plus_encode_plus_fusion": wall / work}


if __name__ == "__main__":
    for k, v in run().items():
        print(f"{k:>40}  {v:.4g}" if isinstance(v, float) else f"{k:>40}  {v}")
