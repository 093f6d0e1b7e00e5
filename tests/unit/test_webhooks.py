"""Webhook logic without services: signatures, filters, backoff, URL checks and the target
policy (SSRF), the checked HTTP client against a local receiver, delivery rows and attempt
outcomes."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from services.api.alert_feed import offer
from services.api.routers.live import event, wanted
from services.webhooks.handlers import post
from services.webhooks.logic import Retry, Subscription, delivery_rows, outcome, parse_alerts
from services.webhooks.store import Due
from services.webhooks.transport import checked_client
from tests.factories import alert as make_alert
from visionline.messages import Alert, to_json
from visionline.webhooks import (
    ALERT_ID_HEADER,
    ATTEMPT_HEADER,
    NO_RESPONSE,
    REFUSED,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    TargetRefused,
    address_allowed,
    backoff_s,
    check_target,
    check_url,
    coarse_error,
    delivery_headers,
    generate_secret,
    matches,
    sign,
    verify_signature,
)

SECRET = "s" * 32
NOW = datetime(2026, 1, 1, tzinfo=UTC)


def alert(**changes) -> Alert:
    at = NOW.timestamp()
    base = dict(alert_id="a-1", severity="warning", captured_at=at, created_at=at + 1)
    return make_alert("cam-1", "f-1", "low-conf", **(base | changes))


def test_signature_is_hmac_sha256_over_timestamp_dot_body():
    body = b'{"a":1}'
    expected = hmac.new(SECRET.encode(), b"1700000000." + body, hashlib.sha256).hexdigest()
    assert sign(SECRET, "1700000000", body) == f"sha256={expected}"


def test_verify_accepts_our_signature_and_refuses_changes():
    body, ts = b'{"a":1}', "1700000000"
    good = sign(SECRET, ts, body)
    assert verify_signature(SECRET, ts, body, good, now=1700000010)
    assert not verify_signature(SECRET, ts, b'{"a":2}', good, now=1700000010)
    assert not verify_signature("t" * 32, ts, body, good, now=1700000010)
    assert not verify_signature(SECRET, "1700000001", body, good, now=1700000010)
    assert not verify_signature(SECRET, ts, body, "", now=1700000010)


def test_verify_refuses_old_or_malformed_timestamps():
    body, ts = b"{}", "1700000000"
    good = sign(SECRET, ts, body)
    assert not verify_signature(SECRET, ts, body, good, tolerance_s=300, now=1700000301)
    assert verify_signature(SECRET, ts, body, good, tolerance_s=300, now=1700000299)
    assert not verify_signature(SECRET, "soon", body, sign(SECRET, "soon", body))


def test_delivery_headers_sign_the_body_sent():
    body = to_json(alert())
    headers = delivery_headers(SECRET, body, "a-1", 2, now=1700000000.7)
    assert headers[TIMESTAMP_HEADER] == "1700000000"
    assert headers[ALERT_ID_HEADER] == "a-1" and headers[ATTEMPT_HEADER] == "2"
    assert verify_signature(SECRET, "1700000000", body, headers[SIGNATURE_HEADER], now=1700000000)


def test_filters_match_each_given_list():
    a = alert()
    assert matches({}, a)
    assert matches({"camera_ids": None}, a)
    assert matches({"camera_ids": ["cam-1", "cam-2"], "severities": ["warning"]}, a)
    assert not matches({"camera_ids": ["cam-2"]}, a)
    assert not matches({"severities": ["critical"]}, a)
    assert not matches({"rules": ["other"]}, a)
    assert matches({"rules": ["low-conf"]}, a)
    assert not matches({"camera_ids": []}, a)


def test_backoff_doubles_up_to_the_cap():
    assert [backoff_s(n, 1.0, 10.0) for n in range(0, 7)] == [0, 1, 2, 4, 8, 10, 10]
    assert backoff_s(10_000, 0.5, 300.0) == 300.0  # no overflow on a long outage


@pytest.mark.parametrize(
    "url", ["http://example.com/hook", "https://h:8443/x?y=1", "http://127.0.0.1:9/"]
)
def test_http_urls_pass(url):
    assert check_url(url) == url


@pytest.mark.parametrize(
    "url",
    [
        "ftp://example.com/",
        "example.com/hook",
        "http://",
        "https://h:99999/",
        "http://exa mple.com/",
        "javascript:x",
        "http://h/\n",
        "https://" + "a" * 2000,
        "http://user:pw@example.com/",
        "http://user@example.com/",
        "https://@example.com/",
    ],
)
def test_other_urls_are_refused(url):
    with pytest.raises(ValueError):
        check_url(url)


def test_generated_secrets_are_long_and_differ():
    a, b = generate_secret(), generate_secret()
    assert a != b and len(a) >= 32


def test_delivery_rows_per_matching_subscription_from_its_creation_on():
    created = NOW - timedelta(minutes=1)
    subs = [
        Subscription(1, {}, created),
        Subscription(2, {"severities": ["critical"]}, created),
        Subscription(3, {}, NOW + timedelta(hours=1)),
    ]
    rows = delivery_rows(subs, [alert(), alert(alert_id="a-2", severity="critical")], NOW)
    pairs = sorted((r["subscription_id"], r["alert_id"]) for r in rows)
    assert pairs == [(1, "a-1"), (1, "a-2"), (2, "a-2")]
    first = rows[0]
    assert first["state"] == "pending" and first["attempts"] == 0
    assert first["next_attempt_at"] == NOW and Alert.model_validate(first["payload"]) == alert()


RETRY = Retry(max_attempts=3, backoff_s=1.0, max_backoff_s=60.0)


def test_a_2xx_delivers():
    changes = outcome(1, 204, None, RETRY, NOW)
    assert changes["state"] == "delivered" and changes["attempts"] == 2
    assert changes["delivered_at"] == NOW and changes["last_status"] == 204
    assert changes["last_error"] is None


def test_a_failure_is_retried_later_then_failed():
    first = outcome(0, 500, "failed: HTTP 5xx", RETRY, NOW)
    assert first["state"] == "pending" and first["attempts"] == 1
    assert first["next_attempt_at"] == NOW + timedelta(seconds=1)
    second = outcome(1, None, NO_RESPONSE, RETRY, NOW)
    assert second["next_attempt_at"] == NOW + timedelta(seconds=2)
    assert second["last_status"] is None and second["last_error"] == NO_RESPONSE
    last = outcome(2, 404, None, RETRY, NOW)
    assert last["state"] == "failed" and last["attempts"] == 3
    assert last["last_error"] == "failed: HTTP 4xx" and last["last_status"] == 404
    assert "next_attempt_at" not in last


def test_a_redirect_is_not_a_delivery():
    assert outcome(0, 302, "failed: HTTP 3xx", RETRY, NOW)["state"] == "pending"


def test_recorded_errors_are_coarse():
    """No kind of network failure is stored: it would tell open ports from closed ones."""
    for detail in (
        "ConnectError: [Errno 111] Connection refused",
        "ReadTimeout: timed out",
        "ConnectError: [Errno -2] Name or service not known",
        "x" * 5000,
    ):
        assert outcome(0, None, detail, RETRY, NOW)["last_error"] == NO_RESPONSE
    assert outcome(0, None, REFUSED, RETRY, NOW)["last_error"] == REFUSED
    assert outcome(0, 503, None, RETRY, NOW)["last_error"] == "failed: HTTP 5xx"


@pytest.mark.parametrize(
    "error, status, shown",
    [
        (None, None, None),
        (None, 200, None),
        ("HTTP 500", 500, "failed: HTTP 5xx"),
        ("HTTP 404", None, "failed: HTTP 4xx"),
        ("failed: HTTP 3xx", 302, "failed: HTTP 3xx"),
        ("ConnectError: [Errno 111] Connection refused", None, NO_RESPONSE),
        ("RemoteProtocolError: Server disconnected", None, NO_RESPONSE),
        ("refused: anything", None, REFUSED),
        (NO_RESPONSE, None, NO_RESPONSE),
    ],
)
def test_coarse_error_also_covers_errors_stored_before(error, status, shown):
    assert coarse_error(error, status) == shown


# --- target policy (SSRF) ----------------------------------------------------------------------

PUBLIC = "93.184.215.14"
NAMES = {
    "hooks.example": [PUBLIC, "2606:2800:21f:cb07:6820:80da:af6b:8b2c"],
    "localhost": ["127.0.0.1", "::1"],
    "mixed.example": [PUBLIC, "10.0.0.7"],
    "internal.example": ["10.20.3.4"],
}


def fake_resolve(host: str, port: int) -> list[str]:
    if host not in NAMES:
        raise OSError("Name or service not known")
    return NAMES[host]


def net(*cidrs: str) -> tuple:
    return tuple(ipaddress.ip_network(c) for c in cidrs)


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data/",  # cloud metadata
        "http://[fd00:ec2::254]/latest/meta-data/",  # AWS metadata over IPv6
        "http://10.1.2.3/",
        "http://172.16.0.1/",
        "http://172.31.255.255:8080/",
        "http://192.168.1.1/",
        "http://127.0.0.1:6379/",
        "http://127.8.9.10:5432/",
        "http://[::1]:5432/",
        "http://[::ffff:127.0.0.1]/",
        "http://[::ffff:a00:1]/",
        "http://0.0.0.0:6379/",
        "http://[::]/",
        "http://localhost:15432/",
        "http://LOCALHOST/",
        "http://mixed.example/",
        "http://100.64.0.1/",
        "http://224.0.0.1/",
        "http://[fe80::1]/",
        "http://[fc00::1]/",
        "http://198.18.0.1/",
        "http://240.0.0.1/",
        "http://255.255.255.255/",
        "http://[2002:7f00:1::1]/",  # 6to4 of 127.0.0.1
        "http://[64:ff9b::a9fe:a9fe]/",  # NAT64 of 169.254.169.254
    ],
)
def test_internal_targets_are_refused(url):
    with pytest.raises(TargetRefused) as refused:
        check_target(url, resolve=fake_resolve)
    # Why, and what to set; never the addresses the name resolved to.
    assert "VISIONLINE_WEBHOOKS_ALLOWED_NETWORKS" in str(refused.value)
    assert not any(a in str(refused.value) for a in ("10.0.0.7", "127.0.0.1", "::1"))


@pytest.mark.parametrize("url", ["http://2130706433/", "http://0x7f.1/", "http://127.1:6379/"])
def test_numeric_spellings_of_loopback_are_refused(url):
    """The system resolver reads these as 127.0.0.1; the check resolves them as it would."""
    with pytest.raises(TargetRefused):
        check_target(url)


@pytest.mark.parametrize(
    "url",
    [
        "ftp://example.com/x",
        "gopher://hooks.example/",
        "http://user:pw@hooks.example/",
        "http://user@hooks.example/",
        "file:///etc/passwd",
    ],
)
def test_other_schemes_and_credentials_are_refused(url):
    with pytest.raises(ValueError):
        check_target(url, resolve=fake_resolve)


@pytest.mark.parametrize(
    "url",
    [
        f"http://{PUBLIC}/hook",
        "https://hooks.example:8443/x",
        "https://[2606:4700:4700::1111]/",
        "http://[::ffff:5db8:d70e]/",
        "http://nowhere.invalid/",
    ],
)
def test_public_targets_pass(url):
    """Public addresses, and a name that does not resolve now: the worker decides on that one
    when it connects."""
    assert check_target(url, resolve=fake_resolve) == url


def test_allowed_networks_admit_a_private_receiver_and_nothing_else():
    allowed = net("10.20.0.0/16", "fd12::/16")
    for url in (
        "http://10.20.3.4/",
        "http://internal.example/",
        "http://[fd12::5]/",
        "http://[::ffff:10.20.3.4]/",
    ):
        assert check_target(url, allowed, resolve=fake_resolve) == url
    for url in ("http://10.21.0.1/", "http://127.0.0.1/", "http://mixed.example/"):
        with pytest.raises(TargetRefused):
            check_target(url, allowed, resolve=fake_resolve)


def test_metadata_is_refused_even_inside_an_allowed_network():
    everything = net("0.0.0.0/0", "::/0")
    assert address_allowed("10.0.0.1", everything) and address_allowed("::1", everything)
    for address in ("169.254.169.254", "fd00:ec2::254", "::ffff:169.254.169.254"):
        assert not address_allowed(address, everything)


# --- the checked client: delivery-time checks against a real local receiver ---------------------


class Receiver(ThreadingHTTPServer):
    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), ReceiverHandler)
        self.received: list[dict[str, str]] = []

    @property
    def port(self) -> int:
        return self.server_address[1]


class ReceiverHandler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        self.rfile.read(int(self.headers["Content-Length"]))
        self.server.received.append({"path": self.path, **dict(self.headers.items())})
        redirect = self.path == "/redirect"
        self.send_response(302 if redirect else 500 if self.path == "/down" else 204)
        if redirect:
            self.send_header("Location", "http://169.254.169.254/latest/meta-data/")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def due(url: str) -> Due:
    return Due(
        subscription_id=1,
        alert_id="a-1",
        url=url,
        secret=SECRET,
        payload=alert().model_dump(mode="json"),
        attempts=0,
    )


class Rebinding:
    """A name that resolves to a public address first (the API's check), then to loopback."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, host: str, port: int) -> list[str]:
        self.calls += 1
        return [PUBLIC] if self.calls == 1 else ["127.0.0.1"]


def test_a_name_rebound_to_loopback_after_registration_is_not_contacted(receiver):
    resolve = Rebinding()
    url = f"http://rebind.example:{receiver.port}/hook"
    assert check_target(url, resolve=resolve) == url  # registration: public, accepted
    with checked_client(2.0, resolve=resolve) as client:
        assert post(client, due(url)) == (None, REFUSED)
        with pytest.raises(TargetRefused):
            client.post(url, content=b"{}")
    assert receiver.received == [] and resolve.calls == 3


def test_the_connection_goes_to_the_checked_address_with_the_names_host_header(receiver):
    names = {"receiver.example": ["127.0.0.1"]}
    with checked_client(2.0, net("127.0.0.1/32"), resolve=lambda h, p: names[h]) as client:
        assert post(client, due(f"http://receiver.example:{receiver.port}/ok")) == (204, None)
    [request] = receiver.received
    assert request["Host"] == f"receiver.example:{receiver.port}"


def test_refused_addresses_and_network_failures_are_coarse(receiver):
    with checked_client(2.0) as client:  # nothing allowed: the receiver is on loopback
        assert post(client, due(f"http://127.0.0.1:{receiver.port}/ok")) == (None, REFUSED)
        assert post(client, due("http://user:pw@hooks.example/")) == (None, REFUSED)
    assert receiver.received == []
    with checked_client(2.0, net("127.0.0.0/8"), resolve=fake_resolve) as client:
        closed = Receiver()  # bound, then closed: its port refuses connections
        closed.server_close()
        assert post(client, due(f"http://127.0.0.1:{closed.port}/")) == (None, NO_RESPONSE)
        assert post(client, due("http://nowhere.invalid/")) == (None, NO_RESPONSE)
        down = post(client, due(f"http://127.0.0.1:{receiver.port}/down"))
        assert down == (500, "failed: HTTP 5xx")


def test_a_redirect_to_an_internal_address_is_not_followed(receiver):
    with checked_client(2.0, net("127.0.0.1/32")) as client:
        redirected = post(client, due(f"http://127.0.0.1:{receiver.port}/redirect"))
    assert redirected == (302, "failed: HTTP 3xx") and len(receiver.received) == 1


def test_unparsable_alerts_are_skipped():
    good = to_json(alert())
    assert parse_alerts([b"not json", None, good, b'{"alert_id": 1}']) == [alert()]


def test_sse_event_framing():
    text = event(alert(alert_id="a\r\nevent: evil"))
    assert text.startswith("event: alert\nid: aevent: evil\ndata: {")
    assert text.endswith("}\n\n") and text.count("\n") == 4


def test_live_filters():
    a = alert()
    assert wanted(a, None, None) and wanted(a, "cam-1", "warning")
    assert not wanted(a, "cam-2", None) and not wanted(a, None, "critical")


def test_a_full_queue_loses_its_oldest():
    import asyncio

    queue: asyncio.Queue = asyncio.Queue(2)
    for item in (alert(alert_id="1"), alert(alert_id="2"), alert(alert_id="3")):
        offer(queue, item)
    assert [queue.get_nowait().alert_id for _ in range(2)] == ["2", "3"]
