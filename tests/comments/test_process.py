"""Corpus building: exact segmentation, each filter, dedup, masking, a whole video, and `tam comments prepare`."""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from tam.comments.corpus import build_vocab, select_segments, video_split
from tam.comments.process import (
    MASK,
    START,
    Comment,
    dedup_mask,
    has_only_allowed_chars,
    kmeans_1d,
    mask_tokens,
    n_segments,
    process_video,
    segment_bounds,
    tokenize,
)

SHARED = Path(__file__).resolve().parents[2] / ".." / "shared"
DANMAKU = SHARED / "realdata" / "danmaku"
DUTIR = SHARED / "realdata" / "lexicon" / "dutir" / "情感词汇本体.stxupengyu.xlsx"
LEX = {"开心": ("PA", "乐"), "难过": ("NB", "哀")}


def _brute_sse(x: np.ndarray, k: int) -> float:
    n = len(x)
    best = {(0, 0): 0.0}
    for kk in range(1, k + 1):
        for i in range(kk, n + 1):
            best[kk, i] = min(best.get((kk - 1, j), np.inf) + float(((x[j:i] - x[j:i].mean()) ** 2).sum())
                              for j in range(kk - 1, i))
    return best[k, n]


def _sse(x: np.ndarray, labels: np.ndarray) -> float:
    return float(sum(((x[labels == c] - x[labels == c].mean()) ** 2).sum() for c in np.unique(labels)))


def test_kmeans_1d_is_optimal_against_brute_force():
    rng = np.random.default_rng(0)
    for _ in range(150):
        x = np.sort(np.round(rng.uniform(0, 100, int(rng.integers(1, 25))), 1))
        labels = kmeans_1d(x, int(rng.integers(1, 7)))
        k = len(np.unique(labels))
        assert np.all(np.diff(labels) >= 0) and labels[0] == 0 and labels[-1] == k - 1  # contiguous
        assert _sse(x, labels) == pytest.approx(_brute_sse(x, k), abs=1e-6)


def _simple_kmeans(x: np.ndarray, k: int) -> np.ndarray:
    """Labels of the plain O(k n^2) dynamic programme: every split j < i of every row, the leftmost minimum."""
    n = len(x)
    k = max(1, min(k, len(np.unique(x))))
    xc = x - x.mean()
    s1, s2 = np.concatenate([[0.0], np.cumsum(xc)]), np.concatenate([[0.0], np.cumsum(xc * xc)])
    best = np.full((k + 1, n + 1), np.inf)
    arg = np.zeros((k + 1, n + 1), dtype=np.int64)
    best[0, 0] = 0.0
    for c in range(1, k + 1):
        for i in range(c, n + 1):
            j = np.arange(i)
            v = best[c - 1, :i] + np.maximum((s2[i] - s2[j]) - (s1[i] - s1[j]) ** 2 / (i - j), 0.0)
            arg[c, i] = int(np.argmin(v))  # the first minimum
            best[c, i] = v[arg[c, i]]
    labels, i = np.zeros(n, dtype=np.int64), n
    for c in range(k, 0, -1):
        labels[arg[c, i]:i], i = c - 1, arg[c, i]
    return labels


def test_kmeans_1d_equals_the_plain_programme_on_tied_times():
    """Same labels as the O(k n^2) programme (same optimum, same leftmost ties) on times full of repeats,
    small (one block) and long enough for the level-by-level recursion."""
    rng = np.random.default_rng(3)
    for case in range(160):
        n = int(rng.integers(1, 40)) if case < 120 else int(rng.integers(60, 400))
        if case % 4 == 3:  # equally spaced repeated values: exact ties between splits
            x = np.repeat(np.arange(int(rng.integers(1, 12))) * 2.0, int(rng.integers(1, 40)))[:n]
        else:
            x = rng.integers(0, int(rng.integers(1, 60)), n).astype(float)
        x = np.sort(x)
        k = int(rng.integers(1, min(len(x), 14) + 2))
        assert kmeans_1d(x, k).tolist() == _simple_kmeans(x, k).tolist(), (x.tolist(), k)


def test_kmeans_1d_hand_cases():
    assert kmeans_1d([1, 2, 3, 10, 11, 12, 30], 3).tolist() == [0, 0, 0, 1, 1, 1, 2]
    assert kmeans_1d([5, 5, 5], 4).tolist() == [0, 0, 0]  # K capped at the distinct times
    assert kmeans_1d([1, 1, 9], 5).tolist() == [0, 0, 1]
    assert kmeans_1d([], 3).tolist() == []
    with pytest.raises(ValueError):
        kmeans_1d([3, 1], 2)
    with pytest.raises(ValueError, match="finite"):
        kmeans_1d([1.0, np.inf], 2)


