"""The camera registry: which cameras may push frames, at what rate, with which upload key.

Cameras live in PostgreSQL (table ``cameras``); ``infra/cameras.yaml`` seeds it. Upload keys are
stored only as an HMAC, never in clear.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import re
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal, cast

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy import Engine, or_, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from visionline import audit
from visionline.db.models import Camera
from visionline.resilience import dependency_down

log = logging.getLogger(__name__)
CAMERA_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
# Simulated conveyor lines are PREFIX-1, PREFIX-2, ... (`visionline camera lines --prefix`).
LINE_PREFIX_PATTERN = r"^[a-z][a-z0-9-]{0,39}$"
LINE_PREFIX = re.compile(LINE_PREFIX_PATTERN)
# Which path a camera's frames take after ingest: the classifier (preprocess -> inference ->
# postprocess), the inspection of parts on a conveyor (inspect -> parts) or a detector with
# tracked objects and zone/line rules (detect -> objects).
Pipeline = Literal["classify", "inspect", "detect"]
# A model's name: a folder of the Triton repository.
MODEL_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$"


class CameraSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    camera_id: str
    name: str = ""
    enabled: bool = True
    max_fps: float = Field(30.0, gt=0)
    upload_key: str | None = None
    pipeline: Pipeline = "classify"
    # A classify camera's classifier (None: the default), a detect camera's detector: a model
    # of the Triton repository.
    model: str | None = Field(None, pattern=MODEL_NAME_PATTERN)

    @field_validator("camera_id")
    @classmethod
    def _valid_id(cls, value: str) -> str:
        if not CAMERA_ID.match(value):
            raise ValueError("camera_id must be 1-64 of A-Z a-z 0-9 . _ - and start alphanumeric")
        return value


class CamerasFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    cameras: list[CameraSpec]


def load_cameras(path: Path) -> list[CameraSpec]:
    return CamerasFile.model_validate(yaml.safe_load(path.read_text()) or {}).cameras


def hash_upload_key(key: str, pepper: str) -> str:
    return hmac.new(pepper.encode(), key.encode(), hashlib.sha256).hexdigest()


# infra/cameras.yaml once seeded every camera with ``dev-key-<camera>``: a key anyone can
# guess from the id. The upload service refuses such keys outside development.
PLACEHOLDER_KEY_PREFIX = "dev-key-"


def is_placeholder_key(key: str) -> bool:
    return key.startswith(PLACEHOLDER_KEY_PREFIX)


def upsert_cameras(engine: Engine, cameras: list[CameraSpec], pepper: str) -> None:
    """Register or update cameras (idempotent); a camera without a key keeps its old key."""
    with engine.begin() as conn:
        for spec in cameras:
            values = {
                "camera_id": spec.camera_id,
                "name": spec.name,
                "enabled": spec.enabled,
                "max_fps": spec.max_fps,
                "pipeline": spec.pipeline,
            }
            if "model" in spec.model_fields_set:  # left out of the file: the API's choice stays
                values["model"] = spec.model
            if spec.upload_key:
                values["upload_key_hash"] = hash_upload_key(spec.upload_key, pepper)
            stmt = insert(Camera).values(**values)
            update = {k: stmt.excluded[k] for k in values if k != "camera_id"}
            conn.execute(stmt.on_conflict_do_update(index_elements=["camera_id"], set_=update))


def seed_upload_keys(engine: Engine, camera_ids: list[str], pepper: str) -> dict[str, str]:
    """A random upload key for each of ``camera_ids`` that has no key yet, or still has its
    placeholder ``dev-key-<camera>``; the keys made, by camera (the only time they are seen)."""
    made: dict[str, str] = {}
    with engine.begin() as conn:
        for camera_id in camera_ids:
            key = new_upload_key()
            placeholder = hash_upload_key(f"{PLACEHOLDER_KEY_PREFIX}{camera_id}", pepper)
            stored = Camera.upload_key_hash
            done = conn.execute(
                update(Camera)
                .where(Camera.camera_id == camera_id)
                .where(or_(stored.is_(None), stored == placeholder))
                .values(upload_key_hash=hash_upload_key(key, pepper))
            )
            if done.rowcount == 1:
                made[camera_id] = key
    return made


def write_upload_keys(path: Path, keys: dict[str, str]) -> None:
    """Add ``keys`` (camera id -> upload key) to the JSON file at ``path``, readable by its
    owner only; written whole then renamed, so a reader never sees half of it."""
    known = json.loads(path.read_text()) if path.exists() else {}
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.tmp")
    with os.fdopen(os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as out:
        json.dump({**known, **keys}, out, indent=2, sort_keys=True)
    os.replace(partial, path)


def provision_cameras(
    engine: Engine, cameras: list[CameraSpec], pepper: str, keys_file: Path | None = None
) -> dict[str, str]:
    """Register ``cameras``; those the file gives no key get a random one (``seed_upload_keys``),
    added to ``keys_file`` when given. The keys made, by camera."""
    upsert_cameras(engine, cameras, pepper)
    made = seed_upload_keys(engine, [c.camera_id for c in cameras if not c.upload_key], pepper)
    if made and keys_file is not None:
        write_upload_keys(keys_file, made)
    return made


@dataclass(frozen=True)
class RegisteredCamera:
    camera_id: str
    enabled: bool
    max_fps: float
    upload_key_hash: str | None
    pipeline: Pipeline = "classify"
    model: str | None = None  # its classifier (None: the default) or detector


class CameraRegistry:
    """Read-through cache of the cameras table.

    The whole table is reloaded every ``refresh_s`` seconds. An id not in the cache is looked up
    on its own at once (a camera registered a moment ago is accepted on its first frame); a miss
    is remembered for ``miss_ttl_s`` so a flood from an unknown camera costs one query a second.
    While PostgreSQL is down, the cameras already loaded go on being served; only an id not in
    the cache waits for it (the error goes to the caller).
    """

    def __init__(self, engine: Engine, refresh_s: float = 5.0, miss_ttl_s: float = 1.0) -> None:
        self._engine = engine
        self._refresh_s = refresh_s
        self._miss_ttl_s = miss_ttl_s
        self._cameras: dict[str, RegisteredCamera] = {}
        self._misses: dict[str, float] = {}
        self._loaded_at = float("-inf")

    def get(self, camera_id: str) -> RegisteredCamera | None:
        now = time.monotonic()
        if now - self._loaded_at > self._refresh_s:
            try:
                self.refresh()
            except Exception as exc:
                if not self._cameras or dependency_down(exc) is None:
                    raise
                log.warning("camera registry not refreshed, %d kept: %s", len(self._cameras), exc)
                self._loaded_at = now  # the next try after refresh_s, not on every frame
        camera = self._cameras.get(camera_id)
        if (
            camera is not None
            or now - self._misses.get(camera_id, float("-inf")) < self._miss_ttl_s
        ):
            return camera
        return self._lookup(camera_id, now)

    def _lookup(self, camera_id: str, now: float) -> RegisteredCamera | None:
        with Session(self._engine) as session:
            row = session.get(Camera, camera_id)
        if row is None:
            if len(self._misses) > 10_000:  # bounded: ids come from the outside world
                self._misses.clear()
            self._misses[camera_id] = now
            return None
        self._cameras[camera_id] = _registered(row)
        return self._cameras[camera_id]

    def refresh(self) -> None:
        with Session(self._engine) as session:
            rows = session.scalars(select(Camera)).all()
        self._cameras = {r.camera_id: _registered(r) for r in rows}
        self._misses.clear()
        self._loaded_at = time.monotonic()


def _registered(row: Camera) -> RegisteredCamera:
    return RegisteredCamera(
        row.camera_id,
        row.enabled,
        row.max_fps,
        row.upload_key_hash,
        cast(Pipeline, row.pipeline or "classify"),  # the API only stores a Pipeline
        row.model,
    )


# --- changes through the operator API, each audited in its own transaction -----------------


class CameraNotFound(LookupError):
    pass


class CameraExists(Exception):
    pass


def new_upload_key() -> str:
    return secrets.token_urlsafe(32)


def list_camera_rows(engine: Engine, limit: int, after: str | None = None) -> list[Camera]:
    """By camera id; ``after``: the last id of the previous page."""
    stmt = select(Camera).order_by(Camera.camera_id).limit(limit)
    if after is not None:
        stmt = stmt.where(Camera.camera_id > after)
    with Session(engine) as session:
        return list(session.scalars(stmt))


def get_camera(engine: Engine, camera_id: str) -> Camera:
    with Session(engine) as session:
        row = session.get(Camera, camera_id)
    if row is None:
        raise CameraNotFound(camera_id)
    return row


def register_camera(
    engine: Engine, spec: CameraSpec, pepper: str, actor: str
) -> tuple[Camera, str]:
    """A new camera and its upload key (returned only here; only its HMAC is stored)."""
    key = new_upload_key()
    fields = spec.model_dump(exclude={"upload_key"})
    row = Camera(
        **fields, upload_key_hash=hash_upload_key(key, pepper), created_at=datetime.now(UTC)
    )
    try:
        with Session(engine, expire_on_commit=False) as session, session.begin():
            if session.get(Camera, spec.camera_id) is not None:
                raise CameraExists(spec.camera_id)
            session.add(row)
            audit.record(session, actor, "camera.register", f"camera:{spec.camera_id}", **fields)
    except IntegrityError:  # registered concurrently, between the check and the insert
        raise CameraExists(spec.camera_id) from None
    return row, key


def update_camera(engine: Engine, camera_id: str, changes: dict, actor: str) -> Camera:
    """Set the given fields (name, max_fps, enabled, pipeline, model); audits only what changed."""
    with Session(engine, expire_on_commit=False) as session, session.begin():
        row = session.get(Camera, camera_id, with_for_update=True)
        if row is None:
            raise CameraNotFound(camera_id)
        changed = {k: v for k, v in changes.items() if getattr(row, k) != v}
        for name, value in changed.items():
            setattr(row, name, value)
        if changed:
            audit.record(session, actor, "camera.update", f"camera:{camera_id}", **changed)
    return row


def rotate_upload_key(
    engine: Engine, camera_id: str, pepper: str, actor: str
) -> tuple[Camera, str]:
    """A new upload key; the old one stops working once the upload service's registry cache
    refreshes (``CameraRegistry.refresh_s``)."""
    key = new_upload_key()
    with Session(engine, expire_on_commit=False) as session, session.begin():
        row = session.get(Camera, camera_id, with_for_update=True)
        if row is None:
            raise CameraNotFound(camera_id)
        row.upload_key_hash = hash_upload_key(key, pepper)
        audit.record(session, actor, "camera.rotate_key", f"camera:{camera_id}")
    return row, key
