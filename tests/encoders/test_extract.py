"""The pipeline: known content lands in the right segments of the right modality; resume, shards, bad files."""

import shutil
from dataclasses import replace

import av
import numpy as np
import pytest

from tam.encoders.extract import (
    ExtractOptions,
    decode_threads,
    extract,
    find_videos,
    open_store,
    run_extraction,
    shard_jobs,
)
from tam.encoders.table import TINY, build_encoder
from tam.encoders.video_io import SegmentPolicy
from tam.errors import TamError
from tam.features.store import FeatureStore, Manifest


@pytest.fixture(scope="module")
def encoders():
    return {m: build_encoder(n, random_init=True) for m, n in TINY.items()}


@pytest.fixture(scope="module")
def folder(tmp_path_factory, video_maker):
    d = tmp_path_factory.mktemp("videos")
    (d / "Fear").mkdir()
    video_maker(d / "Fear" / "known.mp4", seconds=4.0, change_at=2.0, tone_at=1.0)
    video_maker(d / "-dash ünï.mkv", seconds=2.0, tone_at=None, codec="mpeg4")
    _audio_only(d / "speech.mp4", seconds=2.5)
    (d / "zero.webm").write_bytes(b"")
    (d / "README.md").write_text("not a video")
    return d


def _audio_only(path, seconds):
    with av.open(str(path), "w", format="mp4") as out:
        s = out.add_stream("aac", rate=16000)
        s.layout = "mono"
        t = np.arange(int(seconds * 16000)) / 16000
        wave = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None]
        for i in range(0, wave.shape[1], 1024):
            f = av.AudioFrame.from_ndarray(np.ascontiguousarray(wave[:, i:i + 1024]), format="fltp", layout="mono")
            f.sample_rate, f.pts = 16000, i
            for p in s.encode(f):
                out.mux(p)
        for p in s.encode():
            out.mux(p)


def _run(folder, root, encoders, stats=None, **kw):
    opts = ExtractOptions(policy=SegmentPolicy(), **kw)
    return run_extraction(find_videos([str(folder)]), str(root), encoders, opts, progress=False, stats=stats)


def _same(a, b) -> bool:
    return np.allclose(a, b, rtol=1e-3, atol=1e-3 * np.abs(a).max())


def test_known_content_lands_in_the_right_segments(folder, tmp_path, encoders):
    stats = {}
    outcomes, text = _run(folder, tmp_path / "s", encoders, stats=stats)
    status = {o.video: o.status for o in outcomes}
    assert status == {"Fear/known": "done", "-dash ünï": "done", "speech": "done", "zero": "failed"}
    assert sum(stats["batches"]) == sum(o.T for o in outcomes) and stats["encode_s"] > 0 and stats["wait_s"] >= 0
    assert "zero.webm: empty file" in text and "NOT real" in text
    store = FeatureStore.open(tmp_path / "s")
    v = store.read("Fear/known")  # red -> blue at 2.0 s, tone from 1.0 s
    assert v.times.tolist() == [[0, 1], [1, 2], [2, 3], [3, 4]] and all(v.present.values())
    for m in ("image", "motion"):
        f = v.features[m]
        assert _same(f[0], f[1]) and _same(f[2], f[3]) and not _same(f[1], f[2]), m
    a = v.features["audio"]
    silent = encoders["audio"].encode(np.full((1, 96, 64), np.log(0.01), np.float32))[0]
    assert _same(a[0], silent) and not _same(a[1], silent) and _same(a[2], a[3])
    assert not _same(a[1], a[0])
    assert v.extra["decode_errors"] == 0 and v.extra["frozen_segments"] == []


def test_missing_modalities_are_marked(folder, tmp_path, encoders):
    _run(folder, tmp_path / "s", encoders)
    store = FeatureStore.open(tmp_path / "s")
    quiet = store.read("-dash ünï")
    assert quiet.present == {"image": True, "motion": True, "audio": False}
    assert np.all(quiet.features["audio"] == 0) and "no audio stream" in " ".join(quiet.extra["notes"])
    speech = store.read("speech")
    assert speech.present == {"image": False, "motion": False, "audio": True}
    assert speech.T == 3 and speech.times[-1, 1] == pytest.approx(2.5, abs=0.1)  # 2 full + a half segment
    assert store.manifest.random_init and store.manifest.dims == {"image": 512, "motion": 2048, "audio": 128}


