"""Rules: the document in effect, its versions, and changes (Admin), which the rules and parts
workers pick up within ``VISIONLINE_RULES_REFRESH_S`` without a restart (``visionline.rulesets``).

Version 0 is ``infra/rules.yaml``, in effect until a first version is saved.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Query
from fastapi import Path as PathParam
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.orm import Session

from services.api.auth import Admin, Viewer
from services.api.deps import Engine, PageSize
from visionline import rulesets
from visionline.camera_registry import CAMERA_ID
from visionline.db.models import Camera
from visionline.rulesets import RuleSet, RulesFile
from visionline.settings import RulesSettings

router = APIRouter(tags=["rules"])

CameraId = Annotated[str, PathParam(pattern=CAMERA_ID.pattern, description="A registered camera")]
VersionNumber = Annotated[int, PathParam(ge=1, le=2**31 - 1, description="A saved version")]


class RulesUpdate(BaseModel):
    """A whole new document (``rules:`` and ``inspection:``, as in ``infra/rules.yaml``)."""

    model_config = ConfigDict(extra="forbid")

    document: RulesFile
    comment: str = Field("", max_length=2000, description="Why: kept in the history and audit")


class RuleSetOut(BaseModel):
    version: int = Field(description="0: infra/rules.yaml, while no version is saved")
    source: Literal["file", "database"]
    changed_by: str | None
    changed_at: datetime | None
    comment: str


class RulesOut(RuleSetOut):
    camera_id: str | None = Field(None, description="Set: only what applies to this camera")
    document: RulesFile


def rules_file_path() -> Path:
    """The file the workers fall back to (the API reads the same variable)."""
    return RulesSettings().rules_file


def summary(ruleset: RuleSet) -> RuleSetOut:
    return RuleSetOut(
        version=ruleset.version,
        source=ruleset.source,
        changed_by=ruleset.changed_by,
        changed_at=ruleset.changed_at,
        comment=ruleset.comment,
    )


def rules_out(ruleset: RuleSet, camera_id: str | None = None) -> RulesOut:
    document = ruleset.rules if camera_id is None else rulesets.for_camera(ruleset.rules, camera_id)
    return RulesOut(**summary(ruleset).model_dump(), camera_id=camera_id, document=document)


def require_camera(engine: Engine, camera_id: str) -> None:
    with Session(engine) as session:
        if session.get(Camera, camera_id) is None:
            raise HTTPException(404, f"no camera {camera_id!r}")


@router.get("/v1/rules", response_model=RulesOut)
def get_rules(
    engine: Engine,
    _: Viewer,
    camera_id: Annotated[
        str | None, Query(pattern=CAMERA_ID.pattern, description="Only what applies to it")
    ] = None,
) -> RulesOut:
    """The rules in effect, with who changed them and when."""
    ruleset = rulesets.current(engine, rules_file_path())
    return rules_out(ruleset, camera_id)


@router.put("/v1/rules", response_model=RulesOut)
def put_rules(engine: Engine, principal: Admin, body: RulesUpdate) -> RulesOut:
    """Save a whole new document as the next version; the workers apply it to their next
    frames. An invalid document is refused (422) with what is wrong and where."""
    # What a RulesFile allows but PostgreSQL cannot store; the input is not echoed (it may not
    # be valid JSON: an infinity).
    if not rulesets.storable_text(body.comment):
        raise HTTPException(422, "comment: text must be valid UTF-8 without NUL characters")
    try:
        rulesets.document_of(body.document)
    except ValueError as exc:
        raise HTTPException(422, f"document: {exc}") from None
    saved = rulesets.save(engine, body.document, principal.name, body.comment)
    return rules_out(saved)


@router.get("/v1/rules/versions", response_model=list[RuleSetOut])
def list_versions(engine: Engine, _: Viewer, limit: PageSize) -> list[RuleSetOut]:
    """Saved versions, newest first (the file, version 0, is not listed)."""
    return [summary(r) for r in rulesets.history(engine, limit)]


@router.get("/v1/rules/versions/{version}", response_model=RulesOut)
def get_version(engine: Engine, _: Viewer, version: VersionNumber) -> RulesOut:
    ruleset = rulesets.get_version(engine, version)
    if ruleset is None:
        raise HTTPException(404, f"no rules version {version}")
    return rules_out(ruleset)


@router.get("/v1/cameras/{camera_id}/rules", response_model=RulesOut)
def camera_rules(engine: Engine, _: Viewer, camera_id: CameraId) -> RulesOut:
    """The rules and the inspection entry in effect for one camera."""
    require_camera(engine, camera_id)
    ruleset = rulesets.current(engine, rules_file_path())
    return rules_out(ruleset, camera_id)
