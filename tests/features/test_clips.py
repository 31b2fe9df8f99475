"""ClipDataset over a FeatureStore: one entry check per video, not per item; no mapped data in a pickle."""

from __future__ import annotations

import pickle

import numpy as np

from tam.features.clips import ClipDataset
from tam.features.store import Encoder, FeatureStore, Manifest


def test_each_video_is_opened_once_and_items_stay_exact(tmp_path):
    store = FeatureStore.create(tmp_path / "s", Manifest(encoders={"a": Encoder("t", 3)}))
    rng = np.random.default_rng(0)
    feats = {f"v{i}": rng.normal(size=(5 + i, 3)).astype(np.float32) for i in range(4)}
    for v, a in feats.items():
        store.write(v, {"a": a}, np.zeros((len(a), 2)))
    opened = []  # entries checked and mapped (the store's own read behind its cache)
    read = store._read
    store._read = lambda v: opened.append(v) or read(v)
    ds = ClipDataset(store, list(feats), np.zeros(4, dtype=np.int64), ["a"], T=4, train=True)
    for epoch in range(3):
        for i in range(4):
            x, present, *_ = ds[(i, epoch)]
            assert x["a"].shape == (4, 3) and bool(present[0])
    for i, s in ds.windows():
        x, _ = ds.clip(i, s, 4)
        np.testing.assert_array_equal(x["a"].numpy(), feats[f"v{i}"][s:s + 4])
    assert sorted(opened) == sorted(feats)  # 12 training items, every window, lengths: four reads
    store._read = read
    clone = pickle.loads(pickle.dumps(ds))  # a loader worker starts with no open maps and reads its own
    assert clone.store._open == {} and clone.read(0).T == 5
