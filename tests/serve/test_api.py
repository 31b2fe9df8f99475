"""The API of a real `tam serve` process on a loopback port, driven with httpx."""

from __future__ import annotations

import json

import pytest

from tam.infer.pipeline import predict


def upload(client, path, name=None, danmaku=None):
    files = {"video": (name or path.name, path.read_bytes(), "video/mp4")}
    if danmaku is not None:
        files["danmaku"] = danmaku
    return client.post("/v1/jobs", files=files)


def test_upload_gives_the_same_json_as_tam_predict(client, world, wait):
    video = world["videos"] / "v1.mp4"
    r = upload(client, video)
    assert r.status_code == 202 and r.json()["state"] == "queued"
    assert r.headers["location"] == f"/v1/jobs/{r.json()['id']}"
    job = wait(client, r.json()["id"])
    assert job["state"] == "done" and job["progress"] == 1.0 and job["error"] == ""
    got = client.get(f"/v1/jobs/{job['id']}/result").json()
    # tam predict on the world's store, whose v1 features the same encoders made from the same file
    (want,) = predict(["v1"], world["ctm"], features=str(world["store"]), device="cpu", progress=False,
                      log=lambda s: None)
    for key in ("video", "status", "label", "segments", "windows", "present", "random_init_features"):
        assert got[key] == want[key], key
    for key in ("probabilities", "top", "timeline"):  # the server runs torch on 1 thread: last digits may differ
        assert json.dumps(got[key]) == json.dumps(want[key]) or _close(got[key], want[key]), key
    assert got["source"] == "v1.mp4"  # the upload's name, never the server's path


