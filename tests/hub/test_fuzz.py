"""Malformed exported folders: truncated weights, hostile config values, broken cards, missing files. Each gives a
one-line TamError naming the file, and nothing large is allocated on the way (the model is checked on the meta
device first)."""

from __future__ import annotations

import json
import math
import resource
import shutil
from pathlib import Path

import pytest

from tam.errors import TamError

CONFIG, WEIGHTS, CARD = "config.json", "model.safetensors", "README.md"


def _config(**change):
    def mutate(d: Path, world):
        cfg = json.loads((d / CONFIG).read_text())
        for path, value in change.items():
            *parents, last = path.split(".")
            node = cfg
            for p in parents:
                node = node[p]
            node[last] = value(node[last]) if callable(value) else value
        (d / CONFIG).write_text(json.dumps(cfg))
    return mutate


def _write(name: str, data: bytes | str | None):
    def mutate(d: Path, world):
        if data is None:
            (d / name).unlink()
        else:
            (d / name).write_bytes(data if isinstance(data, bytes) else data.encode())
    return mutate


def _truncate(d: Path, world):
    raw = (d / WEIGHTS).read_bytes()
    (d / WEIGHTS).write_bytes(raw[: len(raw) // 2])


def _other_weights(d: Path, world):
    shutil.copyfile(world["concat"] / "best.safetensors", d / WEIGHTS)


CASES = {  # name: (mutation, the file the message must name)
    "truncated weights": (_truncate, WEIGHTS),
    "empty weights": (_write(WEIGHTS, b""), WEIGHTS),
    "header length 2^62": (_write(WEIGHTS, (1 << 62).to_bytes(8, "little") + b"{}"), WEIGHTS),
    "header not JSON": (_write(WEIGHTS, (4).to_bytes(8, "little") + b"{{{{"), WEIGHTS),
    "another model's weights": (_other_weights, WEIGHTS),
    "huge feature width": (_config(**{"dims.motion": 1 << 40}), CONFIG),
    "width in range, weights do not fit": (_config(**{"dims.motion": 1 << 20}), CONFIG),
    "huge model in range (d 4096, 64 layers)": (_config(**{"model.d": 4096, "model.layers": 64, "model.heads": 2}),
                                                WEIGHTS),
    "negative d": (_config(**{"model.d": -16}), CONFIG),
    "d as a string": (_config(**{"model.d": "16"}), CONFIG),
    "a billion layers": (_config(**{"model.layers": 10**9}), CONFIG),
    "unknown fusion": (_config(**{"model.fusion": "__import__('os')"}), CONFIG),
    "NaN normalisation": (_config(**{"normalization.mean.image": lambda v: [math.nan] + v[1:]}), CONFIG),
    "short normalisation": (_config(**{"normalization.scale.audio": [1.0, 1.0]}), CONFIG),
    "normalisation not the weights'": (_config(**{"normalization.mean.image": lambda v: [v[0] + 1] + v[1:]}), CONFIG),
    "normalisation mode": (_config(**{"normalization.mode": "pickle"}), CONFIG),
    "classes not a list": (_config(classes=5), CONFIG),
    "outputs disagree with classes": (_config(outputs=3), CONFIG),
    "another library": (_config(library_name="transformers"), CONFIG),
    "future format": (_config(format=99), CONFIG),
    "encoder width disagrees": (_config(**{"features.encoders.image.dim": 7}), CONFIG),
    "config not JSON": (_write(CONFIG, "{"), CONFIG),
    "config a list": (_write(CONFIG, "[]"), CONFIG),
    "config deeply nested": (_write(CONFIG, "[" * 100000 + "]" * 100000), CONFIG),
    "config of 5 MB": (_write(CONFIG, '{"pad": "' + "x" * (5 << 20) + '"}'), CONFIG),
    "card with broken YAML": (_write(CARD, "---\nlibrary_name: [tam\n---\n# card\n"), CARD),
    "card without front matter": (_write(CARD, "# a hand-written card\n"), CARD),
    "card of another library": (_write(CARD, "---\nlibrary_name: timm\n---\n"), CARD),
    "front matter of 2 MB": (_write(CARD, "---\nlibrary_name: tam\npad: " + "x" * (2 << 20) + "\n---\n"), CARD),
    "card missing": (_write(CARD, None), CARD),
    "YAML alias bomb": (_write(CARD, "---\na0: &a0 [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]\n" for i in range(1, 12)) + "---\n"), CARD),
    "weights missing": (_write(WEIGHTS, None), WEIGHTS),
    "config missing": (_write(CONFIG, None), CONFIG),
}


def _refused(folder: Path) -> str:
    from tam.train.checkpoint import load_model

    with pytest.raises(TamError) as e:
        load_model(folder)
    msg = str(e.value)
    assert "\n" not in msg and len(msg) < 400, msg
    return msg


def test_every_malformed_folder_is_one_line_naming_the_file(world, exported, tmp_path):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    for i, (name, (mutate, file)) in enumerate(CASES.items()):
        d = tmp_path / f"case{i}"
        shutil.copytree(exported, d)
        mutate(d, world)
        msg = _refused(d)
        assert file in msg or (file == CONFIG and "no model here" in msg), (name, msg)
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert grown_mb < 400, f"peak memory grew by {grown_mb:.0f} MB"


HARMLESS = [("model.dropout", 0), ("model.noise", 0), ("model.noise", 2**63), ("model.noise", 1e308),  # valid values
            ("model.drop_path", 0), ("target_mean", []),  # (noise: a finite training-only σ, unused when loading)
            ("features.segment", "x")]  # a policy text: `tam predict` parses it (unknown: a one-line error there)
HOSTILE = [None, -1, 0, 2**63, 1e308, math.nan, math.inf, "x", [], {}, True, [[[]]]]
KEYS = ["model", "model.d", "model.T", "model.heads", "model.layers", "model.ffn_mult", "model.dropout",
        "model.modalities", "model.readout", "model.noise", "model.drop_path", "dims", "dims.image", "outputs", "task",
        "classes", "target_mean", "features", "features.encoders", "features.segment", "normalization",
        "normalization.clip", "normalization.mean", "normalization.scale.motion", "library_name", "format"]


def test_hostile_values_anywhere_in_the_config(world, exported, tmp_path):
    """Every (key, value) pair: a one-line TamError or a model that loads; never another exception."""
    from tam.train.checkpoint import load_model

    d = tmp_path / "m"
    shutil.copytree(exported, d)
    good = (exported / CONFIG).read_text()
    accepted = []
    for key in KEYS:
        for value in HOSTILE:
            (d / CONFIG).write_text(good)
            _config(**{key: value})(d, world)
            try:
                load_model(d)
                accepted.append((key, value))
            except TamError as e:
                assert "\n" not in str(e) and CONFIG in str(e), (key, value, str(e))
    assert accepted == HARMLESS


def test_a_graph_of_another_model_is_refused(world, exported, tmp_path):
    import torch

    from tam.hub.export import export_run
    from tam.hub.onnx import load_onnx
    from tam.train.checkpoint import load_model

    model, meta = load_model(exported)
    d = tmp_path / "m"
    shutil.copytree(exported, d)
    (d / "model.onnx").write_bytes(b"\x08\x07garbage")
    with pytest.raises(TamError, match="model.onnx: unreadable ONNX graph"):
        load_onnx(d, meta, model)
    export_run(world["concat"], tmp_path / "concat", onnx=True)  # a graph without the token timeline
    shutil.copyfile(tmp_path / "concat" / "model.onnx", d / "model.onnx")
    with pytest.raises(TamError, match="model.onnx: the graph's outputs"):
        load_onnx(d, meta, model)
    shutil.copyfile(exported / "model.onnx", d / "model.onnx")
    load_onnx(d, meta, model)  # the right graph
    with torch.no_grad():
        model.head.fc.bias.add_(0.5)  # weights that are not the graph's
    with pytest.raises(TamError, match="belongs to another model"):
        load_onnx(d, meta, model)
