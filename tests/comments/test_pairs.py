"""Pairing corpus segments with feature-store clips: hand-computed rows, boundaries, chunks, skips, batches."""

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from tam.comments.pairs import MASK_ID, PretrainDataset, build_pairs, chunk_starts, clip_rows, pretrain_collate, row_of
from tam.errors import TamError
from tam.features.store import Encoder, FeatureStore, Manifest
from tam.objectives.pretrain import IGNORE

DIMS = {"image": 3, "motion": 2, "audio": 2}


def test_clip_rows_by_hand():
    times = np.array([[0, 1], [1, 2], [2, 3], [3, 4]], float)
    assert clip_rows(times, 0.0, 2.0) == (0, 2)  # [2, 3) does not overlap [0, 2)
    assert clip_rows(times, 0.5, 2.5) == (0, 3)
    assert clip_rows(times, 3.0, 9.0) == (3, 4)
    assert clip_rows(times, 5.0, 9.0) == (0, 0)  # outside the features


def test_row_of_boundaries_and_ends():
    starts = np.array([10.0, 11.0, 12.0])
    got = row_of([10.0, 10.99, 11.0, 11.5, 12.0, 13.0, 9.0], starts)
    assert got.tolist() == [0, 0, 1, 1, 2, 2, 0]  # boundary -> later row; clip end -> last row; before -> first


def test_chunk_starts():
    assert chunk_starts(4, 8).tolist() == [0, 4]
    assert chunk_starts(8, 8).tolist() == [0, 8]
    assert chunk_starts(9, 8).tolist() == [0, 4, 9]  # 4.5 rounds to even
    assert chunk_starts(20, 8).tolist() == [0, 7, 13, 20]


@pytest.fixture
def world(tmp_path):
    manifest = Manifest(encoders={m: Encoder(f"toy-{m}", D) for m, D in DIMS.items()})
    store = FeatureStore.create(tmp_path / "store", manifest)
    T = 6
    feats = {m: np.arange(T * D, dtype=np.float32).reshape(T, D) for m, D in DIMS.items()}
    store.write("a", feats, np.stack([np.arange(T), np.arange(T) + 1.0], 1))
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    segs = pa.table({"video": ["a", "a", "b", "a"], "index": [0, 1, 0, 2], "start": [0.0, 2.5, 0.0, 6.0],
                     "end": [2.5, 6.0, 5.0, 9.0], "split": ["train", "train", "train", "test"],
                     "selected": [True, True, True, False]})
    # (video, segment, time, masked ids, target ids); 4..9 are words
    rows = [("a", 0, 1.0, [2, 4, 3], [7]), ("a", 0, 0.0, [2, 3, 5, 3], [8, 9]), ("a", 0, 2.5, [2, 6, 3], [4]),
            ("a", 1, 2.6, [2, 3, 4], [5]), ("a", 1, 4.0, [2, 4, 3], [6]), ("a", 1, 6.0, [2, 3, 4, 5, 6], [7]),
            ("a", 1, 3.999, [2, 5, 3], [9]), ("b", 0, 1.0, [2, 3], [4]), ("a", 2, 7.0, [2, 3], [4])]
    li = pa.list_(pa.int32())
    comments = pa.table({"video": [r[0] for r in rows], "segment": pa.array([r[1] for r in rows], pa.int32()),
                         "time": [r[2] for r in rows], "masked_ids": pa.array([r[3] for r in rows], li),
                         "target_ids": pa.array([r[4] for r in rows], li)})
    pq.write_table(segs, corpus / "segments.parquet")
    pq.write_table(comments, corpus / "comments.parquet")
    vocab = ["[PAD]", "[UNK]", "[#S]", "[#M]"] + [f"w{i}" for i in range(6)]
    (corpus / "vocab.json").write_text(json.dumps({"tokens": vocab}))
    return store, corpus


