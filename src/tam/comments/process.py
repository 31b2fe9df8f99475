"""From one video's comments to its segments and its cleaned, masked comments (sections 5.1 and 5.2).

Per video (`process_video`):
1. Segmentation: exact 1-D k-means over the comment times (`kmeans_1d`, optimal and deterministic)
   with K = max(1, round(duration / 30 s)), capped at the number of distinct times. Clusters are
   contiguous in time; a segment runs from the midpoint between its first comment and the previous
   cluster's last one to the next such midpoint (the first starts at 0, the last ends at the duration
   or the last comment, whichever is later). A video without comments has no segments.
2. Sentiment (0..1) of every comment; a segment's sentiment is the mean over its comments.
3. Filters, in the paper's order, counted per segment: (a) at least one emotional word (a token in the
   lexicon; with a `LexiconTokenizer` the lexicon's words are kept whole, so 好开心 gives 好 开心);
   (b) 3..15 words (jieba tokens, whitespace tokens not counted); (c) only allowed characters
   (`ALLOWED_CHARS`: no digits, no other symbols); (d) no repeat of the same text within 1 s of a kept one.
4. Masking of the kept comments: `[#S]` then the tokens, every emotional word replaced by `[#M]` with
   its target kept (or the random 10/20/30 % strategies of Table 3).
"""

from __future__ import annotations

import functools
import random
import re
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from tam.comments.formats import Comment, Comments

PAD, UNK, START, MASK = "[PAD]", "[UNK]", "[#S]", "[#M]"
SPECIAL_TOKENS = (PAD, UNK, START, MASK)
"""Vocabulary ids 0..3, in this order."""

MASKINGS = {"emotion": 0.0, "random10": 0.10, "random20": 0.20, "random30": 0.30}
"""Masking strategies (Table 3): every emotional word, or a random share of the words."""

ALLOWED_CHARS = (
    "\u4e00-\u9fff"  # CJK Unified Ideographs (Chinese numerals such as 一二三 are words, not digits)
    "\u3400-\u4dbf"  # CJK Extension A
    "\uf900-\ufaff"  # CJK Compatibility Ideographs
    "a-zA-Z"  # ASCII letters (awsl, gg...)
    " \u3000"  # ASCII and ideographic space
    "，。！？、；：“”‘’（）《》〈〉【】「」『』…—～·"  # Chinese punctuation
    ",.!?;:'\"()~\\-"  # ASCII punctuation
)
"""Characters a kept comment may contain (a regex class body). Everything else is a digit or a special
character: 0-9 and full-width digits, emoji, symbols, kana, hangul, full-width letters, newlines, tabs."""

_ALLOWED = re.compile(f"[{ALLOWED_CHARS}]+")


@dataclass(frozen=True)
class FilterSettings:
    """The section 5.2 filter parameters."""

    min_words: int = 3
    max_words: int = 15
    dedup_seconds: float = 1.0
    segment_seconds: float = 30.0


# ---------------------------------------------------------------- segmentation

def n_segments(duration: float, segment_seconds: float = 30.0) -> int:
    """K = max(1, round(duration / 30 s)) (Python rounding: halves to even)."""
    return max(1, round(duration / segment_seconds))


