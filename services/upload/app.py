"""The upload API: authenticated cameras POST an image, it goes to Kafka as a camera would send it.

Only cheap checks happen here (who, how big, which type); decoding and deep validation are
ingest's job, exactly as for frames that cameras publish to Kafka themselves.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Annotated, Protocol

from confluent_kafka import KafkaError, KafkaException
from fastapi import FastAPI, Header, HTTPException, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser

from visionline.auth_limits import FailureLimiter, Subject, client_of, limiter_for
from visionline.camera.publisher import FramePublisher
from visionline.camera_registry import (
    CAMERA_ID,
    RegisteredCamera,
    hash_upload_key,
    is_placeholder_key,
)
from visionline.frame_headers import parse_captured_at
from visionline.http_headers import SecurityHeaders
from visionline.imaging import FrameRejected
from visionline.logs import set_frame
from visionline.messages import CONTENT_TYPES, FRAME_ID, image_media_type
from visionline.settings import CommonSettings, UploadSettings

log = logging.getLogger(__name__)

MULTIPART_OVERHEAD = 16 << 10  # boundaries and part headers around the image


class Registry(Protocol):
    """What the API needs of the camera registry (``visionline.camera_registry.CameraRegistry``)."""

    def get(self, camera_id: str) -> RegisteredCamera | None: ...

    def refresh(self) -> None: ...


def create_app(
    common: CommonSettings,
    upload_settings: UploadSettings,
    registry: Registry,
    publisher: FramePublisher,
    *,
    ack_timeout_s: float = 10.0,
) -> FastAPI:
    """The upload API; its lifespan polls ``publisher`` for acks and flushes it at shutdown."""

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        publisher.start_polling()
        yield
        await run_in_threadpool(publisher.close)

    # No schema and no docs pages: callers are cameras, the one endpoint is in the README.
    app = FastAPI(
        title="visionline upload",
        lifespan=lifespan,
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
    )
    app.add_middleware(SecurityHeaders)
    keys = KeyCheck(
        registry,
        limiter_for(common.redis_url, upload_settings.auth_window_s),
        upload_settings,
        placeholders_allowed=common.is_development,
    )

    @app.get("/healthz")
    async def healthz() -> JSONResponse:
        """200 when the broker and the camera registry answer, 503 otherwise."""
        kafka, database = await asyncio.gather(_check(publisher.ping), _check(registry.refresh))
        checks = {"kafka": kafka, "database": database}
        if kafka == database == "ok":
            return JSONResponse({"status": "ok", **checks})
        return JSONResponse({"detail": checks}, status_code=503)

    @app.post("/v1/cameras/{camera_id}/frames", status_code=202)
    async def upload_frame(
        camera_id: str,
        request: Request,
        x_camera_key: Annotated[str | None, Header()] = None,
        x_captured_at: Annotated[str | None, Header()] = None,
    ) -> dict[str, str]:
        """Accept one frame: raw image body (image/jpeg, image/png) or multipart field ``image``."""
        await run_in_threadpool(keys.authorize, request, camera_id, x_camera_key)
        frame_id, captured_at = _frame_id(request), _captured_at(x_captured_at)
        set_frame(camera_id, frame_id)  # this request's log records name the frame
        data, content_type = await read_image(request, upload_settings.max_bytes)
        frame_id = await _deliver(
            publisher, ack_timeout_s, camera_id, data, frame_id, captured_at, content_type
        )
        return {"camera_id": camera_id, "frame_id": frame_id, "topic": publisher.topic}

    return app


async def _check(probe) -> str:
    try:
        await run_in_threadpool(probe)
    except Exception as exc:  # noqa: BLE001 - any failure means unhealthy
        log.warning("health check %s failed: %s", getattr(probe, "__qualname__", probe), exc)
        return f"unreachable ({type(exc).__name__})"  # the type only: messages may hold hosts
    return "ok"


@dataclass(frozen=True)
class KeyCheck:
    """Who may upload as a camera: its key (only its HMAC is stored), with failed attempts
    counted per client address and per camera id (``visionline.auth_limits``)."""

    registry: Registry
    limiter: FailureLimiter
    settings: UploadSettings
    # ``dev-key-<camera>`` keys, guessable from the id, work only in development.
    placeholders_allowed: bool

    def authorize(self, request: Request, camera_id: str, key: str | None) -> None:
        """401 missing or wrong key, the same for an unknown camera (ids cannot be told from
        the answers); 429 while the client or the camera is locked out; 403 disabled (told
        only to key holders). Blocking: run it in a thread."""
        if not key:
            raise HTTPException(401, "missing X-Camera-Key header")
        subjects = self._subjects(request, camera_id)
        wait = self.limiter.retry_after(subjects)
        if wait:
            retry = {"Retry-After": str(wait)}
            raise HTTPException(429, "too many failed authentications, retry later", retry)
        camera = _lookup(self.registry, camera_id)
        # Hashed whether or not the camera exists, so that both take the same work.
        given = hash_upload_key(key, self.settings.key_pepper)
        stored = camera.upload_key_hash if camera is not None else None
        valid = hmac.compare_digest(given, stored or "") and camera is not None
        if not valid or (is_placeholder_key(key) and not self.placeholders_allowed):
            self.limiter.failed(subjects)
            raise HTTPException(401, "invalid camera key")
        if not camera.enabled:
            raise HTTPException(403, "camera disabled")

    def _subjects(self, request: Request, camera_id: str) -> list[Subject]:
        host = request.client.host if request.client else None
        subjects = [Subject("upload-client", client_of(host), self.settings.auth_max_failures)]
        if CAMERA_ID.match(camera_id):  # others cannot be registered: no camera to protect
            most = self.settings.auth_max_failures_per_camera
            subjects.append(Subject("upload-camera", camera_id, most))
        return subjects


def _lookup(registry: Registry, camera_id: str) -> RegisteredCamera | None:
    if not CAMERA_ID.match(camera_id):
        return None  # cannot be registered: spare the database
    try:
        return registry.get(camera_id)
    except Exception as exc:
        log.exception("camera registry lookup failed")
        raise HTTPException(503, "camera registry unavailable") from exc


def _frame_id(request: Request) -> str | None:
    """X-Frame-Id as sent: UTF-8 (Starlette reads header bytes as Latin-1), and by the rule
    ingest applies to frames over Kafka, so that a 202 is never followed by a dead letter."""
    raw = request.headers.get("x-frame-id")
    if raw is None:
        return None
    try:
        value = raw.encode("latin-1").decode("utf-8")
    except UnicodeDecodeError:
        raise HTTPException(400, "X-Frame-Id is not UTF-8") from None
    if not FRAME_ID.fullmatch(value):
        raise HTTPException(
            400, "X-Frame-Id must be 1-128 of A-Z a-z 0-9 . _ : - and start alphanumeric"
        )
    return value


def _captured_at(value: str | None) -> int | None:
    """Epoch ms of ``X-Captured-At``, by ingest's rule (epoch ms or ISO 8601 with a zone, at
    most 7 days off): a time ingest would refuse is refused here, not accepted and then
    dead-lettered."""
    if value is None:
        return None
    try:
        return round(parse_captured_at(value, time.time()) * 1000)
    except FrameRejected as rejected:
        raise HTTPException(400, f"X-Captured-At: {rejected.message}") from None


async def read_image(request: Request, max_bytes: int) -> tuple[bytes, str]:
    """The image and its content type, from a raw body or the multipart field ``image``."""
    declared = request.headers.get("content-type", "")
    if declared.split(";", 1)[0].strip().lower() == "multipart/form-data":
        return await _read_multipart(request, max_bytes)
    content_type = image_media_type(declared)
    if content_type is None:
        raise HTTPException(415, f"send {' or '.join(CONTENT_TYPES)}, or multipart field image")
    body = bytearray()
    async for chunk in _limited(request, max_bytes):
        body += chunk
    if not body:
        raise HTTPException(400, "empty body")
    return bytes(body), content_type


async def _limited(request: Request, limit: int) -> AsyncIterator[bytes]:
    """The request body, cut off with 413 as soon as it passes ``limit``: never buffered whole."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise HTTPException(413, f"body larger than {limit} bytes")
    seen = 0
    async for chunk in request.stream():
        seen += len(chunk)
        if seen > limit:
            raise HTTPException(413, f"body larger than {limit} bytes")
        yield chunk


