"""Webhooks: what the worker (services/webhooks) and the API share, and what a receiver needs.

A delivery is a POST of the alert's JSON with

- ``X-Visionline-Timestamp``: epoch seconds when this attempt was signed,
- ``X-Visionline-Signature``: ``sha256=`` + hex HMAC-SHA256(secret, timestamp + "." + body),
- ``X-Visionline-Alert-Id`` and ``X-Visionline-Delivery-Attempt`` (1 on the first try).

The timestamp is signed with the body so that a captured request cannot be replayed later:
receivers call ``verify_signature`` with a tolerance. An alert may arrive more than once
(at-least-once); ``X-Visionline-Alert-Id`` is the key to drop repeats.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Mapping
from urllib.parse import urlsplit

from visionline.messages import Alert

SIGNATURE_HEADER = "X-Visionline-Signature"
TIMESTAMP_HEADER = "X-Visionline-Timestamp"
ALERT_ID_HEADER = "X-Visionline-Alert-Id"
ATTEMPT_HEADER = "X-Visionline-Delivery-Attempt"
MIN_SECRET_LENGTH = 16
MAX_URL_LENGTH = 2000
FILTER_KEYS = ("camera_ids", "severities", "rules")


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """``sha256=<hex>`` over ``timestamp.body``."""
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + digest.hexdigest()


def verify_signature(
    secret: str,
    timestamp: str,
    body: bytes,
    signature: str,
    tolerance_s: float = 300.0,
    now: float | None = None,
) -> bool:
    """For receivers: True when ``signature`` is ours over this body and the timestamp is within
    ``tolerance_s`` of ``now`` (either way: clocks differ)."""
    try:
        signed_at = float(timestamp)
    except (TypeError, ValueError):
        return False
    if abs((time.time() if now is None else now) - signed_at) > tolerance_s:
        return False
    return hmac.compare_digest(sign(secret, timestamp, body), signature or "")


def delivery_headers(secret: str, body: bytes, alert_id: str, attempt: int,
                     now: float | None = None) -> dict[str, str]:  # fmt: skip
    timestamp = str(int(time.time() if now is None else now))
    return {
        "Content-Type": "application/json",
        TIMESTAMP_HEADER: timestamp,
        SIGNATURE_HEADER: sign(secret, timestamp, body),
        ALERT_ID_HEADER: alert_id,
        ATTEMPT_HEADER: str(attempt),
    }


def matches(filter_: Mapping[str, list[str] | None], alert: Alert) -> bool:
    """A subscription's filter: each list given must contain the alert's value; a missing or
    null list matches everything (an empty list matches nothing)."""
    for key, value in (
        ("camera_ids", alert.camera_id),
        ("severities", alert.severity),
        ("rules", alert.rule),
    ):
        wanted = filter_.get(key)
        if wanted is not None and value not in wanted:
            return False
    return True


def backoff_s(failed_attempts: int, base_s: float, max_s: float) -> float:
    """Wait before the next try after ``failed_attempts`` failures: base, 2 base, 4 base, ...
    up to ``max_s``."""
    if failed_attempts < 1:
        return 0.0
    # Capped exponent: 2 ** 1000 is fine for ints but overflows a float multiplication.
    return min(max_s, base_s * 2 ** min(failed_attempts - 1, 60))


def generate_secret() -> str:
    return secrets.token_urlsafe(32)


def check_url(url: str) -> str:
    """The URL if it is an absolute http(s) URL with a host, else ValueError saying why."""
    if len(url) > MAX_URL_LENGTH:
        raise ValueError(f"at most {MAX_URL_LENGTH} characters")
    if any(c.isspace() or ord(c) < 32 for c in url):
        raise ValueError("must not contain whitespace or control characters")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a port out of range
    except ValueError as exc:
        raise ValueError(f"not a valid URL: {exc}") from None
    if parts.scheme not in ("http", "https"):
        raise ValueError("must be an http:// or https:// URL")
    if not parts.hostname:
        raise ValueError("must name a host")
    return url
