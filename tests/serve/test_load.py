"""A bounded load test on the main server: clients submitting feature-store jobs and real videos at once; no job
lost, none answered twice or with another job's result, no 5xx (the full-size run is bench/bench_serve.py)."""

from __future__ import annotations

import pytest

REAL = ["gradio/video_sample.mp4", "gradio/video_sample.webm", "auto-editor/testsrc.mkv", "auto-editor/mov_text.mp4"]


def specs(world: dict, realdata, n_features: int) -> list[dict]:
    """`n_features` jobs on the world's cached features, then one upload per real video (rendered ones without
    ../shared); each names the video id its result must carry."""
    out = [{"json": {"features": "feats", "video": f"v{i % 4}"}, "expect": f"v{i % 4}"} for i in range(n_features)]
    files = [realdata / r for r in REAL] if realdata.is_dir() else sorted(world["videos"].glob("*.mp4"))
    out += [{"upload": p, "name": f"real{i}{p.suffix}", "expect": f"real{i}"} for i, p in enumerate(files)]
    return out


@pytest.mark.slow
def test_no_job_lost_or_answered_twice(server, world, load_test, realdata_root):
    jobs = specs(world, realdata_root, 40)
    got = load_test(server.url, jobs, clients=8, deadline_s=120)
    assert got["server_errors"] == 0 and got["other_refusals"] == 0 and got["wrong_results"] == 0, got
    assert got["accepted"] == got["unique_ids"] == got["finished"] == len(jobs), got
    assert got["states"] == {"done": len(jobs)}, got
    assert server.peak_rss_mb() < 4096