def kmeans_1d(x: Sequence[float] | np.ndarray, k: int) -> np.ndarray:
    """Optimal 1-D k-means of sorted `x` into min(k, distinct values) contiguous clusters.

    Dynamic programming over prefix sums, each layer solved by divide and conquer on the monotone
    split point (as in Ckmeans.1d.dp), vectorised across each recursion level (`_dc_layer`). Ties take the
    leftmost split, so the result is deterministic. Returns the cluster label (0..k'-1) of each point.
    """
    x = np.asarray(x, dtype=np.float64)
    n = len(x)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    if np.any(np.diff(x) < 0):
        raise ValueError("kmeans_1d needs sorted input")
    k = max(1, min(int(k), int(np.count_nonzero(np.diff(x))) + 1))
    labels = np.zeros(n, dtype=np.int64)
    if k == 1:
        return labels
    table = np.zeros((3, n + 1))  # per split point j: s1[j], s2[j] (prefix sums of x, x**2), j
    with np.errstate(all="ignore"):  # non-finite sums are refused below
        xc = x - x.mean()
        np.cumsum(xc, out=table[0, 1:])
        np.cumsum(xc * xc, out=table[1, 1:])
    if not np.isfinite(table[:2, n]).all():  # s2[n] is finite only when every (x - mean)**2 is
        raise ValueError("kmeans_1d needs finite times (of magnitude below ~1e150)")
    table[2] = np.arange(n + 1)
    s1, s2 = table[0], table[1]
    prev = np.full(n + 1, np.inf)
    prev[1:] = _sse(s1, s2, np.zeros(n, dtype=np.int64), np.arange(1, n + 1))
    dense = (k - 1) * (n + 2) <= _DENSE_OPTS
    opts = np.zeros((k - 1 if dense else 1, n + 2), dtype=np.int64)
    ctx = (table, s1, s2, _AR if n + 2 <= len(_AR) else np.arange(n + 2), n)
    splits = []
    group = max(1, _TREE_ROWS // n)
    for a in range(2, k + 1, group):
        tree = _Tree(a, min(a + group, k + 1), n, table)
        for layer in range(a, min(a + group, k + 1)):
            opt = opts[layer - 2 if dense else 0]
            prev = _dc_layer(prev, opt, ctx, tree.levels(layer), layer)
            if not dense:
                splits.append(_Splits(opt[:n + 1]))
    i = n
    for layer in range(k, 1, -1):
        j = int(opts[layer - 2, i]) if dense else splits[layer - 2].at(i)
        labels[j:i] = layer - 1
        i = j
    return labels


_DC_BLOCK = 1 << 16
"""Candidate splits evaluated at once by `_best_split` (bounds its temporaries: memory)."""
_DENSE_OPTS = 1 << 21
"""Split points kept as a plain (k-1, n+2) int64 array up to this many entries (16 MiB); beyond, `_Splits`."""
_TREE_ROWS = 1 << 16
"""Rows (points times layers) whose recursion tree `_Tree` builds at once (bounds its memory)."""
_BLOCK = 8192
"""A layer with at most this many (rows x candidates) is solved by `_block_finish` in one step (~90 points)."""
_AR = np.arange(_DC_BLOCK + 1)
_AR.flags.writeable = False


def _sse(s1: np.ndarray, s2: np.ndarray, j: np.ndarray, i: np.ndarray) -> np.ndarray:
    """SSE of x[j:i] (j < i) from the prefix sums of x and x**2."""
    m = i - j
    return np.maximum((s2[i] - s2[j]) - (s1[i] - s1[j]) ** 2 / m, 0.0)


class _Tree:
    """The divide-and-conquer recursion over rows layer..n for layers a..b-1, built at once (it does not
    depend on the data; a single layer, i.e. a long video, is built one level at a time as it is used: memory).
    Per level and layer, per open task: its middle row mid,
    mid-1, the rows bounding it (ilo-1, ihi+1: their split points bound its candidates) and
    (s1[mid], s2[mid], mid) (`_dc_layer`'s table at mid)."""

    def __init__(self, a: int, b: int, n: int, table: np.ndarray) -> None:
        self.a, self.b, self.n, self.table = a, b, n, table
        self._levels = list(self._build()) if b - a > 1 else None  # one layer: built level by level, as used

    def _build(self):
        a, b, n, table = self.a, self.b, self.n, self.table
        ilo, ihi, lay = np.arange(a, b), np.full(b - a, n), np.arange(b - a)
        while len(ilo):
            mid = (ilo + ihi) >> 1
            offs = np.searchsorted(lay, np.arange(b - a + 1))
            yield offs.tolist(), mid, mid - 1, ilo - 1, ihi + 1, table.take(mid, axis=1)
            nlo, nhi = np.empty(2 * len(mid), dtype=np.int64), np.empty(2 * len(mid), dtype=np.int64)
            nlo[0::2], nlo[1::2], nhi[0::2], nhi[1::2] = ilo, mid + 1, mid - 1, ihi  # children, in task order
            keep = nlo <= nhi
            ilo, ihi, lay = nlo[keep], nhi[keep], np.repeat(lay, 2)[keep]

    def levels(self, layer: int):
        """Per level of `layer`'s recursion: (mid, mid-1, ilo-1, ihi+1, table columns at mid)."""
        g = layer - self.a
        for offs, mid, mid1, lo_row, hi_row, at_mid in (self._levels if self._levels is not None else self._build()):
            lo, hi = offs[g], offs[g + 1]
            if lo == hi:
                return
            yield mid[lo:hi], mid1[lo:hi], lo_row[lo:hi], hi_row[lo:hi], at_mid[:, lo:hi]


def _dc_layer(prev: np.ndarray, opt: np.ndarray, ctx: tuple, levels, layer: int) -> np.ndarray:
    """One DP layer: cur[i] = min_{layer-1 <= j < i} prev[j] + cost(j, i) for i in layer..n, its leftmost
    argmin in opt[i]; returns cur.

    Divide and conquer, one recursion level at a time: every open task (rows ilo..ihi, candidate splits
    opt[ilo-1]..opt[ihi+1], opt[layer-1] and opt[n+1] holding the outer bounds) evaluates its middle row
    over all its candidates at once, laid end to end. The differences s1[i] - s1[j], s2[i] - s2[j], i - j
    come from one gather and one subtraction of the table (s1, s2, j), then the same float operations as
    `_sse`. A short layer is first tried in one step (`_block_finish`). A level with more than `_DC_BLOCK`
    candidates in all (above ~30,000 comments) is evaluated in blocks (`_best_split`)."""
    table, s1, s2, ar, n = ctx
    cur = np.full(n + 1, np.inf)
    opt[layer - 1], opt[n + 1] = layer - 1, n - 1
    rows = n - layer + 1
    if rows * rows <= _BLOCK:  # a short layer: all rows over all candidates at once
        bounds = np.array([layer - 1]), np.array([n + 1]), np.array([layer - 1]), np.array([n - 1])
        if _block_finish(prev, cur, opt, ctx, *bounds, rows, rows):
            return cur
    for mid, mid1, lo_row, hi_row, at_mid in levels:
        jlo, jhi = opt[lo_row], opt[hi_row]
        hi = np.minimum(jhi, mid1)
        cnt = hi - jlo
        cnt += 1
        ends = cnt.cumsum()
        total = int(ends[-1])
        if total > _DC_BLOCK:
            cur[mid], opt[mid] = _best_split(prev, lambda j, i: _sse(s1, s2, j, i), mid, jlo, hi)
            continue
        starts = ends - cnt
        j = (jlo - starts).repeat(cnt)
        j += ar[:total]
        d = at_mid.repeat(cnt, axis=1)  # methods, not np.repeat: no Python wrapper (many small calls)
        d -= table.take(j, axis=1)  # s1[i] - s1[j], s2[i] - s2[j], i - j
        v, b = d[1], d[0]
        np.square(b, out=b)
        np.divide(b, d[2], out=b)
        np.subtract(v, b, out=v)
        np.maximum(v, 0.0, out=v)
        v += prev.take(j)
        best = np.minimum.reduceat(v, starts)
        at_best = (v == best.repeat(cnt)).nonzero()[0]
        cur[mid], opt[mid] = best, j[at_best[at_best.searchsorted(starts)]]  # the leftmost minimum
    return cur


def _block_finish(prev: np.ndarray, cur: np.ndarray, opt: np.ndarray, ctx: tuple, lo_row: np.ndarray,
                  hi_row: np.ndarray, jlo: np.ndarray, jhi: np.ndarray, rows: int, cands: int) -> bool:
    """End the recursion of the open tasks at once: every row of a task over all the task's candidates.

    Where the leftmost argmins B(i) so found are non-decreasing within each task, the recursion would find
    exactly them (a row's recursion range lies inside its task's and holds B(i), since the rows bounding it
    have B's on either side), so they are written with their minima and True is returned. Otherwise (floats
    can break the monotonicity on near ties) nothing is written and False is returned."""
    _, s1, s2, ar, _ = ctx
    i = np.minimum(lo_row[:, None] + 1 + ar[:rows], hi_row[:, None] - 1)  # short tasks repeat their last row
    up = np.minimum(jhi[:, None], i - 1)
    j = np.minimum(jlo[:, None, None] + ar[:cands], up[:, :, None])  # a row repeats its last candidate
    v = s2[j]
    np.subtract(s2[i][:, :, None], v, out=v)
    b = s1[j]
    np.subtract(s1[i][:, :, None], b, out=b)
    np.square(b, out=b)
    np.divide(b, i[:, :, None] - j, out=b)
    np.subtract(v, b, out=v)
    np.maximum(v, 0.0, out=v)
    v += prev[j]  # prev[j] + _sse(j, i), the same float operations
    best = jlo[:, None] + v.argmin(2)  # argmin: the first (leftmost) minimum
    if not (best[:, 1:] >= best[:, :-1]).all():
        return False
    cur[i], opt[i] = v.min(2), best
    return True


class _Splits:
    """One layer's optimal split points, non-decreasing in i, kept as 1-byte steps (larger steps aside):
    ~1 byte a point instead of 4-8 (k layers of them are kept for the backtracking)."""

    def __init__(self, opt: np.ndarray) -> None:
        d = np.diff(opt.astype(np.int64))
        small = (d >= 0) & (d < 255)
        self.first = int(opt[0])
        self.steps = np.where(small, d, 255).astype(np.uint8)
        self.big_at = np.flatnonzero(~small)
        self.big = d[self.big_at]

    def at(self, i: int) -> int:
        """opt[i], exactly."""
        steps = self.steps[:i]
        n_big = int(np.searchsorted(self.big_at, i))
        return self.first + int(steps.sum(dtype=np.int64)) - 255 * n_big + int(self.big[:n_big].sum())


def _best_split(prev: np.ndarray, cost: Callable, mid: np.ndarray, lo: np.ndarray,
                hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each row r: min over j in lo[r]..hi[r] of prev[j] + cost(j, mid[r]) and its leftmost argmin.

    The ranges are cut into pieces of at most `_DC_BLOCK` candidates, evaluated a block at a time; the
    pieces' minima are then reduced per row (the first piece reaching the minimum holds the leftmost j)."""
    n_pieces = -(-(hi - lo + 1) // _DC_BLOCK)
    row = np.repeat(np.arange(len(mid)), n_pieces)
    first = np.cumsum(n_pieces) - n_pieces
    plo = lo[row] + (np.arange(len(row)) - first[row]) * _DC_BLOCK
    phi = np.minimum(plo + _DC_BLOCK - 1, hi[row])
    pmid = mid[row]
    ends = np.cumsum(phi - plo + 1)
    cuts = np.unique(np.searchsorted(ends, np.arange(_DC_BLOCK, int(ends[-1]), _DC_BLOCK), side="right"))
    val, arg = np.empty(len(row)), np.empty(len(row), dtype=np.int64)
    for a, b in zip(np.concatenate([[0], cuts]), np.concatenate([cuts, [len(row)]])):
        if a < b:
            val[a:b], arg[a:b] = _best_in_ranges(prev, cost, pmid[a:b], plo[a:b], phi[a:b])
    if len(row) == len(mid):
        return val, arg
    best = np.minimum.reduceat(val, first)
    piece = np.minimum.reduceat(np.where(val <= best[row], np.arange(len(row)), len(row)), first)
    return best, arg[piece]


def _best_in_ranges(prev: np.ndarray, cost: Callable, mid: np.ndarray, lo: np.ndarray,
                    hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`_best_split` for ranges evaluated all at once."""
    counts = hi - lo + 1
    group = np.repeat(np.arange(len(mid)), counts)
    starts = np.cumsum(counts) - counts
    j = lo[group] + (np.arange(counts.sum()) - starts[group])
    val = prev[j] + cost(j, mid[group])
    best_val = np.minimum.reduceat(val, starts)
    best_j = j[np.minimum.reduceat(np.where(val <= best_val[group], np.arange(len(val)), len(val)), starts)]
    return best_val, best_j  # best_j: the leftmost


def segment_bounds(times: np.ndarray, labels: np.ndarray, duration: float) -> tuple[np.ndarray, np.ndarray]:
    """Start and end (s) of each cluster of sorted `times` (see the module docstring)."""
    k = int(labels[-1]) + 1 if len(labels) else 0
    first = np.searchsorted(labels, np.arange(k), side="left")
    last = np.searchsorted(labels, np.arange(k), side="right") - 1
    cuts = (times[last[:-1]] + times[first[1:]]) / 2.0
    starts = np.concatenate([[0.0], cuts])
    ends = np.concatenate([cuts, [max(float(duration), float(times[-1]) if len(times) else 0.0)]])
    return starts, ends


# ---------------------------------------------------------------- filters, dedup, masking

_JIEBA_SKIP = re.compile(r"[a-zA-Z0-9]+(?:\.\d+)?%?|.")  # how jieba's HMM fallback splits ASCII runs


def tokenize(text: str) -> list[str]:
    """jieba tokens (`jieba.lcut`), computed by rjieba ~17x faster; whitespace-only tokens dropped.

    rjieba keeps ASCII runs such as `good-bye`, `o.o` or `2015.1.21` whole where jieba splits them
    (`good - bye`, `o . o`, `2015.1 . 21`); such tokens are re-split with jieba's own rule."""
    import rjieba

    cut = rjieba.cut(text)
    return clean_cut(cut) if _NEEDS_CLEAN.search(text) else cut


_NEEDS_CLEAN = re.compile(r"[\s._-]")
"""Characters that `clean_cut` may act on (whitespace, the ASCII joiners): without them a cut is clean."""
_ASCII_ALNUM = re.compile("[A-Za-z0-9]")


def clean_cut(cut: Sequence[str]) -> list[str]:
    """`tokenize` from rjieba's raw cut (whitespace dropped, ASCII runs re-split as jieba does)."""
    out = []
    for t in cut:
        if t.isspace():
            continue
        if t.isascii() and len(t) > 1 and ("." in t or "-" in t or "_" in t) and _ASCII_ALNUM.search(t):
            out.extend(_JIEBA_SKIP.findall(t))
        else:
            out.append(t)
    return out


_CJK_WORD = re.compile("[\u4e00-\u9fff]+")
DEGREE_PREFIXES = ("好", "太", "很", "真", "超", "最", "挺", "蛮", "巨", "贼", "特", "好好", "超级", "非常", "有点")
"""Degree adverbs that danmaku glue to an emotional word (好开心, 太紧张, 好好笑): a dictionary word made of
one of them and a lexicon word is removed, so that the emotional word is cut on its own."""


DEGREE_POS = frozenset({"adj", "verb", "nw", None})
"""Parts of speech (DUTIR's) a degree adverb modifies; None: a word list without them."""


def lexicon_user_words(lexicon: Mapping[str, object], jieba) -> list[tuple[str, int]]:
    """Make the rjieba dictionary `jieba` (an `rjieba.Jieba`, edited in place) lexicon-aware; return the
    edits, in order, as (word, frequency) pairs for `add_word` (0 removes a word, as jieba's `del_word`).

    `lexicon` maps each word to its part of speech (`DEGREE_POS`). Only Chinese words (CJK ideographs)
    are used. 1. Every lexicon word the dictionary lacks is added with the frequency jieba suggests, so
    that it is kept whole. 2. Every dictionary word `adverb + lexicon word` (`DEGREE_PREFIXES`; a word of
    2+ characters that an adverb modifies) that is not itself a lexicon word is removed. 3. Where the
    adverb and the word still do not come out as two tokens (好好笑 -> 好好 笑), the word's frequency is
    doubled until they do. Replaying the edits with `jieba.add_word(word, freq)` gives jieba the same
    dictionary (tested)."""
    edits: list[tuple[str, int]] = []
    words = sorted(w for w in lexicon if _CJK_WORD.fullmatch(w))
    for w in words:
        if not jieba.has_word(w):
            edits.append((w, jieba.suggest_freq(w)))
            jieba.add_word(w, edits[-1][1], None)
    pairs = sorted({(a, w) for w in words if len(w) > 1 and lexicon[w] in DEGREE_POS for a in DEGREE_PREFIXES
                    if a + w not in lexicon and jieba.has_word(a + w)})
    for a, w in pairs:
        edits.append((a + w, 0))
        jieba.add_word(a + w, 0, None)
    for a, w in pairs:
        freq = 0
        while jieba.cut(a + w, True) != [a, w] and freq < 2**40:
            freq = 2 * (freq or jieba.suggest_freq(w))
            jieba.add_word(w, freq, None)
        if freq:
            edits.append((w, freq))
    return edits


class LexiconTokenizer:
    """`tokenize` with the lexicon's words as units (its own rjieba dictionary; the global one is untouched).

    Equal to `jieba.lcut` after replaying the same edits with `jieba.add_word(word, freq)`
    (`lexicon_user_words`; tested on the real comments)."""

    def __init__(self, lexicon: Mapping[str, object], edits: list[tuple[str, int]] | None = None,
                 jieba=None) -> None:
        """`edits` None: computed here (`lexicon_user_words`); `jieba`: a fresh `rjieba.Jieba()` to edit
        (loading one takes ~1 s: the corpus workers load theirs while the parent reads the lexicon)."""
        import rjieba

        self.jieba = jieba if jieba is not None else rjieba.Jieba()
        if edits is None:
            self.edits = lexicon_user_words(lexicon, self.jieba)
        else:
            self.edits = [(w, int(f)) for w, f in edits]
            for w, f in self.edits:
                self.jieba.add_word(w, f, None)

    def cut(self, text: str) -> list[str]:
        """rjieba's raw cut (whitespace kept) with the lexicon-aware dictionary."""
        return self.jieba.cut(text, True)

    def __call__(self, text: str) -> list[str]:
        cut = self.jieba.cut(text, True)
        return clean_cut(cut) if _NEEDS_CLEAN.search(text) else cut


def has_only_allowed_chars(text: str) -> bool:
    """True when every character of `text` is in `ALLOWED_CHARS`."""
    return _ALLOWED.fullmatch(text) is not None


def dedup_mask(times: Sequence[float], texts: Sequence[str], seconds: float = 1.0) -> list[bool]:
    """Keep-mask over comments sorted by time: a comment is dropped when the same text was kept at most
    `seconds` earlier in the same video (the time is compared with the last *kept* copy).

    `times` and `texts` may be iterators. While the times do not decrease, texts kept more than `seconds`
    before the current time are forgotten (they can match no later comment): memory follows the comments
    of one `seconds` window, not of the video."""
    last: dict[str, float] = {}
    window: deque[tuple[float, str]] = deque()  # kept (time, text), oldest first
    keep = []
    t_prev = -np.inf
    for t, s in zip(times, texts):
        if window is not None and t < t_prev:  # unsorted input: remember everything
            window = None
        t_prev = t
        while window and t - window[0][0] > seconds:
            t0, s0 = window.popleft()
            if last.get(s0) == t0:
                del last[s0]
        prev = last.get(s)
        if prev is not None and t - prev <= seconds:
            keep.append(False)
        else:
            last[s] = t
            keep.append(True)
            if window is not None:
                window.append((t, s))
    return keep


def mask_tokens(tokens: Sequence[str], emotional: Sequence[bool], strategy: str = "emotion",
                rng: random.Random | None = None) -> tuple[list[str], list[int], list[str]]:
    """Return (`[#S]` + masked tokens, mask positions in that list, targets).

    `emotion` masks every emotional word; `randomNN` masks round(NN % of the words), at least one, chosen
    by `rng` (a seeded random.Random for reproducibility)."""
    if strategy == "emotion":
        chosen = [i for i, e in enumerate(emotional) if e]
    elif strategy in MASKINGS:
        if rng is None:
            raise ValueError("random masking needs an rng")
        n = max(1, round(MASKINGS[strategy] * len(tokens))) if tokens else 0
        chosen = sorted(rng.sample(range(len(tokens)), n))
    else:
        raise ValueError(f"unknown masking strategy {strategy!r} (choose from {sorted(MASKINGS)})")
    masked = [START, *tokens]
    for i in chosen:
        masked[i + 1] = MASK
    return masked, [i + 1 for i in chosen], [tokens[i] for i in chosen]


# ---------------------------------------------------------------- one video

@dataclass
class VideoCorpus:
    """The result of `process_video`: column lists for the comment and segment tables."""

    video: str
    comments: dict[str, list] = field(default_factory=dict)
    segments: dict[str, list] = field(default_factory=dict)

    @property
    def n_segments(self) -> int:
        return len(self.segments.get("index", []))


COMMENT_COLUMNS = ("video", "segment", "time", "text", "sentiment", "tokens", "emotion_words",
                   "emotion_categories", "emotion_majors", "masked", "mask_positions", "targets")
SEGMENT_COLUMNS = ("video", "index", "start", "end", "count", "sentiment", "n_lexicon", "n_length",
                   "n_chars", "n_kept")
FILTER_STAGES = ("count", "n_lexicon", "n_length", "n_chars", "n_kept")
"""Segment columns holding the comment count before the filters and after each one, in order."""


def process_video(video: str, comments: Comments | Sequence[Comment], duration: float | None,
                  lexicon: Mapping[str, tuple[str, str]], scorer: Callable[[str], float],
                  settings: FilterSettings = FilterSettings(), masking: str = "emotion",
                  seed: int = 0, tokenizer: LexiconTokenizer | None = None,
                  emit: Callable[[dict[str, list]], None] | None = None) -> VideoCorpus:
    """Segment, score, filter and mask one video's comments.

    `lexicon` maps an emotional word to (minor category, major category) ('' when unknown); `duration`
    None means "the last comment's time"; `tokenizer` None means jieba's plain dictionary (`tokenize`),
    a `LexiconTokenizer` keeps the lexicon's words whole. With `emit`, the kept comments' columns are
    handed to it in chunks of at most `EMIT_ROWS` rows (memory stays bounded) and `comments` stays empty.
    The work runs on columns (`Comments`: times in an array, texts read one at a time), never on one
    object per comment."""
    out = VideoCorpus(video, {c: [] for c in COMMENT_COLUMNS}, {c: [] for c in SEGMENT_COLUMNS})
    if not comments:
        return out
    cols = comments if isinstance(comments, Comments) else Comments(comments)
    order = np.argsort(np.frombuffer(cols.times, dtype=np.float64), kind="stable")  # as sorted(key=time)
    times = np.frombuffer(cols.times, dtype=np.float64)[order]
    cs = SortedTexts(cols, order)
    dur = float(times[-1]) if duration is None else float(duration)
    labels = kmeans_1d(times, n_segments(dur, settings.segment_seconds))
    starts, ends = segment_bounds(times, labels, dur)
    k = len(starts)
    cuts: dict[int, list[str]] = {}
    sent, stage = _score_and_filter(cs, times, scorer, lexicon, settings, tokenizer, cuts)
    counts = np.stack([np.bincount(labels[stage >= s], minlength=k) for s in range(len(FILTER_STAGES))])
    seg = out.segments
    seg["video"] = [video] * k
    seg["index"] = list(range(k))
    seg["start"], seg["end"] = starts.tolist(), ends.tolist()
    seg["sentiment"] = (np.bincount(labels, weights=sent, minlength=k) / counts[0]).tolist()
    for s, name in enumerate(FILTER_STAGES):
        seg[name] = counts[s].tolist()
    kept = np.flatnonzero(stage == len(FILTER_STAGES) - 1)
    _add_comments(out, cs, times, kept, labels, sent, lexicon, masking, seed, tokenizer, emit, cuts)
    return out


class SortedTexts(Sequence):
    """The texts of `Comments` in the order `order` (decoded one at a time, on access)."""

    def __init__(self, comments: Comments, order: np.ndarray) -> None:
        self.comments, self.order = comments, order

    def __len__(self) -> int:
        return len(self.order)

    def __getitem__(self, i: int) -> str:
        return self.comments.text(int(self.order[i]))


SCORE_CHUNK = 4096
"""Comments scored and cut per batch in `_score_and_filter` (a batch's texts are held at once)."""
CUT_CACHE = 20_000
"""Cuts of the comments passing the character filter that `_score_and_filter` keeps for `_add_comments` (per
video; beyond, the kept comments are cut again): bounds the memory they hold."""


def _texts_at(texts: Sequence[str]) -> tuple[Callable[[int], str], Callable[[Sequence[int]], list]]:
    """(text of sorted index i, indices -> sorted indices to pass to it): `SortedTexts` read without its hop."""
    if isinstance(texts, SortedTexts):
        order = texts.order
        return texts.comments.text, lambda idx: order[idx].tolist()
    return texts.__getitem__, lambda idx: range(len(texts))[idx] if isinstance(idx, slice) else np.asarray(idx).tolist()


def _cutter(tokenizer: LexiconTokenizer | None) -> Callable[[str], list[str]]:
    """`tokenize` or `tokenizer` as one function of the text (no method hop for a `LexiconTokenizer`)."""
    if tokenizer is not None and type(tokenizer) is not LexiconTokenizer:
        return tokenizer
    import rjieba

    raw = rjieba.cut if tokenizer is None else functools.partial(tokenizer.jieba.cut, hmm=True)
    needs_clean = _NEEDS_CLEAN.search
    return lambda text: clean_cut(raw(text)) if needs_clean(text) else raw(text)


def _score_and_filter(texts: Sequence[str], times: np.ndarray, scorer: Callable[[str], float], lexicon: Mapping,
                      st: FilterSettings, tokenizer: LexiconTokenizer | None,
                      cuts: dict[int, list[str]] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """One pass over the comments (`texts`, sorted by `times`): sentiment, and the filter stage each reaches
    (0 = none passed, 1 = lexicon, 2 = length, 3 = chars, 4 = kept after the repeat check).

    The comments go in batches of `SCORE_CHUNK`: a scorer with `score_many` (`FastSentiment`) scores a
    batch at once; then each comment is cut (`tokenizer`, else jieba's plain dictionary) and filtered, a text
    repeated within the batch only once (its stage depends on the text alone). With `cuts`, the tokens of the
    first `CUT_CACHE` comments reaching stage 3 are put there (index -> tokens) for `_add_comments`; no other
    tokens are kept, so memory does not grow with the tokens of the whole input."""
    cut_text = _cutter(tokenizer)
    text_at, sorted_idx = _texts_at(texts)
    score_many = getattr(scorer, "score_many", None)
    n = len(texts)
    sent = np.empty(n, dtype=np.float64)
    stage = bytearray(n)
    lo, hi = st.min_words, st.max_words
    words = lexicon.keys() if isinstance(lexicon, dict) else frozenset(lexicon)
    allowed = _ALLOWED.fullmatch
    room = CUT_CACHE if cuts is not None else 0
    for a in range(0, n, SCORE_CHUNK):
        chunk = list(map(text_at, sorted_idx(slice(a, a + SCORE_CHUNK))))
        sent[a:a + len(chunk)] = score_many(chunk) if score_many is not None else [scorer(t) for t in chunk]
        seen: dict[str, tuple[int, list[str]]] = {}  # a text's stage and tokens: cut once per batch
        for i, text in enumerate(chunk, a):
            hit = seen.get(text)
            if hit is None:
                toks = cut_text(text)
                if words.isdisjoint(toks):
                    s = 0
                elif not lo <= len(toks) <= hi:
                    s = 1
                else:
                    s = 3 if allowed(text) is not None else 2
                seen[text] = hit = (s, toks)
            s = hit[0]
            if s:
                stage[i] = s
                if s == 3 and room:
                    cuts[i] = hit[1]
                    room -= 1
    stage = np.frombuffer(stage, dtype=np.int8).copy()
    cand = np.flatnonzero(stage == 3)
    keep = dedup_mask(times[cand].tolist(), map(text_at, sorted_idx(cand)), st.dedup_seconds)
    stage[cand[np.asarray(keep, dtype=bool)]] = 4
    return sent, stage


EMIT_ROWS = 10_000
"""Rows per chunk handed to `process_video`'s `emit`."""


def _add_comments(out: VideoCorpus, texts, times, kept, labels, sent, lexicon, masking: str, seed: int,
                  tokenizer: LexiconTokenizer | None, emit: Callable | None,
                  cuts: Mapping[int, list[str]] | None = None) -> None:
    """Append the columns of the `kept` comments (sorted indices) to `out.comments`, or with `emit` hand them
    over in chunks of `EMIT_ROWS` rows. `cuts`: tokens already cut (`_score_and_filter`), by index."""
    text_at, sorted_idx = _texts_at(texts)
    cut_text, cuts = _cutter(tokenizer), cuts or {}
    step = EMIT_ROWS if emit is not None else max(1, len(kept))
    for a in range(0, len(kept), step):
        idx = kept[a:a + step]
        rows = idx.tolist()
        txt = list(map(text_at, sorted_idx(idx)))
        toks = [cuts.get(i) or cut_text(t) for i, t in zip(rows, txt)]
        col = out.comments
        col["video"] += [out.video] * len(rows)
        col["segment"] += labels[idx].tolist()
        col["time"] += times[idx].tolist()
        col["text"] += txt
        col["sentiment"] += sent[idx].tolist()
        col["tokens"] += toks
        if masking == "emotion":
            _emotion_masks(col, toks, lexicon)
        else:
            for i, tk in zip(rows, toks):
                masked, pos, targets = mask_tokens(tk, [t in lexicon for t in tk], masking,
                                                   random.Random(f"{seed}:{out.video}:{i}"))
                col["masked"].append(masked)
                col["mask_positions"].append(pos)
                col["targets"].append(targets)
            col["emotion_words"] += [[t for t in tk if t in lexicon] for tk in toks]
        col["emotion_categories"] += [[lexicon[w][0] for w in ws] for ws in col["emotion_words"][-len(rows):]]
        col["emotion_majors"] += [[lexicon[w][1] for w in ws] for ws in col["emotion_words"][-len(rows):]]
        if emit is not None:
            emit(col)
            out.comments = {c: [] for c in COMMENT_COLUMNS}


def _emotion_masks(col: dict[str, list], toks: list[list[str]], lexicon: Mapping) -> None:
    """`mask_tokens(..., "emotion")` for each token list, with the emotional words (appended to `col`)."""
    words_col, masked_col, pos_col, targets_col = (col[c] for c in ("emotion_words", "masked", "mask_positions",
                                                                      "targets"))
    for tk in toks:
        hit = [t in lexicon for t in tk]
        words = [t for t, h in zip(tk, hit) if h]
        words_col.append(words)
        masked_col.append([START, *[MASK if h else t for t, h in zip(tk, hit)]])
        pos_col.append([p for p, h in enumerate(hit, 1) if h])
        targets_col.append(list(words))