async def _read_multipart(request: Request, max_bytes: int) -> tuple[bytes, str]:
    stream = _limited(request, max_bytes + MULTIPART_OVERHEAD)
    parser = MultiPartParser(request.headers, stream, max_files=1, max_fields=8)
    try:
        form = await parser.parse()
    except MultiPartException as exc:
        raise HTTPException(400, f"bad multipart body: {exc.message}") from None
    try:
        image = form.get("image")
        if not isinstance(image, UploadFile):
            raise HTTPException(400, "multipart body needs a file field named image")
        content_type = image_media_type(image.content_type or "")
        if content_type is None:
            raise HTTPException(415, f"field image must be {' or '.join(CONTENT_TYPES)}")
        data = await image.read(max_bytes + 1)
    finally:
        await form.close()
    if len(data) > max_bytes:
        raise HTTPException(413, f"image larger than {max_bytes} bytes")
    if not data:
        raise HTTPException(400, "empty image")
    return data, content_type


async def _deliver(
    publisher: FramePublisher,
    timeout: float,
    camera_id: str,
    data: bytes,
    frame_id: str | None,
    captured_at: int | None,
    content_type: str,
) -> str:
    """Produce the frame and wait for the broker's ack; 503 when it does not come."""
    loop = asyncio.get_running_loop()
    acked: asyncio.Future[KafkaError | None] = loop.create_future()

    def on_delivery(err: KafkaError | None, _msg) -> None:  # runs on the poller thread
        loop.call_soon_threadsafe(_settle, acked, err)

    try:
        frame_id = publisher.publish(
            camera_id, data, frame_id, captured_at, content_type, on_delivery
        )
        err = await asyncio.wait_for(acked, timeout)
    except (BufferError, KafkaException, TimeoutError) as exc:
        log.warning("frame of %s not delivered: %s", camera_id, type(exc).__name__)
        raise HTTPException(503, "broker unavailable, retry later") from None
    if err is not None:
        log.warning("frame of %s refused by the broker: %s", camera_id, err)
        raise HTTPException(503, "broker did not accept the frame, retry later")
    return frame_id


def _settle(future: asyncio.Future, err: KafkaError | None) -> None:
    if not future.done():  # a request that timed out has cancelled its future
        future.set_result(err)
