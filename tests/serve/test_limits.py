"""Limits of a real server: bearer tokens, the upload cap, the bounded queue, kill -9 and restart, the time limit.

The suite's guarded server (1 worker, a queue of 1, a 1 MB cap, tokens), killed with SIGKILL by the restart test and
started again on the same state folder."""

from __future__ import annotations

import os
import threading

import httpx
import pytest

TOKEN = "secret-2"


@pytest.fixture(scope="module")
def guarded(servers) -> dict:
    """{"server": the guarded server (replaced by the restart test), "options": its options}."""
    servers["guarded"].wait_ready()
    return {"server": servers["guarded"], "options": servers["guarded_options"], "box": servers}


@pytest.fixture
def authed(guarded):
    with httpx.Client(base_url=guarded["server"].url, timeout=60,
                      headers={"Authorization": f"Bearer {TOKEN}"}) as c:
        yield c


def test_tokens_401_without_403_wrong(guarded):
    url = guarded["server"].url
    r = httpx.get(f"{url}/v1/model")
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    assert httpx.get(f"{url}/v1/model", headers={"Authorization": "Bearer nope"}).status_code == 403
    assert httpx.get(f"{url}/metrics", headers={"Authorization": "Bearer secret-"}).status_code == 403
    assert httpx.post(f"{url}/v1/jobs", files={"video": ("a.mp4", b"x")}).status_code == 401
    assert httpx.get(f"{url}/v1/model", headers={"Authorization": "Bearer secret-1"}).status_code == 200
    assert httpx.get(f"{url}/healthz").status_code == 200 and httpx.get(f"{url}/").status_code == 200


def test_uploads_over_the_cap_are_413_and_leave_nothing(guarded, authed):
    jobs = guarded["server"].state / "jobs"
    before = set(os.listdir(jobs))
    big = os.urandom(3 * 2**20 // 2)
    r = authed.post("/v1/jobs", files={"video": ("big.mp4", big, "video/mp4")})
    assert r.status_code == 413 and "1 MB" in r.json()["detail"]

    def chunks():  # no Content-Length: the cap is enforced while the body streams in
        yield b"--b\r\nContent-Disposition: form-data; name=\"video\"; filename=\"big.mp4\"\r\n\r\n"
        for i in range(0, len(big), 65536):
            yield big[i:i + 65536]
        yield b"\r\n--b--\r\n"

    r = authed.post("/v1/jobs", content=chunks(), headers={"content-type": "multipart/form-data; boundary=b"})
    assert r.status_code == 413
    assert set(os.listdir(jobs)) == before


def test_a_full_queue_answers_429_with_retry_after(guarded, authed, world, wait):
    data = world["long"].read_bytes()
    answers = []

    def post():
        with httpx.Client(base_url=guarded["server"].url, timeout=60, headers=authed.headers) as c:
            answers.append(c.post("/v1/jobs", files={"video": ("long.mp4", data, "video/mp4")}))

    threads = [threading.Thread(target=post) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    codes = sorted(r.status_code for r in answers)
    assert len(codes) == 6 and set(codes) <= {202, 429} and 429 in codes and codes.count(202) <= 3, codes
    assert all(int(r.headers["retry-after"]) >= 1 for r in answers if r.status_code == 429)
    for r in answers:
        if r.status_code == 202:
            assert wait(authed, r.json()["id"])["state"] == "done"


def test_kill_9_then_restart_serves_finished_and_reports_interrupted(guarded, authed, world, wait, serving):
    import time

    first = wait(authed, authed.post("/v1/jobs", files={"video": ("v0.mp4", (world["videos"] / "v0.mp4").read_bytes(),
                                                                   "video/mp4")}).json()["id"])
    before = authed.get(f"/v1/jobs/{first['id']}/result").json()
    data = world["long"].read_bytes()
    cut = []
    for i in (1, 2):  # the first is running (the one worker took it), the second waits in the queue
        while cut and authed.get(f"/v1/jobs/{cut[-1]}").json()["state"] == "queued":
            time.sleep(0.02)
        cut.append(authed.post("/v1/jobs", files={"video": (f"cut{i}.mp4", data, "video/mp4")}).json()["id"])
    old = guarded["server"]
    old.kill()
    new = serving(world["ctm"], old.state, *guarded["options"], "--time-limit", "0.001",
                  log=old.log.with_suffix(".2.log"))
    guarded["server"] = guarded["box"]["guarded"] = new.wait_ready()
    with httpx.Client(base_url=new.url, timeout=60, headers=authed.headers) as c:
        assert c.get(f"/v1/jobs/{first['id']}/result").json() == before
        assert c.get(f"/v1/jobs/{first['id']}").json()["state"] == "done"
        states = {}
        for job_id in cut:
            job = c.get(f"/v1/jobs/{job_id}").json()
            states[job_id] = job["state"]
            if job["state"] == "interrupted":
                assert "server stopped while this job was" in job["error"]
                assert c.get(f"/v1/jobs/{job_id}/result").status_code == 409
            else:  # it finished in the moment before the kill: then it is served whole
                assert job["state"] == "done" and c.get(f"/v1/jobs/{job_id}/result").json()["status"] == "ok"
        assert "interrupted" in states.values(), states
        late = wait(c, c.post("/v1/jobs", files={"video": ("v1.mp4", (world["videos"] / "v1.mp4").read_bytes(),
                                                            "video/mp4")}).json()["id"])
        assert late["state"] == "failed" and late["error"] == "v1.mp4: over the time limit of 0.001 s"
