"""Fixtures for the inference tests: synthetic videos written with PyAV, tiny-encoder features, tiny trained models."""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

CLASSES = ["calm", "tense"]


def make_video(path: Path, seconds: float, colour: tuple[int, int, int], tone_hz: float | None = 440.0,
               fps: int = 12, size: tuple[int, int] = (96, 64)) -> Path:
    """A clip of one colour with a moving white square and (unless `tone_hz` is None) a sine tone."""
    import av

    w, h = size
    with av.open(str(path), "w") as out:
        vs = out.add_stream("libx264", rate=fps)
        vs.width, vs.height, vs.pix_fmt = w, h, "yuv420p"
        a = None
        if tone_hz is not None:  # every stream is added before the first packet is written
            a = out.add_stream("aac", rate=16000)
            a.layout = "mono"
        for i in range(int(seconds * fps)):
            img = np.empty((h, w, 3), np.uint8)
            img[:] = colour
            x = (i * 4) % (w - 16)
            img[20:36, x:x + 16] = 255
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, fps)
            for p in vs.encode(frame):
                out.mux(p)
        for p in vs.encode():
            out.mux(p)
        if a is not None:
            t = np.arange(int(seconds * 16000)) / 16000
            wave = (0.3 * np.sin(2 * np.pi * tone_hz * t)).astype(np.float32)
            for i in range(0, len(wave), 1024):
                f = av.AudioFrame.from_ndarray(wave[None, i:i + 1024].copy(), format="fltp", layout="mono")
                f.sample_rate, f.pts = 16000, i
                for p in a.encode(f):
                    out.mux(p)
            for p in a.encode():
                out.mux(p)
    return path


def train_tiny(store: Path, labels: Path, run_dir: Path, fusion: str, task: str = "classification") -> Path:
    """Fit a d=16, 1-layer model with T=2 (so 3-5 s videos need sliding windows) for 2 epochs."""
    from tam.config import DataConfig, ModelConfig, OptimConfig, RunConfig, TrainConfig
    from tam.train.loop import fit

    cfg = RunConfig(model=ModelConfig(fusion=fusion, d=16, layers=1, heads=2, T=2, dropout=0.0),
                    data=DataConfig(store=str(store), labels=str(labels), task=task,
                                    classes=CLASSES if task == "classification" else []),
                    optim=OptimConfig(lr=1e-2, batch_size=4, epochs=2),
                    train=TrainConfig(num_workers=0, progress=False, device="cpu", threads=1))
    fit(cfg.validate(), run_dir, log=lambda s: None)
    return run_dir


@pytest.fixture(scope="session")
def world(tmp_path_factory) -> dict:
    """`build_world` once per session."""
    return build_world(tmp_path_factory.mktemp("infer"))


def build_world(root: Path) -> dict:
    """Videos (4 labelled + 1 long), their tiny-encoder store, a CTM classifier and a concat regressor (trained on
    the CPU), in `root`."""
    from tam.encoders.extract import ExtractOptions, extract, find_videos, open_store
    from tam.encoders.table import TINY, build_encoder
    from tam.encoders.video_io import SegmentPolicy

    vids = root / "videos"
    vids.mkdir()
    colours = [(200, 40, 40), (40, 40, 200), (210, 50, 30), (30, 60, 210)]
    for i, c in enumerate(colours):
        make_video(vids / f"v{i}.mp4", 3.0, c, tone_hz=300.0 + 400 * (i % 2))
    long = make_video(root / "long.mp4", 7.0, (120, 120, 40), tone_hz=None)
    encoders = {m: build_encoder(TINY[m], random_init=True) for m in ("image", "motion", "audio")}
    store = open_store(root / "feats", encoders, SegmentPolicy())
    extract(find_videos([str(vids)]), store, encoders, ExtractOptions(), progress=False)
    labels = root / "labels.csv"
    labels.write_text("video,label,split\nv0,calm,train\nv1,tense,train\nv2,calm,val\nv3,tense,val\n")
    reg = root / "va.csv"
    reg.write_text("video,valence,arousal,split\nv0,0.2,0.1,train\nv1,-0.5,0.8,train\nv2,0.3,0.0,val\n"
                   "v3,-0.4,0.7,val\n")
    return {"root": root, "videos": vids, "long": long, "store": root / "feats",
            "ctm": train_tiny(root / "feats", labels, root / "run-ctm", "ctm"),
            "concat": train_tiny(root / "feats", reg, root / "run-concat", "concat", "regression")}


@pytest.fixture(scope="session")
def trainer():
    """`train_tiny(store, labels, run_dir, fusion, task)`: see its docstring."""
    return train_tiny
