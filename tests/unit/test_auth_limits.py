"""The failed-authentication limiter's logic on an in-memory Redis stand-in (the real Redis:
tests/integration/api/test_api_security.py and tests/integration/test_upload_api.py)."""

from __future__ import annotations

import logging

import pytest
import redis

from visionline import auth_limits
from visionline.auth_limits import FailureLimiter, Subject, client_of


class MemoryRedis:
    """What the limiter asks of Redis: the counting script, GET and PTTL in a pipeline."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}
        self.ttl_ms: dict[str, int] = {}
        self.down = False
        self.calls = 0

    def _answer(self) -> None:
        self.calls += 1
        if self.down:
            raise redis.ConnectionError("refused")

    def register_script(self, _source: str):
        def count(keys: list[str], args: list[int]) -> int:
            self._answer()
            key = keys[0]
            self.counts[key] = self.counts.get(key, 0) + 1
            self.ttl_ms.setdefault(key, args[0])
            return self.counts[key]

        return count

    def pipeline(self, transaction: bool = False) -> MemoryPipeline:
        return MemoryPipeline(self)


class MemoryPipeline:
    def __init__(self, server: MemoryRedis) -> None:
        self.server, self.ops = server, []

    def get(self, key: str) -> None:
        self.ops.append(
            lambda: None if key not in self.server.counts else b"%d" % self.server.counts[key]
        )

    def pttl(self, key: str) -> None:
        self.ops.append(lambda: self.server.ttl_ms.get(key, -2))

    def execute(self) -> list:
        self.server._answer()
        return [op() for op in self.ops]


CLIENT = Subject("api-client", "192.0.2.7", max_failures=3)
CAMERA = Subject("upload-camera", "cam-1", max_failures=5)


def test_a_subject_is_locked_from_its_nth_failure_until_its_window_ends():
    server = MemoryRedis()
    limiter = FailureLimiter(server, window_s=60)
    for _ in range(2):
        limiter.failed([CLIENT])
        assert limiter.retry_after([CLIENT]) == 0
    limiter.failed([CLIENT])
    assert limiter.retry_after([CLIENT]) == 60
    server.ttl_ms[CLIENT.key] = 1_200  # 1.2 s left: wait 2 s, never less than what is left
    assert limiter.retry_after([CLIENT]) == 2
    assert limiter.retry_after([CAMERA]) == 0  # subjects are counted apart


def test_the_longest_wait_of_the_locked_subjects_is_answered():
    server = MemoryRedis()
    limiter = FailureLimiter(server, window_s=60)
    for _ in range(5):
        limiter.failed([CLIENT, CAMERA])
    server.ttl_ms[CLIENT.key], server.ttl_ms[CAMERA.key] = 10_000, 30_000
    assert limiter.retry_after([CLIENT, CAMERA]) == 30
    assert server.counts == {CLIENT.key: 5, CAMERA.key: 5}


def test_redis_down_lets_requests_through_logs_once_and_is_asked_again_later(monkeypatch, caplog):
    clock = [1000.0]
    monkeypatch.setattr(auth_limits.time, "monotonic", lambda: clock[0])
    server = MemoryRedis()
    limiter = FailureLimiter(server, window_s=60)
    server.down = True
    with caplog.at_level(logging.INFO, logger="visionline.auth_limits"):
        assert limiter.retry_after([CLIENT]) == 0
        limiter.failed([CLIENT])  # within RETRY_REDIS_S: not even asked
        assert limiter.retry_after([CLIENT]) == 0
        assert server.calls == 1
        clock[0] += auth_limits.RETRY_REDIS_S
        limiter.failed([CLIENT])  # asked again, still down: no second warning
        assert server.calls == 2
        server.down = False
        clock[0] += auth_limits.RETRY_REDIS_S
        limiter.failed([CLIENT])
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "credentials are still checked" in warnings[0].getMessage()
    assert "on again" in caplog.records[-1].getMessage()
    assert server.counts == {CLIENT.key: 1}


@pytest.mark.parametrize(
    ("host", "counted_as"),
    [
        ("192.0.2.7", "192.0.2.7"),
        ("2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"),  # a host usually holds its whole /64
        ("::ffff:192.0.2.7", "192.0.2.7"),
        ("testclient", "testclient"),
        (None, "unknown"),
    ],
)
def test_clients_are_counted_by_address(host, counted_as):
    assert client_of(host) == counted_as
