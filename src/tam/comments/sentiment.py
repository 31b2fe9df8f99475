"""Comment sentiment in 0..1 (negative..positive).

- `snownlp`: the reference, `SnowNLP(text).sentiments` (~900 comments/s here: its pure-Python
  character-based segmenter dominates).
- `fast`: the same naive Bayes model, read from SnowNLP's own installed tables
  (`snownlp/sentiment/sentiment.marshal.3` and its stop-word list), applied to a faster segmentation:
  CJK runs are cut by rjieba, then every CJK token missing from the model's vocabulary is re-cut by
  forward maximum matching against that vocabulary; non-CJK runs are split on whitespace exactly as
  SnowNLP does. The score is SnowNLP's formula, sigmoid(log prior ratio + sum of per-word log
  likelihood ratios). Only the segmentation differs, so with SnowNLP's own segmentation it reproduces
  the reference (tested). Agreement with the reference on the real comments is measured by
  `agreement()` (tests, bench/bench_comments.py, docs/comments.md): Pearson r ~0.90, ~94 % on the same side of 0.5.

No cache across comments: replicated benchmark corpora would otherwise measure the cache.
"""

from __future__ import annotations

import gzip
import importlib.util
import marshal
import math
import re
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from tam.errors import TamError

_ZH = re.compile("([\u4e00-\u9fa5]+)")  # SnowNLP's own definition of a Chinese run
_NOT_SHARED = re.compile("[a-zA-Z0-9+#&._%\\-\u3400-\u4dbf\u9fa6-\u9fff\uf900-\ufaff\U00020000-\U0010ffff]")
"""Characters rjieba (jieba-rs) joins to Chinese blocks while SnowNLP's runs do not."""


def _snownlp_dir() -> Path:
    spec = importlib.util.find_spec("snownlp")
    if spec is None or not spec.submodule_search_locations:
        raise TamError("snownlp is not installed: `pip install snownlp` (its model tables are needed)")
    return Path(list(spec.submodule_search_locations)[0])


class FastSentiment:
    """SnowNLP's naive Bayes sentiment with rjieba + maximum-matching segmentation (see module docstring)."""

    def __init__(self) -> None:
        root = _snownlp_dir()
        with gzip.open(root / "sentiment" / "sentiment.marshal.3", "rb") as f:
            model = marshal.loads(f.read())
        pos, neg = model["d"]["pos"], model["d"]["neg"]
        lp, ln = math.log(pos["total"]), math.log(neg["total"])
        self.prior = lp - ln
        self.unknown = (math.log(pos["none"]) - lp) - (math.log(neg["none"]) - ln)
        self.table = {w: (math.log(pos["d"].get(w, pos["none"])) - lp) - (math.log(neg["d"].get(w, neg["none"])) - ln)
                      for w in set(pos["d"]) | set(neg["d"])}
        stop = (root / "normal" / "stopwords.txt").read_text(encoding="utf-8").splitlines()
        self.stop = frozenset(w.strip() for w in stop)
        self.max_len = max(len(w) for w in self.table)

    def words(self, text: str) -> list[str]:
        """The tokens the model sees (stop words removed)."""
        import rjieba

        out: list[str] = []
        table, stop = self.table, self.stop
        for part in _ZH.split(text):
            part = part.strip()
            if not part:
                continue
            if _ZH.match(part):
                for w in rjieba.cut(part):
                    out.extend([w] if w in table else self._match(w))
            else:
                out.extend(part.split())
        return [w for w in out if w not in stop]

    def words_from_cut(self, text: str, cut: Sequence[str]) -> list[str]:
        """`words(text)` from rjieba's cut of the whole text (`rjieba.cut(text)`, shared with the tokeniser).

        When the text has no character that rjieba joins to Chinese but SnowNLP does not (ASCII letters,
        digits, `+#&._%-`, other CJK blocks), rjieba's blocks are exactly SnowNLP's Chinese runs, so the
        run cuts are the Chinese tokens of the whole cut, and the text between runs is the concatenation
        of the other tokens; otherwise the text is cut again as `words` does. Same result (tested)."""
        if _NOT_SHARED.search(text):
            return self.words(text)
        out: list[str] = []
        other: list[str] = []
        table, match = self.table, self._match
        for w in cut:
            if "\u4e00" <= w[0] <= "\u9fa5":
                if other:
                    out.extend("".join(other).split())
                    other = []
                out.extend([w] if w in table else match(w))
            else:
                other.append(w)
        if other:
            out.extend("".join(other).split())
        stop = self.stop
        return [w for w in out if w not in stop]

    def score_cut(self, text: str, cut: Sequence[str]) -> float:
        """`self(text)` from rjieba's cut of the whole text: `score_words(words_from_cut(text, cut))` in one
        loop (the same additions in the same order)."""
        if _NOT_SHARED.search(text):
            return self(text)
        table, stop, unk = self.table, self.stop, self.unknown
        vals: list[float] = []
        other: list[str] = []
        for w in cut:
            if "\u4e00" <= w[0] <= "\u9fa5":
                if other:
                    vals.extend(table.get(x, unk) for x in "".join(other).split() if x not in stop)
                    other = []
                if w in table:
                    if w not in stop:
                        vals.append(table[w])
                else:
                    vals.extend(table.get(x, unk) for x in self._match(w) if x not in stop)
            else:
                other.append(w)
        if other:
            vals.extend(table.get(x, unk) for x in "".join(other).split() if x not in stop)
        z = self.prior + sum(vals)
        return 1.0 / (1.0 + math.exp(-z)) if z > -700 else 0.0

    def _match(self, word: str) -> list[str]:
        """Forward maximum matching of `word` against the model vocabulary (single characters always match)."""
        out, i, n = [], 0, len(word)
        while i < n:
            for size in range(min(self.max_len, n - i), 0, -1):
                if size == 1 or word[i:i + size] in self.table:
                    out.append(word[i:i + size])
                    i += size
                    break
        return out

    def score_words(self, words: Sequence[str]) -> float:
        """P(positive) of a token list under the model."""
        get, unk = self.table.get, self.unknown
        z = self.prior + sum(get(w, unk) for w in words)
        return 1.0 / (1.0 + math.exp(-z)) if z > -700 else 0.0

    def __call__(self, text: str) -> float:
        return self.score_words(self.words(text))


def snownlp_sentiment(text: str) -> float:
    """The reference scorer: `SnowNLP(text).sentiments`."""
    from snownlp import SnowNLP

    return float(SnowNLP(text).sentiments)


def make_scorer(name: str) -> Callable[[str], float]:
    """`"fast"` -> FastSentiment(), `"snownlp"` -> the reference."""
    if name == "fast":
        return FastSentiment()
    if name == "snownlp":
        return snownlp_sentiment
    raise TamError(f"unknown sentiment scorer {name!r} (choose from {sorted(SCORERS)})")


SCORERS = ("fast", "snownlp")


def agreement(scores: Sequence[float], reference: Sequence[float]) -> dict[str, float]:
    """Pearson r, the share on the same side of 0.5 and the mean absolute difference."""
    a, b = np.asarray(scores, dtype=np.float64), np.asarray(reference, dtype=np.float64)
    if len(a) != len(b) or len(a) < 2:
        raise ValueError("agreement needs two equal-length sequences of at least 2 scores")
    return {"n": float(len(a)), "pearson_r": float(np.corrcoef(a, b)[0, 1]),
            "same_side": float(np.mean((a > 0.5) == (b > 0.5))), "mean_abs_diff": float(np.mean(np.abs(a - b)))}
