"""Checkpoints as untrusted input: every broken or hostile best.json / best.safetensors / last.pt is a one-line
TamError naming the file, nothing is allocated before the description and the header agree, no code runs."""

import json
import shutil
import struct
from dataclasses import replace

import numpy as np
import pytest
import torch

from tam.config import DataConfig, ModelConfig, OptimConfig, RunConfig, TrainConfig
from tam.errors import TamError
from tam.train.checkpoint import load_model, load_state, restore_state, safetensors_header
from tam.train.loop import fit


@pytest.fixture(scope="module")
def run(tiny_world, tmp_path_factory):
    """A real run directory (best.json, best.safetensors, last.pt) of a 1-epoch d=16 `fit`."""
    from tam.demo.worlds.features import CLASSES

    store, labels = tiny_world
    cfg = RunConfig(model=ModelConfig(d=16, layers=1, heads=2, T=4, dropout=0.0),
                    data=DataConfig(store=str(store), labels=str(labels), classes=list(CLASSES)),
                    optim=OptimConfig(lr=1e-3, batch_size=16, epochs=1),
                    train=TrainConfig(num_workers=0, progress=False, device="cpu", threads=1))
    out = tmp_path_factory.mktemp("ckpt") / "run"
    fit(cfg, out, log=lambda s: None)
    return cfg, out


def copy_run(run, tmp_path):
    dst = tmp_path / "run"
    shutil.copytree(run[1], dst, ignore=shutil.ignore_patterns("tb"))
    return dst


def one_line(e: pytest.ExceptionInfo, *names: str) -> str:
    msg = str(e.value)
    assert "\n" not in msg and msg, msg
    for n in names:
        assert n in msg, msg
    return msg


def edit_meta(path, **changes):
    meta = json.loads(path.read_text())
    for key, value in changes.items():
        node, *rest = key.split("__")
        if rest:
            meta[node][rest[0]] = value
        elif value is None:
            del meta[node]
        else:
            meta[node] = value
    path.write_text(json.dumps(meta))


def test_a_real_checkpoint_loads(run):
    model, meta = load_model(run[1])
    assert model.head.fc.out_features == len(meta["classes"])
    assert set(safetensors_header(run[1] / "best.safetensors")) == set(model.state_dict())


@pytest.mark.parametrize("changes, message", [
    ({"dims": None}, "'dims'"),
    ({"model__fusion": "transformer-xl"}, "unknown fusion 'transformer-xl'"),
    ({"model__d": -16}, "model.d = -16 is outside"),
    ({"model__d": 10**7}, "model.d = 10000000 is outside"),  # would be a 20 GB model: refused before building
    ({"model__layers": "2"}, "expected int"),
    ({"model__colour": 1}, "unknown keys ['colour']"),
    ({"classes": ["a", "b"]}, "2 distinct class names for"),
    ({"outputs": 10**9}, "'outputs' must be an integer"),
    ({"task": "ranking"}, "'task' must be"),
    ({"dims": {"image": 512, "motion": 2048, "audio": -1}}, "outside [1,"),
    ({"features": {"encoders": 3}}, "unreadable 'features'"),
    ({"model": []}, "no 'model' section"),
    ({"model__readout": "cls-token"}, "model.readout must be one of"),
    ({"model__rel_bias": -1}, "model.rel_bias must be in [0, model.T = 4]"),
    ({"model__rel_bias": 10**6}, "model.rel_bias must be in [0, model.T = 4]"),
    ({"model__rel_bias_scale": 0.0}, "model.rel_bias_scale in (0, 1000]"),
    ({"model__rel_bias_init": -1.0}, "model.rel_bias_init"),
    ({"model__centre": "yes"}, "expected bool"),
    ({"model__fusion": "concat", "model__centre": True}, "need a CTM fusion"),
])
def test_broken_descriptions_are_one_line_errors(run, tmp_path, changes, message):
    d = copy_run(run, tmp_path)
    edit_meta(d / "best.json", **changes)
    with pytest.raises(TamError) as e:
        load_model(d)
    one_line(e, str(d / "best.json"), message)


def test_a_checkpoint_with_relative_bias_and_centring_loads(run, tmp_path):
    """The options of issue 21 (model.rel_bias, model.centre) round-trip: the bias table comes back, and a
    description without them (an older checkpoint) still loads as the paper's CTM."""
    from tam.models.model import build_model
    from tam.train.checkpoint import save_model

    d = copy_run(run, tmp_path)
    meta = json.loads((d / "best.json").read_text())
    meta["model"].update(rel_bias=3, centre=True)
    model = build_model(ModelConfig(**meta["model"]), meta["dims"], meta["outputs"])
    with torch.no_grad():
        model.fusion.layers[0].b_rel.normal_()
    save_model(d, "best", model, meta)
    loaded, _ = load_model(d)
    assert loaded.fusion.centre and loaded.fusion.layers[0].b_rel.shape == (9, 2, 7)  # M² = 9 pairs, h, 2R+1
    torch.testing.assert_close(loaded.fusion.layers[0].b_rel, model.fusion.layers[0].b_rel)
    old = copy_run(run, tmp_path / "old")
    edit_meta(old / "best.json", model={k: v for k, v in meta["model"].items() if k not in ("rel_bias", "centre")})
    assert load_model(old)[0].fusion.layers[0].b_rel is None


