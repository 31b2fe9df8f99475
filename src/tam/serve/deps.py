"""Dependencies shared by the routers: the service, bearer-token auth, and the OpenAPI text of error answers."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from tam.serve.service import Service

bearer = HTTPBearer(auto_error=False, description="Needed when the server runs with --token-file")


def service(request: Request) -> Service:
    return request.app.state.service


ServiceDep = Annotated[Service, Depends(service)]


def authorised(svc: ServiceDep,
               credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> None:
    """With --token-file: no token is 401, a token not in the file is 403."""
    if not svc.tokens:
        return
    if credentials is None:
        raise HTTPException(401, "a bearer token is needed (Authorization: Bearer TOKEN)",
                            headers={"WWW-Authenticate": "Bearer"})
    given = credentials.credentials.encode()
    if not any(hmac.compare_digest(given, t.encode()) for t in svc.tokens):
        raise HTTPException(403, "this token is not accepted")


def errors(*codes: int) -> dict:
    """OpenAPI `responses` for error codes answered with {"detail": one line}."""
    text = {400: "Bad request", 401: "No token", 403: "Token refused or path outside the allowed folder",
            404: "No such job", 409: "The job has no result (yet)", 413: "Upload over the size limit",
            415: "Not a video (or danmaku) file", 422: "Invalid input", 429: "Queue full (see Retry-After)",
            503: "Not ready"}
    schema = {"type": "object", "properties": {"detail": {"type": "string"}}, "required": ["detail"]}
    return {c: {"description": text[c], "content": {"application/json": {"schema": schema}}} for c in codes}
