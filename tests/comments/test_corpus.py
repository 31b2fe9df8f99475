"""The batch job `prepare_corpus`: a dead worker never hangs it, size limits, resume."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tam.comments.corpus import prepare_corpus
from tam.errors import TamError

ROOT = Path(__file__).resolve().parents[2]
ROWS = ((1, "我今天很开心"), (1.5, "我今天很开心"), (50, "我真的好难过呀"), (52, "坏"), (90, "我很开心啊"))


def _inputs(tmp_path: Path, n: int) -> tuple[list[Path], Path]:
    folder = tmp_path / "in"
    folder.mkdir()
    files = []
    for i in range(n):
        f = folder / f"s{i:02d}.csv"
        f.write_text("video,time,text\n" + "".join(f"v{i},{t},{x}\n" for t, x in ROWS), encoding="utf-8")
        files.append(f)
    lex = tmp_path / "lex.txt"
    lex.write_text("开心\n难过\n", encoding="utf-8")
    return files, lex


def _kill_first_worker(stop: threading.Event) -> None:
    while not stop.is_set():
        for p in mp.active_children():
            if p.pid:
                os.kill(p.pid, signal.SIGKILL)
                return
        time.sleep(0.005)


def test_killed_worker_fails_in_one_line_and_keeps_done_sources(tmp_path):
    files, lex = _inputs(tmp_path, 6)
    out = tmp_path / "out"
    prepare_corpus(files[:3], out, str(lex), workers=1, progress=False)  # three sources done before
    done = sorted((out / "parts").glob("*.json"))
    assert len(done) == 3
    stop = threading.Event()
    killer = threading.Thread(target=_kill_first_worker, args=(stop,), daemon=True)
    killer.start()
    t0 = time.perf_counter()
    try:
        with pytest.raises(TamError) as e:
            prepare_corpus(files, out, str(lex), workers=2, progress=False)
    finally:
        stop.set()
        killer.join()
    assert time.perf_counter() - t0 < 60
    msg = str(e.value)
    assert "\n" not in msg and "worker process died" in msg and "re-run to resume" in msg
    assert not mp.active_children()  # the pool is stopped
    assert all(p.is_file() for p in done)
    stats = prepare_corpus(files, out, str(lex), workers=1, progress=False)
    assert stats["sources_resumed"] >= 3 and stats["videos"] == 6 and not stats["sources_failed"]


@pytest.mark.slow
def test_unguarded_script_fails_fast_instead_of_hanging(tmp_path):
    files, lex = _inputs(tmp_path, 2)
    script = tmp_path / "unguarded.py"
    script.write_text(
        "import sys\n"
        "from tam.comments.corpus import prepare_corpus\n"
        "from tam.errors import TamError\n"
        "try:\n"
        f"    prepare_corpus({[str(f) for f in files]!r}, {str(tmp_path / 'out')!r}, {str(lex)!r}, workers=2,\n"
        "                   progress=False)\n"
        "except TamError as e:\n"
        "    print(f'error: {e}', file=sys.stderr)\n"
        "    sys.exit(2)\n", encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    r = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=180, env=env)
    assert r.returncode == 2, r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.startswith("error: ")]
    assert len(lines) == 1 and "__main__" in lines[0] and "worker process died" in lines[0]
    assert "needs an `if __name__" in r.stderr  # the worker's own one-line reason
    assert "Traceback" not in r.stderr


def test_guarded_two_workers_matches_one(tmp_path):
    files, lex = _inputs(tmp_path, 3)
    a = prepare_corpus(files, tmp_path / "a", str(lex), workers=1, progress=False)
    b = prepare_corpus(files, tmp_path / "b", str(lex), workers=2, progress=False)
    assert a["filters"] == b["filters"] and a["comments_written"] == b["comments_written"]
    for name in ("comments.parquet", "segments.parquet", "vocab.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    assert json.loads((tmp_path / "b" / "stats.json").read_text())["videos"] == 3


def test_small_sources_go_together_with_the_same_output(tmp_path, monkeypatch):
    """Small sources are one task, their comments scored in one call (`Prescored`); a broken source among them
    fails alone; the output equals one source per task."""
    from tam.comments import corpus
    from tam.comments.formats import discover

    files, lex = _inputs(tmp_path, 4)
    (tmp_path / "in" / "broken.xml").write_text("<i><d p='1,1'>开心", encoding="utf-8")
    assert [len(g) for g in corpus._groups(discover([tmp_path / "in"]))] == [5]
    calls = []
    monkeypatch.setattr(corpus.Prescored, "__init__", lambda self, scorer, texts, init=corpus.Prescored.__init__:
                        calls.append(len(texts)) or init(self, scorer, texts))
    together = prepare_corpus([tmp_path / "in"], tmp_path / "a", str(lex), workers=1, progress=False)
    assert calls == [4 * len(ROWS)] and len(together["sources_failed"]) == 1 and together["videos"] == 4
    monkeypatch.setattr(corpus, "GROUP_BYTES", 1)  # every source alone
    assert [len(g) for g in corpus._groups(discover([tmp_path / "in"]))] == [1] * 5
    alone = prepare_corpus([tmp_path / "in"], tmp_path / "b", str(lex), workers=1, progress=False)
    assert calls == [4 * len(ROWS)] and alone["filters"] == together["filters"]
    for name in ("comments.parquet", "segments.parquet", "vocab.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name


def test_size_limits_cut_and_report(tmp_path, capsys):
    import argparse

    from tam.commands import comments

    files, lex = _inputs(tmp_path, 2)
    with files[0].open("a", encoding="utf-8") as f:
        f.write("v0,60," + "我很开心" * 200 + "\n")  # 800 characters: over 100, under the default 1,000
    big = tmp_path / "in" / "big.xml"
    big.write_text("<i>" + '<d p="1,1,25,1,1,0,u,1">我很开心</d>' * 400 + "</i>", encoding="utf-8")
    p = argparse.ArgumentParser()
    comments.add_arguments(p)
    args = p.parse_args(["prepare", str(tmp_path / "in"), "--lexicon", str(lex), "--out", str(tmp_path / "out"),
                         "--workers", "1", "--no-progress", "--max-comment-chars", "100", "--max-file-mb", "0.01"])
    assert comments.run(args) == 0
    printed = capsys.readouterr().out
    stats = json.loads((tmp_path / "out" / "stats.json").read_text(encoding="utf-8"))
    assert stats["comments_skipped"] == {"too_long": 1} and stats["comments_parsed"] == 10
    assert len(stats["sources_failed"]) == 1 and "big.xml" in stats["sources_failed"][0]
    assert "over the 0.01 MB limit per file" in stats["sources_failed"][0]
    assert "skipped: too_long" in printed and "big.xml" in printed
    assert stats["settings"]["limits"] == {"max_file_mb": 0.01, "max_comment_chars": 100, "max_comments": 5_000_000}
    default = prepare_corpus([tmp_path / "in"], tmp_path / "out2", str(lex), workers=1, progress=False)
    assert default["comments_skipped"] == {} and not default["sources_failed"] and default["videos"] == 3


def test_editing_the_lexicon_redoes_the_parts(tmp_path):
    files, lex = _inputs(tmp_path, 2)
    out = tmp_path / "out"
    first = prepare_corpus(files, out, str(lex), workers=1, progress=False)
    assert prepare_corpus(files, out, str(lex), workers=1, progress=False)["sources_resumed"] == 2
    lex.write_text("开心\n", encoding="utf-8")  # 难过 is no longer an emotional word
    again = prepare_corpus(files, out, str(lex), workers=1, progress=False)
    assert again["sources_resumed"] == 0
    assert again["filters"]["with emotional word"]["all"] < first["filters"]["with emotional word"]["all"]


def test_finalize_in_small_chunks_keeps_exactly_the_selected_comments(tmp_path, monkeypatch):
    """Chunks of 2 rows (a video across chunks, parts together) give the same tables as the default; and
    comments.parquet holds exactly the part rows of the selected segments, a duplicate video counted once."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from tam.comments import corpus

    files, lex = _inputs(tmp_path, 4)
    dup = tmp_path / "in" / "t.csv"  # video v0 again, in a source sorted after s00.csv: a duplicate
    dup.write_text("video,time,text\n" + "".join(f"v0,{t + 5},{x}\n" for t, x in ROWS), encoding="utf-8")
    a = prepare_corpus([tmp_path / "in"], tmp_path / "a", str(lex), n_per_polarity=3, workers=1, progress=False)
    monkeypatch.setattr(corpus, "CHUNK_ROWS", 2)
    b = prepare_corpus([tmp_path / "in"], tmp_path / "b", str(lex), n_per_polarity=3, workers=1, progress=False)
    assert a["duplicate_videos"] == b["duplicate_videos"] and len(a["duplicate_videos"]) == 1
    for name in ("comments.parquet", "segments.parquet"):
        assert pq.read_table(tmp_path / "a" / name).equals(pq.read_table(tmp_path / "b" / name)), name
    assert (tmp_path / "a" / "vocab.json").read_bytes() == (tmp_path / "b" / "vocab.json").read_bytes()
    segs = pq.read_table(tmp_path / "b" / "segments.parquet").to_pylist()
    selected = {(s["video"], s["index"]): s["split"] for s in segs if s["selected"]}
    expected = []
    for f in sorted(files + [dup], key=str):  # the part of each source, in source order; v0 from s00.csv only
        marker = json.loads(next((tmp_path / "b" / "parts").glob(f"{f.stem}-*.json")).read_text())
        rows = pa.ipc.open_file(pa.memory_map(str(tmp_path / "b" / "parts" / f"{marker['key']}.comments.arrow")))
        expected += [{**r, "split": selected[(r["video"], r["segment"])]} for r in rows.read_all().to_pylist()
                     if (r["video"], r["segment"]) in selected and not (f == dup and r["video"] == "v0")]
    got = pq.read_table(tmp_path / "b" / "comments.parquet").drop_columns(["token_ids", "masked_ids", "target_ids"])
    assert got.to_pylist() == expected and len(expected) == b["comments_written"] > 0
    assert not list((tmp_path / "b" / "parts").glob("finalize-*"))  # the spill is removed