def test_build_pairs_by_hand(world):
    store, corpus = world
    p = build_pairs(corpus, store, T=2, max_len=4)
    # segment 0 -> rows 0..2 (3 rows, T=2 -> chunks of 1 and 2 rows... ceil(3/2) = 2 chunks: [0,2) [2,3))
    # segment 1 -> rows 2..5 (4 rows) -> chunks [2,4) [4,6)
    assert {p.videos[v] for v in p.clip_video} == {"a"}
    assert p.clip_row0.tolist() == [0, 2, 2, 4]
    assert p.clip_rows.tolist() == [2, 1, 2, 2]
    assert p.skipped == {"clips without features": 1, "comments longer than 4 tokens": 1}
    # comments sorted by time within a segment: seg 0: 0.0 (row 0), 1.0 (row 1, boundary), 2.5 (row 2, clip end)
    assert p.clip_off.tolist() == [0, 2, 3, 5, 6]
    assert p.segment.tolist() == [0, 1, 0, 0, 1, 0]  # 2.6 -> row 2 -> chunk 0 seg 0; 3.999 -> seg 1; 4.0 -> chunk 1
    tok, tgt = p.comment(0)
    assert tok.tolist() == [2, 3, 5, 3] and tgt.tolist() == [8, 9]
    assert p.comment(2)[0].tolist() == [2, 6, 3]  # the comment at the clip's end
    assert p.clip_train.tolist() == [True] * 4
    assert p.tokens.dtype == np.int32 and p.tok_off.dtype == np.int64 and p.segment.dtype == np.int16
    assert p.vocab_size == 10


def test_mismatched_masks_are_refused(world, tmp_path):
    store, corpus = world
    t = pq.read_table(corpus / "comments.parquet")
    bad = t.set_column(4, "target_ids", pa.array([[7]] * t.num_rows, pa.list_(pa.int32())))
    pq.write_table(bad, corpus / "comments.parquet")
    with pytest.raises(TamError, match="comments.parquet"):
        build_pairs(corpus, store, T=2)


def test_missing_corpus_file(world):
    store, corpus = world
    (corpus / "vocab.json").unlink()
    with pytest.raises(TamError, match="vocab.json"):
        build_pairs(corpus, store, T=2)


def test_dataset_and_collate(world):
    store, corpus = world
    p = build_pairs(corpus, store, T=2, max_len=8)
    ds = PretrainDataset(store, p, np.arange(len(p)), list(DIMS), max_comments=0)
    b = pretrain_collate([ds[(0, 0)], ds[(1, 0)]])
    assert b.valid.tolist() == [[True, True], [True, False]]
    assert torch.equal(b.x["motion"][1, 0], torch.tensor([4.0, 5.0]))  # row 2 of the video
    assert b.clip.tolist() == [0, 0, 1]
    assert b.tokens.shape == (3, 4)
    assert b.tokens[0].tolist() == [2, 3, 5, 3] and b.tokens[1].tolist() == [2, 4, 3, 0]
    assert b.token_valid[1].tolist() == [True, True, True, False]
    assert b.word_targets[0].tolist() == [IGNORE, 8, IGNORE, 9]
    assert b.word_targets[1].tolist() == [IGNORE, IGNORE, 7, IGNORE]
    assert int((b.tokens == MASK_ID).sum()) == int((b.word_targets != IGNORE).sum())
    sub = PretrainDataset(store, p, np.arange(len(p)), list(DIMS), max_comments=1, seed=3)
    draws = [sub[(0, e)][2][0][0].tolist() for e in range(12)]
    assert draws == [sub[(0, e)][2][0][0].tolist() for e in range(12)]  # reproducible from (seed, epoch, clip)
    assert len({tuple(d) for d in draws}) == 2  # both comments of clip 0 get drawn over the epochs


def test_chunks_without_comments_are_skipped(world):
    store, corpus = world
    segs = pq.read_table(corpus / "segments.parquet")
    extra = pa.table({"video": ["a"], "index": [3], "start": [0.0], "end": [6.0], "split": ["test"],
                      "selected": [True]}).cast(segs.schema)
    pq.write_table(pa.concat_tables([segs, extra]), corpus / "segments.parquet")
    com = pq.read_table(corpus / "comments.parquet")
    row = pa.table({"video": ["a"], "segment": pa.array([3], pa.int32()), "time": [0.5],
                    "masked_ids": pa.array([[2, 3]], pa.list_(pa.int32())),
                    "target_ids": pa.array([[4]], pa.list_(pa.int32()))}).cast(com.schema)
    pq.write_table(pa.concat_tables([com, row]), corpus / "comments.parquet")
    p = build_pairs(corpus, store, T=2, max_len=8)
    assert p.skipped["clips without comments"] == 2  # rows 0..5 -> 3 chunks of 2 rows, one comment in the first
    assert len(p) == 5 and p.clip_train.tolist() == [True] * 4 + [False]
    assert p.clip_row0[-1] == 0 and p.clip_rows[-1] == 2 and p.segment[-1] == 0
    assert p.split(False).tolist() == [4]


