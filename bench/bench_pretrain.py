"""Memory of the pre-training data pipeline with 1M comments (issue 6), measured in a fresh process.

A corpus of `TAM_BENCH_PRETRAIN_COMMENTS` (default 1,000,000) comments of 4..16 token ids over 16,000
selected segments of 4,000 videos (the paper's corpus shape) is written as Parquet with the schema of
`tam comments prepare`, with a feature store of those videos (tiny feature dims: the features are memory
maps and not what is measured). A child process then runs `build_pairs` (read, sort, pair, flat arrays)
and draws 200 training batches through `PretrainDataset` + `pretrain_collate`; its peak RSS (ru_maxrss)
is reported beside the RSS after `import torch, pyarrow` alone, and the bytes of the flat comment arrays.
For scale, the same comments held as one Python list of ints each is measured on a 100k subsample.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

CHILD = r"""
import json, resource, sys, time
import numpy as np, torch, pyarrow
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
from tam.features.store import FeatureStore
from tam.comments.pairs import PretrainDataset, build_pairs, pretrain_collate
store = FeatureStore.open(sys.argv[1])
t0 = time.perf_counter()
pairs = build_pairs(sys.argv[2], store, T=64)
t_build = time.perf_counter() - t0
ds = PretrainDataset(store, pairs, pairs.split(True), ["image", "motion", "audio"], max_comments=64)
t0 = time.perf_counter()
for b in range(200):
    pretrain_collate([ds[(i, 0)] for i in range(b * 8 % (len(ds) - 8), b * 8 % (len(ds) - 8) + 8)])
t_batches = time.perf_counter() - t0
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"base_kb": base, "peak_kb": peak, "build_s": t_build, "batches_s": t_batches,
                  "comments": pairs.n_comments, "clips": len(pairs), "array_bytes": pairs.nbytes()}))
"""


def make_corpus(root: Path, n_comments: int, n_videos: int = 4000, per_video: int = 4) -> tuple[Path, Path]:
    """A random corpus (Parquet, vocab) and a feature store for it; vectorised, no Python object per comment."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from tam.features.store import Encoder, FeatureStore, Manifest

    rng = np.random.default_rng(0)
    store = FeatureStore.create(root / "store", Manifest(encoders={m: Encoder(f"bench-{m}", 2)
                                                                   for m in ("image", "motion", "audio")}))
    T = 60  # 0.5 s segments over 30 s per corpus segment
    for v in range(n_videos):
        times = np.stack([np.arange(T * per_video) * 0.5, np.arange(T * per_video) * 0.5 + 0.5], 1)
        store.write(f"v{v}", {m: np.zeros((len(times), 2), np.float32) for m in ("image", "motion", "audio")}, times)
    nseg = n_videos * per_video
    seg_video = np.repeat(np.arange(n_videos), per_video)
    seg_index = np.tile(np.arange(per_video), n_videos)
    segs = pa.table({"video": [f"v{v}" for v in seg_video], "index": pa.array(seg_index, pa.int32()),
                     "start": seg_index * 30.0, "end": seg_index * 30.0 + 30.0,
                     "split": np.where(seg_video % 5 == 0, "test", "train"), "selected": np.ones(nseg, bool)})
    seg = rng.integers(0, nseg, n_comments)
    lens = rng.integers(4, 17, n_comments)
    off = np.concatenate([[0], np.cumsum(lens)]).astype(np.int32)
    masked = rng.integers(4, 30000, off[-1]).astype(np.int32)
    masked[off[:-1]] = 2  # [#S]
    masked[off[:-1] + 1] = 3  # one [#M] per comment
    video_names = pa.array([f"v{v}" for v in range(n_videos)]).take(pa.array(seg_video[seg]))
    comments = pa.table({"video": video_names, "segment": pa.array(seg_index[seg], pa.int32()),
                         "time": seg_index[seg] * 30.0 + rng.uniform(0, 30, n_comments),
                         "masked_ids": pa.ListArray.from_arrays(pa.array(off), pa.array(masked)),
                         "target_ids": pa.ListArray.from_arrays(pa.array(np.arange(n_comments + 1, dtype=np.int32)),
                                                                pa.array(rng.integers(4, 30000, n_comments,
                                                                                      dtype=np.int32)))})
    corpus = root / "corpus"
    corpus.mkdir()
    pq.write_table(segs, corpus / "segments.parquet")
    pq.write_table(comments, corpus / "comments.parquet", compression="zstd")
    vocab = ["[PAD]", "[UNK]", "[#S]", "[#M]"] + [f"w{i}" for i in range(4, 30000)]
    (corpus / "vocab.json").write_text(json.dumps({"tokens": vocab}))
    return root / "store", corpus


def python_objects_mb(n: int) -> float:
    """Traced MB of n comments as Python lists of ints (the layout the flat arrays avoid)."""
    import tracemalloc

    rng = np.random.default_rng(1)
    tracemalloc.start()
    rows = [[2, 3] + rng.integers(4, 30000, int(k)).tolist() for k in rng.integers(2, 15, n)]
    size = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    del rows
    return size / 2**20


def run() -> dict[str, float | str]:
    n = int(os.environ.get("TAM_BENCH_PRETRAIN_COMMENTS", "1000000"))
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        store, corpus = make_corpus(Path(tmp), n)
        t_make = time.perf_counter() - t0
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        p = subprocess.run([sys.executable, "-c", CHILD, str(store), str(corpus)], capture_output=True, text=True,
                           env=env, check=True)
        r = json.loads(p.stdout.strip().splitlines()[-1])
    per_100k = python_objects_mb(100_000)
    return {"comments": float(r["comments"]), "clips": float(r["clips"]), "corpus_write_s": t_make,
            "build_pairs_s": r["build_s"], "batches_200x8_s": r["batches_s"],
            "flat_arrays_mb": r["array_bytes"] / 2**20, "rss_after_imports_mb": r["base_kb"] / 1024,
            "peak_rss_mb": r["peak_kb"] / 1024, "pipeline_rss_mb": (r["peak_kb"] - r["base_kb"]) / 1024,
            "python_lists_mb_per_1m_estimate": per_100k * 1_000_000 / 100_000,
            "target": "peak RSS < 2048 MB for 1M comments"}