def test_n_segments_and_bounds():
    assert [n_segments(d) for d in (0, 10, 44, 45, 60, 75, 100)] == [1, 1, 1, 2, 2, 2, 3]
    t = np.array([1.0, 2.0, 10.0, 12.0])
    starts, ends = segment_bounds(t, np.array([0, 0, 1, 1]), duration=20)
    assert starts.tolist() == [0.0, 6.0] and ends.tolist() == [6.0, 20.0]
    assert segment_bounds(t, np.array([0, 0, 1, 1]), duration=5)[1].tolist() == [6.0, 12.0]


def test_character_filter():
    assert has_only_allowed_chars("我很开心，awsl！(真的)~")
    assert has_only_allowed_chars("我　很 开心")
    for bad in ("开心123", "开心１", "开心😭", "开心\n", "开心★", "ｗｗ", "すごい", "开心#", "开心/"):
        assert not has_only_allowed_chars(bad), bad


def test_dedup_hand_computed():
    times = [0.0, 0.8, 1.6, 1.9, 3.0, 4.0]
    texts = ["a", "a", "a", "b", "a", "a"]
    assert dedup_mask(times, texts) == [True, False, True, True, True, False]  # 4.0 - 3.0 = 1.0 <= 1 s


def test_emotion_masking():
    masked, pos, targets = mask_tokens(["我", "很", "开心", "又", "难过"], [False, False, True, False, True])
    assert masked == [START, "我", "很", MASK, "又", MASK] and pos == [3, 5] and targets == ["开心", "难过"]
    assert mask_tokens(["啊"], [False]) == ([START, "啊"], [], [])


def test_random_masking_counts_and_determinism():
    toks = [f"w{i}" for i in range(10)]
    for strategy, n in (("random10", 1), ("random20", 2), ("random30", 3)):
        masked, pos, targets = mask_tokens(toks, [False] * 10, strategy, random.Random(7))
        assert len(pos) == n and [masked[p] for p in pos] == [MASK] * n
        assert targets == [toks[p - 1] for p in pos]
        assert mask_tokens(toks, [False] * 10, strategy, random.Random(7)) == (masked, pos, targets)
    assert len(mask_tokens(["a", "b", "c"], [False] * 3, "random10", random.Random(0))[1]) == 1  # at least one
    with pytest.raises(ValueError):
        mask_tokens(toks, [False] * 10, "random50", random.Random(0))


def _scorer(text: str) -> float:
    return 1.0 if "开心" in text else 0.0


VIDEO = [Comment(5.5, "我今天很开心"), Comment(5.0, "我今天很开心"), Comment(7.0, "开心"), Comment(8.0, "今天天气不错"),
         Comment(40.0, "我很开心123"), Comment(41.0, "真的好难过啊😭"), Comment(80.0, "天气")]


def test_process_video_hand_computed():
    out = process_video("v", VIDEO, 90.0, LEX, _scorer)
    s = out.segments
    assert s["index"] == [0, 1, 2]
    assert s["start"] == [0.0, 24.0, 60.5] and s["end"] == [24.0, 60.5, 90.0]
    assert s["count"] == [4, 2, 1]
    assert s["n_lexicon"] == [3, 2, 0] and s["n_length"] == [2, 2, 0] and s["n_chars"] == [2, 0, 0]
    assert s["n_kept"] == [1, 0, 0]  # segments 1 and 2 keep no comment
    assert s["sentiment"] == [0.75, 0.5, 0.0]
    c = out.comments
    assert c["time"] == [5.0] and c["segment"] == [0] and c["tokens"] == [["我", "今天", "很", "开心"]]
    assert c["emotion_words"] == [["开心"]] and c["emotion_categories"] == [["PA"]] and c["emotion_majors"] == [["乐"]]
    assert c["masked"] == [[START, "我", "今天", "很", MASK]] and c["mask_positions"] == [[4]]
    assert c["targets"] == [["开心"]]


def test_process_video_without_comments_and_default_duration():
    out = process_video("empty", [], 120.0, LEX, _scorer)
    assert out.n_segments == 0 and out.comments["video"] == []
    out = process_video("v", VIDEO, None, LEX, _scorer)  # duration = last comment (80 s) -> K = 3
    assert out.n_segments == 3 and out.segments["end"][-1] == 80.0


