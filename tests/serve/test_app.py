"""The app's own wiring, in-process (no model: these routes never reach the predictor): CORS only when asked for."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tam.serve.app import create_app
from tam.serve.options import ServeOptions

ORIGIN = "https://videos.example"


def preflight(client: TestClient, origin: str):
    return client.options("/v1/jobs", headers={"Origin": origin, "Access-Control-Request-Method": "POST"})


def test_cors_only_for_the_named_origins(tmp_path):
    with TestClient(create_app(ServeOptions(model="x", state=tmp_path / "a", cors=(ORIGIN,)), None)) as c:
        assert preflight(c, ORIGIN).headers["access-control-allow-origin"] == ORIGIN
        assert "access-control-allow-origin" not in preflight(c, "https://other.example").headers
        assert c.get("/healthz", headers={"Origin": ORIGIN}).headers["access-control-allow-origin"] == ORIGIN
    with TestClient(create_app(ServeOptions(model="x", state=tmp_path / "b"), None)) as c:
        assert "access-control-allow-origin" not in preflight(c, ORIGIN).headers
        assert "access-control-allow-origin" not in c.get("/healthz", headers={"Origin": ORIGIN}).headers
