"""Bearer tokens with roles for the operator API (``visionline.tokens``).

Camera upload keys are a different thing, checked by the upload service only.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool

from visionline.tokens import Principal, Role, authenticate, role_allows

bearer = HTTPBearer(auto_error=False, description="An API token: `visionline api token create`")
CHALLENGE = {"WWW-Authenticate": "Bearer"}


async def principal_of(request: Request, token: str | None) -> Principal:
    if not token:
        raise HTTPException(401, "missing bearer token (Authorization: Bearer vl_...)", CHALLENGE)
    principal = await run_in_threadpool(authenticate, request.app.state.engine, token)
    if principal is None:
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