def _close(a, b) -> bool:
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_close(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(_close(x, y) for x, y in zip(a, b))
    return a == pytest.approx(b, abs=1e-4) if isinstance(a, float) else a == b


def test_report_is_the_video_page(client, server, world, wait):
    job = wait(client, upload(client, world["videos"] / "v0.mp4").json()["id"])
    r = client.get(f"/v1/jobs/{job['id']}/report")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert "timeline plot" in r.text and "data:image/png;base64," in r.text and str(server.state) not in r.text


def test_model_health_and_readiness(client):
    m = client.get("/v1/model").json()
    assert m["task"] == "classification" and m["classes"] == ["calm", "tense"] and m["fusion"] == "ctm"
    assert set(m["encoders"]) == {"image", "motion", "audio"} and m["encoders"]["image"]["random_init"]
    assert any("NOT real" in w for w in m["warnings"])
    assert client.get("/healthz").text == "ok"
    assert client.get("/readyz").json() == {"ready": True}


def test_metrics_are_prometheus_text(client, world, wait):
    from prometheus_client.parser import text_string_to_metric_families

    wait(client, upload(client, world["videos"] / "v2.mp4").json()["id"])
    client.post("/v1/jobs", files={"video": ("x.mp4", b"not a video", "video/mp4")})
    families = {f.name: f for f in text_string_to_metric_families(client.get("/metrics").text)}
    done = [s.value for s in families["tam_jobs"].samples if s.labels == {"state": "done"}]
    assert done and done[0] >= 1
    assert any(s.labels == {"status": "415"} and s.value >= 1 for s in families["tam_requests_rejected"].samples)
    want = {"tam_queue_length", "tam_job_latency_seconds", "tam_job_wait_seconds", "tam_job_run_seconds"}
    assert want <= set(families)


@pytest.mark.parametrize("payload,reason", [(b"not a video at all", "cannot open as a media file"),
                                            (b"", "empty file")])
def test_a_non_video_is_refused_with_415_and_one_line(client, payload, reason):
    r = client.post("/v1/jobs", files={"video": ("clip.mp4", payload, "video/mp4")})
    assert r.status_code == 415
    detail = r.json()["detail"]
    assert reason in detail and "\n" not in detail and detail.startswith("clip.mp4:")


def test_bad_bodies_are_4xx(client):
    assert client.post("/v1/jobs", content=b"x", headers={"content-type": "text/plain"}).status_code == 415
    assert client.post("/v1/jobs", files={"other": ("a.mp4", b"x")}).status_code == 422
    assert client.post("/v1/jobs", content=b"{", headers={"content-type": "application/json"}).status_code == 400
    assert client.post("/v1/jobs", json={"nope": 1}).status_code == 422
    r = client.post("/v1/jobs", content=b"--x\r\nbroken", headers={"content-type": "multipart/form-data; boundary=x"})
    assert 400 <= r.status_code < 500


def test_danmaku_counts_per_segment(client, world, wait):
    xml = ('<?xml version="1.0"?><i><d p="0.5,1,25,16777215,0,0,u,1">a</d><d p="0.7,1,25,16777215,0,0,u,2">b</d>'
           '<d p="2.5,1,25,16777215,0,0,u,3">c</d></i>')
    r = upload(client, world["videos"] / "v3.mp4", danmaku=("v3.xml", xml.encode(), "text/xml"))
    job = wait(client, r.json()["id"])
    res = client.get(f"/v1/jobs/{job['id']}/result").json()
    assert res["danmaku"] == {"comments": 3, "per_segment": [2, 0, 1]}
    bad = upload(client, world["videos"] / "v3.mp4", danmaku=("v3.xml", b"<i><d p='1'", "text/xml"))
    assert bad.status_code == 415 and bad.json()["detail"].startswith("v3.xml:")


def test_ids_and_names_cannot_reach_outside_the_state_folder(client, server, world, wait):
    for bad in ("..%2F..%2Fetc", "../../etc/passwd", "0" * 31 + "g", "A" * 32):
        assert client.get(f"/v1/jobs/{bad}/result").status_code in (404, 422)
    r = client.get("/v1/jobs/" + "0" * 31 + "g")
    assert r.status_code == 422 and r.json()["detail"].startswith("path.job_id: String should match pattern")
    assert client.get("/v1/jobs/" + "0" * 32, params={"wait": 61}).json()["detail"].startswith("query.wait: ")
    assert client.get("/v1/jobs/" + "0" * 32).status_code == 404
    r = upload(client, world["videos"] / "v0.mp4", name="../../../evil name.mp4")
    job = wait(client, r.json()["id"])
    assert job["name"] == "evil_name.mp4" and job["state"] == "done"
    assert (server.state / "jobs" / job["id"] / "input" / "evil_name.mp4").is_file()
    assert not list(server.state.parent.glob("**/evil*.mp4"))[1:]  # the one copy, inside the job's folder


def test_server_paths_only_under_the_allowed_folder(client, world, wait):
    assert client.post("/v1/jobs", json={"path": "../../etc/passwd"}).status_code == 403
    assert client.post("/v1/jobs", json={"path": "/etc/hostname"}).status_code == 403
    assert client.post("/v1/jobs", json={"path": "videos/none.mp4"}).status_code == 404
    assert client.post("/v1/jobs", json={"path": "labels.csv"}).status_code == 415
    job = wait(client, client.post("/v1/jobs", json={"path": "videos/v2.mp4"}).json()["id"])
    assert job["state"] == "done" and job["name"] == "videos/v2.mp4"
    feats = client.post("/v1/jobs", json={"features": "feats", "video": "v2"})
    got = client.get(f"/v1/jobs/{wait(client, feats.json()['id'])['id']}/result").json()
    assert got["video"] == "v2" and got["status"] == "ok"


def test_result_of_a_failed_job_is_a_conflict_not_a_crash(client, world, wait):
    job = wait(client, client.post("/v1/jobs", json={"features": "feats", "video": "missing"}).json()["id"])
    assert job["state"] == "failed" and "no features for video 'missing'" in job["error"]
    assert client.get(f"/v1/jobs/{job['id']}/report").status_code == 409
    assert client.get(f"/v1/jobs/{job['id']}/result").json()["status"] == "failed"


def test_cors_is_off_by_default(client):
    r = client.get("/v1/model", headers={"Origin": "http://elsewhere.example"})
    assert "access-control-allow-origin" not in r.headers
    pre = client.options("/v1/jobs", headers={"Origin": "http://elsewhere.example",
                                              "Access-Control-Request-Method": "POST"})
    assert "access-control-allow-origin" not in pre.headers


def test_openapi_describes_every_route(client):
    spec = client.get("/openapi.json").json()
    paths = spec["paths"]
    assert set(paths) >= {"/v1/jobs", "/v1/jobs/{job_id}", "/v1/jobs/{job_id}/result", "/v1/jobs/{job_id}/report",
                          "/v1/model", "/healthz", "/readyz", "/metrics", "/"}
    body = paths["/v1/jobs"]["post"]["requestBody"]["content"]
    assert body["multipart/form-data"]["schema"]["required"] == ["video"]
    assert {"202", "413", "415", "429"} <= set(paths["/v1/jobs"]["post"]["responses"])
    json.dumps(spec)