def test_selection_split_and_vocab():
    pol = select_segments([0.5, 0.1, 0.9, 0.3, 0.7], [("a", i) for i in range(5)], 2)
    assert pol == ["", "negative", "positive", "negative", "positive"]
    assert select_segments([0.2, 0.8, 0.5], [("a", 0), ("a", 1), ("a", 2)], 5) == ["negative", "positive",
                                                                                   "negative"]
    splits = [video_split(f"v{i}", 0.2, 0) for i in range(2000)]
    assert 0.17 < splits.count("test") / 2000 < 0.23 and video_split("v1", 0.2, 0) == splits[1]
    import pyarrow as pa

    t = pa.table({"tokens": pa.array([["a", "b"], ["b", "[#M]"]], pa.list_(pa.string()))})
    v = build_vocab([t])
    assert v["tokens"] == ["[PAD]", "[UNK]", "[#S]", "[#M]", "b", "a"] and v["counts"][4:] == [2, 1]


def test_tokenize_matches_jieba_on_real_comments():
    if not DANMAKU.is_dir():
        pytest.skip("../shared/realdata/danmaku is absent")
    import jieba

    from tam.comments.formats import discover, read_source
    from tam.errors import TamError

    texts = []
    for s in discover([DANMAKU]):
        try:
            texts += [c.text for v in read_source(s) for c in v.comments]
        except TamError:
            pass
    assert len(texts) > 10_000
    jieba.setLogLevel(60)
    ref = {t: [w for w in jieba.lcut(t) if not w.isspace()] for t in texts}
    differ = [t for t in texts if tokenize(t) != ref[t]]
    # measured: 2 of 11,994 differ, both runs of one repeated character (DAG ties such as 啊啊啊啊...)
    assert len(differ) <= 5 and all(len(set(t)) <= 3 and len(tokenize(t)) == len(ref[t]) for t in differ)


def _prepare(args: list[str]) -> int:
    from tam.commands import comments

    p = argparse.ArgumentParser()
    comments.add_arguments(p)
    return comments.run(p.parse_args(["prepare", *args, "--no-progress"]))


def test_prepare_end_to_end_and_resume(tmp_path, capsys):
    video = ((1, "我今天很开心"), (1.5, "我今天很开心"), (50, "我真的好难过呀"), (52, "坏"), (90, "我很开心啊"))
    rows = ["video,time,text"] + [f"{v},{t},{x}" for v in ("a", "b") for t, x in video]
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "c.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    (tmp_path / "in" / "broken.xml").write_text("<i><d p='1'>x</i>")
    (tmp_path / "lex.txt").write_text("开心\n难过\n", encoding="utf-8")
    (tmp_path / "dur.csv").write_text("video,duration\na,100\n")
    out = tmp_path / "out"
    args = [str(tmp_path / "in"), "--lexicon", str(tmp_path / "lex.txt"), "--out", str(out), "--n", "1",
            "--durations", str(tmp_path / "dur.csv"), "--workers", "1"]
    assert _prepare(args) == 0
    printed = capsys.readouterr()
    assert "broken.xml" in printed.err + printed.out and "comments written" in printed.out
    stats = json.loads((out / "stats.json").read_text())
    assert stats["videos"] == 2 and len(stats["sources_failed"]) == 1
    assert stats["filters"]["comments"]["all"] == 10 and stats["filters"]["with emotional word"]["all"] == 8
    assert stats["filters"]["no repeat within 1 s"]["all"] == 6
    segs = pq.read_table(out / "segments.parquet").to_pylist()
    assert len(segs) == 6 and sum(s["selected"] for s in segs) == 2  # a: K=3 (100 s); b: K=3 (last comment 90 s)
    assert {s["polarity"] for s in segs if s["selected"]} == {"negative", "positive"}
    com = pq.read_table(out / "comments.parquet").to_pylist()
    assert len(com) == stats["comments_written"] > 0
    vocab = json.loads((out / "vocab.json").read_text(encoding="utf-8"))["tokens"]
    for r in com:
        assert r["masked_ids"][0] == 2 and [r["masked_ids"][p] for p in r["mask_positions"]] == [3] * len(r["targets"])
        assert all(vocab[i] == t or i == 1 for i, t in zip(r["token_ids"], r["tokens"]))
    assert _prepare(args) == 0
    stats2 = json.loads((out / "stats.json").read_text())
    assert stats2["sources_resumed"] == 1 and stats2["filters"] == stats["filters"]


