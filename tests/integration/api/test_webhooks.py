"""Webhook subscriptions through the API, and the stack's webhooks worker (``python -m
services.webhooks``, short retries from conftest's WORKER_ENV) delivering alerts to a real HTTP
receiver; internal targets refused at registration and at delivery (conftest allows 127.0.0.1
only)."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from services.webhooks.store import claim_due, enqueue
from tests.factories import alert as make_alert
from visionline.audit import history
from visionline.db import make_engine
from visionline.db.models import WebhookDeliveryRow, WebhookSubscriptionRow
from visionline.kafka import producer
from visionline.messages import Alert, Topic, to_json
from visionline.webhooks import (
    ALERT_ID_HEADER,
    ATTEMPT_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    verify_signature,
)

pytestmark = pytest.mark.integration
SECRET = "receiver-secret-0123456789"


def new_alert(camera_id: str, severity: str = "warning") -> Alert:
    hook_id, frame_id = f"hook-{uuid.uuid4().hex}", uuid.uuid4().hex
    return make_alert(camera_id, frame_id, "hook-test", alert_id=hook_id, severity=severity)


def create(api_client, as_role, **body) -> dict:
    # By default a filter no alert matches: other tests' alerts queue nothing for it.
    body = {"url": "http://127.0.0.1:9/hook", "filter": {"camera_ids": ["no-such-camera"]}, **body}
    response = api_client.post("/v1/webhooks", json=body, headers=as_role("admin"))
    assert response.status_code == 201, response.text
    return response.json()


def rows(engine, webhook_id: int) -> list[WebhookDeliveryRow]:
    stmt = select(WebhookDeliveryRow).where(WebhookDeliveryRow.subscription_id == webhook_id)
    with Session(engine) as session:
        return list(session.scalars(stmt))


# --- subscriptions API -----------------------------------------------------------------------


def test_create_with_a_generated_secret_returns_it_once(api_client, as_role):
    created = create(api_client, as_role, filter={"severities": ["critical"]})
    assert len(created["secret"]) >= 32 and created["enabled"] is True
    assert created["filter"] == {"severities": ["critical"]}
    assert created["created_by"] == "test-admin"
    shown = api_client.get(f"/v1/webhooks/{created['id']}", headers=as_role("admin")).json()
    listed = api_client.get("/v1/webhooks", headers=as_role("admin")).json()
    assert "secret" not in shown and all("secret" not in w for w in listed)
    assert created["id"] in [w["id"] for w in listed]


def test_a_given_secret_is_not_echoed(api_client, as_role):
    assert create(api_client, as_role, secret=SECRET)["secret"] is None


def test_patch_changes_only_what_is_given_and_audits_without_secrets(api_client, as_role, engine):
    created = create(api_client, as_role, secret=SECRET)
    path = f"/v1/webhooks/{created['id']}"
    change = {"enabled": False, "secret": "another-secret-0123456789"}
    response = api_client.patch(path, headers=as_role("admin"), json=change)
    assert response.status_code == 200, response.text
    assert response.json()["enabled"] is False and response.json()["url"] == created["url"]
    change = {"filter": {"camera_ids": ["c1"]}, "url": "https://x.test/h"}
    response = api_client.patch(path, headers=as_role("admin"), json=change)
    assert response.json()["filter"] == {"camera_ids": ["c1"]}
    assert response.json()["url"] == "https://x.test/h" and response.json()["enabled"] is False
    entries = history(engine, target=f"webhook:{created['id']}")
    assert [e.action for e in entries] == ["webhook.update", "webhook.update", "webhook.create"]
    assert entries[1].detail == {"enabled": False, "secret_changed": True}
    assert all(e.actor == "test-admin" for e in entries)
    assert not any("secret" in json.dumps(e.detail).replace("secret_changed", "") for e in entries)


def test_delete_removes_and_audits(api_client, as_role, engine):
    created = create(api_client, as_role)
    path = f"/v1/webhooks/{created['id']}"
    assert api_client.delete(path, headers=as_role("admin")).status_code == 204
    assert api_client.get(path, headers=as_role("admin")).status_code == 404
    assert api_client.delete(path, headers=as_role("admin")).status_code == 404
    assert history(engine, target=f"webhook:{created['id']}")[0].action == "webhook.delete"


@pytest.mark.parametrize(
    "method, path",
    [
        ("get", "/v1/webhooks/2147483000"),
        ("patch", "/v1/webhooks/2147483000"),
        ("delete", "/v1/webhooks/2147483000"),
        ("get", "/v1/webhooks/2147483000/deliveries"),
    ],
)
def test_unknown_ids_are_404(api_client, as_role, method, path):
    kwargs = {"json": {"enabled": True}} if method == "patch" else {}
    response = api_client.request(method, path, headers=as_role("admin"), **kwargs)
    assert response.status_code == 404


@pytest.mark.parametrize(
    "body",
    [
        {"url": "ftp://example.com/x"},
        {"url": "example.com"},
        {"url": "http://"},
        {"url": "http://h:99999/"},
        {"url": "https://a b/"},
        {"url": 5},
        {"url": "http://h/", "secret": "too-short"},
        {"url": "http://h/", "nope": 1},
        {"url": "http://h/", "filter": {"severities": ["loud"]}},
        {"url": "http://h/", "filter": {"cameras": ["c"]}},
        {"secret": SECRET},
        {"url": "http://h/" + "a" * 2000},
        {"url": "http://h/", "enabled": "maybe"},
        {"url": "http://h/\u0000"},
        {"url": "http://h/", "secret": "0123456789abcdef\u0000"},
        {"url": "http://h/", "filter": {"camera_ids": ["a\u0000"]}},
        {"url": "http://h/", "filter": {"rules": [""]}},
    ],
)
def test_bad_bodies_are_422(api_client, as_role, body):
    response = api_client.post("/v1/webhooks", json=body, headers=as_role("admin"))
    assert response.status_code == 422, response.text


def test_bad_patch_and_paging_are_422(api_client, as_role):
    created = create(api_client, as_role)
    path = f"/v1/webhooks/{created['id']}"
    admin = as_role("admin")
    assert api_client.patch(path, json={"url": "gopher://x"}, headers=admin).status_code == 422
    assert api_client.patch(path, json={"id": 3}, headers=admin).status_code == 422
    assert api_client.get("/v1/webhooks/abc", headers=admin).status_code == 422
    assert api_client.get("/v1/webhooks/0", headers=admin).status_code == 422
    assert api_client.get("/v1/webhooks?limit=0", headers=admin).status_code == 422
    assert api_client.get("/v1/webhooks?limit=100000", headers=admin).status_code == 422
    assert api_client.get(f"{path}/deliveries?state=odd", headers=admin).status_code == 422


@pytest.mark.parametrize(
    "method, path",
    [
        ("get", "/v1/webhooks"),
        ("post", "/v1/webhooks"),
        ("get", "/v1/webhooks/1"),
        ("patch", "/v1/webhooks/1"),
        ("delete", "/v1/webhooks/1"),
        ("get", "/v1/webhooks/1/deliveries"),
    ],
)
def test_only_admins(api_client, as_role, method, path):
    kwargs = {"json": {"url": "http://h/"}} if method in ("post", "patch") else {}
    assert api_client.request(method, path, **kwargs).status_code == 401
    bad = {"Authorization": "Bearer vl_0123456789abcdef_" + "x" * 43}
    assert api_client.request(method, path, headers=bad, **kwargs).status_code == 401
    for role in ("viewer", "operator"):
        response = api_client.request(method, path, headers=as_role(role), **kwargs)
        assert response.status_code == 403


# --- claiming: replicas never send the same delivery at once -----------------------------------


def test_enabling_a_subscription_queues_alerts_once(api_client, as_role, engine):
    camera = f"claim-{uuid.uuid4().hex[:8]}"
    created = create(api_client, as_role, filter={"camera_ids": [camera]}, enabled=False)
    first, second = new_alert(camera), new_alert(camera)
    enqueue(engine, [first, second])
    assert rows(engine, created["id"]) == []  # disabled: nothing queued
    api_client.patch(
        f"/v1/webhooks/{created['id']}", json={"enabled": True}, headers=as_role("admin")
    )
    enqueue(engine, [first, second])
    enqueue(engine, [first, second])  # a replay adds nothing
    assert sorted(r.alert_id for r in rows(engine, created["id"])) == sorted(
        [first.alert_id, second.alert_id]
    )
    api_client.delete(f"/v1/webhooks/{created['id']}", headers=as_role("admin"))


def test_a_claimed_delivery_is_skipped_by_other_claims(scratch_database):
    """Two senders, two due deliveries: each gets one. On a database of its own: the stack's
    webhooks worker would claim the rows first."""
    quiet = make_engine(scratch_database("visionline_webhook_claims"))
    with Session(quiet) as session, session.begin():
        session.add(
            WebhookSubscriptionRow(
                url="http://127.0.0.1:9/",
                secret=SECRET,
                enabled=True,
                filter={},
                created_at=datetime.now(UTC),
                created_by="test",
            )
        )
    camera = f"claim-{uuid.uuid4().hex[:8]}"
    enqueue(quiet, [new_alert(camera), new_alert(camera)])
    try:
        with claim_due(quiet) as a, claim_due(quiet) as b, claim_due(quiet) as c:
            assert a is not None and b is not None and c is None
            keys = {(d[0].subscription_id, d[0].alert_id) for d in (a, b)}
            assert len(keys) == 2  # the second claim skipped the locked row
    finally:
        quiet.dispose()


# --- the worker and a real receiver ------------------------------------------------------------


class Receiver(ThreadingHTTPServer):
    """Answers 500 to the first POST of each alert on /flaky and to every POST on /down."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        super().__init__((host, 0), Handler)
        self.received: list[tuple[str, dict[str, str], bytes]] = []
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://{self.server_address[0]}:{self.server_address[1]}"


