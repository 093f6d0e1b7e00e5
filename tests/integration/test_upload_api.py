"""The upload API against a real (Apache Kafka) broker; the registry is in memory, except in the
end-to-end test of ``python -m services.upload``, which runs on a real PostgreSQL."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import cv2
import httpx
import numpy as np
import pytest
import redis
from fastapi.testclient import TestClient

from services.upload.app import create_app
from tests.integration.pipeline import Camera, chelsea_jpeg, child, frames_of, free_port, new_camera
from visionline.auth_limits import PREFIX
from visionline.camera.publisher import FramePublisher
from visionline.camera_registry import (
    CameraSpec,
    RegisteredCamera,
    hash_upload_key,
    is_placeholder_key,
    load_cameras,
    upsert_cameras,
)
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


@pytest.fixture(autouse=True)
def _stack_redis(stack, monkeypatch) -> None:
    """Upload apps count failed keys in the stack's Redis (CommonSettings reads the env)."""
    monkeypatch.setenv("VISIONLINE_REDIS_URL", stack.redis_url)


@contextmanager
def api(
    bootstrap: str,
    registry: MemoryRegistry = REGISTRY,
    ack_timeout_s: float = 10.0,
    *,
    host: str = "testclient",
    environment: str = "development",
    **settings,
) -> Iterator[TestClient]:
    """The upload app, its requests coming from ``host``."""
    common = CommonSettings(kafka_bootstrap=bootstrap, environment=environment)
    upload = UploadSettings(max_bytes=MAX_BYTES, key_pepper=PEPPER, **settings)
    publisher = FramePublisher(bootstrap, delivery_timeout_s=ack_timeout_s)
    app = create_app(common, upload, registry, publisher, ack_timeout_s=ack_timeout_s)
    with TestClient(app, client=(host, 50000)) as c:
        yield c


def address() -> str:
    """A documentation address (RFC 5737): failed keys from it lock no other test out."""
    return f"192.0.2.{random.randint(1, 254)}"


def jpeg(value: int = 128, size: tuple[int, int] = (48, 64)) -> bytes:
    return cv2.imencode(".jpg", np.full((*size, 3), value, np.uint8))[1].tobytes()


def png() -> bytes:
    return cv2.imencode(".png", np.full((30, 40, 3), 7, np.uint8))[1].tobytes()


# --- tests -------------------------------------------------------------------------------


