"""Fixtures for the service tests: tests/infer's world (tiny trained models), real `tam serve` processes on loopback
ports, and a bounded load generator (bench/bench_serve.py loads this file by path to reuse both)."""

from __future__ import annotations

import importlib.util
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

HERE = Path(__file__).resolve().parent
REALDATA = HERE.parents[1] / ".." / "shared" / "realdata" / "video"
LOOPBACK = "127.0.0.1"  # every server and every request of these tests stays on this machine


def infer_helpers():
    """tests/infer/conftest.py (build_world, make_video), loaded by path: conftests are not importable modules."""
    spec = importlib.util.spec_from_file_location("tam_tests_infer_helpers", HERE.parent / "infer" / "conftest.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def free_port() -> int:
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


def listening(pid: int, port: int) -> bool:
    """Whether process `pid` holds the listening socket of LOOPBACK:`port` (not another test's process, which took
    the same free port first: pytest-xdist workers and Ray clusters pick ports at the same time). Linux /proc."""
    try:
        rows = [r.split() for r in Path("/proc/net/tcp").read_text().splitlines()[1:]]
        ours = {f"socket:[{r[9]}]" for r in rows if r[1] == f"0100007F:{port:04X}" and r[3] == "0A"}
        return any(os.readlink(fd) in ours for fd in Path(f"/proc/{pid}/fd").iterdir())
    except OSError:
        return not Path("/proc/net/tcp").exists()


class Server:
    """`tam serve` in a child process on a free loopback port (another one when that port was taken before the
    server bound it); `kill()` is kill -9."""

    def __init__(self, model: Path, state: Path, *options: str, log: Path | None = None):
        self.state, self.log, self.starts = state, log or state.with_name(state.name + ".log"), 0
        self.args = ["--model", str(model), "--host", LOOPBACK, "--state", str(state), "--threads", "1", *options]
        self._start()

    def _start(self) -> None:
        self.port, self.starts = free_port(), self.starts + 1
        self.url = f"http://{LOOPBACK}:{self.port}"
        self.proc = subprocess.Popen([sys.executable, "-m", "tam", "serve", "--port", str(self.port), *self.args],
                                     stdout=self.log.open("wb"), stderr=subprocess.STDOUT)

    def wait_ready(self, timeout: float = 180.0) -> Server:
        import httpx

        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                if "address already in use" in self.log.read_text() and self.starts < 3:
                    self._start()
                    continue
                raise RuntimeError(f"tam serve exited {self.proc.returncode}: {self.log.read_text()[-2000:]}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200 and listening(self.proc.pid,
                                                                                                 self.port):
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"tam serve not ready after {timeout} s: {self.log.read_text()[-2000:]}")

    def peak_rss_mb(self) -> float:
        """The server's peak resident memory (VmHWM), MB."""
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()