class Handler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        body = self.rfile.read(int(self.headers["Content-Length"]))
        server: Receiver = self.server  # type: ignore[assignment]
        with server.lock:
            alert_id = self.headers[ALERT_ID_HEADER]
            before = sum(
                1
                for p, h, _ in server.received
                if p == self.path and h.get(ALERT_ID_HEADER) == alert_id
            )
            server.received.append((self.path, dict(self.headers.items()), body))
        ok = self.path == "/flaky" and before >= 1
        self.send_response(200 if ok else 500)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


def serve(host: str) -> Iterator[Receiver]:
    server = Receiver(host)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    yield from serve("127.0.0.1")  # inside the stack's allowed networks (conftest)


@pytest.fixture(scope="module")
def outside() -> Iterator[Receiver]:
    yield from serve("127.0.0.2")  # loopback too, outside the allowed networks


@pytest.fixture(scope="module")
def worker(stack) -> Iterator[list[int]]:
    """The stack's own webhooks worker, with the short retries of WORKER_ENV (conftest)."""
    pids = stack.pids("webhooks")
    yield pids
    assert stack.pids("webhooks") == pids  # nothing it saw made it crash and restart


def wait_for_state(api_client, as_role, webhook_id: int, state: str, timeout: float = 60):
    until = time.monotonic() + timeout
    path = f"/v1/webhooks/{webhook_id}/deliveries"
    while time.monotonic() < until:
        response = api_client.get(path, headers=as_role("admin"))
        assert response.status_code == 200
        if any(d["state"] == state for d in response.json()):
            return response.json()
        time.sleep(0.3)
    raise AssertionError(f"no {state} delivery of webhook {webhook_id} within {timeout} s")


