"""Cameras: the registry (never the key hash) with each camera's activity, and its changes
(Admin, audited): register, update, disable or enable, rotate the upload key.

Activity comes from Redis, where ingest counts every accepted frame
(``visionline.camera_health``, which also defines ``health``: ok, stale, silent, disabled, or
unknown while Redis cannot be read). Upload keys are shown once, when made, and stored only as
an HMAC with ``ApiSettings.key_pepper``, which must be the upload service's pepper. Ingest and
the upload service see a change within their registry refresh (5 s by default).
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import redis
from fastapi import APIRouter, HTTPException, Query
from fastapi import Path as PathParam
from pydantic import BaseModel, ConfigDict, Field

from services.api.auth import Admin, Viewer
from services.api.deps import Common, Engine, PageSize, Redis, Settings
from services.api.routers.alerts import Text, storable
from visionline import camera_health, camera_registry
from visionline.camera_registry import CAMERA_ID, MODEL_NAME_PATTERN, CameraSpec, Pipeline
from visionline.db.models import Camera
from visionline.models.classifiers import is_classifier
from visionline.models.detectors import is_detector

log = logging.getLogger(__name__)
router = APIRouter(tags=["cameras"])

CameraId = Annotated[str, PathParam(pattern=CAMERA_ID.pattern, description="A camera id")]
Name = Annotated[str, Field(max_length=200), Text]
# Finite and bounded: ingest's rate limiter and the health thresholds divide by it.
MaxFps = Annotated[float, Field(gt=0, le=10_000, allow_inf_nan=False)]
ModelName = Annotated[
    str,
    Field(
        pattern=MODEL_NAME_PATTERN,
        description="A classify camera's classifier (left out or null: the default) or a "
        "detect camera's detector (required): a model of the model repository",
    ),
]


class CameraIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    camera_id: str = Field(pattern=CAMERA_ID.pattern, description="1-64 of A-Z a-z 0-9 . _ -")
    name: Name = ""
    max_fps: MaxFps = 30.0
    pipeline: Pipeline = "classify"
    model: ModelName | None = None
    enabled: bool = True


class CameraPatch(BaseModel):
    """Only the fields given change."""

    model_config = ConfigDict(extra="forbid")

    name: Name | None = None
    max_fps: MaxFps | None = None
    pipeline: Pipeline | None = None
    # A classifier's name; "" puts the camera back on the default classifier.
    model: ModelName | Literal[""] | None = None
    enabled: bool | None = None


class CameraOut(BaseModel):
    camera_id: str
    name: str
    enabled: bool
    max_fps: float
    pipeline: str
    model: str | None = Field(description="Its classifier (null: the default) or detector")
    has_upload_key: bool
    created_at: datetime | None
    last_frame_at: datetime | None = Field(description="When ingest accepted its last frame")
    last_captured_at: datetime | None = Field(description="That frame's capture time")
    last_frame_id: str | None
    frames_last_minute: int | None = Field(description="Frames accepted in the last 60 s")
    fps: float | None = Field(description="frames_last_minute / 60")
    frames_shed_last_minute: int | None = Field(
        None,
        description="Inspection cameras: frames the inspect worker shed in the last 60 s because "
        "it was behind (load shedding: fewer frames per part, decisions on time)",
    )
    health: Literal["ok", "stale", "silent", "disabled", "unknown"] = Field(
        description="disabled; ok: a frame within max(5 s, 5 / max_fps); stale: within 60 s; "
        "silent: none in 60 s; unknown: activity unreadable"
    )


class CameraPage(BaseModel):
    items: list[CameraOut]
    next_after: str | None = Field(description="Pass as `after` for the next page")


class CameraWithKey(CameraOut):
    upload_key: str = Field(description="Shown this once: only its HMAC is stored")


def _activities(client: redis.Redis, ids: list[str], now: float) -> dict[str, Any]:
    """Activity per camera; none (health ``unknown``) while Redis cannot be read."""
    try:
        return camera_health.read_activity(client, ids, now)
    except redis.RedisError as exc:
        log.warning("camera activity unavailable: %s", exc)
        return {}


def _time(epoch: float | None) -> datetime | None:
    try:
        return datetime.fromtimestamp(epoch, UTC) if epoch is not None else None
    except (OverflowError, OSError, ValueError):  # a capture time no datetime can hold
        return None


def camera_out(row: Camera, activity: camera_health.Activity | None, now: float) -> CameraOut:
    return CameraOut(
        camera_id=row.camera_id,
        name=row.name,
        enabled=row.enabled,
        max_fps=row.max_fps,
        pipeline=row.pipeline,
        model=row.model,
        has_upload_key=bool(row.upload_key_hash),
        created_at=row.created_at,
        last_frame_at=_time(activity.last_frame_at) if activity else None,
        last_captured_at=_time(activity.last_captured_at) if activity else None,
        last_frame_id=activity.last_frame_id if activity else None,
        frames_last_minute=activity.frames_last_minute if activity else None,
        fps=activity.fps if activity else None,
        frames_shed_last_minute=activity.shed_last_minute if activity else None,
        health=camera_health.health(row.enabled, row.max_fps, activity, now),
    )


def _with_activity(client: redis.Redis, rows: list[Camera]) -> list[CameraOut]:
    now = time.time()
    found = _activities(client, [r.camera_id for r in rows], now)
    return [camera_out(r, found.get(r.camera_id), now) for r in rows]


def _one(client: redis.Redis, row: Camera) -> CameraOut:
    return _with_activity(client, [row])[0]


@router.get("/v1/cameras", response_model=CameraPage)
def list_cameras(
    engine: Engine,
    client: Redis,
    _: Viewer,
    limit: PageSize,
    after: Annotated[str | None, Query(max_length=64, description="A page's next_after")] = None,
) -> CameraPage:
    """Registered cameras by id, with their activity."""
    try:
        after = storable(after)
    except ValueError as exc:
        raise HTTPException(422, f"after: {exc}") from None
    rows = camera_registry.list_camera_rows(engine, limit, after)
    next_after = rows[-1].camera_id if len(rows) == limit else None
    return CameraPage(items=_with_activity(client, rows), next_after=next_after)


def _camera(engine: Engine, camera_id: str) -> Camera:
    try:
        return camera_registry.get_camera(engine, camera_id)
    except camera_registry.CameraNotFound:
        raise HTTPException(404, f"no camera {camera_id!r}") from None


@router.get("/v1/cameras/{camera_id}", response_model=CameraOut)
def get_camera(engine: Engine, client: Redis, camera_id: CameraId, _: Viewer) -> CameraOut:
    return _one(client, _camera(engine, camera_id))


def check_model(common: Common, pipeline: str, model: str | None) -> None:
    """422 unless ``model`` suits ``pipeline``: a classifier of the model repository (or none:
    the default) for classify, a detector (required) for detect, none for inspect."""
    repository = common.model_repository
    if pipeline == "detect" and not (model and is_detector(repository, model)):
        raise HTTPException(
            422,
            f"a detect camera needs a detector of the model repository; {model!r} is not one "
            "(`visionline train detector` writes one, `visionline models promote` serves it)",
        )
    if pipeline == "classify" and model and not is_classifier(repository, model):
        raise HTTPException(
            422,
            f"model {model!r} is not a classifier of the model repository "
            "(a folder with a config.pbtxt taking the image input and giving logits)",
        )
    if pipeline == "inspect" and model:
        raise HTTPException(422, "an inspect camera runs the inspection models: give no model")


@router.post("/v1/cameras", response_model=CameraWithKey, status_code=201)
def register_camera(
    engine: Engine,
    client: Redis,
    settings: Settings,
    common: Common,
    body: CameraIn,
    principal: Admin,
) -> CameraWithKey:
    """Register a camera (409 if the id exists); the response holds its upload key, once."""
    check_model(common, body.pipeline, body.model)
    spec = CameraSpec(**body.model_dump())
    try:
        row, key = camera_registry.register_camera(
            engine, spec, settings.key_pepper, principal.name
        )
    except camera_registry.CameraExists:
        raise HTTPException(409, f"camera {body.camera_id!r} already exists") from None
    return CameraWithKey(**_one(client, row).model_dump(), upload_key=key)


def _update(
    engine: Engine, client: redis.Redis, camera_id: str, changes: dict, actor: str
) -> CameraOut:
    try:
        row = camera_registry.update_camera(engine, camera_id, changes, actor)
    except camera_registry.CameraNotFound:
        raise HTTPException(404, f"no camera {camera_id!r}") from None
    return _one(client, row)


@router.patch("/v1/cameras/{camera_id}", response_model=CameraOut)
def update_camera(
    engine: Engine,
    client: Redis,
    common: Common,
    camera_id: CameraId,
    body: CameraPatch,
    principal: Admin,
) -> CameraOut:
    """Change name, max_fps, pipeline, model or enabled; fields left out (or null) stay, and
    model "" goes back to the default classifier. Ingest uses a new model from its next
    registry refresh. The pipeline and model that result must suit each other (``check_model``)."""
    changes = body.model_dump(exclude_none=True)
    if changes.get("model") == "":
        changes["model"] = None
    if "pipeline" in changes or "model" in changes:
        current = _camera(engine, camera_id)
        model = changes["model"] if "model" in changes else current.model
        check_model(common, changes.get("pipeline", current.pipeline), model)
    return _update(engine, client, camera_id, changes, principal.name)


@router.post("/v1/cameras/{camera_id}/disable", response_model=CameraOut)
def disable_camera(
    engine: Engine, client: Redis, camera_id: CameraId, principal: Admin
) -> CameraOut:
    """Ingest and the upload service refuse its frames from their next registry refresh."""
    return _update(engine, client, camera_id, {"enabled": False}, principal.name)


@router.post("/v1/cameras/{camera_id}/enable", response_model=CameraOut)
def enable_camera(
    engine: Engine, client: Redis, camera_id: CameraId, principal: Admin
) -> CameraOut:
    return _update(engine, client, camera_id, {"enabled": True}, principal.name)


@router.post("/v1/cameras/{camera_id}/rotate-key", response_model=CameraWithKey)
def rotate_key(
    engine: Engine, client: Redis, settings: Settings, camera_id: CameraId, principal: Admin
) -> CameraWithKey:
    """A new upload key, shown once; the old one stops working."""
    try:
        row, key = camera_registry.rotate_upload_key(
            engine, camera_id, settings.key_pepper, principal.name
        )
    except camera_registry.CameraNotFound:
        raise HTTPException(404, f"no camera {camera_id!r}") from None
    return CameraWithKey(**_one(client, row).model_dump(), upload_key=key)
