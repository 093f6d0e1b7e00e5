"""Cameras through the operator API on the real stack: registry, activity recorded by the
stack's ingest worker, changes (audited), and upload keys checked by the real upload app."""

from __future__ import annotations

import time
import uuid

import cv2
import numpy as np
import pytest
from fastapi.testclient import TestClient

from services.upload.app import create_app as create_upload_app
from tests.integration.pipeline import Camera, new_camera, rows
from visionline.camera.publisher import FramePublisher
from visionline.camera_registry import CameraRegistry
from visionline.settings import CommonSettings, UploadSettings

pytestmark = pytest.mark.integration


def camera_id() -> str:
    return f"api-cam-{uuid.uuid4().hex[:8]}"


def register(api_client, as_role, **fields) -> dict:
    body = {"camera_id": camera_id(), **fields}
    response = api_client.post("/v1/cameras", json=body, headers=as_role("admin"))
    assert response.status_code == 201, response.text
    return response.json()


def audit_of(engine, camera: str) -> list[dict]:
    return rows(
        engine,
        "SELECT actor, action, detail FROM audit_log WHERE target = :t ORDER BY id",
        t=f"camera:{camera}",
    )


def jpeg() -> bytes:
    return cv2.imencode(".jpg", np.full((48, 64, 3), 128, np.uint8))[1].tobytes()


# --- registry ------------------------------------------------------------------------------


def test_register_then_read(api_client, engine, as_role) -> None:
    made = register(api_client, as_role, name="Line 1", max_fps=12.5, pipeline="inspect")
    cam = made["camera_id"]
    assert len(made["upload_key"]) >= 40 and made["has_upload_key"] is True
    assert made["health"] == "silent" and made["fps"] == 0 and made["last_frame_at"] is None
    response = api_client.get(f"/v1/cameras/{cam}", headers=as_role("viewer"))
    assert response.status_code == 200, response.text
    body = response.json()
    assert "upload_key" not in body and "upload_key_hash" not in body
    assert made["upload_key"] not in response.text
    shown = (body["name"], body["max_fps"], body["pipeline"], body["enabled"])
    assert shown == ("Line 1", 12.5, "inspect", True)
    stored = rows(engine, "SELECT upload_key_hash FROM cameras WHERE camera_id = :c", c=cam)
    assert stored[0]["upload_key_hash"] and stored[0]["upload_key_hash"] != made["upload_key"]
    again = api_client.post("/v1/cameras", json={"camera_id": cam}, headers=as_role("admin"))
    assert again.status_code == 409
    detail = {
        "camera_id": cam,
        "name": "Line 1",
        "enabled": True,
        "max_fps": 12.5,
        "pipeline": "inspect",
        "model": None,
    }
    assert audit_of(engine, cam) == [
        {"actor": "test-admin", "action": "camera.register", "detail": detail}
    ]


def test_a_camera_s_classifier_must_be_one_of_the_model_repository(
    api_client, as_role, engine
) -> None:
    """The shipped classifier may be chosen; a model not in the repository, or one that is not
    a classifier (an inspection model), is refused with 422 and nothing stored."""
    shipped = register(api_client, as_role, model="efficientnet_lite0")
    assert shipped["model"] == "efficientnet_lite0"
    for model in ("no_such_model", "part_anomaly"):
        body = {"camera_id": camera_id(), "model": model}
        refused = api_client.post("/v1/cameras", json=body, headers=as_role("admin"))
        assert refused.status_code == 422 and model in refused.text
        assert rows(engine, "SELECT 1 FROM cameras WHERE camera_id = :c", c=body["camera_id"]) == []
    cam = register(api_client, as_role)["camera_id"]
    patch = api_client.patch(
        f"/v1/cameras/{cam}", json={"model": "part_anomaly"}, headers=as_role("admin")
    )
    assert patch.status_code == 422
    stored = rows(engine, "SELECT model FROM cameras WHERE camera_id = :c", c=cam)
    assert stored == [{"model": None}]


