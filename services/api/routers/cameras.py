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
from fastapi import APIRouter, HTTPException, Query, Request
from fastapi import Path as PathParam
from pydantic import BaseModel, ConfigDict, Field

from services.api.auth import Admin, Viewer
from services.api.params import page_limit
from services.api.routers.alerts import Text, storable
from visionline import camera_health, cameras
from visionline.camera_registry import CAMERA_ID, CameraSpec, Pipeline
from visionline.db.models import Camera

log = logging.getLogger(__name__)
router = APIRouter(tags=["cameras"])

CameraId = Annotated[str, PathParam(pattern=CAMERA_ID.pattern, description="A camera id")]
Name = Annotated[str, Field(max_length=200), Text]
# Finite and bounded: ingest's rate limiter and the health thresholds divide by it.
MaxFps = Annotated[float, Field(gt=0, le=10_000, allow_inf_nan=False)]


class CameraIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    camera_id: str = Field(pattern=CAMERA_ID.pattern, description="1-64 of A-Z a-z 0-9 . _ -")
    name: Name = ""
    max_fps: MaxFps = 30.0
    pipeline: Pipeline = "classify"
    enabled: bool = True


class CameraPatch(BaseModel):
    """Only the fields given change."""

    model_config = ConfigDict(extra="forbid")

    name: Name | None = None
    max_fps: MaxFps | None = None
    pipeline: Pipeline | None = None
    enabled: bool | None = None


class CameraOut(BaseModel):
    camera_id: str
    name: str
    enabled: bool
    max_fps: float
    pipeline: str
    has_upload_key: bool
    created_at: datetime | None
    last_frame_at: datetime | None = Field(description="When ingest accepted its last frame")
    last_captured_at: datetime | None = Field(description="That frame's capture time")
    last_frame_id: str | None
    frames_last_minute: int | None = Field(description="Frames accepted in the last 60 s")
    fps: float | None = Field(description="frames_last_minute / 60")
    health: Literal["ok", "stale", "silent", "disabled", "unknown"] = Field(
        description="disabled; ok: a frame within max(5 s, 5 / max_fps); stale: within 60 s; "
        "silent: none in 60 s; unknown: activity unreadable"
    )


class CameraPage(BaseModel):
    items: list[CameraOut]
    next_after: str | None = Field(description="Pass as `after` for the next page")


class CameraWithKey(CameraOut):
    upload_key: str = Field(description="Shown this once: only its HMAC is stored")


def _redis(request: Request) -> redis.Redis:
    """One client (and connection pool) per app, made on first use."""
    client = getattr(request.app.state, "redis", None)
    if client is None:
        client = redis.Redis.from_url(request.app.state.common.redis_url,
                                      socket_timeout=2, socket_connect_timeout=2)  # fmt: skip
        request.app.state.redis = client
    return client


def _activities(request: Request, ids: list[str], now: float) -> dict[str, Any]:
    """Activity per camera; none (health ``unknown``) while Redis cannot be read."""
    try:
        return camera_health.read_activity(_redis(request), ids, now)
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
        camera_id=row.camera_id, name=row.name, enabled=row.enabled, max_fps=row.max_fps,
        pipeline=row.pipeline, has_upload_key=bool(row.upload_key_hash),
        created_at=row.created_at,
        last_frame_at=_time(activity.last_frame_at) if activity else None,
        last_captured_at=_time(activity.last_captured_at) if activity else None,
        last_frame_id=activity.last_frame_id if activity else None,
        frames_last_minute=activity.frames_last_minute if activity else None,
        fps=activity.fps if activity else None,
        health=camera_health.health(row.enabled, row.max_fps, activity, now),
    )  # fmt: skip


def _with_activity(request: Request, rows: list[Camera]) -> list[CameraOut]:
    now = time.time()
    found = _activities(request, [r.camera_id for r in rows], now)
    return [camera_out(r, found.get(r.camera_id), now) for r in rows]


def _one(request: Request, row: Camera) -> CameraOut:
    return _with_activity(request, [row])[0]


@router.get("/v1/cameras", response_model=CameraPage)
def list_cameras(
    request: Request,
    _: Viewer,
    after: Annotated[str | None, Query(max_length=64, description="A page's next_after")] = None,
    limit: Annotated[int, Query(ge=1)] = 50,
) -> CameraPage:
    """Registered cameras by id, with their activity."""
    limit = page_limit(request, limit)
    try:
        after = storable(after)
    except ValueError as exc:
        raise HTTPException(422, f"after: {exc}") from None
    rows = cameras.list_camera_rows(request.app.state.engine, limit, after)
    next_after = rows[-1].camera_id if len(rows) == limit else None
    return CameraPage(items=_with_activity(request, rows), next_after=next_after)


def _camera(request: Request, camera_id: str) -> Camera:
    try:
        return cameras.get_camera(request.app.state.engine, camera_id)
    except cameras.CameraNotFound:
        raise HTTPException(404, f"no camera {camera_id!r}") from None


@router.get("/v1/cameras/{camera_id}", response_model=CameraOut)
def get_camera(request: Request, camera_id: CameraId, _: Viewer) -> CameraOut:
    return _one(request, _camera(request, camera_id))


@router.post("/v1/cameras", response_model=CameraWithKey, status_code=201)
def register_camera(request: Request, body: CameraIn, principal: Admin) -> CameraWithKey:
    """Register a camera (409 if the id exists); the response holds its upload key, once."""
    spec = CameraSpec(**body.model_dump())
    try:
        row, key = cameras.register_camera(
            request.app.state.engine, spec, request.app.state.settings.key_pepper, principal.name
        )
    except cameras.CameraExists:
        raise HTTPException(409, f"camera {body.camera_id!r} already exists") from None
    return CameraWithKey(**_one(request, row).model_dump(), upload_key=key)


def _update(request: Request, camera_id: str, changes: dict, actor: str) -> CameraOut:
    try:
        row = cameras.update_camera(request.app.state.engine, camera_id, changes, actor)
    except cameras.CameraNotFound:
        raise HTTPException(404, f"no camera {camera_id!r}") from None
    return _one(request, row)


@router.patch("/v1/cameras/{camera_id}", response_model=CameraOut)
def update_camera(
    request: Request, camera_id: CameraId, body: CameraPatch, principal: Admin
) -> CameraOut:
    """Change name, max_fps, pipeline or enabled; fields left out (or null) stay."""
    return _update(request, camera_id, body.model_dump(exclude_none=True), principal.name)


@router.post("/v1/cameras/{camera_id}/disable", response_model=CameraOut)
def disable_camera(request: Request, camera_id: CameraId, principal: Admin) -> CameraOut:
    """Ingest and the upload service refuse its frames from their next registry refresh."""
    return _update(request, camera_id, {"enabled": False}, principal.name)


@router.post("/v1/cameras/{camera_id}/enable", response_model=CameraOut)
def enable_camera(request: Request, camera_id: CameraId, principal: Admin) -> CameraOut:
    return _update(request, camera_id, {"enabled": True}, principal.name)


@router.post("/v1/cameras/{camera_id}/rotate-key", response_model=CameraWithKey)
def rotate_key(request: Request, camera_id: CameraId, principal: Admin) -> CameraWithKey:
    """A new upload key, shown once; the old one stops working."""
    try:
        row, key = cameras.rotate_upload_key(
            request.app.state.engine, camera_id, request.app.state.settings.key_pepper,
            principal.name,
        )  # fmt: skip
    except cameras.CameraNotFound:
        raise HTTPException(404, f"no camera {camera_id!r}") from None
    return CameraWithKey(**_one(request, row).model_dump(), upload_key=key)
