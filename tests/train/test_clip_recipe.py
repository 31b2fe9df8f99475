"""The documented recipe for clip-level feature tables (README, docs/training.md) against the ridge baseline, on a
realistic table that the test writes: heavy tails up to ~1e15, a constant and a duplicated column, NaN rows, and
targets that are partly linear in the (log-scaled) features and partly not."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tam.cli import main
from tam.config import load_config
from tam.train.loop import fit

# the recipe for a clip-level table (T = 1), as documented
RECIPE = ["data.task=regression", "data.normalize=log1p", "model.T=1", "model.fusion=concat", "model.d=64",
          "model.layers=1", "model.heads=4", "optim.lr=1e-3", "optim.batch_size=32", "optim.epochs=20",
          "train.select=loss"]


def write_clip_table(root: Path, n: int = 800, n_test: int = 350, seed: int = 0) -> tuple[Path, Path, Path]:
    """features.tsv (header `id name ...`, 20 feature columns), groups.yaml (audio, visual) and labels.csv."""
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n, 6))  # latent factors
    cols = {
        "colorfulness": np.exp(2.2 * z[:, 0] + 0.3 * rng.standard_normal(n)) * 1e11,  # log-normal, up to ~1e15
        "alpha": z[:, 1] + 0.5 * rng.standard_normal(n),
        "const": np.full(n, 5.41),
        "alpha_dup": None,
        "flatness": np.sign(z[:, 2]) * np.abs(z[:, 2]) ** 4 * 1e6 + rng.standard_normal(n),
        "zcr": np.exp(z[:, 3]) + 0.3 * rng.standard_normal(n),
        "entropy": 3 * z[:, 4] + 100 + rng.standard_normal(n),
        "lum": 1e3 * rng.standard_normal(n),
        "cauchy": rng.standard_cauchy(n),
        "noise": rng.standard_normal(n),
    }
    cols["alpha_dup"] = cols["alpha"].copy()
    cols.update({f"v{k}": z[:, k % 6] * (k + 1) + 0.5 * rng.standard_normal(n) for k in range(10)})
    valence = 0.5 * z[:, 0] + 0.4 * z[:, 1] + 0.6 * (z[:, 2] ** 2 - 1) + 0.5 * rng.standard_normal(n)
    arousal = (0.3 * z[:, 3] - 0.3 * z[:, 4] + 0.8 * np.abs(z[:, 5]) + 0.5 * np.tanh(2 * z[:, 0] * z[:, 1])
               + 0.5 * rng.standard_normal(n))
    names = list(cols)
    nan_rows = set(rng.choice(n, size=n // 100, replace=False).tolist())
    lines = ["id\tname\t" + "\t".join(names)]
    for i in range(n):
        vals = ["NaN" if i in nan_rows and j == 3 else f"{cols[c][i]:.6E}" for j, c in enumerate(names)]
        lines.append(f"{i}\tACCEDE{i:05d}.mp4\t" + "\t".join(vals))
    root.mkdir(parents=True, exist_ok=True)
    table, groups, labels = root / "features.tsv", root / "groups.yaml", root / "labels.csv"
    table.write_text("\n".join(lines) + "\n")
    groups.write_text(f"modalities:\n  audio: [{names[0]}..{names[9]}]\n  visual: [{names[10]}..{names[19]}]\n")
    split = ["train"] * (n - n_test) + ["test"] * n_test
    labels.write_text("video,valence,arousal,split\n" + "".join(
        f"ACCEDE{i:05d},{valence[i]:.5f},{arousal[i]:.5f},{split[i]}\n" for i in range(n)))
    return table, groups, labels


@pytest.mark.slow
def test_clip_table_recipe_reaches_the_ridge_baseline(tmp_path, capsys):
    table, groups, labels = write_clip_table(tmp_path)
    store = tmp_path / "store"
    assert main(["dataset", "import-features", str(table), "--groups", str(groups), "--store", str(store)]) == 0
    assert main(["store", "stats", str(store)]) == 0
    out = capsys.readouterr().out
    assert "8 skipped" in out  # the NaN rows
    assert "heavy-tailed" in out and "constant: 1 dims: 2" in out and "duplicated: 1 dims: 3=1" in out
    cfg = load_config(None, [f"data.store={store}", f"data.labels={labels}", "model.modalities=[audio, visual]",
                             "train.progress=false", "train.num_workers=0",
                             "train.threads=1"] + RECIPE)  # the suite runs on shared 2-core machines
    r = fit(cfg, tmp_path / "run", log=lambda s: None)
    ridge = r["linear"]
    assert ridge["name"].startswith("linear (ridge")
    for t in ("valence", "arousal"):  # measured side by side in one run (same split, same normalisation)
        assert r["test"][f"{t}_pcc"] >= ridge["test"][f"{t}_pcc"], (t, r["test"], ridge["test"])
    assert not any("below the linear baseline" in w for w in r["warnings"])
