"""A trained model as a shareable folder in the Hub's layout (`tam export`), loaded back by folder or repo id.

    export.py   the folder: config.json, model.safetensors, README.md (+ model.onnx)
    config.py   config.json: what it holds and the checks only an exported folder needs
    card.py     the model card, generated from the run's results.json
    onnx.py     ONNX export of fusion + head, its check against PyTorch, the onnxruntime runner
    resolve.py  run directory | exported folder | Hub repo id -> a local folder
"""

from __future__ import annotations

import os


def from_pretrained(source: str | os.PathLike, device: str = "cpu"):
    """(model, config) from an exported folder, a Hub repo id or a run directory: `tam.train.checkpoint.load_model`
    (strict: bounded reads, shapes checked before allocation, one-line errors naming the file)."""
    from tam.train.checkpoint import load_model

    return load_model(source, device=device)
