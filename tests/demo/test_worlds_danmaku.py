"""Synthetic danmaku: Bilibili XML that the real reader parses, comments timed in segments that follow the
segment's affect, with each noise kind present; and the project's lexicon read by the real loader."""

from collections import Counter

import numpy as np
import pytest

from tam.comments.formats import read_bilibili_xml
from tam.comments.lexicon import MINOR_TO_MAJOR, load_lexicon
from tam.demo.worlds.danmaku import DanmakuSpec, make_danmaku, to_xml, video_comments
from tam.demo.worlds.videos import CLASSES, VideoWorldSpec, plan_video
from tam.demo.worlds.words import CLASS_CATEGORY, NEUTRAL, WORDS, write_lexicon


def _plans(n=40, seed=0):
    rng = np.random.default_rng(seed)
    return [plan_video(rng, f"U{i:03d}", VideoWorldSpec()) for i in range(n)]


def test_xml_round_trips_through_the_real_reader(tmp_path):
    p = _plans(1)[0]
    comments = video_comments(p, DanmakuSpec(seed=1), Counter())
    path = tmp_path / f"{p.video}.xml"
    path.write_text(to_xml(p.video, comments), encoding="utf-8")
    got = read_bilibili_xml(path)
    natural = [c for c in comments if c[1] != 7]
    assert [c.text for c in got.comments] == [t for _, _, t in natural]
    assert np.allclose([c.time for c in got.comments], [t for t, _, _ in natural], rtol=0, atol=1e-5)  # 5 decimals
    assert got.skipped.get("advanced", 0) == len(comments) - len(natural)


def test_comments_follow_the_segment_affect():
    words = {code: set(w) for code, (_, _, w) in WORDS.items()}
    hits = misses = 0
    for p in _plans():
        own = words[CLASS_CATEGORY[CLASSES[p.label]]]
        for time, mode, text in video_comments(p, DanmakuSpec(noise=0.0), Counter()):
            assert 0 <= time < p.T and mode == 1
            emotional = [w for ws in words.values() for w in ws if w in text]
            if emotional:  # emotional words of the class's category, only where the scene and the sound have both
                assert int(time) in (p.react, p.react + 1)  # happened (the later of the two) and the segment after
                hits += all(w in own for w in emotional)
                misses += not all(w in own for w in emotional)
    assert hits > 100 and misses == 0
    assert any(p.react != p.cue for p in _plans())  # the scene comes after the sound in some videos


def test_every_noise_kind_is_drawn():
    counts: Counter = Counter()
    for p in _plans():
        video_comments(p, DanmakuSpec(), counts)
    assert {"event", "chatter", "duplicate", "off_topic", "too_short", "too_long", "symbols", "advanced"} <= set(counts)


def test_make_danmaku_writes_one_file_per_video(tmp_path):
    plans = {"unlabelled": _plans(3)}
    kinds = make_danmaku(tmp_path, plans, DanmakuSpec())
    assert sorted(f.name for f in (tmp_path / "danmaku" / "unlabelled").iterdir()) == ["U000.xml", "U001.xml",
                                                                                         "U002.xml"]
    assert sum(kinds["unlabelled"].values()) > 0


def test_lexicon_is_read_by_the_real_loader(tmp_path):
    lex = load_lexicon(write_lexicon(tmp_path / "lex.csv"))
    assert not lex.issues
    assert len(lex.entries) == sum(len(w) for _, _, w in WORDS.values())
    for code, (pol, _, ws) in WORDS.items():
        for w in ws:
            sense = lex.entries[w][0]
            assert sense.category == code and sense.major == MINOR_TO_MAJOR[code] and sense.polarity == pol
    assert not set(NEUTRAL) & set(lex.entries)
    assert set(CLASS_CATEGORY.values()) == set(WORDS)


@pytest.mark.slow
def test_corpus_filters_catch_the_noise(tmp_path):
    from tam.comments.corpus import prepare_corpus

    plans = {"unlabelled": _plans(12)}
    kinds = make_danmaku(tmp_path, plans, DanmakuSpec())["unlabelled"]
    stats = prepare_corpus([tmp_path / "danmaku"], tmp_path / "corpus", str(write_lexicon(tmp_path / "lex.csv")),
                           n_per_polarity=6, workers=1, progress=False)
    steps = [v["all"] for v in stats["filters"].values()]
    assert all(b < a for a, b in zip(steps, steps[1:]))
    assert steps[0] - steps[1] >= kinds["chatter"]  # chatter has no emotional word
    assert stats["comments_skipped"]["advanced"] == kinds["advanced"]
