"""The retrain worker keeps ``part_crops`` built from the crop models served: a promotion
through the API or the CLI leaves it stale, and the worker's periodic check rebuilds it in a
child process (``visionline retrain part-crops``), one rebuild at a time."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from services.retrain import handlers
from services.retrain.handlers import RetrainHandlers


class FakeChild:
    def __init__(self, release: asyncio.Event, status: int) -> None:
        self.release, self.status = release, status

    async def wait(self) -> int:
        await self.release.wait()
        return self.status


def _handlers() -> RetrainHandlers:
    async def nothing(*_):
        return None

    return RetrainHandlers(None, nothing, nothing, lambda *_: None, ())  # type: ignore[arg-type]


@pytest.mark.parametrize(("stale", "status"), [(False, 0), (True, 0), (True, 1)])
def test_a_stale_part_crops_is_rebuilt_in_a_child_once_at_a_time(monkeypatch, stale, status):
    started: list[tuple] = []

    async def scenario() -> None:
        release = asyncio.Event()

        async def spawn(*args, **kwargs):
            started.append(args)
            return FakeChild(release, status)

        monkeypatch.setattr(handlers, "part_crops_stale", lambda repository: stale)
        monkeypatch.setattr(handlers.asyncio, "create_subprocess_exec", spawn)
        jobs = _handlers()
        first = asyncio.ensure_future(jobs.keep_part_crops_current(Path("repo")))
        await asyncio.sleep(0.05)
        await jobs.keep_part_crops_current(Path("repo"))  # a check while it rebuilds: no second
        release.set()
        await first
        assert jobs.crops_refresh is None  # done, whatever its status: the next check may retry

    asyncio.run(scenario())
    if not stale:
        assert started == []
    else:
        assert len(started) == 1 and started[0][1:] == ("-m", "visionline.retrain", "part-crops")


def test_a_check_that_fails_is_logged_and_the_worker_goes_on(monkeypatch, caplog):
    """A timer's exception crashes the worker (Worker.every): an unreadable part_crops
    metadata.json must not restart the retrain worker every 30 s, killing its jobs."""

    def unreadable(repository):
        raise ValueError("metadata.json: Expecting value")

    async def spawn(*args, **kwargs):
        raise AssertionError("no rebuild without a check")

    monkeypatch.setattr(handlers, "part_crops_stale", unreadable)
    monkeypatch.setattr(handlers.asyncio, "create_subprocess_exec", spawn)
    jobs = _handlers()
    asyncio.run(jobs.keep_part_crops_current(Path("repo")))
    assert jobs.crops_refresh is None
    assert "part_crops check failed" in caplog.text