def test_rerun_resumes_and_skips_finished_videos(folder, tmp_path, encoders):
    _run(folder, tmp_path / "s", encoders)
    store = FeatureStore.open(tmp_path / "s")
    before = store.read("Fear/known").features["image"].copy()
    outcomes, _ = _run(folder, tmp_path / "s", encoders)
    assert {o.video: o.status for o in outcomes if o.status != "failed"} == {
        "Fear/known": "skipped", "-dash ünï": "skipped", "speech": "skipped"}
    from tam.features.store import entry_name

    shutil.rmtree(tmp_path / "s" / "videos" / entry_name("speech"))
    outcomes, _ = _run(folder, tmp_path / "s", encoders)
    assert [o.video for o in outcomes if o.status == "done"] == ["speech"]
    assert np.array_equal(FeatureStore.open(tmp_path / "s").read("Fear/known").features["image"], before)


def test_shards_fill_one_store(folder, tmp_path, encoders):
    jobs = find_videos([str(folder)])
    parts = [shard_jobs(jobs, i, 2) for i in range(2)]
    assert sorted(j.video for p in parts for j in p) == sorted(j.video for j in jobs)
    for p in parts:
        run_extraction(p, str(tmp_path / "s"), encoders, ExtractOptions(), progress=False)
    assert FeatureStore.open(tmp_path / "s").videos() == ["-dash ünï", "Fear/known", "speech"]
    with pytest.raises(TamError, match="shard"):
        shard_jobs(jobs, 2, 2)


class _Dies:
    """An encoder wrapper that is interrupted on its n-th call, as a killed process would be."""

    def __init__(self, inner, n):
        self.inner, self.n, self.calls = inner, n, 0

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def encode(self, batch):
        self.calls += 1
        if self.calls == self.n:
            raise KeyboardInterrupt
        return self.inner.encode(batch)


def test_killed_run_leaves_no_partial_entry(folder, tmp_path, encoders):
    dying = {**encoders, "motion": _Dies(encoders["motion"], 2)}
    jobs = find_videos([str(folder)])
    store = open_store(tmp_path / "s", encoders, SegmentPolicy())
    with pytest.raises(KeyboardInterrupt):
        extract(jobs, store, dying, ExtractOptions(batch=1, chunk=1), progress=False)
    leftovers = [p for p in (tmp_path / "s" / "videos").iterdir() if p.name.startswith(".")]
    assert leftovers == []
    assert len(store.videos()) < 3
    for v in store.videos():  # whatever was written is complete
        assert store.read(v).T >= 1
    written = set(store.videos())
    outcomes = extract(jobs, store, encoders, ExtractOptions(), progress=False)
    assert store.videos() == ["-dash ünï", "Fear/known", "speech"]
    assert {o.video for o in outcomes if o.status == "skipped"} == written  # the re-run resumes


def test_batches_across_videos_give_the_same_features(folder, tmp_path, encoders):
    _run(folder, tmp_path / "a", encoders, batch=64, workers=2)
    _run(folder, tmp_path / "b", encoders, batch=1, chunk=1)
    a, b = FeatureStore.open(tmp_path / "a"), FeatureStore.open(tmp_path / "b")
    for v in a.videos():
        for m in ("image", "motion", "audio"):
            assert np.allclose(a.read(v).features[m], b.read(v).features[m], atol=1e-4), (v, m)


@pytest.mark.parametrize("n_cores, torch_threads, workers, option, expect",
                         [(2, 1, 1, 0, 1), (2, 2, 1, 0, 1), (16, 8, 2, 0, 4), (16, 4, 1, 0, 12), (2, 1, 1, 3, 3)])
def test_decoding_threads_take_the_cores_torch_leaves(monkeypatch, n_cores, torch_threads, workers, option, expect):
    import torch

    import tam.train.threads

    monkeypatch.setattr(tam.train.threads, "cores", lambda: n_cores)
    monkeypatch.setattr(torch, "get_num_threads", lambda: torch_threads)
    assert decode_threads(ExtractOptions(workers=workers, decode_threads=option)) == expect


