"""What a worker does when handling a message fails: wait for a dependency that is down, or
count the message as a suspect and crash; a message that crashed a worker often enough is
poison and goes to the dead-letter topic instead of being retried forever.

Plain logic; ``visionline.worker`` wires it to the Faust loops and Redis.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")

log = logging.getLogger(__name__)


class DependencyDown(Exception):
    """A server the worker needs did not answer (Triton, PostgreSQL, Redis): the message is not
    at fault, so it is retried once the server is back rather than counted as a crash."""

    def __init__(self, dependency: str, cause: object) -> None:
        super().__init__(f"{dependency} is unavailable: {cause}")
        self.dependency = dependency


class BackendUnavailable(DependencyDown):
    """The model server did not answer (down, restarting, overloaded, model not loaded)."""

    def __init__(self, message: str) -> None:
        super().__init__("triton", message)


@dataclass
class RetryPolicy:
    """A model server's calls: retried a few times at once (a blip), then given up on."""

    attempts: int = 3  # retries after the first try
    backoff_s: float = 0.2  # doubled after each failed try
    probe_after_s: float = 10.0  # while on a fallback, try the server again this often

    def delays(self) -> list[float]:
        return [self.backoff_s * 2**i for i in range(self.attempts)]


async def retrying(
    call: Callable[[], Awaitable[T]],
    policy: RetryPolicy,
    sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
) -> T:
    """``await call()``, tried again after each BackendUnavailable with the policy's backoff;
    the last failure is raised (to a fallback, or to ``Worker.attempt``, which waits)."""
    delays = policy.delays()
    for attempt in range(len(delays) + 1):
        try:
            return await call()
        except BackendUnavailable as exc:
            if attempt == len(delays):
                raise
            log.warning("Triton unavailable (%s); retrying in %.1fs", exc, delays[attempt])
            await sleep(delays[attempt])
    raise AssertionError("unreachable")


# Every server ``dependency_down`` names: each worker's waits counter starts at 0 for each.
DEPENDENCIES = ("kafka", "postgresql", "redis", "triton")


def dependency_down(exc: BaseException) -> str | None:
    """Which server ``exc`` says is unreachable (``postgresql``, ``redis``, ``triton``,
    ``kafka``), or None
    when the error is something else: a bug, or a message the code cannot handle."""
    if isinstance(exc, DependencyDown):
        return exc.dependency
    import redis.exceptions
    import sqlalchemy.exc
    from aiokafka import errors as kafka

    if isinstance(exc, kafka.KafkaConnectionError | kafka.KafkaTimeoutError):
        return "kafka"

    # redis: ConnectionError covers refused, reset and BusyLoadingError (a restart loading data).
    if isinstance(exc, redis.exceptions.ConnectionError | redis.exceptions.TimeoutError):
        return "redis"
    # OperationalError: connection refused or dropped, server shutting down or in recovery;
    # also deadlocks and serialization failures, which a retry is the right answer to as well.
    if isinstance(exc, sqlalchemy.exc.OperationalError | sqlalchemy.exc.InterfaceError):
        return "postgresql"
    if isinstance(exc, sqlalchemy.exc.DBAPIError) and exc.connection_invalidated:
        return "postgresql"
    return None


@dataclass
class RestAfterFailure:
    """A best-effort server left alone for ``rest_s`` after it failed: each call to a hung one
    blocks for its socket timeout, and a call per message would add that up (the parts worker's
    line memory, the inspect worker's shed counts, both in Redis)."""

    rest_s: float = 10.0
    failed_at: float = float("-inf")  # time.monotonic() of the last failure

    def resting(self) -> bool:
        return time.monotonic() - self.failed_at < self.rest_s

    def failed(self) -> None:
        self.failed_at = time.monotonic()


