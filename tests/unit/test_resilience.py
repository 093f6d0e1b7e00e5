"""Which failures wait for a server and which crash; batches split so a crash names its culprit."""

from __future__ import annotations

import psycopg2
import pytest
import redis.exceptions
import sqlalchemy.exc
from aiokafka.errors import KafkaConnectionError, KafkaTimeoutError

from visionline.resilience import (
    DEPENDENCIES,
    BackendUnavailable,
    Backoff,
    DependencyDown,
    coordinates,
    dependency_down,
    is_poison,
    split_suspects,
)


def _operational(message: str) -> sqlalchemy.exc.OperationalError:
    return sqlalchemy.exc.OperationalError("SELECT 1", {}, psycopg2.OperationalError(message))


@pytest.mark.parametrize(
    ("error", "dependency"),
    [
        (redis.exceptions.ConnectionError("Connection refused"), "redis"),
        (redis.exceptions.BusyLoadingError("loading the dataset"), "redis"),
        (redis.exceptions.TimeoutError("Timeout reading from socket"), "redis"),
        (_operational("server closed the connection unexpectedly"), "postgresql"),
        (
            sqlalchemy.exc.InterfaceError("x", {}, Exception("connection already closed")),
            "postgresql",
        ),
        (BackendUnavailable("part_detector: StatusCode.UNAVAILABLE"), "triton"),
        (KafkaConnectionError("no broker"), "kafka"),
        (KafkaTimeoutError(), "kafka"),
        (DependencyDown("object-store", "503"), "object-store"),
    ],
)
def test_a_server_that_does_not_answer_is_waited_for(error, dependency):
    assert dependency_down(error) == dependency
    # the project's own servers each have a waits series from a worker's start
    assert dependency in (*DEPENDENCIES, "object-store")  # the last: a DependencyDown of its own


def test_a_worker_shows_its_dependency_waits_at_zero_before_any_wait(monkeypatch):
    from prometheus_client import REGISTRY

    from visionline.settings import CommonSettings
    from visionline.worker import Worker

    monkeypatch.setattr("visionline.worker.CrashLedger.refresh", lambda self: None)
    Worker("waits-test", CommonSettings(redis_url="redis://127.0.0.1:9/0"))
    for dependency in DEPENDENCIES:
        labels = {"service": "waits-test", "dependency": dependency}
        assert REGISTRY.get_sample_value("visionline_dependency_waits_total", labels) == 0.0


@pytest.mark.parametrize(
    "error",
    [
        ValueError("could not broadcast input array"),
        KeyError("camera"),
        redis.exceptions.ResponseError("WRONGTYPE Operation against a key"),
        sqlalchemy.exc.IntegrityError("INSERT", {}, Exception("duplicate key")),
        sqlalchemy.exc.ProgrammingError("SELECT", {}, Exception("syntax error")),
    ],
)
def test_a_bug_or_a_bad_message_is_not_an_outage(error):
    assert dependency_down(error) is None


def test_backoff_doubles_up_to_its_cap():
    backoff = Backoff(initial_s=0.5, factor=2.0, max_s=4.0)
    assert [backoff.delay(n) for n in range(1, 7)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]


def test_suspects_are_handled_alone_before_the_rest():
    groups = split_suspects(["a", "b", "c", "d"], [False, True, False, True])
    assert groups == [["b"], ["d"], ["a", "c"]]
    assert split_suspects(["a", "b"], [False, False]) == [["a", "b"]]
    assert split_suspects(["a"], [True]) == [["a"]]
    assert split_suspects([], []) == []


def test_poison_needs_the_threshold_and_one_crash_on_its_own():
    assert not is_poison(2, 2, threshold=3)
    assert is_poison(3, 1, threshold=3)
    # Three crashes, every time in a batch with others: the culprit may be another message.
    assert not is_poison(3, 0, threshold=3)
    assert is_poison(1, 1, threshold=1)


def test_coordinates_name_one_record():
    assert coordinates("visionline.frames.raw", 2, 41) == "visionline.frames.raw/2/41"
    assert coordinates("t", 0, 1) != coordinates("t", 1, 0)


def test_a_component_that_keeps_exiting_is_in_a_crash_loop(tmp_path):
    from visionline.stack.components import ComponentSpec
    from visionline.stack.supervisor import CRASH_LOOP_EXITS, CRASH_LOOP_WINDOW_S, Proc

    spec = ComponentSpec("inspect", "inspect", "worker", "", ["true"], check=lambda: None)
    proc = Proc(spec, tmp_path / "inspect.log")
    proc.exits = [100.0 + i for i in range(CRASH_LOOP_EXITS - 1)]
    assert proc.crash_loop(110.0) is None
    proc.exits.append(110.0)
    assert "crash loop: exited 3 times" in proc.crash_loop(111.0)
    # Once the window holds fewer exits, it is not looping any more.
    assert proc.crash_loop(101.0 + CRASH_LOOP_WINDOW_S) is None


def test_a_thread_waits_while_a_server_is_down_and_gives_up_only_when_stopped():
    import threading

    from visionline.resilience import waiting_while_down

    answers = iter([redis.exceptions.ConnectionError("refused")] * 3 + ["sent"])
    waits: list[float] = []

    def call():
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer

    assert waiting_while_down(call, Backoff(0.5, 2.0, 1.5), waits.append) == "sent"
    assert waits == [0.5, 1.0, 1.5]

    with pytest.raises(ValueError):  # not an outage: at once to the caller
        waiting_while_down(lambda: int("x"), Backoff(), waits.append)

    stop = threading.Event()
    stop.set()
    with pytest.raises(redis.exceptions.ConnectionError):
        waiting_while_down(call_down, Backoff(), stop.wait)


def call_down():
    raise redis.exceptions.ConnectionError("refused")


def test_a_failed_server_rests_for_a_while_then_is_asked_again(monkeypatch):
    import time as clock

    from visionline.resilience import RestAfterFailure

    now = [100.0]
    monkeypatch.setattr(clock, "monotonic", lambda: now[0])
    rest = RestAfterFailure(rest_s=10.0)
    assert not rest.resting()  # never failed
    rest.failed()
    now[0] = 109.9
    assert rest.resting()
    now[0] = 110.0
    assert not rest.resting()
