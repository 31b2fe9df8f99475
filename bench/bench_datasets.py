"""Dataset parsing, split generation and clip-table import speed (issue 3), measured side by side.

Figures: LIRIS ranking lines parsed per second (9,800 lines, like ACCEDEranking.txt), VE-8's 10 splits
for 1,101 videos, and clip-table import into the feature store against a plain `np.save` of the
same arrays (the store's atomic entry costs that ratio).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np


def _ranking(path: Path, n: int) -> None:
    rows = [f"{i}\tACCEDE{i:05d}.mp4\t{i}\t{n - i}\t{2 + i / n:.6f}\t{3 - i / n:.6f}\t0.1\t0.2" for i in range(n)]
    path.write_text("id\tname\tvalenceRank\tarousalRank\tvalenceValue\tarousalValue\tvalenceVariance\t"
                    "arousalVariance\n" + "\n".join(rows) + "\n")


def run() -> dict[str, float | str]:
    from tam.datasets import liris
    from tam.datasets.cliptable import import_table
    from tam.eval.protocols import stratified_splits

    out: dict[str, float | str] = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        _ranking(tmp / "rank.txt", 9800)
        t0 = time.perf_counter()
        rows = liris.read_ranking(tmp / "rank.txt")
        out["ranking_lines_per_s"] = len(rows) / (time.perf_counter() - t0)

        items = [(f"C{i % 8}/v{i}", f"C{i % 8}") for i in range(1101)]
        t0 = time.perf_counter()
        stratified_splits(items, n_splits=10, seed=0)
        out["ve8_10_splits_ms"] = 1000 * (time.perf_counter() - t0)

        n, dim = 2000, 60
        rng = np.random.default_rng(0)
        feats = rng.normal(size=(n, dim))
        (tmp / "t.tsv").write_text("".join(f"{i}\tc{i}.mp4\t" + "\t".join(f"{x:.3E}" for x in feats[i]) + "\n"
                                           for i in range(n)))
        (tmp / "g.yaml").write_text("modalities:\n  audio: [f1..f30]\n  visual: [f31..f60]\n")
        t0 = time.perf_counter()
        import_table(tmp / "t.tsv", tmp / "g.yaml", tmp / "store")
        t_import = time.perf_counter() - t0
        (tmp / "plain").mkdir()
        t0 = time.perf_counter()
        for i in range(n):
            np.save(tmp / "plain" / f"{i}a.npy", feats[i: i + 1, :30].astype(np.float32))
            np.save(tmp / "plain" / f"{i}v.npy", feats[i: i + 1, 30:].astype(np.float32))
        t_plain = time.perf_counter() - t0
        out["import_clips_per_s"] = n / t_import
        out["import_vs_plain_npsave_ratio"] = t_import / t_plain
    return out


if __name__ == "__main__":
    for k, v in run().items():
        print(f"{k}: {v:.4g}" if isinstance(v, float) else f"{k}: {v}")