def test_a_width_in_range_but_not_in_the_weights_fails_before_allocating(run, tmp_path):
    """d = 2**16 with 64 layers is ~4·10^13 bytes of weights: built for real it would raise an allocation error,
    not a TamError; the meta-device build and the header comparison refuse it without allocating."""
    d = copy_run(run, tmp_path)
    edit_meta(d / "best.json", model__d=2**16, model__layers=64, model__heads=16)
    with pytest.raises(TamError) as e:
        load_model(d)
    one_line(e, str(d / "best.safetensors"), "best.json")


@pytest.mark.parametrize("content", [b"\xff\xfe garbage \x00\x81", b"", b"[1, 2]", b"{" * 100000, b'{"a": 1e999999}'])
def test_garbage_json(run, tmp_path, content):
    d = copy_run(run, tmp_path)
    (d / "best.json").write_bytes(content)
    with pytest.raises(TamError) as e:
        load_model(d)
    one_line(e, "best.json")


def header_bytes(header: dict) -> bytes:
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw


def read_header(path):
    raw = path.read_bytes()
    n = struct.unpack("<Q", raw[:8])[0]
    return json.loads(raw[8:8 + n]), raw[8 + n:]


def corrupt_offsets(path):
    header, data = read_header(path)
    first = next(k for k in header if k != "__metadata__")
    header[first]["data_offsets"][1] += 4
    path.write_bytes(header_bytes(header) + data)


def nan_weights(path):
    header, data = read_header(path)
    k = next(k for k, v in header.items() if k != "__metadata__" and v["dtype"] == "F32")
    a, _ = header[k]["data_offsets"]
    data = bytearray(data)
    data[a:a + 4] = np.float32(np.nan).tobytes()
    path.write_bytes(header_bytes(header) + bytes(data))


def wrong_shape(path):
    header, data = read_header(path)
    k = next(k for k, v in header.items() if k != "__metadata__" and len(v["shape"]) == 2)
    header[k]["shape"] = header[k]["shape"][::-1] if header[k]["shape"][0] != header[k]["shape"][1] else [1, -1]
    path.write_bytes(header_bytes(header) + data)


