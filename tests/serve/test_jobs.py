"""The job store and the runner without a server: records on disk, restart recovery, expiry, the bounded queue."""

from __future__ import annotations

import json
import threading
import time

import pytest

from tam.serve.jobs import Job, JobStore, QueueFull, Runner


def test_recover_marks_cut_off_jobs_and_drops_half_made_folders(tmp_path):
    store = JobStore(tmp_path)
    done, running, queued = store.new(name="a.mp4"), store.new(name="b.mp4"), store.new(name="c.mp4")
    done.state, running.state = "done", "running"
    for job in (done, running, queued):
        store.add(job)
    half = store.new()  # an upload cut off before its record was written
    again = JobStore(tmp_path)
    assert sorted(again.recover()) == sorted([running.id, queued.id])
    assert again.get(done.id).state == "done" and again.get(done.id).error == ""
    for job in (running, queued):
        got = again.get(job.id)
        assert got.state == "interrupted" and got.finished > 0 and "submit it again" in got.error
        assert json.loads((tmp_path / "jobs" / job.id / "job.json").read_text())["state"] == "interrupted"
    assert not (tmp_path / "jobs" / half.id).exists() and again.get(half.id) is None


def test_expire_deletes_only_old_finished_jobs(tmp_path):
    store = JobStore(tmp_path)
    old, fresh, waiting = store.new(), store.new(), store.new()
    old.state, old.finished = "done", time.time() - 7200
    fresh.state, fresh.finished = "failed", time.time() - 60
    waiting.created = time.time() - 7200  # queued for long: never expired
    for job in (old, fresh, waiting):
        store.add(job)
    assert store.expire(3600) == 1
    assert store.get(old.id) is None and not (tmp_path / "jobs" / old.id).exists()
    assert store.get(fresh.id) and store.get(waiting.id)
    assert store.counts() == {"queued": 1, "running": 0, "done": 0, "failed": 1, "interrupted": 0}


@pytest.mark.parametrize("bad", ["../x", "0" * 31, "0" * 32 + "/..", "G" * 32])
def test_only_our_ids_reach_the_file_system(tmp_path, bad):
    store = JobStore(tmp_path)
    assert store.get(bad) is None
    with pytest.raises(ValueError):
        store.folder(bad)


def test_runner_queue_is_bounded_and_every_job_runs_once(tmp_path):
    gate, ran = threading.Event(), []

    def work(job: Job) -> None:
        gate.wait(10)
        ran.append(job.id)

    runner = Runner(work, workers=1, limit=2)
    runner.start()
    jobs = [Job(id=f"{i:032x}") for i in range(4)]
    runner.submit(jobs[0])
    while not runner.queue.empty():  # the worker holds job 0
        time.sleep(0.01)
    runner.submit(jobs[1])
    runner.submit(jobs[2])
    with pytest.raises(QueueFull):
        runner.submit(jobs[3])
    gate.set()
    end = time.monotonic() + 10
    while len(ran) < 3 and time.monotonic() < end:
        time.sleep(0.01)
    runner.stop()
    for t in runner.threads:
        t.join(10)
    assert sorted(ran) == sorted(j.id for j in jobs[:3]) and runner.retry_after() >= 1


def test_a_started_service_expires_old_jobs_at_start_and_then_as_they_age(tmp_path):
    from tam.serve.options import ServeOptions
    from tam.serve.service import Service

    store = JobStore(tmp_path)
    old, recent = store.new(), store.new()
    old.state, old.finished = "done", time.time() - 3600
    recent.state, recent.finished = "done", time.time()
    for job in (old, recent):
        store.add(job)
    svc = Service(ServeOptions(model="unused", state=tmp_path, expire_hours=2.0 / 3600), predictor=None)
    svc.start()
    try:
        assert svc.store.get(old.id) is None and svc.store.get(recent.id) is not None  # at start: 2 s old at most
        end = time.monotonic() + 10
        while svc.store.get(recent.id) is not None and time.monotonic() < end:
            time.sleep(0.05)
        assert svc.store.get(recent.id) is None and not (tmp_path / "jobs" / recent.id).exists()
    finally:
        svc.stop()
