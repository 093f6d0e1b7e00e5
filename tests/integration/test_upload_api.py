"""The upload API against a real (Tansu) broker; the registry is in memory, except in the
end-to-end test of ``python -m services.upload``, which runs on a real PostgreSQL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import cv2
import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient

from services.upload.app import create_app
from tests.integration.pipeline import frames_of, free_port
from visionline.camera.publisher import FramePublisher
from visionline.cameras import CameraSpec, RegisteredCamera, hash_upload_key, upsert_cameras
from visionline.messages import Topic
from visionline.settings import CommonSettings, UploadSettings

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
TOPIC = str(Topic.RAW_FRAMES)
PEPPER = "test-pepper"
MAX_BYTES = 64 << 10


class MemoryRegistry:
    """The registry interface the API uses (``get``, ``refresh``), without a database."""

    def __init__(self, *cameras: RegisteredCamera, healthy: bool = True) -> None:
        self.cameras = {c.camera_id: c for c in cameras}
        self.healthy = healthy

    def get(self, camera_id: str) -> RegisteredCamera | None:
        self.refresh()
        return self.cameras.get(camera_id)

    def refresh(self) -> None:
        if not self.healthy:
            raise ConnectionError("database down")


def camera(camera_id: str, key: str | None = "secret", enabled: bool = True) -> RegisteredCamera:
    hashed = hash_upload_key(key, PEPPER) if key else None
    return RegisteredCamera(camera_id, enabled, 10.0, hashed)


REGISTRY = MemoryRegistry(
    camera("cam-up"),
    camera("cam-mp"),
    camera("cam-rej"),
    camera("cam-off", enabled=False),
    camera("cam-nokey", key=None),
)


@contextmanager
def api(
    bootstrap: str, registry: MemoryRegistry = REGISTRY, ack_timeout_s: float = 10.0
) -> Iterator[TestClient]:
    common = CommonSettings(kafka_bootstrap=bootstrap)
    upload = UploadSettings(max_bytes=MAX_BYTES, key_pepper=PEPPER)
    publisher = FramePublisher(bootstrap, delivery_timeout_s=ack_timeout_s)
    with TestClient(
        create_app(common, upload, registry, publisher, ack_timeout_s=ack_timeout_s)
    ) as c:
        yield c


def jpeg(value: int = 128, size: tuple[int, int] = (48, 64)) -> bytes:
    return cv2.imencode(".jpg", np.full((*size, 3), value, np.uint8))[1].tobytes()


def png() -> bytes:
    return cv2.imencode(".png", np.full((30, 40, 3), 7, np.uint8))[1].tobytes()


# --- tests -------------------------------------------------------------------------------


def test_raw_jpeg_reaches_kafka_like_a_camera_frame(bootstrap: str) -> None:
    body = jpeg()
    with api(bootstrap) as client:
        response = client.post(
            "/v1/cameras/cam-up/frames",
            content=body,
            headers={
                "Content-Type": "image/jpeg",
                "X-Camera-Key": "secret",
                "X-Frame-Id": "frame-0001",
                "X-Captured-At": "1700000000123",
            },
        )
    assert response.status_code == 202, response.text
    assert response.json() == {"camera_id": "cam-up", "frame_id": "frame-0001", "topic": TOPIC}
    [message] = frames_of(bootstrap, "cam-up", 1)
    assert message.value() == body
    assert dict(message.headers()) == {
        "frame-id": b"frame-0001",
        "captured-at": b"1700000000123",
        "content-type": b"image/jpeg",
    }


def test_multipart_png_with_default_frame_id_and_time(bootstrap: str) -> None:
    body = png()
    before_ms = time.time_ns() // 1_000_000
    with api(bootstrap) as client:
        response = client.post(
            "/v1/cameras/cam-mp/frames",
            files={"image": ("shot.png", body, "image/png")},
            headers={"X-Camera-Key": "secret"},
        )
    assert response.status_code == 202, response.text
    frame_id = response.json()["frame_id"]
    assert frame_id.startswith("cam-mp-1-")
    [message] = frames_of(bootstrap, "cam-mp", 1)
    headers = dict(message.headers())
    assert message.value() == body
    assert headers["frame-id"] == frame_id.encode() and headers["content-type"] == b"image/png"
    assert before_ms <= int(headers["captured-at"]) <= time.time_ns() // 1_000_000


@pytest.mark.parametrize(
    ("path", "headers", "body", "status", "detail"),
    [
        ("cam-rej", {}, jpeg(), 401, "missing X-Camera-Key header"),
        ("cam-rej", {"X-Camera-Key": "wrong"}, jpeg(), 401, "invalid camera key"),
        ("cam-nokey", {"X-Camera-Key": "secret"}, jpeg(), 401, "invalid camera key"),
        ("nobody", {"X-Camera-Key": "secret"}, jpeg(), 404, "unknown camera"),
        ("bad%20id", {"X-Camera-Key": "secret"}, jpeg(), 404, "unknown camera"),
        ("cam-off", {"X-Camera-Key": "secret"}, jpeg(), 403, "camera disabled"),
        ("cam-off", {"X-Camera-Key": "wrong"}, jpeg(), 401, "invalid camera key"),
        ("cam-rej", {"X-Camera-Key": "secret"}, b"x" * (MAX_BYTES + 1), 413, None),
        ("cam-rej", {"X-Camera-Key": "secret", "Content-Type": "text/plain"}, b"hi", 415, None),
        ("cam-rej", {"X-Camera-Key": "secret"}, b"", 400, "empty body"),
        ("cam-rej", {"X-Camera-Key": "secret", "X-Captured-At": "noon"}, jpeg(), 400, None),
        ("cam-rej", {"X-Camera-Key": "secret", "X-Frame-Id": "x" * 129}, jpeg(), 400, None),
    ],
)
def test_rejections(
    bootstrap: str, path: str, headers: dict, body: bytes, status: int, detail: str | None
) -> None:
    headers = {"Content-Type": "image/jpeg", **headers}
    with api(bootstrap) as client:
        response = client.post(f"/v1/cameras/{path}/frames", content=body, headers=headers)
    assert response.status_code == status, response.text
    assert "detail" in response.json()
    if detail:
        assert response.json()["detail"] == detail


def test_multipart_rejections(bootstrap: str) -> None:
    key = {"X-Camera-Key": "secret"}
    url = "/v1/cameras/cam-rej/frames"
    with api(bootstrap) as client:
        big = client.post(url, headers=key, files={"image": ("a.jpg", b"x" * (MAX_BYTES + 1))})
        text = client.post(url, headers=key, files={"image": ("a.txt", b"hi", "text/plain")})
        missing = client.post(url, headers=key, files={"photo": ("a.jpg", jpeg(), "image/jpeg")})
        raw = {**key, "Content-Type": "image/jpeg"}
        chunked = client.post(url, headers=raw, content=iter([b"x" * MAX_BYTES, b"x"]))
    assert big.status_code == 413
    assert text.status_code == 415
    assert missing.status_code == 400
    assert chunked.status_code == 413  # no Content-Length: cut off while reading


def test_rejected_frames_never_reach_kafka(bootstrap: str) -> None:
    with api(bootstrap) as client:
        url = "/v1/cameras/cam-rej/frames"
        for key, body in (("wrong", jpeg()), ("secret", b""), ("secret", b"x" * (MAX_BYTES + 1))):
            headers = {"X-Camera-Key": key, "Content-Type": "image/jpeg"}
            assert client.post(url, content=body, headers=headers).status_code >= 400
        marker = jpeg(value=1)
        headers = {"X-Camera-Key": "secret", "Content-Type": "image/jpeg"}
        assert client.post(url, content=marker, headers=headers).status_code == 202
    # One key, one partition: a rejected frame that slipped through would precede the marker.
    assert [m.value() for m in frames_of(bootstrap, "cam-rej", 1)] == [marker]


def test_healthz(bootstrap: str) -> None:
    with api(bootstrap) as client:
        response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "kafka": "ok", "database": "ok"}
    with api(bootstrap, MemoryRegistry(healthy=False)) as client:
        response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json()["detail"]["database"].startswith("unreachable")


def test_broker_down_gives_503(bootstrap: str) -> None:
    dead = f"127.0.0.1:{free_port()}"
    with api(dead, ack_timeout_s=1.0) as client:
        health = client.get("/healthz")
        upload = client.post(
            "/v1/cameras/cam-up/frames",
            content=jpeg(),
            headers={"X-Camera-Key": "secret", "Content-Type": "image/jpeg"},
        )
    assert health.status_code == 503 and health.json()["detail"]["kafka"].startswith("unreachable")
    assert upload.status_code == 503 and "retry later" in upload.json()["detail"]


def test_upload_service_end_to_end(bootstrap: str, database_url: str) -> None:
    """``python -m services.upload`` with its real registry on PostgreSQL, stopped by SIGTERM."""
    from visionline.db import make_engine

    engine = make_engine(database_url)
    upsert_cameras(engine, [CameraSpec(camera_id="cam-e2e", upload_key="k-e2e")], PEPPER)
    engine.dispose()
    port = free_port()
    env = {
        **os.environ,
        "VISIONLINE_KAFKA_BOOTSTRAP": bootstrap,
        "VISIONLINE_DATABASE_URL": database_url,
        "VISIONLINE_UPLOAD_PORT": str(port),
        "VISIONLINE_UPLOAD_KEY_PEPPER": PEPPER,
    }
    body = jpeg(value=42)
    server = subprocess.Popen(
        [sys.executable, "-m", "services.upload"],
        env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        base = f"http://127.0.0.1:{port}"
        _wait_healthy(base, server)
        response = httpx.post(
            f"{base}/v1/cameras/cam-e2e/frames",
            content=body,
            headers={"X-Camera-Key": "k-e2e", "Content-Type": "image/jpeg"},
        )
        assert response.status_code == 202, response.text
        wrong = httpx.post(
            f"{base}/v1/cameras/cam-e2e/frames",
            content=body,
            headers={"X-Camera-Key": "nope", "Content-Type": "image/jpeg"},
        )
        assert wrong.status_code == 401
        server.send_signal(signal.SIGTERM)
        output, _ = server.communicate(timeout=15)
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
    # uvicorn shuts down gracefully, then re-raises SIGTERM so supervisors see why it ended.
    assert server.returncode in (0, -signal.SIGTERM), output
    assert "Application shutdown complete" in output
    assert [m.value() for m in frames_of(bootstrap, "cam-e2e", 1)] == [body]


def _wait_healthy(base: str, server: subprocess.Popen, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert server.poll() is None, server.stdout.read() if server.stdout else ""
        try:
            if httpx.get(f"{base}/healthz", timeout=5).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise TimeoutError("upload service never became healthy")