@pytest.mark.parametrize("damage, message", [
    (lambda p: p.write_bytes(p.read_bytes()[:len(p.read_bytes()) // 2]), "truncated"),
    (lambda p: p.write_bytes(b""), "not a safetensors file"),
    (lambda p: p.write_bytes(struct.pack("<Q", 2**62) + p.read_bytes()[8:]), "corrupt safetensors"),
    (lambda p: p.write_bytes(struct.pack("<Q", 5) + b"nope!"), "not valid JSON"),
    (corrupt_offsets, "corrupt safetensors"),
    (nan_weights, "NaN/Inf"),
    (wrong_shape, ""),
])
def test_broken_weights_are_one_line_errors(run, tmp_path, damage, message):
    d = copy_run(run, tmp_path)
    damage(d / "best.safetensors")
    with pytest.raises(TamError) as e:
        load_model(d)
    one_line(e, "best.safetensors", message)


def test_weights_of_another_model_are_refused(run, tmp_path):
    d = copy_run(run, tmp_path)
    edit_meta(d / "best.json", model__fusion="concat")
    with pytest.raises(TamError) as e:
        load_model(d)
    one_line(e, str(d / "best.safetensors"), "do not fit best.json")


class Payload:
    """Unpickling this would run `Path.touch(marker)` (the classic code-execution gadget)."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        from pathlib import Path

        return Path.touch, (Path(self.marker),)


def test_a_hostile_last_pt_never_runs_code(tmp_path):
    marker = tmp_path / "pwned"
    torch.save({"model": {}, "epoch": 0, "x": Payload(marker)}, tmp_path / "last.pt")
    with pytest.raises(TamError) as e:
        load_state(tmp_path / "last.pt")
    one_line(e, str(tmp_path / "last.pt"), "unreadable resume state")
    assert not marker.exists()


@pytest.mark.parametrize("state, message", [
    ([1, 2, 3], "not a dict"),
    ({"epoch": 0}, "'model'"),
    ({"model": {}, "epoch": "3"}, "'epoch'"),
    ({"model": {}, "epoch": 1, "rng": torch.zeros(3)}, "RNG"),
])
def test_wrong_resume_states(tmp_path, state, message):
    torch.save(state, tmp_path / "last.pt")
    with pytest.raises(TamError) as e:
        load_state(tmp_path / "last.pt")
    one_line(e, message)


def test_a_damaged_last_pt_stops_the_resumed_run_in_one_line(run, tmp_path):
    cfg, _ = run
    d = copy_run(run, tmp_path)
    raw = (d / "last.pt").read_bytes()
    (d / "last.pt").write_bytes(raw[:len(raw) // 3])
    before = (d / "metrics.csv").read_bytes()
    with pytest.raises(TamError) as e:
        fit(replace(cfg, optim=replace(cfg.optim, epochs=2)), d, log=lambda s: None)
    one_line(e, str(d / "last.pt"))
    assert (d / "metrics.csv").read_bytes() == before  # nothing already written is lost


def test_a_resume_state_of_another_shape_is_one_line(run, tmp_path):
    from tam.models.model import build_model

    state = load_state(run[1] / "last.pt")
    other = build_model(replace(run[0].model, d=8), {"image": 512, "motion": 2048, "audio": 128}, 8)
    with pytest.raises(TamError) as e:
        restore_state(run[1] / "last.pt", state, other)
    one_line(e, "last.pt", "does not fit this run")


# ---- fuzz: truncated and bit-flipped copies of the real files ------------------------------------------
def variants(raw: bytes, seed: int, n_cut: int = 12, n_flip: int = 24):
    """Truncations at spread-out lengths (the header region densely) and copies with 1-8 random bit flips."""
    rng = np.random.default_rng(seed)
    cuts = sorted({0, 1, 7, 8, 9, 50, len(raw) - 1, *rng.integers(0, len(raw), n_cut).tolist()})
    for c in cuts:
        yield f"cut {c}", raw[:c]
    head = min(len(raw), 4096)
    for i in range(n_flip):
        b = bytearray(raw)
        for _ in range(int(rng.integers(1, 9))):
            pos = int(rng.integers(0, head if i % 2 == 0 else len(raw)))  # half of them in the header
            b[pos] ^= 1 << int(rng.integers(0, 8))
        yield f"flip {i}", bytes(b)


@pytest.mark.parametrize("name", ["best.safetensors", "best.json"])
def test_fuzz_model_files_give_only_one_line_tam_errors(run, tmp_path, name):
    d = copy_run(run, tmp_path)
    raw = (d / name).read_bytes()
    outcomes = {"ok": 0, "refused": 0}
    for what, data in variants(raw, seed=len(name)):
        (d / name).write_bytes(data)
        try:
            load_model(d)
            outcomes["ok"] += 1
        except TamError as e:
            assert "\n" not in str(e) and name in str(e), (what, str(e))
            outcomes["refused"] += 1
    assert outcomes["refused"] >= 12  # every truncation at least


def test_fuzz_resume_state_gives_only_one_line_tam_errors(run, tmp_path):
    raw = (run[1] / "last.pt").read_bytes()
    path = tmp_path / "last.pt"
    refused = 0
    for what, data in variants(raw, seed=3):
        path.write_bytes(data)
        try:
            load_state(path)
        except TamError as e:
            assert "\n" not in str(e) and str(path) in str(e), (what, str(e))
            refused += 1
    assert refused >= 12


# ---- the other files a run reads: the checkpoint to fine-tune from, its recorded manifest, metrics.csv ------
def test_fuzz_fine_tuning_checkpoint_gives_only_one_line_tam_errors(run, tmp_path):
    """`train.init_from` reads a checkpoint someone else made: truncated / bit-flipped copies are one line."""
    from tam.models.model import build_model
    from tam.train.loop import init_fusion, prepare_data

    cfg, src = run
    d = copy_run(run, tmp_path)
    data = prepare_data(cfg)
    raw = (src / "best.safetensors").read_bytes()
    refused = 0
    for what, blob in variants(raw, seed=11, n_cut=6, n_flip=12):
        (d / "best.safetensors").write_bytes(blob)
        model = build_model(cfg.model, data.store.manifest.dims, 8)
        try:
            init_fusion(model, str(d / "best.safetensors"), data.store)
        except TamError as e:
            assert "\n" not in str(e) and "best.safetensors" in str(e), (what, str(e))
            refused += 1
    assert refused >= 6
    (d / "best.safetensors").write_bytes(raw)
    (d / "best.json").write_bytes(b"\xff\xfe garbage")
    with pytest.raises(TamError) as e:
        init_fusion(build_model(cfg.model, data.store.manifest.dims, 8), str(d / "best.safetensors"), data.store)
    one_line(e, "best.json")
    other = build_model(replace(cfg.model, d=8, heads=2), data.store.manifest.dims, 8)
    (d / "best.json").write_bytes((src / "best.json").read_bytes())
    with pytest.raises(TamError) as e:
        init_fusion(other, str(d / "best.safetensors"), data.store)
    one_line(e, "do not fit this model config")


@pytest.mark.parametrize("name, content", [("features_manifest.json", b"{\"encoders\": 3}"),
                                           ("features_manifest.json", b"\x00\x01"),
                                           ("metrics.csv", b"epoch,lr\nnot-a-number,1\n")])
def test_damaged_run_files_stop_a_resumed_run_in_one_line(run, tmp_path, name, content):
    cfg, _ = run
    d = copy_run(run, tmp_path)
    (d / name).write_bytes(content)
    with pytest.raises(TamError) as e:
        fit(cfg, d, log=lambda s: None)  # the same config: the run resumes and reads its files
    one_line(e, name)
