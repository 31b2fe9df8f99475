"""The project's own small Chinese emotion lexicon, written for the synthetic world (not derived from DUTIR).

Common emotion words grouped by the DUTIR minor category codes that `tam.comments.lexicon` maps to its 7
major categories, so the synthetic corpus runs through the same loader as the real lexicon. `write_lexicon`
writes it as a CSV with the loader's English headers (word, pos, senses, sense, category, intensity,
polarity). Licence: the project's own (same as the code).
"""

from __future__ import annotations

from pathlib import Path

from tam.io import write_text

WORDS: dict[str, tuple[str, int, tuple[str, ...]]] = {
    # minor code: (polarity 1 positive / 2 negative, intensity, words)
    "NA": (2, 7, ("愤怒", "生气", "气愤", "恼火", "恼怒", "暴怒")),  # anger
    "NI": (2, 7, ("害怕", "恐怖", "吓人", "可怕", "惊恐", "发毛")),  # panic / fear
    "ND": (2, 5, ("恶心", "讨厌", "反感", "嫌弃", "厌恶", "作呕")),  # disgust
    "NB": (2, 5, ("难过", "伤心", "心疼", "悲伤", "心酸", "难受")),  # sadness
    "PC": (1, 5, ("震惊", "惊讶", "意外", "吃惊", "惊呆", "没想到")),  # surprise
    "PK": (1, 5, ("期待", "盼望", "希望", "等不及", "好奇", "憧憬")),  # wish / anticipation
    "PA": (1, 7, ("开心", "高兴", "快乐", "欢乐", "幸福", "愉快")),  # joy
    "PG": (1, 5, ("相信", "信任", "放心", "安心", "可靠", "踏实")),  # trust
}
"""The words of each minor category code."""

CLASS_CATEGORY = {"anger": "NA", "fear": "NI", "disgust": "ND", "sadness": "NB", "surprise": "PC",
                  "anticipation": "PK", "joy": "PA", "trust": "PG"}
"""The lexicon category whose words viewers write about a segment of each class (tam.demo.worlds.videos.CLASSES)."""

NEUTRAL = ("这里", "画面", "镜头", "这段", "主角", "背景", "颜色", "方块", "声音", "音乐", "节奏", "前面",
           "后面", "大家", "我们", "今天", "感觉", "有点", "真的", "一下", "这个", "那个", "时候", "看看")
"""Neutral words (not in the lexicon) used for chatter and to pad comments."""


def rows() -> list[tuple[str, str, int, int, str, int, int]]:
    """(word, pos, senses, sense, category, intensity, polarity) for every word."""
    return [(w, "adj", 1, 1, code, inten, pol) for code, (pol, inten, words) in WORDS.items() for w in words]


def write_lexicon(path: str | Path) -> Path:
    """Write the lexicon CSV (the format `tam.comments.lexicon.load_lexicon` reads); returns the path."""
    lines = ["word,pos,senses,sense,category,intensity,polarity"]
    lines += [",".join(str(x) for x in r) for r in rows()]
    write_text(path, "\n".join(lines) + "\n")
    return Path(path)