def wait_done(client, job_id: str, timeout: float = 60.0) -> dict:
    """Follow a job (long polls of up to 10 s) until it is finished: done, failed or interrupted."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        job = client.get(f"/v1/jobs/{job_id}", params={"wait": min(10.0, max(0.0, end - time.monotonic()))}).json()
        if job["state"] in ("done", "failed", "interrupted"):
            return job
    raise TimeoutError(f"job {job_id} not finished after {timeout} s")


def submit(client, spec: dict):
    """POST one job: spec {"upload": path, "name": name} or {"json": body}; returns the response."""
    if "upload" in spec:
        with open(spec["upload"], "rb") as f:
            return client.post("/v1/jobs", files={"video": (spec["name"], f, "video/mp4")})
    return client.post("/v1/jobs", json=spec["json"])


def load(url: str, specs: list[dict], clients: int, deadline_s: float = 300.0) -> dict:
    """`clients` threads submit every spec (backing off on 429 as Retry-After says, at most 1 s), follow each job
    to its end and fetch its result once. Bounded: stops at `deadline_s`. Each spec's `expect` is the video id
    its result must name (a mixed-up or doubled answer shows there)."""
    import httpx

    todo, lock = list(enumerate(specs)), threading.Lock()
    out = {"ids": [], "latency": [], "states": {}, "429": 0, "5xx": 0, "wrong": 0, "other": []}
    end = time.monotonic() + deadline_s

    def one(client, spec) -> None:
        t0 = time.monotonic()
        while time.monotonic() < end:
            r = submit(client, spec)
            if r.status_code != 429:
                break
            with lock:
                out["429"] += 1
            time.sleep(min(1.0, float(r.headers["Retry-After"])) * random.uniform(0.3, 1.0))
        if r.status_code != 202:
            with lock:
                if r.status_code >= 500:
                    out["5xx"] += 1
                else:
                    out["other"].append(r.status_code)
            return
        job = wait_done(client, r.json()["id"], max(1.0, end - time.monotonic()))
        result = client.get(f"/v1/jobs/{job['id']}/result").json() if job["state"] == "done" else {}
        with lock:
            out["ids"].append(job["id"])
            out["latency"].append(time.monotonic() - t0)
            out["states"][job["state"]] = out["states"].get(job["state"], 0) + 1
            out["wrong"] += job["state"] == "done" and result.get("video") != spec["expect"]

    def client_loop() -> None:
        with httpx.Client(base_url=url, timeout=60) as client:
            while True:
                with lock:
                    if not todo:
                        return
                    _, spec = todo.pop()
                one(client, spec)

    t0 = time.monotonic()
    threads = [threading.Thread(target=client_loop) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(deadline_s + 60)
    lat = sorted(out["latency"])
    return {"submitted": len(specs), "accepted": len(out["ids"]), "unique_ids": len(set(out["ids"])),
            "finished": sum(out["states"].values()), "states": out["states"], "rejected_429": out["429"],
            "server_errors": out["5xx"], "other_refusals": len(out["other"]), "wrong_results": out["wrong"],
            "p50_s": statistics.median(lat) if lat else float("nan"),
            "p95_s": lat[min(len(lat) - 1, int(0.95 * len(lat)))] if lat else float("nan"),
            "wall_s": time.monotonic() - t0}


# ---- fixtures -----------------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def world(tmp_path_factory) -> dict:
    """tests/infer's world: videos, their tiny-encoder store, a CTM classifier (and a concat regressor)."""
    return infer_helpers().build_world(tmp_path_factory.mktemp("serve-world"))


@pytest.fixture(scope="session")
def servers(world, tmp_path_factory) -> dict:
    """Both servers of the suite, started together (their start-ups overlap):
    main: 2 workers, a queue of 64, server paths allowed under the world's folder;
    guarded: bearer tokens, 1 worker, a queue of 1, a 1 MB upload cap (test_limits kills and restarts it)."""
    root = tmp_path_factory.mktemp("servers")
    tokens = root / "tokens.txt"
    tokens.write_text("# operators\nsecret-1\n\nsecret-2\n")
    guarded = ("--token-file", str(tokens), "--workers", "1", "--queue", "1", "--max-upload-mb", "1")
    box = {"main": Server(world["ctm"], root / "main", "--workers", "2", "--queue", "64",
                          "--allow-folder", str(world["root"])),
           "guarded": Server(world["ctm"], root / "guarded", *guarded), "guarded_options": guarded}
    try:
        yield box
    finally:
        for key in ("main", "guarded"):
            box[key].stop()


@pytest.fixture(scope="session")
def server(servers) -> Server:
    return servers["main"].wait_ready()


@pytest.fixture
def client(server):
    import httpx

    with httpx.Client(base_url=server.url, timeout=60) as c:
        yield c


@pytest.fixture(scope="session")
def wait():
    """`wait_done(client, job_id, timeout=60)`: see its docstring."""
    return wait_done


@pytest.fixture(scope="session")
def serving():
    """`Server(model, state, *options)`: a `tam serve` child process (see the class)."""
    return Server


@pytest.fixture(scope="session")
def load_test():
    """`load(url, specs, clients, deadline_s=300)`: see its docstring."""
    return load


@pytest.fixture(scope="session")
def realdata_root() -> Path:
    """../shared/realdata/video (it may be absent: callers fall back to rendered videos)."""
    return REALDATA
