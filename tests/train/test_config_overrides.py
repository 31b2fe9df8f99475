"""`--set SECTION.KEY=VALUE`: values are YAML, except that a text field keeps the text as written."""

import pytest

from tam.config import load_config
from tam.errors import TamError
from tam.train.pretrain import load_pretrain_config


def test_a_text_field_keeps_digits_as_text():
    cfg = load_config(overrides=["data.store=2024", "data.labels=0123", "model.d=32", "optim.lr=1e-3"])
    assert cfg.data.store == "2024" and cfg.data.labels == "0123"  # YAML would give 2024 and the octal 83
    assert cfg.model.d == 32 and cfg.optim.lr == pytest.approx(1e-3)


def test_a_number_field_still_refuses_text():
    with pytest.raises(TamError, match="model.d"):
        load_config(overrides=["model.d=wide"])


def test_pretraining_overrides_keep_text_too():
    assert load_pretrain_config(overrides=["data.store=2024"]).data.store == "2024"


def test_lists_and_unknown_keys_are_parsed_as_before():
    cfg = load_config(overrides=["data.classes=[a, b]"])
    assert cfg.data.classes == ["a", "b"]
    with pytest.raises(TamError, match="unknown keys"):
        load_config(overrides=["data.stor=2024"])


def test_resume_state_written_before_an_option_existed_is_the_same_config():
    """A resume state's config without an option added since (at its default) matches; a changed field does not,
    and the message names it."""
    import yaml

    from tam.config import RunConfig, dump_config
    from tam.train.loop import _config_changes

    cfg = RunConfig()
    old = yaml.safe_load(dump_config(cfg))
    del old["model"]["fusion"]  # as if `model.fusion` had been added to the code after the state was written
    assert _config_changes(yaml.safe_dump(old), cfg) == []
    old["optim"]["lr"] = cfg.optim.lr * 2
    assert _config_changes(yaml.safe_dump(old), cfg) == ["optim.lr"]
    assert _config_changes(None, cfg) == ["config"]
    changed = RunConfig()
    changed.model.fusion = "joint" if cfg.model.fusion != "joint" else "ctm"
    assert _config_changes(dump_config(cfg), changed) == ["model.fusion"]
