"""Argument helpers: shards from --shard or torchrun's environment, encoder names checked against the table."""

import pytest

from tam.encoders.cli_support import chosen_encoders, parse_shard, pick_device
from tam.errors import TamError


def test_shards():
    assert parse_shard("1/4", {}) == (1, 4)
    assert parse_shard("", {"RANK": "2", "WORLD_SIZE": "3"}) == (2, 3)
    assert parse_shard("", {}) == (0, 1)
    for bad in ("4/4", "x", "1/0"):
        with pytest.raises(TamError, match="--shard"):
            parse_shard(bad, {})


def test_encoder_names():
    names = {"image": "clip-vit-b32", "motion": "resnext101", "audio": "vggish"}
    assert chosen_encoders("image,motion", names, tiny=False) == {"image": "clip-vit-b32", "motion": "resnext101"}
    assert chosen_encoders("motion", names, tiny=True) == {"motion": "r3d-tiny"}
    with pytest.raises(TamError, match="not a image encoder"):
        chosen_encoders("image", {**names, "image": "r3d50"}, tiny=False)
    with pytest.raises(TamError, match="--modalities"):
        chosen_encoders("text", names, tiny=False)


def test_device():
    import torch

    assert pick_device("cpu", {}) == "cpu"
    assert pick_device("auto", {}) == ("cuda:0" if torch.cuda.is_available() else "cpu")
