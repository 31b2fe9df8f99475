"""The ASGI app: the routers over one `Service`, refusals as {"detail": one line}, CORS only when asked for."""

from __future__ import annotations

from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from tam import __version__
from tam.serve.media import Refused
from tam.serve.options import ServeOptions
from tam.serve.routers import jobs, page, service
from tam.serve.service import QueueFull, Service


def create_app(options: ServeOptions, predictor) -> FastAPI:
    """The app over `predictor` (a loaded `tam.infer.pipeline.Predictor`); the workers run while it is served."""
    svc = Service(options, predictor)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        svc.start()
        yield
        svc.stop()

    app = FastAPI(title="tam serve", version=__version__, lifespan=lifespan,
                  description="Video emotion analysis: the evoked emotion of a video, its per-segment affect "
                              "timeline and the predicted viewer words, from a trained TAM model.")
    app.state.service = svc
    for r in (jobs.router, service.router, page.router):
        app.include_router(r)
    app.add_exception_handler(Refused, _refused)
    app.add_exception_handler(QueueFull, _refused)
    app.add_exception_handler(RequestValidationError, _invalid)
    if not svc.tokens:
        _without_auth(app)
    if options.cors:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=list(options.cors), allow_methods=["GET", "POST"],
                           allow_headers=["Authorization", "Content-Type"])
    return app


def _without_auth(app: FastAPI) -> None:
    """Without --token-file the schema names no security scheme and no 401/403 for tokens: it describes the app as
    it runs (403 stays where a server path outside the allowed folder gets it)."""
    build = app.openapi

    def openapi() -> dict:
        if not app.openapi_schema:
            spec = build()
            spec.get("components", {}).pop("securitySchemes", None)
            for path, ops in spec["paths"].items():
                for method, op in ops.items():
                    op.pop("security", None)
                    op["responses"].pop("401", None)
                    if (path, method) != ("/v1/jobs", "post"):
                        op["responses"].pop("403", None)
        return app.openapi_schema

    app.openapi = openapi


async def _refused(request: Request, exc: Exception) -> JSONResponse:
    """A refused submission: its status and one-line reason; 429 says when to come back."""
    svc: Service = request.app.state.service
    if isinstance(exc, QueueFull):
        exc = Refused(429, "the job queue is full; try again later")
    svc.metrics.rejected.labels(str(exc.status)).inc()
    headers = {"Retry-After": str(svc.runner.retry_after())} if exc.status == 429 else {}
    return JSONResponse({"detail": exc.reason}, status_code=exc.status, headers=headers)


async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
    """A malformed id or query as every other refusal: 422 with one line naming the parameter."""
    first = exc.errors()[0] if exc.errors() else {"loc": ("request",), "msg": "invalid"}
    where = ".".join(str(x) for x in first["loc"])
    return JSONResponse({"detail": f"{where}: {first['msg']}"}, status_code=422)

