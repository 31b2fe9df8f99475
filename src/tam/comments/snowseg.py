"""SnowNLP's Chinese word segmenter, re-implemented with numpy over many texts at once.

SnowNLP segments a Chinese run with a character-based generative model (`snownlp.seg.y09_2047`: tags
b/m/e/s per character, a second-order model interpolating unigram, bigram and trigram counts of
(character, tag) pairs) and a Viterbi search written in pure Python (~1 ms a comment). `SnowSegmenter`
runs the same search for a whole batch of runs at once, one character position at a time, on the same
counts: per position, the score of every (tag two back, previous tag, tag) triple is
log(l1 * P(c, t) + l2 * n(prev, cur) / n(prev) + l3 * n(prev2, prev, cur) / n(prev2, prev)), the same
terms as SnowNLP's `log_prob`, summed in the same order. SnowNLP's quirks are kept: a character it has
never seen adds nothing and keeps, for each state, the last candidate in its iteration order; ties go
to the first candidate in that order (SnowNLP's `>` and `max`). The words equal `snownlp.seg.seg` on the
real comments (tested); the only possible difference is numpy's `log` against `math.log` (last bit).

The model (SnowNLP's `seg.marshal.3`, 13 MB, ~4.5 s to unmarshal) is converted once into sparse arrays
and kept in a cache folder of `.npy` files (`tam.io.cached_arrays` in `cache_dir()`, ~54 MB, keyed by the model
file's path, size and modification time, the format and Python's Unicode version; mapped, not read, so loading
takes milliseconds and the corpus workers share the pages; a cache of an older format is left in place).
SnowNLP's code is never called; its installed model file is read.
"""

from __future__ import annotations

import gzip
import marshal
import re
import unicodedata
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from tam.io import cached_arrays, file_tag

ZH_RUN = re.compile("([\u4e00-\u9fa5]+)")
"""SnowNLP's definition of a Chinese run (`snownlp.seg.re_zh`)."""

_TAGS = ("b", "m", "e", "s")
_CACHE_FORMAT = "snowseg-4"


def _convert(model_file: Path) -> dict[str, np.ndarray]:
    """SnowNLP's counts as arrays: characters, unigram terms, and the bigram and trigram terms as sparse
    rows keyed by character ids (BOS = id n_chars, tag 0)."""
    with gzip.open(model_file, "rb") as f:
        d = marshal.loads(f.read())
    if tuple(d["status"]) != _TAGS:
        raise ValueError(f"{model_file}: unexpected tags {d['status']!r}")
    l1, l2, l3 = d["l1"], d["l2"], d["l3"]
    uni, bi, tri = d["uni"]["d"], d["bi"]["d"], d["tri"]["d"]
    total = d["uni"]["total"]
    tag = {t: i for i, t in enumerate(_TAGS)}
    tag["BOS"] = 0
    chars = sorted({c for c, _ in uni if c})
    cid = {c: i for i, c in enumerate(chars)}
    bos = len(chars)
    cid[""] = bos
    n = bos + 1
    unit = np.zeros((n, 4))
    for (c, t), v in uni.items():
        if c:
            unit[cid[c], tag[t]] = l1 * (float(v) / total)  # SnowNLP: l1 * uni.freq(s3)

    def sparse(items):
        keys, codes, vals = [], [], []
        for key, _, code, v in items:
            keys.append(key)
            codes.append(code)
            vals.append(v)
        keys, codes, vals = np.array(keys, np.int64), np.array(codes, np.int8), np.array(vals)
        order = np.lexsort((codes, keys))
        keys, codes, vals = keys[order], codes[order], vals[order]
        ukeys, starts = np.unique(keys, return_index=True)
        return ukeys, np.append(starts, len(keys)).astype(np.int32), codes, vals

    def bi_items():
        for (a, b), v in bi.items():
            if b[0] and a[0] in cid and b[0] in cid:  # (BOS, BOS) is only a denominator
                yield (cid[a[0]] * n + cid[b[0]], None, tag[a[1]] * 4 + tag[b[1]],
                       float(l2 * v) / uni[a])  # SnowNLP: div(l2 * bi(s2, s3), uni(s2))

    def tri_items():
        for (a, b, c), v in tri.items():
            if a[0] in cid and b[0] in cid and c[0] in cid:
                yield ((cid[a[0]] * n + cid[b[0]]) * n + cid[c[0]], None, (tag[a[1]] * 4 + tag[b[1]]) * 4 + tag[c[1]],
                       float(l3 * v) / bi[(a, b)])  # SnowNLP: div(l3 * tri(s1, s2, s3), bi(s1, s2))

    bk, bp, bc, bv = sparse(bi_items())
    tk, tp, tc, tv = sparse(tri_items())
    (bhk, bhi), (thk, thi) = _hash_table(bk), _hash_table(tk)
    return {"chars": np.array(["".join(chars)]), "uni": unit, "bi_hkeys": bhk, "bi_hidx": bhi, "bi_ptr": bp,
            "bi_codes": bc, "bi_vals": bv, "tri_hkeys": thk, "tri_hidx": thi, "tri_ptr": tp, "tri_codes": tc,
            "tri_vals": tv}


