"""`tam serve`: the service's overhead for one video over predicting it in-process, and a bounded load test.

The world of tests/infer (tiny random-init encoders, a CTM classifier trained on the CPU) and real videos from
../shared/realdata/video (rendered ones without it). Side by side in one run, on one torch thread each:
  - overhead: a `Predictor` loaded once in this process predicts the video (what `tam predict` does per video once
    its model is loaded), against the same video through a warm `tam serve` (1 worker): upload, probe, queue,
    predict, write the result, fetch it (long polling). Medians of `TAM_BENCH_SERVE_REPEATS` (5) alternating runs;
    `cold_cli_predict_s` is one whole `tam predict` process (start, load, predict) for scale.
  - load: `TAM_BENCH_SERVE_CLIENTS` (20) clients send `TAM_BENCH_SERVE_JOBS` (200) jobs on cached features and 20
    uploads of real videos to a server with 2 workers and a queue of 8, so some are refused with 429 and come back
    after Retry-After: jobs lost, answered twice or wrongly, 5xx, latency p50/p95, the server's peak RSS.
"""

from __future__ import annotations

import importlib.util
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _helpers():
    """tests/serve/conftest.py (Server, load, build_world through tests/infer), loaded by path."""
    spec = importlib.util.spec_from_file_location("tam_tests_serve_helpers", HERE.parent / "tests" / "serve" /
                                                  "conftest.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _video(h, world: dict) -> Path:
    real = h.REALDATA / "gradio" / "video_sample.mp4"
    return real if real.is_file() else world["long"]


def _overhead(h, world: dict, root: Path, repeats: int) -> dict:
    import httpx
    import torch

    from tam.infer.pipeline import Predictor

    torch.set_num_threads(1)
    video = _video(h, world)
    predictor = Predictor(world["ctm"], device="cpu")
    predictor.encoders()
    server = h.Server(world["ctm"], root / "one", "--workers", "1").wait_ready()
    local, served = [], []
    try:
        with httpx.Client(base_url=server.url, timeout=120) as c:
            for _ in range(repeats + 1):  # the first of each is a warm-up
                t0 = time.perf_counter()
                (r,) = predictor([video], progress=False, log=lambda s: None)
                local.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                with video.open("rb") as f:
                    job = c.post("/v1/jobs", files={"video": (video.name, f, "video/mp4")}).json()
                h.wait_done(c, job["id"])
                got = c.get(f"/v1/jobs/{job['id']}/result").json()
                served.append(time.perf_counter() - t0)
                assert r["status"] == got["status"] == "ok" and r["label"] == got["label"], (r, got)
    finally:
        server.stop()
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "tam", "predict", str(video), "--model", str(world["ctm"]), "-o",
                    str(root / "cli"), "--no-progress", "--threads", "1", "--device", "cpu"], check=True,
                   capture_output=True)
    cli = time.perf_counter() - t0
    a, b = statistics.median(local[1:]), statistics.median(served[1:])
    return {"video": str(video.name), "video_seconds": r["duration"], "predict_in_process_s": a, "served_s": b,
            "service_overhead": b / a - 1, "cold_cli_predict_s": cli}


def _load(h, world: dict, root: Path, clients: int, n_features: int) -> dict:
    real = [h.REALDATA / p for p in ("gradio/video_sample.mp4", "gradio/video_sample.webm", "auto-editor/testsrc.mkv",
                                     "auto-editor/mov_text.mp4", "imageio/realshort.mp4")]
    real = [p for p in real if p.is_file()] or sorted(world["videos"].glob("*.mp4"))
    specs = [{"json": {"features": "feats", "video": f"v{i % 4}"}, "expect": f"v{i % 4}"} for i in range(n_features)]
    specs += [{"upload": real[i % len(real)], "name": f"real{i}{real[i % len(real)].suffix}", "expect": f"real{i}"}
              for i in range(20)]
    server = h.Server(world["ctm"], root / "load", "--workers", "2", "--queue", "8",
                      "--allow-folder", str(world["root"])).wait_ready()
    try:
        got = h.load(server.url, specs, clients, deadline_s=600)
        rss = server.peak_rss_mb()
    finally:
        server.stop()
    lost = got["submitted"] - got["finished"]
    return {"clients": float(clients), "jobs": float(got["submitted"]), "lost": float(lost),
            "answered_twice": float(got["accepted"] - got["unique_ids"]), "wrong_results": float(got["wrong_results"]),
            "server_errors_5xx": float(got["server_errors"]), "rejected_429": float(got["rejected_429"]),
            "done": float(got["states"].get("done", 0)), "latency_p50_s": got["p50_s"], "latency_p95_s": got["p95_s"],
            "wall_s": got["wall_s"], "peak_rss_mb": rss}


def run() -> dict[str, float | str]:
    h = _helpers()
    repeats = int(os.environ.get("TAM_BENCH_SERVE_REPEATS", "5"))
    clients = int(os.environ.get("TAM_BENCH_SERVE_CLIENTS", "20"))
    n_features = int(os.environ.get("TAM_BENCH_SERVE_JOBS", "200"))
    load_avg = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "world").mkdir()
        world = h.infer_helpers().build_world(root / "world")
        out: dict[str, float | str] = {f"overhead.{k}": v for k, v in _overhead(h, world, root, repeats).items()}
        out.update({f"load.{k}": v for k, v in _load(h, world, root, clients, n_features).items()})
    out["load_average_at_start"] = load_avg
    out["note"] = f"{os.cpu_count()} CPUs; 1 torch thread per process; a shared machine shows in the load average"
    return out


if __name__ == "__main__":
    for k, v in run().items():
        print(f"{k:>36}  {v:.4g}" if isinstance(v, float) else f"{k:>36}  {v}")