def test_lexicon_tables_come_from_the_cache_until_the_file_changes(tmp_path, monkeypatch):
    from tam.comments import corpus, lexicon

    monkeypatch.setenv("TAM_CACHE_DIR", str(tmp_path / "cache"))
    lex = tmp_path / "lex.csv"
    lex.write_text("词语,词性种类,情感分类,强度,极性\n开心,adj,PA,5,1\n难过,adj,NB,5,2\n", encoding="utf-8")
    first = corpus._lexicon_tables(str(lex))
    assert first == corpus._lexicon_tables(str(lex), cache=False) and first[0]["开心"] == ("PA", "乐")
    (cached,) = (tmp_path / "cache").glob("lexicon-*.json")

    def refuse(path):
        raise AssertionError("read the lexicon file although its tables are cached")

    monkeypatch.setattr(lexicon, "load_lexicon", refuse)
    assert corpus._lexicon_tables(str(lex)) == first  # from the cache
    monkeypatch.undo()
    monkeypatch.setenv("TAM_CACHE_DIR", str(tmp_path / "cache"))
    lex.write_text("词语,词性种类,情感分类,强度,极性\n开心,adj,PA,5,1\n", encoding="utf-8")
    assert "难过" not in corpus._lexicon_tables(str(lex))[0]  # new bytes: read again
    cached.write_text("{not json", encoding="utf-8")
    lex.write_text("词语,词性种类,情感分类,强度,极性\n开心,adj,PA,5,1\n难过,adj,NB,5,2\n", encoding="utf-8")
    assert corpus._lexicon_tables(str(lex)) == first  # an unreadable cache file is rebuilt
    monkeypatch.setenv("TAM_CACHE_DIR", str(lex))  # a file, not a folder: the cache cannot be written
    assert corpus._lexicon_tables(str(lex)) == first