@dataclass(frozen=True)
class Backoff:
    """Exponential waits for a dependency to come back, capped."""

    initial_s: float = 0.5
    factor: float = 2.0
    max_s: float = 15.0

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1 = the first)."""
        return min(self.max_s, self.initial_s * self.factor ** max(0, attempt - 1))


def outage_wait(
    exc: BaseException, failures: int, backoff: Backoff, logger: logging.Logger = log
) -> tuple[str, float] | None:
    """After failed attempt number ``failures`` ended in ``exc``: the server that is down and
    the seconds to wait before the next (logged), or None when ``exc`` is not an outage."""
    dependency = dependency_down(exc)
    if dependency is None:
        return None
    delay = backoff.delay(failures)
    logger.warning("%s is down (%s); trying again in %.1f s", dependency, exc, delay)
    return dependency, delay


def waiting_while_down(
    call: Callable[[], T],
    backoff: Backoff,
    sleep: Callable[[float], object] = time.sleep,
    logger: logging.Logger = log,
) -> T:
    """``call()``, called again after a backoff for as long as a server it needs is down; any
    other error goes to the caller. For threads (the webhooks worker); Faust workers have
    ``Worker.attempt``. ``sleep`` may be an Event's ``wait``: a set event ends the wait early."""
    failures = 0
    while True:
        try:
            return call()
        except Exception as exc:
            failures += 1
            wait = outage_wait(exc, failures, backoff, logger)
            if wait is None or sleep(wait[1]) is True:  # a set Event: stopping, the caller decides
                raise


def coordinates(topic: str, partition: int, offset: int) -> str:
    """A message's identity for the crash ledger: the same after every redelivery."""
    return f"{topic}/{partition}/{offset}"


def split_suspects(items: list, suspect: list[bool]) -> list[list]:
    """A batch as the groups to handle: each suspect alone (so a crash names its culprit), then
    the rest together. Without suspects, the batch as it is."""
    alone = [[item] for item, flagged in zip(items, suspect, strict=True) if flagged]
    rest = [item for item, flagged in zip(items, suspect, strict=True) if not flagged]
    return alone + ([rest] if rest else [])


def is_poison(crashes: int, crashes_alone: int, threshold: int) -> bool:
    """A message is poison once it crashed the worker ``threshold`` times, at least once while
    handled on its own: a crash in a batch could be another message's fault."""
    return crashes >= threshold and crashes_alone > 0


class CrashLedger:
    """How often each message crashed this consumer group, kept in Redis so that the process
    that takes the message next (the restarted worker, or another replica) knows.

    Read into memory at start and refreshed on a timer: the hot path does no I/O for it, and a
    Redis outage leaves the last copy in use. Entries expire after ``ttl_s``.
    """

    def __init__(self, client, group: str, ttl_s: int = 7 * 24 * 3600) -> None:
        self.client = client
        self.counts_key = f"visionline:crashes:{group}"
        self.errors_key = f"visionline:crash-errors:{group}"
        self.ttl_s = ttl_s
        self.counts: dict[str, int] = {}  # field -> crashes; [field + "!"] when it was alone
        self.errors: dict[str, str] = {}

    def refresh(self) -> None:
        try:
            raw = self.client.hgetall(self.counts_key)
            errors = self.client.hgetall(self.errors_key) if raw else {}
        except Exception as exc:  # noqa: BLE001 - keep the last copy; the next refresh retries
            log.warning("crash ledger not refreshed: %r", exc)
            return
        self.counts = {k.decode(): int(v) for k, v in raw.items()}
        self.errors = {k.decode(): v.decode(errors="replace") for k, v in errors.items()}

    def crashes(self, coords: str) -> int:
        return self.counts.get(coords, 0)

    def crashed_alone(self, coords: str) -> int:
        return self.counts.get(coords + "!", 0)

    def last_error(self, coords: str) -> str:
        return self.errors.get(coords, "")

    def record(self, coords: list[str], error: str) -> None:
        """Count one crash for each message being handled when it happened (before the exit)."""
        if not coords:
            return
        fields = coords + ([coords[0] + "!"] if len(coords) == 1 else [])
        try:
            pipe = self.client.pipeline(transaction=False)
            for field in fields:
                pipe.hincrby(self.counts_key, field, 1)
            pipe.hset(self.errors_key, mapping=dict.fromkeys(coords, error[:500]))
            pipe.expire(self.counts_key, self.ttl_s)
            pipe.expire(self.errors_key, self.ttl_s)
            pipe.execute()
        except Exception as exc:  # noqa: BLE001 - exiting anyway; the crash goes uncounted
            log.error("crash of %s not recorded: %r", coords, exc)

    def forget(self, coords: str) -> None:
        self.counts.pop(coords, None)
        self.counts.pop(coords + "!", None)
        try:
            self.client.hdel(self.counts_key, coords, coords + "!")
            self.client.hdel(self.errors_key, coords)
        except Exception as exc:  # noqa: BLE001 - it expires anyway
            log.warning("crash ledger entry %s not removed: %r", coords, exc)