@pytest.mark.slow
def test_prepare_real_files_two_workers(tmp_path):
    if not (DANMAKU.is_dir() and DUTIR.is_file()):
        pytest.skip("../shared/realdata is absent")
    out = tmp_path / "out"
    assert _prepare([str(DANMAKU), "--lexicon", str(DUTIR), "--out", str(out), "--n", "20", "--workers", "2"]) == 0
    stats = json.loads((out / "stats.json").read_text())
    assert len(stats["sources_failed"]) == 3 and len(stats["duplicate_videos"]) == 2
    assert stats["comments_parsed"] == 11994 and stats["filters"]["comments"]["all"] == 11994 - 896 - 5
    f = [v["all"] for v in stats["filters"].values()]
    assert f == sorted(f, reverse=True) and f[-1] > 1000
    assert stats["segments_selected"] == {"negative": 20, "positive": 20, "per_polarity_requested": 20}
    com = pq.read_table(out / "comments.parquet")
    assert com.num_rows == stats["comments_written"] == stats["filters"]["no repeat within 1 s"]["selected"]
    assert all(3 <= len(t) <= 15 and has_only_allowed_chars(x)
               for t, x in zip(com["tokens"].to_pylist(), com["text"].to_pylist()))


# ---------------------------------------------------------------- lexicon-aware tokenisation (issue 11.4)

POS = {"开心": "adj", "紧张": "verb", "好笑": "adj", "消息": "noun", "难过": "adj"}


def test_lexicon_tokenizer_keeps_emotional_words_whole():
    from tam.comments.process import LexiconTokenizer

    tok = LexiconTokenizer(POS)
    assert tokenize("我好开心啊") == ["我", "好开心", "啊"]  # jieba's dictionary has 好开心
    assert tok("我好开心啊") == ["我", "好", "开心", "啊"]
    assert tok("今天太紧张了") == ["今天", "太", "紧张", "了"] and tok("好好笑") == ["好", "好笑"]
    assert tok("好消息") == tokenize("好消息") == ["好消息"]  # 消息 is a noun: 好 is not a degree adverb there
    assert ("好开心", 0) in tok.edits and LexiconTokenizer(POS, tok.edits)("好好笑") == ["好", "好笑"]
    video = [Comment(1.0, "我今天好开心"), Comment(2.0, "真的太紧张了"), Comment(3.0, "好消息来了")]
    lex = {w: ("", "") for w in POS}
    plain = process_video("v", video, 10.0, lex, _scorer)
    aware = process_video("v", video, 10.0, lex, _scorer, tokenizer=tok)
    assert plain.segments["n_lexicon"] == [0] and aware.segments["n_lexicon"] == [2]
    assert aware.comments["emotion_words"] == [["开心"], ["紧张"]]
    assert aware.comments["masked"][0] == [START, "我", "今天", "好", MASK]
    assert aware.segments["sentiment"] == plain.segments["sentiment"]  # the scorer keeps its own cut


@pytest.mark.slow
def test_lexicon_tokenizer_matches_jieba_and_keeps_more_real_comments():
    if not (DANMAKU.is_dir() and DUTIR.is_file()):
        pytest.skip("../shared/realdata is absent")
    import re

    import jieba

    from tam.comments.corpus import _lexicon_tables
    from tam.comments.formats import discover, read_source
    from tam.comments.process import LexiconTokenizer
    from tam.errors import TamError

    table, pos = _lexicon_tables(str(DUTIR))
    tok = LexiconTokenizer(pos)
    ref = jieba.Tokenizer()
    ref.initialize()
    for w, f in tok.edits:  # the same dictionary edits, replayed in jieba
        ref.add_word(w, f)
    videos = []
    for s in discover([DANMAKU]):
        try:
            videos += [v for v in read_source(s) if v.comments]
        except TamError:
            pass
    texts = [c.text for v in videos for c in v.comments]
    differ = [t for t in texts if tok(t) != [w for w in ref.lcut(t) if not w.isspace()]]
    # measured: 1 of 11,994 differs, a run of one repeated character (a DAG tie, as for the plain dictionary)
    assert len(differ) <= 5 and all(re.search(r"(.)\1\1", t) for t in differ)
    kept = {}
    for name, tk in (("plain", None), ("aware", tok)):  # the filters do not depend on the scorer
        out = [process_video(v.video, v.comments, None, table, _scorer, tokenizer=tk) for v in videos]
        kept[name] = {(o.video, t, x) for o in out for t, x in zip(o.comments["time"], o.comments["text"])}
    # measured: 1,336 -> 1,366 kept (with an emotional word: 2,032 -> 2,096); none lost
    assert kept["plain"] <= kept["aware"] and len(kept["aware"]) - len(kept["plain"]) >= 20
