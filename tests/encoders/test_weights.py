"""Weight files: hashing, finding, reading state dicts in their wrappers."""

import hashlib

import pytest
import torch

from tam.encoders.weights import load_torch_state, resolve_file, sha256_of
from tam.errors import TamError


def test_sha256_of_file_and_folder(tmp_path):
    (tmp_path / "m").mkdir()
    f = tmp_path / "m" / "model.safetensors"
    f.write_bytes(b"abc")
    assert sha256_of(f) == hashlib.sha256(b"abc").hexdigest()
    before = sha256_of(tmp_path / "m")
    (tmp_path / "m" / "config.json").write_text("{}")
    assert sha256_of(tmp_path / "m") != before


def test_resolve_file(tmp_path):
    f = tmp_path / "w.pth"
    f.write_bytes(b"x")
    assert resolve_file(str(f), "enc", "get it there") == f
    with pytest.raises(TamError, match="enc: no weights given; get it there"):
        resolve_file("", "enc", "get it there")
    with pytest.raises(TamError, match="not found; get it there"):
        resolve_file(str(tmp_path / "nope.pth"), "enc", "get it there")


def test_state_dict_wrappers(tmp_path):
    t = torch.zeros(2)
    for obj in ({"a.w": t}, {"state_dict": {"module.a.w": t}, "arch": "resnet-50"}):
        torch.save(obj, tmp_path / "c.pth")
        assert list(load_torch_state(tmp_path / "c.pth")) == ["a.w"]
    torch.save({"state_dict": {"a": 1}}, tmp_path / "bad.pth")
    with pytest.raises(TamError, match="state dict of tensors"):
        load_torch_state(tmp_path / "bad.pth")