# ---------------------------------------------------------------- pairing by id map; the pairing report

def _renamed(world, tmp_path, new_id: str) -> FeatureStore:
    """The world's store with video "a" filed under another id, as `tam extract` names a file in a folder."""
    store, _ = world
    copy = FeatureStore.create(tmp_path / "renamed", store.manifest)
    v = store.read("a")
    copy.write(new_id, {m: np.array(v.features[m]) for m in DIMS}, np.array(v.times))
    return copy


def test_id_map_pairs_a_corpus_with_a_store_named_otherwise(world, tmp_path):
    _, corpus = world
    store = _renamed(world, tmp_path, "show/a.mp4")
    assert len(build_pairs(corpus, store, T=2, max_len=4)) == 0  # ids differ: nothing pairs
    p = build_pairs(corpus, store, T=2, max_len=4, id_map={"a": "show/a.mp4"})
    assert p.videos[0] == "show/a.mp4" and p.clip_row0.tolist() == [0, 2, 2, 4]  # as test_build_pairs_by_hand
    ds = PretrainDataset(store, p, np.arange(len(p)), list(DIMS))
    assert ds[(0, 0)][0]["image"].shape == (2, DIMS["image"])  # the dataset reads the store id


def test_pairing_report_counts_and_shows_ids_from_each_side(world, tmp_path):
    from tam.comments.pairs import pairing, pairing_text

    _, corpus = world
    store = _renamed(world, tmp_path, "show/a.mp4")
    r = pairing(corpus, store)
    assert r["corpus"] == {"train": 2, "held-out": 0} and r["paired"] == {"train": 0, "held-out": 0}
    assert r["corpus_only"] == ["a", "b"] and r["store_only"] == ["show/a.mp4"]
    assert r["suggested_map"] == {"a": "show/a.mp4"}  # the last path part without extension equals the corpus id
    text = pairing_text(r, "corpus", "feats")
    assert "corpus ids without features: a, b" in text and "store ids without comments:  show/a.mp4" in text
    r = pairing(corpus, store, {"a": "show/a.mp4"})
    assert r["paired"] == {"train": 1, "held-out": 0} and r["segments_inside"] == 2 and r["segments_late"] == 0


def test_read_id_map(tmp_path):
    from tam.comments.pairs import read_id_map

    f = tmp_path / "ids.csv"
    f.write_text("comments_id,video_id\n1176840,bili/1176840\n 527533 , show/ep01 \n")
    assert read_id_map(f) == {"1176840": "bili/1176840", "527533": "show/ep01"}
    for text, message in [("video,label\nx,y\n", "needs the header comments_id,video_id"),
                          ("comments_id,video_id\n1,a\n1,b\n", "line 3"), ("comments_id,video_id\n1,\n", "line 2")]:
        f.write_text(text)
        with pytest.raises(TamError, match=message):
            read_id_map(f)
    with pytest.raises(TamError, match="cannot read the id map"):
        read_id_map(tmp_path / "nope.csv")


def test_cli_pair_writes_the_suggested_map_and_then_pairs(world, tmp_path, capsys):
    from tam.cli import main

    _, corpus = world
    store = _renamed(world, tmp_path, "show/a.mp4")
    ids = tmp_path / "ids.csv"
    args = ["comments", "pair", "--corpus", str(corpus), "--store", str(store.root)]
    assert main(args + ["--write-id-map", str(ids)]) == 1  # no training video pairs yet
    out = capsys.readouterr().out
    assert "paired: train 0 of 2" in out and "a -> show/a.mp4" in out
    assert ids.read_text() == "comments_id,video_id\na,show/a.mp4\n"
    assert main(args + ["--id-map", str(ids)]) == 0
    assert "paired: train 1 of 2, held-out 0 of 0 videos" in capsys.readouterr().out
