"""Bearer tokens with roles for the operator API (``visionline.tokens``).

Camera upload keys are a different thing, checked by the upload service only. Wrong tokens
are counted per client address (``visionline.auth_limits``): past the limit, 429.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import Engine
from starlette.concurrency import run_in_threadpool

from services.api import deps
from visionline.auth_limits import FailureLimiter, Subject, client_of
from visionline.settings import ApiSettings
from visionline.tokens import Principal, Role, authenticate, role_allows

bearer = HTTPBearer(auto_error=False, description="An API token: `visionline api token create`")
CHALLENGE = {"WWW-Authenticate": "Bearer"}


@dataclass(frozen=True)
class Gate:
    """What checks a token: the tokens' database, and the failures counted per address."""

    engine: Engine
    settings: ApiSettings
    limiter: FailureLimiter


def gate(engine: deps.Engine, settings: deps.Settings, limiter: deps.AuthLimiter) -> Gate:
    return Gate(engine, settings, limiter)


TokenGate = Annotated[Gate, Depends(gate)]


async def principal_of(request: Request, checks: Gate, token: str | None) -> Principal:
    if not token:
        raise HTTPException(401, "missing bearer token (Authorization: Bearer vl_...)", CHALLENGE)
    host = request.client.host if request.client else None
    return await run_in_threadpool(_authenticated, checks, host, token)


def _authenticated(checks: Gate, host: str | None, token: str) -> Principal:
    """The token's principal; 401 for a wrong token (counted against the client's address),
    429 while that address is locked out (the token then not even looked at)."""
    client = Subject("api-client", client_of(host), checks.settings.auth_max_failures)
    wait = checks.limiter.retry_after([client])
    if wait:
        retry = {"Retry-After": str(wait)}
        raise HTTPException(429, "too many failed authentications, retry later", retry)
    principal = authenticate(checks.engine, token)
    if principal is None:
        checks.limiter.failed([client])
        raise HTTPException(401, "invalid or revoked token", CHALLENGE)
    return principal


def require(role: Role) -> Callable:
    """A dependency: the caller's principal, if its role is at least ``role`` (401, 403)."""

    async def dependency(
        request: Request,
        checks: TokenGate,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    ) -> Principal:
        token = credentials.credentials if credentials else None
        principal = await principal_of(request, checks, token)
        if not role_allows(principal.role, role):
            raise HTTPException(403, f"role {principal.role} may not do this; needs {role}")
        return principal

    return dependency


Viewer = Annotated[Principal, Depends(require("viewer"))]
Operator = Annotated[Principal, Depends(require("operator"))]
Admin = Annotated[Principal, Depends(require("admin"))]
