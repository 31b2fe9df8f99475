"""Fixtures for the hub tests: tests/infer's world (tiny-encoder features, a CTM classifier and a concat regressor
trained on the CPU), its CTM run exported with ONNX, and a Hugging Face cache holding that folder as a repo."""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

REPO = "tam-tests/ctm-tiny"


def infer_helpers():
    """tests/infer/conftest.py (make_video, build_world), loaded by path: conftests are not importable modules."""
    spec = importlib.util.spec_from_file_location("tam_tests_hub_infer", Path(__file__).parents[1] / "infer" /
                                                  "conftest.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="session")
def world(tmp_path_factory) -> dict:
    return infer_helpers().build_world(tmp_path_factory.mktemp("hub"))


@pytest.fixture(scope="session")
def exported(world) -> Path:
    """The CTM run of `world` exported with model.onnx."""
    from tam.hub.export import export_run

    out = world["root"] / "export-ctm"
    export_run(world["ctm"], out, license="apache-2.0", onnx=True)
    return out


def populate_cache(cache: Path, repo: str, folder: Path) -> Path:
    """`folder` as revision main of model repo `repo` in huggingface_hub's cache layout: blobs named by content
    hash, snapshots/<commit>/FILE symlinks to them, refs/main holding the commit."""
    root = cache / f"models--{repo.replace('/', '--')}"
    commit = hashlib.sha1(repo.encode()).hexdigest()
    snap = root / "snapshots" / commit
    (root / "blobs").mkdir(parents=True, exist_ok=True)
    snap.mkdir(parents=True, exist_ok=True)
    for f in sorted(folder.iterdir()):
        blob = root / "blobs" / hashlib.sha256(f.read_bytes()).hexdigest()
        shutil.copyfile(f, blob)
        (snap / f.name).unlink(missing_ok=True)
        (snap / f.name).symlink_to(os.path.relpath(blob, snap))
    (root / "refs").mkdir(exist_ok=True)
    (root / "refs" / "main").write_text(commit)
    return snap


@pytest.fixture
def hub_cache(tmp_path, monkeypatch, exported) -> str:
    """The repo id of `exported` in a fresh HF_HUB_CACHE; offline, so nothing can be downloaded."""
    cache = tmp_path / "hf-cache"
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    populate_cache(cache, REPO, exported)
    return REPO
