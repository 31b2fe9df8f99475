"""Sentiment: the fast scorer is SnowNLP's model and segmentation, and agrees with SnowNLP on the real comments."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy.stats import pearsonr

from tam.comments.sentiment import FastSentiment, agreement, make_scorer, snownlp_sentiment
from tam.errors import TamError

SHARED = Path(__file__).resolve().parents[2] / ".." / "shared"
DANMAKU = SHARED / "realdata" / "danmaku"


@pytest.fixture(scope="module")
def real_texts() -> list[str]:
    if not DANMAKU.is_dir():
        pytest.skip("../shared/realdata/danmaku is absent")
    from tam.comments.formats import read_danmaku

    texts = []
    for name in ("biliass-corpus/xml/527533.xml", "danmakufactory/danmaku01.xml", "danmakuflamemaster/comments.xml"):
        texts += [c.text for v in read_danmaku(DANMAKU / name) for c in v.comments]
    return texts[::4]  # ~850 comments from three videos


def test_fast_model_equals_snownlp_given_snownlp_tokens(real_texts):
    from snownlp import sentiment

    fast = FastSentiment()
    handle = sentiment.classifier.handle  # SnowNLP's own segmentation + stop words
    for text in real_texts[:300]:
        assert fast.score_words(handle(text)) == pytest.approx(snownlp_sentiment(text), abs=1e-9)


def test_fast_agrees_with_snownlp_on_real_comments(real_texts):
    fast = make_scorer("fast")
    a = agreement(fast.score_many(real_texts), [snownlp_sentiment(t) for t in real_texts])
    # all 11,093 real comments: r = 1.0 (the same words; scores equal to ~1e-14), docs/comments.md
    assert a["pearson_r"] > 0.9999 and a["same_side"] > 0.998 and a["mean_abs_diff"] < 1e-9


def test_fast_words_are_snownlp_words(real_texts):
    from snownlp import seg

    fast = FastSentiment()
    odd = ["", "  ", "awsl太好看了", "哈哈哈 233 好", "😀开心", "㐀好", "好-看", "a\u3000b 好的\n坏",
           "\ud800好", "好\x00坏", "一", "御板美琴御板美琴", "阿姆斯特朗回旋加速喷气式阿姆斯特朗炮"]
    texts = [*real_texts, *odd]
    assert fast.segmenter.seg_many(texts) == [seg.seg(t) for t in texts]  # batched, runs of every length at once
    assert fast.segmenter.seg("我失去了我的理智") == seg.seg("我失去了我的理智")


def test_score_many_is_per_text_and_batch_independent(real_texts):
    fast = FastSentiment()
    texts = real_texts[:200]
    many = fast.score_many(texts)
    assert many.tolist() == [fast(t) for t in texts]  # bit for bit: a text's score ignores the rest of the batch
    assert fast.score_many(texts[50:120]).tolist() == many[50:120].tolist()
    assert many == pytest.approx([fast.score_words(fast.words(t)) for t in texts], abs=1e-12)
    assert fast.score_many([]).shape == (0,)
    repeated = [texts[3], *texts[:20], texts[3], texts[7], texts[3]]  # a repeat is scored once, the same
    assert fast.score_many(repeated).tolist() == [many[3], *many[:20], many[3], many[7], many[3]]


def test_span_lookup_equals_dict_get():
    from tam.comments.sentiment import SpanLookup

    rng = np.random.default_rng(0)
    alphabet = list("好开心哈啊的了不ab 1😀\ud800")
    words = {"".join(rng.choice(alphabet, size=rng.integers(1, 6))) for _ in range(300)} | {"", "好", "好开"}
    table = {w: float(i) for i, w in enumerate(sorted(words))}
    lookup = SpanLookup(table, -1.5)
    queries = [*table, *("".join(rng.choice(alphabet, size=rng.integers(1, 7))) for _ in range(2000))]
    queries = [q for q in queries if q]
    lens = np.array([len(q) for q in queries])
    cps = np.frombuffer("".join(queries).encode("utf-32-le", "surrogatepass"), np.uint32).astype(np.int64)
    ends = np.cumsum(lens)
    got = lookup.values(cps, ends - lens, ends)
    assert got.tolist() == [table.get(q, -1.5) for q in queries]
    assert lookup.values(cps[:0], ends[:0], ends[:0]).shape == (0,)


def test_fast_scorer_properties():
    fast = FastSentiment()
    assert 0.0 <= fast("") <= 1.0 and fast("太好看了，我很喜欢") > 0.5 > fast("太难看了，垃圾，差评")
    assert fast.words("awsl  世界 ") == ["awsl", *fast.words("世界")]


@pytest.mark.slow
def test_converted_model_is_cached(tmp_path, monkeypatch):
    from tam.comments import sentiment, snowseg

    monkeypatch.setenv("TAM_CACHE_DIR", str(tmp_path))
    model = sentiment._snownlp_dir() / "seg" / "seg.marshal.3"
    keys = np.array([5, 17, 2**40, 3, 99], dtype=np.int64)
    table = snowseg._hash_table(keys)
    assert snowseg._hash_find(table, np.array([17, 4, 2**40, 5, 3, 99, 100])).tolist() == [1, -1, 2, 0, 3, 4, -1]
    first = snowseg.load_model(model)  # converted (SnowNLP's 13 MB model) and written to the cache
    (folder,) = tmp_path.glob("snownlp-seg-*")
    assert sorted(p.name for p in folder.iterdir()) == sorted([f"{k}.npy" for k in first] + ["names.json"])
    again = snowseg.load_model(model)
    assert first.keys() == again.keys() and all(np.array_equal(first[k], again[k]) for k in first)
    assert all(isinstance(a.base, np.memmap) and not a.flags.writeable for a in again.values())  # mapped, not read
    fast = sentiment.FastSentiment()  # its lookup arrays are cached beside it; scores as when built
    texts = ["我今天很开心", "太难过了呜呜", "哈哈哈哈哈", "", "awsl  世界 "]
    built = fast.score_many(texts)
    assert isinstance(sentiment.FastSentiment().lookup.hashes.base, np.memmap)
    assert sentiment.FastSentiment().score_many(texts).tobytes() == built.tobytes()
    (folder / "names.json").unlink()  # an incomplete folder (a job killed while writing it) is built again
    assert all(np.array_equal(first[k], v) for k, v in snowseg.load_model(model).items())
    assert (folder / "names.json").is_file()


def test_agreement_matches_scipy():
    rng = np.random.default_rng(0)
    a, b = rng.random(50), rng.random(50)
    got = agreement(a, b)
    assert got["pearson_r"] == pytest.approx(pearsonr(a, b)[0])
    assert got["same_side"] == pytest.approx(np.mean((a > 0.5) == (b > 0.5)))
    with pytest.raises(ValueError):
        agreement([0.1], [0.2])
    with pytest.raises(TamError):
        make_scorer("vader")


def test_score_many_in_pieces_of_bounded_characters_gives_the_same_scores(monkeypatch):
    from tam.comments import sentiment

    fast = sentiment.FastSentiment()
    texts = ["我今天很开心", "太难过了呜呜", "哈哈哈哈哈", "我今天很开心", "一般般吧", "这个视频真好看啊"] * 7
    texts.insert(5, "好" * 40)  # longer than a whole piece below: a piece of its own
    whole = fast.score_many(texts)
    monkeypatch.setattr(sentiment, "MAX_BATCH_CHARS", 12)
    sizes = []
    batch = fast._score_batch
    monkeypatch.setattr(fast, "_score_batch", lambda t: sizes.append(sum(map(len, t))) or batch(t))
    pieces = fast.score_many(texts)
    assert pieces.tobytes() == whole.tobytes() and len(pieces) == len(texts)
    assert len(sizes) > 20 and 40 in sizes and all(s <= 12 + 9 for s in sizes if s != 40)
