"""The service itself: what model is loaded, liveness, readiness, Prometheus metrics."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from tam.serve.deps import ServiceDep, authorised, errors

router = APIRouter(tags=["service"])


@router.get("/v1/model", response_model=dict[str, Any], dependencies=[Depends(authorised)],
            responses=errors(401, 403), summary="The loaded model: task, classes, encoders, card, warnings")
def model(svc: ServiceDep) -> dict:
    return svc.model_info()


@router.get("/healthz", response_class=PlainTextResponse, summary="Liveness: the process answers")
def healthz() -> str:
    return "ok"


@router.get("/readyz", responses=errors(503), summary="Readiness: the model is loaded and the workers run")
def readyz(svc: ServiceDep) -> JSONResponse:
    ok = svc.ready()
    return JSONResponse({"ready": True} if ok else {"detail": "not ready: starting, or a worker stopped"},
                        status_code=200 if ok else 503)


@router.get("/metrics", response_class=PlainTextResponse, dependencies=[Depends(authorised)],
            responses=errors(401, 403), summary="Prometheus text format: jobs by state, queue, latencies")
def metrics(svc: ServiceDep) -> Response:
    from prometheus_client import CONTENT_TYPE_LATEST

    body = svc.metrics.render(svc.store.counts(), svc.runner.queue.qsize())
    return Response(body, media_type=CONTENT_TYPE_LATEST)
