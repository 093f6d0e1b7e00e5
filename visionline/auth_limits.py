"""Failed authentication is counted, in Redis so that every replica sees the same counts.

Each subject (a client address, a camera) has a fixed window that starts with its first
failure and lasts ``window_s``. Once a subject has ``max_failures`` failures in its window it is
locked until the window ends: requests then get 429 with Retry-After without their credential
being checked, since answering a right guess differently from a wrong one would let the
guessing go on. A successful authentication counts nothing.

While Redis does not answer, the limiter lets requests through (fails open) and logs once per
outage: credentials are still checked, only the brake on guessing is off. Failing closed would
lock every camera and operator out whenever Redis restarts (issue 15, finding 4).
"""

from __future__ import annotations

import ipaddress
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

import redis

log = logging.getLogger(__name__)

PREFIX = "visionline:auth-failures"
# Redis is skipped this long after it failed to answer, so that an outage costs one
# timeout every few seconds rather than one per request.
RETRY_REDIS_S = 5.0
# INCR and the window's expiry in one atomic step: a key can never be left without a TTL
# (which would lock its subject out for good).
_COUNT = """
local n = redis.call('INCR', KEYS[1])
if redis.call('PTTL', KEYS[1]) < 0 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return n
"""


@dataclass(frozen=True)
class Subject:
    """What failures are counted against: ``kind`` names the counter (``api-client``,
    ``upload-camera``), ``value`` the one counted (an address, a camera id)."""

    kind: str
    value: str
    max_failures: int

    @property
    def key(self) -> str:
        return f"{PREFIX}:{self.kind}:{self.value}"


def client_of(host: str | None) -> str:
    """The address failures of a client are counted under: an IPv6 address by its /64 (one
    host usually holds the whole /64), anything else as it is."""
    if not host:
        return "unknown"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host[:64]
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return str(address)


class FailureLimiter:
    """Counts failures per subject in Redis; says how long a locked subject must wait."""

    def __init__(self, client: redis.Redis, window_s: int) -> None:
        self.client, self.window_s = client, window_s
        self._count = client.register_script(_COUNT)
        self._down = False  # Redis failed to answer, and has not answered since
        self._next_try = 0.0  # monotonic time from which Redis is asked again

    def retry_after(self, subjects: Sequence[Subject]) -> int:
        """Seconds until every locked subject among ``subjects`` is free; 0 when none is."""
        if time.monotonic() < self._next_try:
            return 0
        pipe = self.client.pipeline(transaction=False)
        for subject in subjects:
            pipe.get(subject.key)
            pipe.pttl(subject.key)
        try:
            answers = pipe.execute()
        except redis.RedisError as exc:
            self._redis_failed(exc)
            return 0
        self._redis_answered()
        wait_ms = 0
        for subject, count, ttl_ms in zip(subjects, answers[::2], answers[1::2], strict=True):
            if count is not None and int(count) >= subject.max_failures:
                wait_ms = max(wait_ms, ttl_ms if ttl_ms > 0 else self.window_s * 1000)
        return math.ceil(wait_ms / 1000)

    def failed(self, subjects: Sequence[Subject]) -> None:
        """Count one failed authentication against each of ``subjects``."""
        if time.monotonic() < self._next_try:
            return
        try:
            for subject in subjects:
                self._count(keys=[subject.key], args=[self.window_s * 1000])
        except redis.RedisError as exc:
            self._redis_failed(exc)
            return
        self._redis_answered()

    def _redis_failed(self, exc: Exception) -> None:
        self._next_try = time.monotonic() + RETRY_REDIS_S
        if not self._down:
            self._down = True
            log.warning(
                "failed-authentication limiter off while Redis does not answer (%s); "
                "credentials are still checked",
                type(exc).__name__,
            )

    def _redis_answered(self) -> None:
        if self._down:
            self._down = False
            log.info("failed-authentication limiter on again: Redis answers")


def limiter_for(redis_url: str, window_s: int) -> FailureLimiter:
    """A limiter on its own Redis client, with short timeouts: an authentication must not wait
    long on a Redis that hangs."""
    client = redis.Redis.from_url(redis_url, socket_timeout=0.5, socket_connect_timeout=0.5)
    return FailureLimiter(client, window_s)
