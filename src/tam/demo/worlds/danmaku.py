"""Bilibili-format XML danmaku for the synthetic videos of `tam.demo.worlds.videos` (see docs/synthetic.md).

Viewers comment on what they see and hear. At the reaction segment (`VideoPlan.react`: the later of the scene and
the sound, where the emotion, a function of both, becomes known) and the one after it (viewers react late), each
video draws `per_event` comments (Poisson mean) carrying an emotional word of its class's lexicon category
(`tam.demo.worlds.words.CLASS_CATEGORY`), e.g. "这里太恐怖了吧" for fear; every segment draws `chatter`
neutral comments without an emotional word. Realistic noise, each kind counted in the returned stats:

  - `duplicate`: the same text again 0.1-0.9 s later (the repeat filter drops it);
  - `off_topic`: an emotional word of a random other category;
  - `too_short`: one or two words ("震惊", "好恐怖");
  - `too_long`: more than 15 words;
  - `symbols`: digits and symbols ("2333", "666", "★", "(°ロ°)");
  - `advanced`: mode 7 positioned comments (dropped at parsing).

Comment times lie inside their segment; the file is the old 8-field `p` form
`time,mode,size,color,timestamp,pool,user,rowid`.
"""

from __future__ import annotations

import zlib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape

import numpy as np

from tam.demo.worlds.videos import CLASSES, VideoPlan
from tam.demo.worlds.words import CLASS_CATEGORY, NEUTRAL, WORDS
from tam.io import write_text

_EMO_TEMPLATES = ("这里太{}了吧", "画面真的让人{}", "这个镜头好{}啊", "{}！前方高能", "看到这里我{}了",
                  "主角好{}啊", "这段真的{}", "大家都{}了吗")
_CHATTER = ("前排围观", "这个背景音乐叫什么", "弹幕护体", "第一次来打卡", "这里的颜色挺特别", "方块又出来了",
            "我们一起看看", "今天也来看了", "有没有人一起", "up主更新好快")
_SYMBOLS = ("2333{}", "666666", "★★★{}★★★", "(°ロ°){}", "{}!!!111", "@前面的 {}#")


@dataclass
class DanmakuSpec:
    per_event: float = 6.0  # mean emotional comments in the reaction segment (and 60 % of it in the next)
    chatter: float = 1.5  # mean neutral comments per segment
    noise: float = 0.25  # chance that a comment is replaced by a noisy one (kinds drawn uniformly)
    seed: int = 0


def _emo(rng: np.random.Generator, category: str) -> str:
    words = WORDS[category][2]
    return words[int(rng.integers(len(words)))]


def _pick(rng: np.random.Generator, items) -> str:
    return items[int(rng.integers(len(items)))]


def _noisy(rng: np.random.Generator, kind: str, category: str) -> str:
    word = _emo(rng, category)
    if kind == "off_topic":
        return _pick(rng, _EMO_TEMPLATES).format(_emo(rng, _pick(rng, sorted(WORDS))))
    if kind == "too_short":
        return word if rng.random() < 0.5 else "好" + word
    if kind == "too_long":
        pad = "".join(_pick(rng, NEUTRAL) for _ in range(14))
        return f"{pad}真的太{word}了"
    return _pick(rng, _SYMBOLS).format(word)


def video_comments(plan: VideoPlan, spec: DanmakuSpec, stats: Counter) -> list[tuple[float, int, str]]:
    """(time, mode, text) of one video, sorted by time; `stats` counts the kinds drawn."""
    rng = np.random.default_rng([spec.seed, zlib.crc32(plan.video.encode()), 2])
    category = CLASS_CATEGORY[CLASSES[plan.label]]
    out: list[tuple[float, int, str]] = []
    for t in range(plan.T):
        n_emo = rng.poisson(spec.per_event) if t == plan.react else (
            rng.poisson(0.6 * spec.per_event) if t == plan.react + 1 else 0)
        texts = [("event", _pick(rng, _EMO_TEMPLATES).format(_emo(rng, category))) for _ in range(n_emo)]
        texts += [("chatter", _pick(rng, _CHATTER)) for _ in range(rng.poisson(spec.chatter))]
        for kind, text in texts:
            if rng.random() < spec.noise:
                kind = _pick(rng, ("duplicate", "off_topic", "too_short", "too_long", "symbols", "advanced"))
                if kind not in ("duplicate", "advanced"):
                    text = _noisy(rng, kind, category)
            time = t + float(rng.uniform(0.02, 0.9))
            stats[kind] += 1
            if kind == "advanced":
                out.append((time, 7, '[0,0,"1-1",4.5,"' + text + '",0,0,0,0,500,0,true]'))
                continue
            out.append((time, 1, text))
            if kind == "duplicate":
                out.append((min(time + float(rng.uniform(0.1, 0.9)), t + 0.99), 1, text))
    return sorted(out)


def to_xml(video: str, comments: list[tuple[float, int, str]]) -> str:
    """The Bilibili XML of a video's comments (old 8-field `p` attribute)."""
    cid = zlib.crc32(video.encode())
    lines = ['<?xml version="1.0" encoding="UTF-8"?>', "<i>", "<chatserver>chat.bilibili.com</chatserver>",
             f"<chatid>{cid}</chatid>", "<mission>0</mission>", f"<maxlimit>{max(len(comments), 1)}</maxlimit>",
             "<state>0</state>", "<real_name>0</real_name>", "<source>k-v</source>"]
    for i, (time, mode, text) in enumerate(comments):
        color = 16777215 if mode == 1 else 16711680
        user = f"{zlib.crc32(f'{video}:{i}'.encode()):08x}"
        p = f"{time:.5f},{mode},25,{color},{1600000000 + i},0,{user},{cid * 1000 + i}"
        lines.append(f'<d p="{p}">{escape(text)}</d>')
    return "\n".join(lines + ["</i>"]) + "\n"


def make_danmaku(root: str | Path, plans: dict[str, list[VideoPlan]], spec: DanmakuSpec) -> dict:
    """Write `danmaku/<part>/<video>.xml` for every plan; return the counts of comment kinds per part."""
    root = Path(root)
    counts = {}
    for part, ps in plans.items():
        stats: Counter = Counter()
        for p in ps:
            write_text(root / "danmaku" / part / f"{p.video}.xml", to_xml(p.video, video_comments(p, spec, stats)))
        counts[part] = dict(sorted(stats.items()))
    return counts
