"""The camera registry: which cameras may push frames, at what rate, with which upload key.

Cameras live in PostgreSQL (table ``cameras``); ``infra/cameras.yaml`` seeds it. Upload keys are
stored only as an HMAC, never in clear.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from dataclasses import dataclass
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy import Engine, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from visionline.db.models import Camera

CAMERA_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


class CameraSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    camera_id: str
    name: str = ""
    enabled: bool = True
    max_fps: float = Field(30.0, gt=0)
    upload_key: str | None = None

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


def upsert_cameras(engine: Engine, cameras: list[CameraSpec], pepper: str) -> None:
    """Register or update cameras (idempotent); a camera without a key keeps its old key."""
    with engine.begin() as conn:
        for spec in cameras:
            values = {
                "camera_id": spec.camera_id,
                "name": spec.name,
                "enabled": spec.enabled,
                "max_fps": spec.max_fps,
            }
            if spec.upload_key:
                values["upload_key_hash"] = hash_upload_key(spec.upload_key, pepper)
            stmt = insert(Camera).values(**values)
            update = {k: stmt.excluded[k] for k in values if k != "camera_id"}
            conn.execute(stmt.on_conflict_do_update(index_elements=["camera_id"], set_=update))


@dataclass(frozen=True)
class RegisteredCamera:
    camera_id: str
    enabled: bool
    max_fps: float
    upload_key_hash: str | None


class CameraRegistry:
    """Read-through cache of the cameras table, refreshed every ``refresh_s`` seconds."""

    def __init__(self, engine: Engine, refresh_s: float = 5.0) -> None:
        self._engine = engine
        self._refresh_s = refresh_s
        self._cameras: dict[str, RegisteredCamera] = {}
        self._loaded_at = float("-inf")

    def get(self, camera_id: str) -> RegisteredCamera | None:
        now = time.monotonic()
        stale = now - self._loaded_at > self._refresh_s
        # An unknown id also triggers a refresh, so a camera registered a moment ago is accepted.
        if stale or (camera_id not in self._cameras and now - self._loaded_at > 0.5):
            self.refresh()
        return self._cameras.get(camera_id)

    def refresh(self) -> None:
        with Session(self._engine) as session:
            rows = session.scalars(select(Camera)).all()
        self._cameras = {
            r.camera_id: RegisteredCamera(r.camera_id, r.enabled, r.max_fps, r.upload_key_hash)
            for r in rows
        }
        self._loaded_at = time.monotonic()