def test_an_alert_is_delivered_signed_and_retried(
    api_client, as_role, engine, stack, receiver, worker
):
    camera = f"hook-{uuid.uuid4().hex[:8]}"
    flaky = create(
        api_client,
        as_role,
        url=f"{receiver.url}/flaky",
        secret=SECRET,
        filter={"camera_ids": [camera]},
    )
    down = create(
        api_client,
        as_role,
        url=f"{receiver.url}/down",
        secret=SECRET,
        filter={"camera_ids": [camera], "severities": ["warning"]},
    )
    other = create(
        api_client,
        as_role,
        url=f"{receiver.url}/flaky",
        secret=SECRET,
        filter={"camera_ids": [camera], "severities": ["critical"]},
    )
    alert = new_alert(camera)
    kafka = producer(stack.kafka_bootstrap)
    kafka.produce(str(Topic.ALERTS), value=b"not an alert", key=camera.encode())
    kafka.produce(str(Topic.ALERTS), value=to_json(alert), key=camera.encode())
    assert kafka.flush(10) == 0

    [delivered] = wait_for_state(api_client, as_role, flaky["id"], "delivered")
    assert delivered["alert_id"] == alert.alert_id and delivered["attempts"] == 2
    assert delivered["last_status"] == 200 and delivered["delivered_at"] is not None
    [row] = rows(engine, flaky["id"])
    assert row.state == "delivered" and row.attempts == 2

    posts = [
        (h, b)
        for p, h, b in receiver.received
        if p == "/flaky" and h.get(ALERT_ID_HEADER) == alert.alert_id
    ]
    assert [h[ATTEMPT_HEADER] for h, _ in posts] == ["1", "2"]
    for headers, body in posts:
        assert headers[SIGNATURE_HEADER].startswith("sha256=")
        assert verify_signature(SECRET, headers[TIMESTAMP_HEADER], body, headers[SIGNATURE_HEADER])
        assert not verify_signature(
            "x" * 20, headers[TIMESTAMP_HEADER], body, headers[SIGNATURE_HEADER]
        )
        assert Alert.model_validate_json(body) == alert

    [failed] = wait_for_state(api_client, as_role, down["id"], "failed", timeout=30)
    assert failed["attempts"] == 3 and failed["last_status"] == 500
    assert failed["last_error"] == "failed: HTTP 5xx"
    assert rows(engine, other["id"]) == []  # its filter wants critical alerts only
    assert stack.pids("webhooks") == worker  # the unparsable message did not stop it


