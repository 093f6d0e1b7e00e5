"""GET /v1/live/alerts: alerts published to the stack's alerts topic reach an open SSE stream.

TestClient collects a whole response before returning it, and a live stream never ends, so the
streaming tests talk to a uvicorn server of their own on a free port (same stack, own feed)."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator

import httpx
import pytest
import uvicorn

from services.api.alert_feed import AlertFeed
from services.api.app import create_app
from tests.factories import alert as make_alert
from tests.integration.pipeline import free_port
from visionline.kafka import producer
from visionline.messages import Alert, Topic, to_json
from visionline.settings import CommonSettings

pytestmark = pytest.mark.integration
KEEPALIVE_S = 0.5


@pytest.fixture(scope="module")
def live(stack, engine, api_settings) -> Iterator[tuple[str, AlertFeed]]:
    common = CommonSettings(kafka_bootstrap=stack.kafka_bootstrap, database_url=stack.database_url)
    feed = AlertFeed(stack.kafka_bootstrap)
    settings = api_settings.model_copy(update={"sse_keepalive_s": KEEPALIVE_S})
    app = create_app(common, settings, engine, None, feed)
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, port=port, log_level="warning", timeout_graceful_shutdown=2)
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    until = time.monotonic() + 30
    while not (server.started and feed.ready.is_set()):
        assert time.monotonic() < until, "live API server or its feed did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}", feed
    server.should_exit = True
    thread.join(15)


@pytest.fixture(scope="module")
def publish(stack):
    kafka = producer(stack.kafka_bootstrap)

    def send(value: bytes, key: bytes = b"k") -> None:
        kafka.produce(str(Topic.ALERTS), value=value, key=key)
        assert kafka.flush(10) == 0

    return send


def new_alert(camera_id: str | None = None, severity: str = "warning") -> Alert:
    live_id, frame_id = f"live-{uuid.uuid4().hex}", uuid.uuid4().hex
    return make_alert(
        camera_id or "live-cam", frame_id, "live-test", alert_id=live_id, severity=severity
    )


class Stream:
    """An open SSE stream read line by line: events (name, id, data) and comments."""

    def __init__(self, response: httpx.Response) -> None:
        self.response, self.lines = response, response.iter_lines()
        self.comments: list[str] = []

    def next_event(self, timeout: float = 10.0) -> dict:
        fields: dict[str, str] = {}
        until = time.monotonic() + timeout
        for line in self.lines:
            assert time.monotonic() < until, f"no event within {timeout} s"
            if line.startswith(":"):
                self.comments.append(line)
            elif line:
                name, _, value = line.partition(": ")
                fields[name] = value
            elif fields:
                return fields
        raise AssertionError("stream ended")


def open_stream(client: httpx.Client, url: str, **kwargs):
    """An opened stream whose first line (the ``connected`` comment) is read: subscribed."""
    context = client.stream("GET", f"{url}/v1/live/alerts", **kwargs)
    response = context.__enter__()
    assert response.status_code == 200, response.read()
    assert response.headers["content-type"].startswith("text/event-stream")
    stream = Stream(response)
    assert next(stream.lines) == ": connected"
    return context, stream


@pytest.fixture(scope="module")
def live_url(live) -> str:
    return live[0]


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    # Read timeout above the keepalive: an idle stream still sends a line that often.
    with httpx.Client(timeout=httpx.Timeout(5.0)) as c:
        yield c


def test_an_alert_arrives_on_a_stream_opened_with_a_query_token(live_url, client, tokens, publish):
    context, stream = open_stream(client, live_url, params={"access_token": tokens["viewer"]})
    try:
        alert = new_alert()
        publish(to_json(alert))
        got = stream.next_event(timeout=10)
        assert got["event"] == "alert" and got["id"] == alert.alert_id
        assert Alert.model_validate_json(got["data"]) == alert
    finally:
        context.__exit__(None, None, None)


def test_filters_by_camera_and_severity(live_url, client, as_role, publish):
    camera = f"live-{uuid.uuid4().hex[:8]}"
    params = {"camera_id": camera, "severity": "critical"}
    context, stream = open_stream(client, live_url, params=params, headers=as_role("viewer"))
    try:
        for alert in (new_alert("other-cam", "critical"), new_alert(camera, "warning")):
            publish(to_json(alert))  # neither passes the filter
        wanted = new_alert(camera, "critical")
        publish(to_json(wanted))
        assert stream.next_event(timeout=10)["id"] == wanted.alert_id
    finally:
        context.__exit__(None, None, None)


def test_an_unparsable_message_does_not_stop_the_feed(live_url, client, as_role, publish):
    context, stream = open_stream(client, live_url, headers=as_role("admin"))
    try:
        publish(b"not an alert")
        publish(json.dumps({"alert_id": "x"}).encode())
        alert = new_alert()
        publish(to_json(alert))
        assert stream.next_event(timeout=10)["id"] == alert.alert_id
    finally:
        context.__exit__(None, None, None)


def test_an_idle_stream_gets_keepalive_comments(live_url, client, as_role):
    context, stream = open_stream(
        client,
        live_url,
        headers=as_role("viewer"),
        params={"camera_id": f"silent-{uuid.uuid4().hex}"},
    )
    try:
        until = time.monotonic() + 5
        while ": keepalive" not in stream.comments:
            assert time.monotonic() < until, "no keepalive within 5 s"
            line = next(stream.lines)
            if line.startswith(":"):
                stream.comments.append(line)
    finally:
        context.__exit__(None, None, None)


def test_a_closed_stream_unsubscribes(live, client, as_role):
    url, feed = live
    before = feed.subscribers
    context, _ = open_stream(client, url, headers=as_role("viewer"))
    assert feed.subscribers == before + 1
    context.__exit__(None, None, None)
    until = time.monotonic() + 5  # noticed at the next write at the latest (a keepalive)
    while feed.subscribers != before:
        assert time.monotonic() < until, "the closed stream is still subscribed"
        time.sleep(0.1)


def test_no_token_is_401(api_client):
    response = api_client.get("/v1/live/alerts")
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize("token", ["vl_0123456789abcdef_" + "x" * 43, "nonsense", ""])
def test_a_bad_query_token_is_401(api_client, token):
    assert api_client.get("/v1/live/alerts", params={"access_token": token}).status_code == 401


def test_a_bad_header_token_is_401_even_with_a_good_query_token(api_client, tokens):
    response = api_client.get(
        "/v1/live/alerts",
        params={"access_token": tokens["viewer"]},
        headers={"Authorization": "Bearer nonsense"},
    )
    assert response.status_code == 401


def test_a_bad_severity_is_422(api_client, as_role):
    response = api_client.get(
        "/v1/live/alerts", params={"severity": "loud"}, headers=as_role("viewer")
    )
    assert response.status_code == 422


def test_other_endpoints_ignore_a_query_token(api_client, tokens):
    response = api_client.get("/v1/webhooks", params={"access_token": tokens["admin"]})
    assert response.status_code == 401
