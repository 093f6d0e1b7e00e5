"""Operator API tokens and roles. A token is shown once, when made; only its SHA-256 is kept.

``vl_<token_id>_<secret>``: the id finds the row without a scan, the 256-bit secret makes a
guess hopeless, so a plain hash (no pepper, no slow KDF) is enough.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal, cast, get_args

from sqlalchemy import CursorResult, Engine, select, update
from sqlalchemy.orm import Session

from visionline.db.models import ApiTokenRow

Role = Literal["viewer", "operator", "admin"]
ROLES: tuple[Role, ...] = get_args(Role)  # each may do what the ones before it may
TOKEN = re.compile(r"^vl_([a-f0-9]{16})_([A-Za-z0-9_-]{43})$")


@dataclass(frozen=True)
class Principal:
    """Who a request acts as: recorded as ``name`` in the audit log and on alerts."""

    token_id: str
    name: str
    role: Role


def role_allows(held: str, needed: Role) -> bool:
    return held in ROLES and ROLES.index(held) >= ROLES.index(needed)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> tuple[str, str]:
    """(token_id, token)."""
    token_id = secrets.token_hex(8)
    return token_id, f"vl_{token_id}_{secrets.token_urlsafe(32)}"


def create_token(engine: Engine, name: str, role: Role, created_by: str = "") -> str:
    """A new token for ``name`` with ``role``; the only time its secret is seen."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}")
    token_id, token = new_token()
    row = ApiTokenRow(
        token_id=token_id,
        name=name,
        role=role,
        token_hash=hash_token(token),
        created_at=datetime.now(UTC),
        created_by=created_by,
    )
    with Session(engine) as session, session.begin():
        session.add(row)
    return token


def authenticate(engine: Engine, token: str) -> Principal | None:
    """The principal of a valid, unrevoked token; None for anything else."""
    parsed = TOKEN.match(token)
    if not parsed:
        return None
    with Session(engine) as session, session.begin():
        row = session.get(ApiTokenRow, parsed.group(1))
        if row is None or row.revoked_at is not None:
            return None
        if not hmac.compare_digest(row.token_hash, hash_token(token)):
            return None
        row.last_used_at = datetime.now(UTC)
        return Principal(row.token_id, row.name, row.role)  # type: ignore[arg-type]


def revoke_token(engine: Engine, token_id: str) -> bool:
    with Session(engine) as session, session.begin():
        done = session.execute(
            update(ApiTokenRow)
            .where(ApiTokenRow.token_id == token_id, ApiTokenRow.revoked_at.is_(None))
            .values(revoked_at=datetime.now(UTC))
        )
        return cast(CursorResult, done).rowcount == 1  # an UPDATE's result has a row count


def list_tokens(engine: Engine) -> list[ApiTokenRow]:
    with Session(engine) as session:
        return list(session.scalars(select(ApiTokenRow).order_by(ApiTokenRow.created_at)))