def test_strict_stops_at_the_first_bad_file(folder, tmp_path, encoders):
    with pytest.raises(TamError, match="zero.webm: empty file.*--strict"):
        _run(folder, tmp_path / "s", encoders, strict=True)


def test_store_refuses_another_segment_policy(folder, tmp_path, encoders):
    open_store(tmp_path / "s", encoders, SegmentPolicy())
    with pytest.raises(TamError, match="cut as"):
        open_store(tmp_path / "s", encoders, SegmentPolicy(fps=25))


def test_store_refuses_other_preprocessing(tmp_path, encoders):
    centred = dict(encoders, audio=build_encoder("vggish-centred", random_init=True))  # the framing before
    open_store(tmp_path / "s", centred, SegmentPolicy())
    with pytest.raises(TamError, match="other encoders"):
        open_store(tmp_path / "s", encoders, SegmentPolicy())
    store = open_store(tmp_path / "t", encoders, SegmentPolicy())
    store.check_matches(store.manifest, "the model")  # what training and evaluation call
    before = Manifest(encoders=dict(store.manifest.encoders), segment=SegmentPolicy(motion="grid").describe())
    with pytest.raises(TamError, match="the model expects"):  # motion clips cut by the old rule
        store.check_matches(before, "the model")
    pixels = {m: replace(e, preprocessing=e.preprocessing.replace("PIL bicubic", "swscale bicubic"))
              for m, e in store.manifest.encoders.items()}
    with pytest.raises(TamError, match="the model expects"):  # another resize
        store.check_matches(Manifest(encoders=pixels, segment=store.manifest.segment), "the model")
    ident = store.manifest.identity()
    assert ident["segment"] == SegmentPolicy().describe() and "native-rate" in ident["segment"]
    assert "reference framing" in ident["audio"][3] and "int(round((side - 112) / 2))" in ident["motion"][3]


def test_video_ids(folder, tmp_path):
    jobs = find_videos([str(folder)])
    assert [j.video for j in jobs] == ["-dash ünï", "Fear/known", "speech", "zero"]
    assert find_videos([str(folder / "Fear" / "known.mp4")])[0].video == "known"
    assert find_videos([str(folder / "Fear" / "known.mp4")], root=str(folder))[0].video == "Fear/known"
    lst = tmp_path / "list.txt"
    lst.write_text(f"# videos\n{folder / 'speech.mp4'}\n\n")
    assert [j.video for j in find_videos([], str(lst))] == ["speech"]
    twin = tmp_path / "twin"
    twin.mkdir()
    (twin / "a.mp4").write_bytes(b"x")
    (twin / "a.mkv").write_bytes(b"x")
    with pytest.raises(TamError, match="--keep-extension"):
        find_videos([str(twin)])
    assert [j.video for j in find_videos([str(twin)], keep_extension=True)] == ["a.mkv", "a.mp4"]


@pytest.mark.slow
def test_real_files_give_features_or_a_named_error(realdata, tmp_path, encoders):
    jobs = find_videos([str(realdata)], keep_extension=True)
    opts = ExtractOptions(policy=SegmentPolicy(fps=4.0), batch=32, workers=2)  # 4 s segments: a faster test
    outcomes, text = run_extraction(jobs, str(tmp_path / "s"), encoders, opts, progress=False)
    failed = {o.path.name: o.error for o in outcomes if o.status == "failed"}
    assert set(failed) == {"doc_medias__result.webm", "mpeg4.mp4", "sample.mkv"}, failed
    for name, error in failed.items():
        assert name in error and "\n" not in error
    store = FeatureStore.open(tmp_path / "s")
    assert len(store.videos()) == len(jobs) - 3
    for o in outcomes:
        if o.status == "done":
            v = store.read(o.video)
            assert v.T >= 1 and all(np.isfinite(f).all() for f in v.features.values())
    assert store.read("pymediainfo/issue55.flv").present["image"] is False  # audio only
    assert store.read("gradio/muted_video_sample.mp4").present["audio"] is False
    assert any("ogg" in n for n in store.read("gradio/playable_but_bad_container.mkv").extra["notes"])