# --- targets: no requests to internal addresses (issue 15, finding 5: SSRF) -------------------


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data/",
        "http://user:secret@example.com/hook",
        "http://[::1]:6379/",
        "http://127.0.0.2:15432/",
        "http://10.0.0.1/hook",
        "http://192.168.0.1/",
        "http://[::ffff:169.254.169.254]/",
        "http://0.0.0.0:16379/",
    ],
)
def test_internal_targets_and_credentials_are_refused(api_client, as_role, engine, url):
    admin = as_role("admin")
    response = api_client.post("/v1/webhooks", json={"url": url}, headers=admin)
    assert response.status_code == 422, response.text
    [error] = response.json()["detail"]
    assert error["loc"] == ["body", "url"]
    assert "not allowed" in error["msg"] or "credentials" in error["msg"]
    stmt = select(func.count()).where(WebhookSubscriptionRow.url == url)
    with Session(engine) as session:
        assert session.scalar(stmt) == 0
    path = f"/v1/webhooks/{create(api_client, as_role)['id']}"
    assert api_client.patch(path, json={"url": url}, headers=admin).status_code == 422
    assert api_client.get(path, headers=admin).json()["url"] == "http://127.0.0.1:9/hook"


def test_a_target_refused_at_delivery_is_not_contacted_and_errors_are_coarse(
    api_client, as_role, engine, stack, receiver, outside, worker
):
    """The worker checks the address it connects to, not only the API at registration: a name
    may resolve elsewhere by then (DNS rebinding), and rows may predate the check. Here a row is
    pointed, behind the API's back, at a receiver on an address outside the allowed networks:
    it must get nothing. A closed port and a refused target read as coarse errors."""
    camera = f"hook-{uuid.uuid4().hex[:8]}"
    only_camera = {"camera_ids": [camera]}
    moved = create(api_client, as_role, url=f"{receiver.url}/moved", filter=only_camera)
    with Session(engine) as session, session.begin():
        session.get(WebhookSubscriptionRow, moved["id"]).url = f"{outside.url}/moved"
    closed = Receiver()  # bound, then closed: a port nothing listens on
    closed.server_close()
    unanswered = create(api_client, as_role, url=f"{closed.url}/closed", filter=only_camera)
    kafka = producer(stack.kafka_bootstrap)
    kafka.produce(str(Topic.ALERTS), value=to_json(new_alert(camera)), key=camera.encode())
    assert kafka.flush(10) == 0

    [refused] = wait_for_state(api_client, as_role, moved["id"], "failed", timeout=30)
    assert refused["last_error"] == "refused: target not allowed"
    assert refused["last_status"] is None and refused["attempts"] == 3
    assert outside.received == []
    [failed] = wait_for_state(api_client, as_role, unanswered["id"], "failed", timeout=30)
    assert failed["last_error"] == "failed: no response" and failed["last_status"] is None
    assert stack.pids("webhooks") == worker
