"""Webhook logic without services: signatures, filters, backoff, URL checks, delivery rows and
attempt outcomes."""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime, timedelta

import pytest

from services.api.routers.live import event, offer, wanted
from services.webhooks.logic import Retry, Subscription, delivery_rows, outcome, parse_alerts
from visionline.messages import Alert, ModelRef, to_json
from visionline.webhooks import (
    ALERT_ID_HEADER,
    ATTEMPT_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    backoff_s,
    check_url,
    delivery_headers,
    generate_secret,
    matches,
    sign,
    verify_signature,
)

SECRET = "s" * 32
NOW = datetime(2026, 1, 1, tzinfo=UTC)


def alert(**changes) -> Alert:
    base = dict(alert_id="a-1", camera_id="cam-1", frame_id="f-1", rule="low-conf",
                label="cat", confidence=0.9, severity="warning", captured_at=NOW.timestamp(),
                created_at=NOW.timestamp() + 1,
                model=ModelRef(name="m", version="1", served_by="triton"))  # fmt: skip
    return Alert(**{**base, **changes})


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


@pytest.mark.parametrize("url", ["http://example.com/hook", "https://h:8443/x?y=1",
                                 "http://127.0.0.1:9/"])  # fmt: skip
def test_http_urls_pass(url):
    assert check_url(url) == url


@pytest.mark.parametrize("url", ["ftp://example.com/", "example.com/hook", "http://",
                                 "https://h:99999/", "http://exa mple.com/", "javascript:x",
                                 "http://h/\n", "https://" + "a" * 2000])  # fmt: skip
def test_other_urls_are_refused(url):
    with pytest.raises(ValueError):
        check_url(url)


def test_generated_secrets_are_long_and_differ():
    a, b = generate_secret(), generate_secret()
    assert a != b and len(a) >= 32


def test_delivery_rows_per_matching_subscription_from_its_creation_on():
    created = NOW - timedelta(minutes=1)
    subs = [Subscription(1, {}, created), Subscription(2, {"severities": ["critical"]}, created),
            Subscription(3, {}, NOW + timedelta(hours=1))]  # fmt: skip
    rows = delivery_rows(subs, [alert(), alert(alert_id="a-2", severity="critical")], NOW)
    assert sorted((r["subscription_id"], r["alert_id"]) for r in rows) == [
        (1, "a-1"), (1, "a-2"), (2, "a-2")]  # fmt: skip
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
    first = outcome(0, 500, "HTTP 500", RETRY, NOW)
    assert first["state"] == "pending" and first["attempts"] == 1
    assert first["next_attempt_at"] == NOW + timedelta(seconds=1)
    second = outcome(1, None, "ConnectError: refused", RETRY, NOW)
    assert second["next_attempt_at"] == NOW + timedelta(seconds=2)
    assert second["last_status"] is None and second["last_error"].startswith("ConnectError")
    last = outcome(2, 404, None, RETRY, NOW)
    assert last["state"] == "failed" and last["attempts"] == 3 and last["last_error"] == "HTTP 404"
    assert "next_attempt_at" not in last


def test_a_redirect_is_not_a_delivery():
    assert outcome(0, 302, "HTTP 302", RETRY, NOW)["state"] == "pending"


def test_long_errors_are_cut_to_the_column():
    assert len(outcome(0, None, "x" * 5000, RETRY, NOW)["last_error"]) == 2000


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