def test_list_pages_by_id(api_client, as_role) -> None:
    made = sorted(register(api_client, as_role)["camera_id"] for _ in range(3))
    seen, after = [], None
    while True:
        params = {"limit": 2} | ({"after": after} if after else {})
        response = api_client.get("/v1/cameras", params=params, headers=as_role("viewer"))
        assert response.status_code == 200, response.text
        seen += [c["camera_id"] for c in response.json()["items"]]
        after = response.json()["next_after"]
        if after is None:
            break
    assert seen == sorted(seen) and set(made) <= set(seen)
    assert all("upload_key" not in c for c in response.json()["items"])


def test_update_disable_enable(api_client, engine, as_role) -> None:
    cam = register(api_client, as_role)["camera_id"]
    admin = as_role("admin")
    patched = api_client.patch(
        f"/v1/cameras/{cam}", json={"name": "Dock", "max_fps": 5}, headers=admin
    )
    assert patched.status_code == 200, patched.text
    assert (patched.json()["name"], patched.json()["max_fps"]) == ("Dock", 5.0)
    off = api_client.post(f"/v1/cameras/{cam}/disable", headers=admin)
    assert off.status_code == 200 and off.json()["enabled"] is False
    assert off.json()["health"] == "disabled"
    assert api_client.post(f"/v1/cameras/{cam}/disable", headers=admin).status_code == 200
    on = api_client.post(f"/v1/cameras/{cam}/enable", headers=admin)
    assert on.status_code == 200 and on.json()["enabled"] is True
    same = api_client.patch(f"/v1/cameras/{cam}", json={"name": "Dock"}, headers=admin)
    assert same.status_code == 200
    actions = [(a["action"], a["detail"]) for a in audit_of(engine, cam)][1:]
    assert actions == [  # a change that changes nothing is not recorded
        ("camera.update", {"name": "Dock", "max_fps": 5.0}),
        ("camera.update", {"enabled": False}),
        ("camera.update", {"enabled": True}),
    ]


def test_rotated_key_replaces_the_old_one_at_the_upload_service(
    api_client, engine, as_role, api_settings, bootstrap, stack_common
) -> None:
    made = register(api_client, as_role)
    cam, old = made["camera_id"], made["upload_key"]
    upload = create_upload_app(
        CommonSettings(kafka_bootstrap=bootstrap, redis_url=stack_common.redis_url),
        UploadSettings(key_pepper=api_settings.key_pepper),
        CameraRegistry(engine, refresh_s=0),  # no cache: each upload reads the table
        FramePublisher(bootstrap),
    )

    def push(key: str, frame: str) -> int:
        headers = {"Content-Type": "image/jpeg", "X-Camera-Key": key, "X-Frame-Id": frame}
        return client.post(f"/v1/cameras/{cam}/frames", content=jpeg(), headers=headers).status_code

    with TestClient(upload) as client:
        assert push(old, "f-1") == 202
        rotated = api_client.post(f"/v1/cameras/{cam}/rotate-key", headers=as_role("admin"))
        assert rotated.status_code == 200, rotated.text
        new = rotated.json()["upload_key"]
        assert new != old
        assert push(old, "f-2") == 401
        assert push(new, "f-3") == 202
    entries = audit_of(engine, cam)
    assert [a["action"] for a in entries] == ["camera.register", "camera.rotate_key"]
    assert old not in str(entries) and new not in str(entries)


def test_activity_of_frames_through_the_stack(api_client, engine, as_role, bootstrap) -> None:
    cam = new_camera(engine, prefix="api-cam")
    sender = Camera(bootstrap)
    for i in range(5):
        sender.send(cam, jpeg(), frame_id=f"f-{i}")
    sender.flush()
    until, body = time.monotonic() + 60, {}
    while time.monotonic() < until:
        body = api_client.get(f"/v1/cameras/{cam}", headers=as_role("viewer")).json()
        if body["frames_last_minute"] == 5:
            break
        time.sleep(0.5)
    assert body["frames_last_minute"] == 5, body
    assert body["fps"] > 0 and body["health"] == "ok" and body["last_frame_id"] == "f-4"
    listed = api_client.get("/v1/cameras", params={"limit": 500}, headers=as_role("viewer"))
    mine = [c for c in listed.json()["items"] if c["camera_id"] == cam]
    assert mine and mine[0]["fps"] > 0


