"""`tam export`: a run directory -> a self-contained model folder in the Hub's layout.

    OUT/config.json        everything to rebuild and use the model (tam.hub.config)
    OUT/model.safetensors  the run's best weights, byte for byte
    OUT/README.md          the model card, generated from results.json (tam.hub.card)
    OUT/model.onnx         optional: fusion + head for onnxruntime (tam.hub.onnx)

The run's checkpoint is loaded with the strict loader first; the folder is written, config.json last (a folder
is complete once its config exists), then loaded back through `tam.train.checkpoint.load_model` (every checker
runs on the exported config) and compared with the run's model on the same inputs.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import torch

from tam.errors import TamError
from tam.hub import card
from tam.hub.config import export_config
from tam.hub.resolve import CARD, CONFIG, ONNX, WEIGHTS
from tam.io import atomic_write, read_json, write_json, write_text


def export_run(run_dir: str | Path, out: str | Path, *, license: str = "other", dataset: str = "",
               onnx: bool = False) -> dict:
    """Write the model folder of `run_dir`'s best checkpoint to `out`; returns its config.json."""
    from tam.train.checkpoint import load_model

    run_dir, out = Path(run_dir), Path(out)
    model, meta = load_model(run_dir)
    results_path = run_dir / "results.json"
    if not results_path.is_file():
        raise TamError(f"{run_dir}: no results.json (the model card is generated from it); let the run finish")
    results = read_json(results_path, "run results")
    if out.resolve() == run_dir.resolve():
        raise TamError(f"{out}: export to a new folder, not into the run directory")
    out.mkdir(parents=True, exist_ok=True)
    (out / CONFIG).unlink(missing_ok=True)  # incomplete until config.json is written again
    config = export_config(meta, model, {"run": run_dir.resolve().name, "epoch": meta.get("epoch")})
    atomic_write(out / WEIGHTS, lambda p: shutil.copyfile(run_dir / "best.safetensors", p))
    (out / ONNX).unlink(missing_ok=True)
    if onnx:
        from tam.hub.onnx import export_onnx

        config["onnx"] = export_onnx(model, meta["dims"], out / ONNX, int(meta["model"]["T"]))
    name = out.resolve().name
    runs = card.seed_runs(run_dir, results)
    write_text(out / CARD, card.model_card(results, config, runs, name, license,
                                           dataset or _dataset(results)))
    write_json(out / CONFIG, config)
    check_same(model, out)
    return config


def _dataset(results: dict) -> str:
    """The labels file's folder name (e.g. `ve8`), else its stem."""
    labels = Path(str(results.get("config", {}).get("data", {}).get("labels", "") or "unknown"))
    return labels.parent.name or labels.stem


@torch.no_grad()
def check_same(model: torch.nn.Module, folder: Path) -> None:
    """The exported folder loads (every check) and gives the run's outputs on padded inputs with missing audio."""
    from tam.hub.onnx import example
    from tam.train.checkpoint import load_model

    again, meta = load_model(folder)
    *xs, valid, present = example(meta["dims"], 8, int(meta["model"]["T"]), seed=123)
    x = dict(zip(model.modalities, xs))
    if not torch.equal(model(x, valid, present), again(x, valid, present)):
        raise TamError(f"{folder}: the exported model's outputs differ from the run's")


def push(folder: str | Path, repo: str, private: bool = False) -> str:
    """Upload an exported folder to the Hub repo `repo` (created if needed; needs a token: `hf auth login`)."""
    from huggingface_hub import HfApi

    folder = Path(folder)
    for f in (CONFIG, WEIGHTS, CARD):
        if not (folder / f).is_file():
            raise TamError(f"{folder}: no {f}; push a folder written by `tam export`")
    api = HfApi()
    api.create_repo(repo, private=private, exist_ok=True)
    info = api.upload_folder(repo_id=repo, folder_path=str(folder), allow_patterns=[CONFIG, WEIGHTS, CARD, ONNX],
                             commit_message="tam export")
    return str(getattr(info, "commit_url", info))
