"""Sentiment: the fast scorer is SnowNLP's model exactly, and agrees with SnowNLP on the real comments."""

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
    a = agreement([fast(t) for t in real_texts], [snownlp_sentiment(t) for t in real_texts])
    # measured on all 11,093 real comments: r = 0.90, same side 93.6 % (docs/comments.md)
    assert a["pearson_r"] > 0.8 and a["same_side"] > 0.88


def test_fast_scorer_properties():
    fast = FastSentiment()
    assert 0.0 <= fast("") <= 1.0 and fast("太好看了，我很喜欢") > 0.5 > fast("太难看了，垃圾，差评")
    assert fast._match("喜欢喜欢") == ["喜欢", "喜欢"]
    assert fast.words("awsl  世界 ") == ["awsl", *fast.words("世界")]


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


def test_score_from_the_shared_cut_equals_the_scorer(real_texts):
    import rjieba

    fast = FastSentiment()
    texts = [*real_texts, "awsl太好看了", "哈哈哈 233 好", "  ", "😀开心", "㐀好", "好-看"]
    for text in texts:
        cut = rjieba.cut(text)
        assert fast.words_from_cut(text, cut) == fast.words(text), text
        assert fast.score_cut(text, cut) == fast(text), text  # bit for bit: the same additions in order