def test_frames_the_inspect_worker_shed_show_on_the_camera(
    api_client, engine, as_role, stack
) -> None:
    import redis

    from visionline.camera_health import record_shed

    cam = new_camera(engine, prefix="api-line", pipeline="inspect")
    body = api_client.get(f"/v1/cameras/{cam}", headers=as_role("viewer")).json()
    assert body["frames_shed_last_minute"] == 0
    client = redis.Redis.from_url(stack.redis_url)
    for _ in range(4):
        record_shed(client, cam, time.time())
    body = api_client.get(f"/v1/cameras/{cam}", headers=as_role("viewer")).json()
    assert body["frames_shed_last_minute"] == 4


# --- refusals ------------------------------------------------------------------------------


def test_unknown_cameras_are_404(api_client, as_role) -> None:
    cam, admin = camera_id(), as_role("admin")
    assert api_client.get(f"/v1/cameras/{cam}", headers=as_role("viewer")).status_code == 404
    assert api_client.patch(f"/v1/cameras/{cam}", json={}, headers=admin).status_code == 404
    for action in ("disable", "enable", "rotate-key"):
        assert api_client.post(f"/v1/cameras/{cam}/{action}", headers=admin).status_code == 404


def test_tokens_and_roles(api_client, engine, as_role) -> None:
    cam = register(api_client, as_role)["camera_id"]
    for path in ("/v1/cameras", f"/v1/cameras/{cam}"):
        assert api_client.get(path).status_code == 401
    writes = [
        ("POST", "/v1/cameras", {"camera_id": camera_id()}),
        ("PATCH", f"/v1/cameras/{cam}", {"name": "x"}),
        ("POST", f"/v1/cameras/{cam}/disable", None),
        ("POST", f"/v1/cameras/{cam}/enable", None),
        ("POST", f"/v1/cameras/{cam}/rotate-key", None),
    ]
    for method, path, body in writes:
        assert api_client.request(method, path, json=body).status_code == 401, path
        for role in ("viewer", "operator"):
            response = api_client.request(method, path, json=body, headers=as_role(role))
            assert response.status_code == 403, (path, role)
    assert [a["action"] for a in audit_of(engine, cam)] == ["camera.register"]


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"camera_id": "-bad"},
        {"camera_id": "a/b"},
        {"camera_id": "x" * 65},
        {"camera_id": "ok-1", "max_fps": 0},
        {"camera_id": "ok-1", "max_fps": "inf"},
        {"camera_id": "ok-1", "pipeline": "both"},
        {"camera_id": "ok-1", "name": "n" * 201},
        {"camera_id": "ok-1", "name": "nul\x00"},
        {"camera_id": "ok-1", "upload_key": "mine"},
    ],
)
def test_bad_registrations_are_422(api_client, as_role, body) -> None:
    response = api_client.post("/v1/cameras", json=body, headers=as_role("admin"))
    assert response.status_code == 422, response.text


@pytest.mark.parametrize(
    "body", [{"max_fps": -1}, {"enabled": "maybe"}, {"camera_id": "new"}, {"name": ["x"]}]
)
def test_bad_updates_are_422(api_client, as_role, body) -> None:
    cam = register(api_client, as_role)["camera_id"]
    response = api_client.patch(f"/v1/cameras/{cam}", json=body, headers=as_role("admin"))
    assert response.status_code == 422, response.text


def test_bad_ids_and_pages_are_422(api_client, as_role) -> None:
    viewer = as_role("viewer")
    assert api_client.get("/v1/cameras/-bad", headers=viewer).status_code == 422
    for params in ({"limit": 0}, {"limit": 100_000}, {"after": "a\x00"}):
        assert api_client.get("/v1/cameras", params=params, headers=viewer).status_code == 422
