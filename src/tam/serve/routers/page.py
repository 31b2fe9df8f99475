"""The web page: one plain HTML file (its script inline, no build step) served at `/`."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse

PAGE = Path(__file__).resolve().parents[1] / "page" / "index.html"
router = APIRouter(tags=["page"])


@router.get("/", response_class=FileResponse, summary="The web page: upload a video, watch it, see the result")
def page() -> FileResponse:
    return FileResponse(PAGE, media_type="text/html")
