"""Bearer tokens with roles for the operator API (``visionline.tokens``).

Camera upload keys are a different thing, checked by the upload service only. Wrong tokens
are counted per client address (``visionline.auth_limits``): past the limit, 429.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool

from visionline.auth_limits import Subject, client_of
from visionline.tokens import Principal, Role, authenticate, role_allows

bearer = HTTPBearer(auto_error=False, description="An API token: `visionline api token create`")
CHALLENGE = {"WWW-Authenticate": "Bearer"}


async def principal_of(request: Request, token: str | None) -> Principal:
    if not token:
        raise HTTPException(401, "missing bearer token (Authorization: Bearer vl_...)", CHALLENGE)
    return await run_in_threadpool(_authenticated, request, token)


def _authenticated(request: Request, token: str) -> Principal:
    """The token's principal; 401 for a wrong token (counted against the client's address),
    429 while that address is locked out (the token then not even looked at)."""
    state = request.app.state
    host = request.client.host if request.client else None
    client = Subject("api-client", client_of(host), state.settings.auth_max_failures)
    wait = state.auth_limiter.retry_after([client])
    if wait:
        retry = {"Retry-After": str(wait)}
        raise HTTPException(429, "too many failed authentications, retry later", retry)
    principal = authenticate(state.engine, token)
    if principal is None:
        state.auth_limiter.failed([client])
        raise HTTPException(401, "invalid or revoked token", CHALLENGE)
    return principal


def require(role: Role) -> Callable:
    """A dependency: the caller's principal, if its role is at least ``role`` (401, 403)."""

    async def dependency(
        request: Request,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    ) -> Principal:
        principal = await principal_of(request, credentials.credentials if credentials else None)
        if not role_allows(principal.role, role):
            raise HTTPException(403, f"role {principal.role} may not do this; needs {role}")
        return principal

    return dependency


Viewer = Annotated[Principal, Depends(require("viewer"))]
Operator = Annotated[Principal, Depends(require("operator"))]
Admin = Annotated[Principal, Depends(require("admin"))]