_MULT = np.uint64(0x9E3779B97F4A7C15)


def _slots(keys: np.ndarray, bits: int) -> np.ndarray:
    """Multiplicative hashing of non-negative int64 keys to `bits`-bit slots."""
    return (keys.astype(np.uint64) * _MULT >> np.uint64(64 - bits)).astype(np.int64)


def _hash_table(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """An open-addressing (linear probing) table of distinct non-negative `keys`, load <= 1/2: the key in
    each slot (int64, -1: empty) and its index in `keys` (int32)."""
    bits = max(4, int(np.ceil(np.log2(2 * len(keys) + 1))))
    size = 1 << bits
    table, index = np.full(size, -1, dtype=np.int64), np.full(size, -1, dtype=np.int32)
    pending, slot = np.arange(len(keys)), _slots(keys, bits)
    while len(pending):
        free = table[slot] == -1
        slots, first = np.unique(slot[free], return_index=True)  # one key per free slot at a time
        placed = pending[free][first]
        table[slots], index[slots] = keys[placed], placed
        left = np.ones(len(pending), dtype=bool)
        left[np.flatnonzero(free)[first]] = False
        pending, slot = pending[left], (slot[left] + 1) & (size - 1)
    return table, index


def _hash_find(table: tuple[np.ndarray, np.ndarray], keys: np.ndarray) -> np.ndarray:
    """Index of each of `keys` (non-negative) in the table's key list, -1 when absent."""
    slots, index = table
    mask = len(slots) - 1
    slot = _slots(keys, len(slots).bit_length() - 1)
    out = np.full(len(keys), -1, dtype=np.int64)
    idx = np.arange(len(keys))
    while len(idx) > 16:
        found = slots[slot]
        hit = found == keys[idx]
        out[idx[hit]] = index[slot[hit]]
        go = ~hit & (found != -1)  # probe on: the slot holds another key
        idx, slot = idx[go], (slot[go] + 1) & mask
    for i, s in zip(idx.tolist(), slot.tolist()):  # the few long probes, one at a time
        key = int(keys[i])
        while (k := int(slots[s])) != -1:
            if k == key:
                out[i] = index[s]
                break
            s = (s + 1) & mask
    return out


def _before(a: np.ndarray, first) -> np.ndarray:
    """The element before each element of `a` (`first` for the first one)."""
    out = np.empty_like(a)
    out[0], out[1:] = first, a[:-1]
    return out


def _after(a: np.ndarray, last) -> np.ndarray:
    """The element after each element of `a` (`last` for the last one)."""
    out = np.empty_like(a)
    out[:-1], out[-1] = a[1:], last
    return out


def load_model(model_file: Path) -> dict[str, np.ndarray]:
    """The converted model, with the segmenter's lookup tables (`_lookups`), from the cache when it is there
    (else converted and cached): `tam.io.cached_arrays`, memory-mapped, so the corpus workers share it."""
    tag = file_tag(f"{_CACHE_FORMAT}:{unicodedata.unidata_version}", model_file)
    return cached_arrays("snownlp-seg", tag, lambda: _lookups(_convert(model_file)))


def _lookups(model: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """`model` with `lut` (code point - 0x4E00 of a Chinese character -> its id; len(chars) + 1 when unseen)
    and `space` (`str.isspace` of each BMP code point, as `str.split` cuts)."""
    chars = str(model["chars"][0])
    lut = np.full(0x9FA6 - 0x4E00, len(chars) + 1, dtype=np.int64)
    cps = np.array([ord(c) for c in chars], dtype=np.int64)
    zh = (cps >= 0x4E00) & (cps <= 0x9FA5)
    lut[cps[zh] - 0x4E00] = np.flatnonzero(zh)
    return {**model, "lut": lut, "space": np.array([chr(i).isspace() for i in range(0x10000)])}


class SnowSegmenter:
    """`snownlp.seg.seg` for many texts at once (see the module docstring)."""

    def __init__(self, model_file: Path) -> None:
        m = load_model(model_file)
        self.n = len(str(m["chars"][0])) + 1
        self.bos = self.n - 1
        self.space = m["space"]  # str.split's whitespace (BMP only)
        self.uni16 = np.tile(m["uni"], (1, 4))  # [id, tag t-1 * 4 + tag t]: the unigram term
        self.lut = m["lut"]  # code point - 0x4E00 -> id (n: unseen)
        self.bi = ((m["bi_hkeys"], m["bi_hidx"]), m["bi_ptr"], m["bi_codes"], m["bi_vals"])
        self.tri = ((m["tri_hkeys"], m["tri_hidx"]), m["tri_ptr"], m["tri_codes"], m["tri_vals"])

    def seg(self, text: str) -> list[str]:
        """`snownlp.seg.seg(text)` (one text: slow, use `seg_many` or `words_flat` for many)."""
        return self.seg_many([text])[0]

    def seg_many(self, texts: Sequence[str]) -> list[list[str]]:
        """`snownlp.seg.seg` of each text: Chinese runs segmented by the model, other text split on whitespace."""
        words, text_of = self.words_flat(texts)
        bounds = np.searchsorted(text_of, np.arange(len(texts) + 1)).tolist()
        return [words[a:b] for a, b in zip(bounds, bounds[1:])]

    def words_flat(self, texts: Sequence[str]) -> tuple[list[str], np.ndarray]:
        """The words of all `texts` in order (`snownlp.seg.seg` of each) and the index of each word's text."""
        big, _, starts, ends, text_of = self.spans(texts)
        return [big[a:b] for a, b in zip(starts.tolist(), ends.tolist())], text_of

    def spans(self, texts: Sequence[str]) -> tuple[str, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The words of all `texts` as spans of their concatenation: (the concatenation, its code points,
        each word's start and end, each word's text).

        Vectorised over the code points of all texts: Chinese runs (`ZH_RUN`) are tagged by `tag_runs` and
        cut where SnowNLP's `Seg.seg` cuts (a word starts at tag b or s and after tag e); the rest is cut
        into maximal runs of non-whitespace (`str.split`)."""
        lens = np.fromiter(map(len, texts), np.int64, len(texts))
        big = "".join(texts)
        cps = np.frombuffer(big.encode("utf-32-le", "surrogatepass"), np.uint32).astype(np.int64)
        if not len(cps):
            none = np.zeros(0, dtype=np.int64)
            return big, cps, none, none, none
        first = np.cumsum(lens) - lens
        new_text = np.zeros(len(cps), dtype=bool)
        new_text[first[lens > 0]] = True
        zh = (cps >= 0x4E00) & (cps <= 0x9FA5)
        space = (cps <= 0xFFFF) & self.space[np.minimum(cps, 0xFFFF)]
        other = ~zh & ~space
        run_start = zh & (new_text | ~_before(zh, False))
        start = (other & (new_text | ~_before(other, False))) | run_start
        if zh.any():
            run_lens = np.bincount(np.cumsum(run_start)[zh] - 1)
            tags = np.full(len(cps), -1, dtype=np.int8)
            tags[zh] = self.tag_runs(cps[zh], run_lens)
            start |= zh & ((tags == 0) | (tags == 3) | (_before(tags, -1) == 2))
        word = ~space
        end = word & (_after(start, True) | ~_after(word, False) | _after(new_text, True))
        starts, ends = np.flatnonzero(start), np.flatnonzero(end) + 1
        return big, cps, starts, ends, np.searchsorted(first, starts, side="right") - 1

    def tag_runs(self, cps: np.ndarray, lens: np.ndarray) -> np.ndarray:
        """The tag (0..3 = b, m, e, s) of each character of the runs `cps` (code points, run after run, of the
        given lengths): SnowNLP's `tag`, batched."""
        order = np.argsort(-lens, kind="stable")
        slen = lens[order]
        width, n_runs = int(slen[0]), len(lens)
        start = np.cumsum(lens) - lens
        # position of each character in the (run by length, position) grid
        rank = np.empty(n_runs, dtype=np.int64)
        rank[order] = np.arange(n_runs)
        rows_of_chars = np.repeat(rank, lens)
        cols = np.arange(len(cps)) - np.repeat(start, lens)
        active = np.searchsorted(-slen, -np.arange(width), side="left")  # runs longer than t: a prefix
        off = np.concatenate([[0], np.cumsum(active)])  # position t's runs are cells off[t]..off[t+1]
        # every cell (position t, run), position by position: the n-gram terms do not depend on the search
        t_of = np.repeat(np.arange(width), active)
        run_of = np.arange(len(cps)) - off[t_of]
        char = start[order][run_of] + t_of
        ids = self.lut[cps - 0x4E00]
        c2 = ids[char]
        c1 = np.where(t_of >= 1, ids[np.maximum(char - 1, 0)], self.bos)  # BOS before a run's first two characters
        c0 = np.where(t_of >= 2, ids[np.maximum(char - 2, 0)], self.bos)
        lg, (cell, codes, vals) = self._terms(c0, c1, c2)
        bc = codes % 16
        with np.errstate(divide="ignore"):
            tri = np.log(lg[cell, bc] + vals)  # log(uni + bi + tri) where a trigram exists
            np.log(lg, out=lg)  # log(uni + bi): -inf where both are 0
        early = t_of[cell] < 2  # positions 0 and 1: tag t-2 is BOS, one candidate per state
        lg[cell[early], bc[early]] = tri[early]
        late = ~early
        cell, a, bc, tri = cell[late], (codes[late] // 16).astype(np.intp), bc[late].astype(np.intp), tri[late]
        at = np.searchsorted(cell, off).tolist()  # position t's trigram entries: at[t]..at[t+1]
        unseen = c2 >= self.n
        lost_at = (np.bincount(t_of[unseen], minlength=width) > 0).tolist()
        lost_cell = np.flatnonzero(unseen)
        lost_run = lost_cell - off[t_of[lost_cell]]
        lost_from = np.searchsorted(lost_cell, off).tolist()  # position t's unseen characters
        state = np.full((n_runs, 4, 4), -np.inf)  # [run, tag t-1, tag t]; at t = 0 only tag t-1 = 0 (BOS)
        # steps t >= 2: the candidates [tag t-2, run, tag t-1 * 4 + tag t], the trigram terms put in at flat
        # indices (tag t-2, run, tag t-1 * 4 + tag t), from the state at (run, tag t-2, tag t-1)
        by_a, flat_state = state.transpose(1, 0, 2), state.reshape(-1)
        run = cell - off[t_of[cell]]
        put_at = (a * active[t_of[cell]] + run) * 16 + bc
        take_at = run * 16 + a * 4 + bc // 4
        back = [None, None]
        for t, (r, o) in enumerate(zip(active.tolist(), off.tolist())):
            lgt = lg[o:o + r]
            lost = unseen[o:o + r] if lost_at[t] else None  # an unseen character: no score
            if t == 0:
                state[:r, 0] = lgt[:, :4] if lost is None else np.where(lost[:, None], 0.0, lgt[:, :4])
                continue
            if t == 1:
                prev = state[:r, 0]  # [run, tag t-1]
                new = prev[:, :, None] + lgt.reshape(r, 4, 4)
                if lost is not None:
                    new[lost] = prev[lost][:, :, None]
                state[:r] = new
                continue
            c = np.repeat(by_a[:, :r], 4, axis=2)  # [tag t-2, run, tag t-1 * 4 + tag t]
            c += lgt
            if at[t + 1] > at[t]:
                e = slice(at[t], at[t + 1])
                c.reshape(-1)[put_at[e]] = flat_state[take_at[e]] + tri[e]
            c = c.reshape(4, r, 4, 4)
            if lost is not None:  # SnowNLP keeps the last candidate: tag t-2 = s
                lost = lost_run[lost_from[t]:lost_from[t + 1]]
                kept = state[lost, 3, :, None]
            # the best tag t-2, the first on ties (SnowNLP's `>`), and the new state's score
            best = (c[1] > c[0]).view(np.int8)
            val = np.maximum(c[0], c[1])
            np.copyto(best, 2, where=c[2] > val)
            np.maximum(val, c[2], out=val)
            np.copyto(best, 3, where=c[3] > val)
            np.maximum(val, c[3], out=state[:r])
            if lost is not None:
                state[lost] = kept
                best[lost] = 3
            back.append(best.reshape(r, 16))
        return self._backtrack(state, back, slen)[cols, rows_of_chars]

    def _terms(self, c0: np.ndarray, c1: np.ndarray, c2: np.ndarray):
        """Per cell: uni + bi terms [cell, tag t-1 * 4 + tag t], and the trigram terms as sparse
        (cell, tag t-2 * 16 + tag t-1 * 4 + tag t, value). An unseen character (id n) has no n-grams."""
        n = self.n
        s16 = self.uni16[np.minimum(c2, n - 1)]
        ok = (c1 < n) & (c2 < n)
        rows, codes, vals = self._lookup(self.bi, c1 * n + c2, ok)
        s16[rows, codes] += vals
        ok &= c0 < n
        return s16, self._lookup(self.tri, (c0 * n + c1) * n + c2, ok)

    @staticmethod
    def _lookup(table, keys: np.ndarray, ok: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The sparse entries (run, tag code, value) of `keys[ok]` in a bigram or trigram table."""
        hashed, ptr, codes, vals = table
        q = np.flatnonzero(ok)
        found = _hash_find(hashed, keys[q])
        run, pos = q[found >= 0], found[found >= 0]
        lo = ptr[pos]
        counts = ptr[pos + 1] - lo
        idx = np.arange(int(counts.sum())) + np.repeat(lo - (np.cumsum(counts) - counts), counts)
        return np.repeat(run, counts), codes[idx], vals[idx]

    @staticmethod
    def _backtrack(state: np.ndarray, back: list, lens: np.ndarray) -> np.ndarray:
        """Tags [position, run] (runs sorted by length, longest first) from the final states and back-pointers."""
        n, width = len(lens), int(lens[0])
        tags = np.zeros((width, n), dtype=np.int8)
        runs = np.arange(n)
        # final state: the first maximum in SnowNLP's order (tag major, previous tag minor)
        flat = np.argmax(state.transpose(0, 2, 1).reshape(n, 16), axis=1)
        two = lens >= 2
        tags[lens - 1, runs] = flat // 4
        tags[lens[two] - 2, runs[two]] = flat[two] % 4
        one = ~two
        tags[0, one] = np.argmax(state[one, 0, :], axis=1)
        active = np.searchsorted(-lens, -np.arange(width), side="left").tolist()  # runs longer than t
        for t in range(width - 1, 1, -1):  # step back: the tag two back of (tag t-1, tag t)
            r = active[t]
            tags[t - 2, :r] = back[t][runs[:r], tags[t - 1, :r] * 4 + tags[t, :r]]
        return tags