def test_raw_jpeg_reaches_kafka_like_a_camera_frame(bootstrap: str) -> None:
    body = jpeg()
    captured_ms = str(time.time_ns() // 1_000_000 - 1234)  # ingest's rule: within 7 days
    with api(bootstrap) as client:
        response = client.post(
            "/v1/cameras/cam-up/frames",
            content=body,
            headers={
                "Content-Type": "image/jpeg",
                "X-Camera-Key": "secret",
                "X-Frame-Id": "frame-0001",
                "X-Captured-At": captured_ms,
            },
        )
    assert response.status_code == 202, response.text
    assert response.json() == {"camera_id": "cam-up", "frame_id": "frame-0001", "topic": TOPIC}
    [message] = frames_of(bootstrap, "cam-up", 1)
    assert message.value() == body
    assert dict(message.headers()) == {
        "frame-id": b"frame-0001",
        "captured-at": captured_ms.encode(),
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
        ("nobody", {"X-Camera-Key": "secret"}, jpeg(), 401, "invalid camera key"),
        ("bad%20id", {"X-Camera-Key": "secret"}, jpeg(), 401, "invalid camera key"),
        ("cam-off", {"X-Camera-Key": "secret"}, jpeg(), 403, "camera disabled"),
        ("cam-off", {"X-Camera-Key": "wrong"}, jpeg(), 401, "invalid camera key"),
        ("cam-rej", {"X-Camera-Key": "secret"}, b"x" * (MAX_BYTES + 1), 413, None),
        ("cam-rej", {"X-Camera-Key": "secret", "Content-Type": "text/plain"}, b"hi", 415, None),
        ("cam-rej", {"X-Camera-Key": "secret"}, b"", 400, "empty body"),
        ("cam-rej", {"X-Camera-Key": "secret", "X-Captured-At": "noon"}, jpeg(), 400, None),
        (
            "cam-rej",
            {"X-Camera-Key": "secret", "X-Captured-At": "1700000000123"},
            jpeg(),
            400,
            None,
        ),
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


# --- issue 15: failed keys limited, ids not enumerable, dev keys, one rule with ingest -------


def test_an_unknown_camera_is_answered_as_a_wrong_key(bootstrap: str) -> None:
    """Issue 15: 404 for an unknown camera and 401 for a wrong key let camera ids be listed."""
    headers = {"X-Camera-Key": "wrong", "Content-Type": "image/jpeg"}
    with api(bootstrap, host=address()) as client:
        answers = [
            client.post(f"/v1/cameras/{cam}/frames", content=jpeg(), headers=headers)
            for cam in ("cam-rej", "nobody", "bad%20id", "cam-nokey")
        ]
    assert {(a.status_code, a.content) for a in answers} == {
        (401, b'{"detail":"invalid camera key"}')
    }
    assert len({tuple((k, v) for k, v in a.headers.items() if k != "date") for a in answers}) == 1


def test_wrong_keys_are_refused_429_per_client_and_per_camera(bootstrap: str, stack) -> None:
    """Issue 15: 200 wrong keys in 0.2 s, all 401. Counted in Redis, per address and per
    camera; while locked, even the right key gets 429 (so guessing cannot go on)."""
    cam, ghost = f"cam-limit-{uuid.uuid4().hex[:6]}", f"ghost-{uuid.uuid4().hex[:6]}"
    registry = MemoryRegistry(camera(cam))
    limits = {"auth_max_failures": 3, "auth_max_failures_per_camera": 5, "auth_window_s": 60}
    wrong = {"X-Camera-Key": "wrong", "Content-Type": "image/jpeg"}
    right = {"X-Camera-Key": "secret", "Content-Type": "text/plain"}  # let in: 415, unpublished
    a, b, c, d = hosts = [f"192.0.2.{n}" for n in random.sample(range(1, 255), 4)]
    with ExitStack() as opened:
        clients = {
            h: opened.enter_context(api(bootstrap, registry, host=h, **limits)) for h in hosts
        }
        opened.callback(_forget_failures, stack.redis_url, [cam, ghost], hosts)

        def status(host: str, camera_id: str, headers: dict, times: int = 1) -> list:
            url = f"/v1/cameras/{camera_id}/frames"
            return [clients[host].post(url, content=b"hi", headers=headers) for _ in range(times)]

        assert [r.status_code for r in status(a, cam, wrong, 3)] == [401] * 3
        [locked] = status(a, cam, right)
        assert locked.status_code == 429, locked.text
        assert 50 <= int(locked.headers["retry-after"]) <= 60
        assert [r.status_code for r in status(b, cam, right)] == [415]  # the camera: 3 of 5
        assert [r.status_code for r in status(b, cam, wrong, 2)] == [401] * 2
        assert [r.status_code for r in status(c, cam, right)] == [429]  # from any address
        # An unknown camera is locked alike: a 429 tells no registered id from another.
        assert [r.status_code for r in status(d, ghost, wrong, 3)] == [401] * 3
        assert [r.status_code for r in status(c, ghost, wrong, 3)] == [401, 401, 429]


def _forget_failures(redis_url: str, cameras: list[str], hosts: list[str]) -> None:
    store = redis.Redis.from_url(redis_url)
    for kind, value in [("camera", c) for c in cameras] + [("client", h) for h in hosts]:
        store.delete(f"{PREFIX}:upload-{kind}:{value}")
    store.close()


def test_dev_keys_open_a_camera_in_development_only(bootstrap: str) -> None:
    cam = f"cam-dev-{uuid.uuid4().hex[:6]}"
    registry = MemoryRegistry(camera(cam, key=f"dev-key-{cam}"))
    headers = {"X-Camera-Key": f"dev-key-{cam}", "Content-Type": "text/plain"}
    url = f"/v1/cameras/{cam}/frames"
    with api(bootstrap, registry) as dev, api(bootstrap, registry, environment="staging") as other:
        assert dev.post(url, content=b"hi", headers=headers).status_code == 415  # let in
        refused = other.post(url, content=b"hi", headers=headers)
    assert refused.status_code == 401 and refused.json() == {"detail": "invalid camera key"}


def test_the_stack_seeds_random_upload_keys_and_no_dev_key_opens_its_cameras(stack) -> None:
    """Issue 15: infra/cameras.yaml seeded ``dev-key-<camera>``, guessable from the id."""
    keys = json.loads((stack.settings.state_dir / "upload-keys.json").read_text())
    assert set(keys) == {c.camera_id for c in load_cameras(REPO / "infra" / "cameras.yaml")}
    assert all(len(key) >= 40 and not is_placeholder_key(key) for key in keys.values())
    url = f"{stack.upload_url}/v1/cameras/dock-door-1/frames"
    for key, status in ((keys["dock-door-1"], 415), ("dev-key-dock-door-1", 401)):
        headers = {"X-Camera-Key": key, "Content-Type": "text/plain"}  # 415: let in
        assert httpx.post(url, content=b"hi", headers=headers).status_code == status


def test_no_schema_no_docs_and_security_headers(bootstrap: str, stack) -> None:
    with api(bootstrap) as client:
        for path in ("/docs", "/redoc", "/openapi.json"):
            assert client.get(path).status_code == 404, path
        answers = [client.get("/healthz"), client.post("/v1/cameras/nobody/frames")]
    answers.append(httpx.get(f"{stack.upload_url}/openapi.json"))  # the stack's own process
    assert answers[-1].status_code == 404
    for answer in answers:
        assert answer.headers["x-frame-options"] == "DENY"
        assert answer.headers["x-content-type-options"] == "nosniff"
        assert answer.headers["referrer-policy"] == "no-referrer"
        assert answer.headers["content-security-policy"].startswith("default-src 'none'")


def test_a_content_type_is_read_by_one_rule_over_kafka_and_http(bootstrap, engine, predictions):
    """Issue 15: the upload service took IMAGE/JPEG, ingest dead-lettered it."""
    camera_id, frame_id = new_camera(engine), f"upper-{uuid.uuid4().hex[:6]}"
    sender = Camera(bootstrap)
    sender.send(camera_id, chelsea_jpeg(640, 480), frame_id, [("content-type", b"IMAGE/JPEG")])
    sender.flush()
    predictions.wait_for(lambda seen: any(p["frame_id"] == frame_id for p in seen), timeout=60)
    cam = f"cam-type-{uuid.uuid4().hex[:6]}"
    headers = {"X-Camera-Key": "secret", "Content-Type": "IMAGE/JPEG"}
    with api(bootstrap, MemoryRegistry(camera(cam))) as client:
        accepted = client.post(f"/v1/cameras/{cam}/frames", content=jpeg(), headers=headers)
    assert accepted.status_code == 202, accepted.text
    [message] = frames_of(bootstrap, cam, 1)
    assert dict(message.headers())["content-type"] == b"image/jpeg"


def test_x_frame_id_is_read_as_utf8_and_by_the_rule_of_kafka_frames(
    bootstrap, stack, engine
) -> None:
    """Issue 15: a UTF-8 X-Frame-Id was read as Latin-1 and published garbled (then ingest
    dead-lettered it: frame ids are ASCII on the wire). Now refused at the door, clearly."""
    # The stack's own upload service: over a socket, the header's bytes arrive as sent.
    cam, key = f"cam-fid-{uuid.uuid4().hex[:6]}", uuid.uuid4().hex
    upsert_cameras(engine, [CameraSpec(camera_id=cam, upload_key=key)], UploadSettings().key_pepper)
    url = f"{stack.upload_url}/v1/cameras/{cam}/frames"
    base = {"X-Camera-Key": key, "Content-Type": "image/jpeg"}
    utf8 = httpx.post(url, content=jpeg(), headers={**base, "X-Frame-Id": "caméra-1".encode()})
    broken = httpx.post(url, content=jpeg(), headers={**base, "X-Frame-Id": b"f-\xff\xfe"})
    assert utf8.status_code == 400 and "A-Z a-z 0-9 . _ : -" in utf8.json()["detail"]
    assert broken.status_code == 400 and broken.json() == {"detail": "X-Frame-Id is not UTF-8"}
    cam = f"cam-fid-{uuid.uuid4().hex[:6]}"  # in memory: its frame stays out of the pipeline
    with api(bootstrap, MemoryRegistry(camera(cam))) as client:
        headers = {"X-Camera-Key": "secret", "Content-Type": "image/jpeg", "X-Frame-Id": "f:1.a_b"}
        plain = client.post(f"/v1/cameras/{cam}/frames", content=jpeg(), headers=headers)
    assert plain.status_code == 202 and plain.json()["frame_id"] == "f:1.a_b"
    [message] = frames_of(bootstrap, cam, 1)
    assert dict(message.headers())["frame-id"] == b"f:1.a_b"


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
    pipes = dict(stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    upload = [sys.executable, "-m", "services.upload"]
    with child(upload, env=env, cwd=REPO, **pipes) as server:
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