def test_tokenizer_edits_come_from_the_cache(tmp_path, monkeypatch):
    from tam.comments import corpus
    from tam.comments.process import LexiconTokenizer

    monkeypatch.setenv("TAM_CACHE_DIR", str(tmp_path / "cache"))
    pos = {"开心": "adj", "难过": "adj", "好开心": "adj", "泪目": None}
    edits = corpus._tokenizer_edits(pos)
    assert edits == LexiconTokenizer(pos).edits and edits
    monkeypatch.setattr(corpus, "LexiconTokenizer", None)  # a cache miss would fail now
    assert corpus._tokenizer_edits(pos) == edits
    assert len(list((tmp_path / "cache").glob("tokenizer-edits-*.json"))) == 1


def test_a_worker_that_cannot_be_started_fails_in_one_line(tmp_path, monkeypatch):
    """The executor's own race (a worker dies while the next is being spawned: "bad value(s) in fds_to_keep"
    from the spawn) ends like a dead worker, not with a traceback; no worker is left behind."""
    from concurrent.futures import ProcessPoolExecutor

    files, lex = _inputs(tmp_path, 4)
    spawn, started = ProcessPoolExecutor._spawn_process, []

    def second_spawn_fails(self):
        started.append(1)
        if len(started) == 2:
            raise ValueError("bad value(s) in fds_to_keep")
        spawn(self)

    monkeypatch.setattr(ProcessPoolExecutor, "_spawn_process", second_spawn_fails)
    with pytest.raises(TamError) as e:
        prepare_corpus(files, tmp_path / "out", str(lex), workers=2, progress=False)
    assert "\n" not in str(e.value) and "worker process died" in str(e.value)
    assert not mp.active_children()


def test_a_corpus_with_no_training_comment_is_warned_about(tmp_path, capsys):
    """Every kept comment held out -> a vocabulary of the special tokens only: warned in the summary and stats.json;
    with training comments, no warning."""
    from tam.comments.corpus import format_summary

    files, lex = _inputs(tmp_path, 2)
    held = prepare_corpus(files, tmp_path / "held", str(lex), workers=1, progress=False, test_fraction=1.0)
    assert held["vocab_size"] == 4 and held["comments_written"] > 0
    assert len(held["warnings"]) == 1 and "only the 4 special tokens" in held["warnings"][0]
    assert json.loads((tmp_path / "held" / "stats.json").read_text())["warnings"] == held["warnings"]
    assert format_summary(held).count("warning: the vocabulary holds only") == 1
    kept = prepare_corpus(files, tmp_path / "kept", str(lex), workers=1, progress=False, test_fraction=0.0)
    assert kept["vocab_size"] > 4 and kept["warnings"] == [] and "warning" not in format_summary(kept)
