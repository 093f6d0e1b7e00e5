"""Webhooks: what the worker (services/webhooks) and the API share, and what a receiver needs.

A delivery is a POST of the alert's JSON with

- ``X-Visionline-Timestamp``: epoch seconds when this attempt was signed,
- ``X-Visionline-Signature``: ``sha256=`` + hex HMAC-SHA256(secret, timestamp + "." + body),
- ``X-Visionline-Alert-Id`` and ``X-Visionline-Delivery-Attempt`` (1 on the first try).

The timestamp is signed with the body so that a captured request cannot be replayed later:
receivers call ``verify_signature`` with a tolerance. An alert may arrive more than once
(at-least-once); ``X-Visionline-Alert-Id`` is the key to drop repeats.

Targets (against server-side request forgery): http(s) URLs without credentials whose host's
addresses are all public. Loopback, private, link-local, shared, reserved, multicast and
unspecified addresses are refused unless inside ``WebhookSettings.allowed_networks``; cloud
metadata addresses always. The API checks at registration (``check_target``); the worker checks
again the addresses it is about to connect to (``checked_addresses``), so a name that resolves
elsewhere later (DNS rebinding) is refused too. What a delivery records is coarse
(``coarse_error``): a refused target, no response, or the class of the HTTP status, never the
kind of network failure, which would make the deliveries a port scanner.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import re
import secrets
import socket
import time
from collections.abc import Callable, Iterable, Mapping
from urllib.parse import urlsplit

from visionline.messages import Alert

SIGNATURE_HEADER = "X-Visionline-Signature"
TIMESTAMP_HEADER = "X-Visionline-Timestamp"
ALERT_ID_HEADER = "X-Visionline-Alert-Id"
ATTEMPT_HEADER = "X-Visionline-Delivery-Attempt"
MIN_SECRET_LENGTH = 16
MAX_URL_LENGTH = 2000
FILTER_KEYS = ("camera_ids", "severities", "rules")

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
# host, port -> the addresses a connection would try (``resolve_host``; tests inject their own)
Resolver = Callable[[str, int], list[str]]
# Cloud instance metadata (AWS, GCP and Azure; AWS over IPv6; Alibaba): refused even when an
# allowed network holds them.
METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a) for a in ("169.254.169.254", "fd00:ec2::254", "100.100.100.200")
)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
REFUSED = "refused: target not allowed"
NO_RESPONSE = "failed: no response"
_NOT_ALLOWED = (
    "the address is not allowed: loopback, private, link-local, reserved and metadata "
    "addresses are refused unless inside VISIONLINE_WEBHOOKS_ALLOWED_NETWORKS"
)


class TargetRefused(ValueError):
    """A webhook target the policy refuses; the message says why and is safe to show."""


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


def delivery_headers(
    secret: str, body: bytes, alert_id: str, attempt: int, now: float | None = None
) -> dict[str, str]:
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
    if "@" in parts.netloc:
        raise ValueError("must not contain credentials (user:password@)")
    if not parts.hostname:
        raise ValueError("must name a host")
    return url


def resolve_host(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to (IPv4 and IPv6), as a connection would try them."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def _as_address(address: str | IPAddress) -> IPAddress:
    if isinstance(address, str):
        address = ipaddress.ip_address(address.split("%", 1)[0])  # no IPv6 zone
    return address


def _forms(address: IPAddress) -> list[IPAddress]:
    """The address, and the IPv4 address it carries where it carries one: an IPv4-mapped
    address stands for its IPv4 address alone; 6to4 and NAT64 ones must pass both ways."""
    if isinstance(address, ipaddress.IPv4Address):
        return [address]
    if address.ipv4_mapped is not None:
        return [address.ipv4_mapped]
    if address.sixtofour is not None:
        return [address, address.sixtofour]
    if address in _NAT64:
        return [address, ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)]
    return [address]


def _public(address: IPAddress) -> bool:
    return address.is_global and not (
        address.is_loopback
        or address.is_link_local
        or address.is_private
        or address.is_reserved
        or address.is_multicast
        or address.is_unspecified
        or (isinstance(address, ipaddress.IPv6Address) and address.is_site_local)
    )


def address_allowed(address: str | IPAddress, allowed_networks: Iterable[IPNetwork] = ()) -> bool:
    """May a webhook connect to this address? Public ones yes; others only inside
    ``allowed_networks``; metadata addresses never."""
    allowed_networks = tuple(allowed_networks)
    for form in _forms(_as_address(address)):
        if form in METADATA_ADDRESSES:
            return False
        if not (_public(form) or any(form in net for net in allowed_networks)):
            return False
    return True


def checked_addresses(
    host: str,
    port: int,
    allowed_networks: Iterable[IPNetwork] = (),
    resolve: Resolver = resolve_host,
) -> list[str]:
    """The addresses to connect to for ``host``: all of them, once each has passed
    ``address_allowed``; TargetRefused if any fails (a name with one private address among public
    ones is refused: which one a connection uses is not ours to choose). OSError when the name
    does not resolve. A connection must go to these addresses, not resolve the name again."""
    host = host.strip("[]")
    try:
        addresses = [str(_as_address(host))]
    except ValueError:  # a name, not an address
        addresses = resolve(host, port)
    if not addresses:
        raise OSError(f"{host} resolves to no address")
    allowed_networks = tuple(allowed_networks)
    if not all(address_allowed(a, allowed_networks) for a in addresses):
        raise TargetRefused(_NOT_ALLOWED)
    return addresses


def check_target(
    url: str, allowed_networks: Iterable[IPNetwork] = (), resolve: Resolver = resolve_host
) -> str:
    """The URL if a webhook may be registered for it: ``check_url`` (http or https, no
    credentials) and every address of its host allowed (``checked_addresses``); else
    TargetRefused (or ValueError from ``check_url``) saying why. A name that does not resolve
    now passes: the worker checks the addresses again before each connection, and refuses
    then."""
    check_url(url)
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        checked_addresses(parts.hostname or "", port, allowed_networks, resolve)
    except (OSError, UnicodeError):
        pass  # unresolvable here and now; the worker decides at delivery time
    return url


def coarse_error(error: str | None, status: int | None = None) -> str | None:
    """What a delivery may record and show as its last error: ``REFUSED`` (the target is not
    allowed), ``NO_RESPONSE`` (any network failure: refused connection, timeout, name not found,
    broken answer alike) or ``failed: HTTP 5xx`` (the class of the receiver's status). Also
    turns errors stored before this rule into one of these."""
    if status is not None and not 200 <= status < 300:
        return f"failed: HTTP {status // 100}xx"
    if error is None:
        return None
    if error.startswith("refused:"):
        return REFUSED
    found = re.match(r"(?:failed: )?HTTP ([1-5])", error)
    return f"failed: HTTP {found[1]}xx" if found else NO_RESPONSE
