"""Load shedding in the inspect worker (visionline/inspection/shedding.py): a worker that
inspects a fixed number of frames per second, fed faster than that, simulated in time."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from visionline.inspection.shedding import FrameShedder, Shedding

SHED_COST_S = 0.001  # reading a frame's header and counting it


@dataclass
class Simulated:
    waits: list[float]  # per inspected frame: arrival to the end of its inspection
    inspected: dict[str, list[float]]  # per camera: capture times of inspected frames
    shed: int


def simulate(
    shedding: Shedding | None, cameras: int, fps: float, capacity: float, seconds: float
) -> Simulated:
    """Frames of ``cameras`` cameras at ``fps`` arrive as captured; the worker takes them in
    order and inspects ``capacity`` frames per second."""
    arrivals = sorted(
        (k / fps + c * 0.01, f"line-{c}") for c in range(cameras) for k in range(int(seconds * fps))
    )
    shedder = FrameShedder(shedding) if shedding else None
    clock, waits, shed = 0.0, [], 0
    inspected: dict[str, list[float]] = {}
    for arrived, camera in arrivals:
        clock = max(clock, arrived)
        if shedder is not None and not shedder.inspect(camera, arrived, clock - arrived):
            shed += 1
            clock += SHED_COST_S
            continue
        clock += 1 / capacity
        waits.append(clock - arrived)
        inspected.setdefault(camera, []).append(arrived)
    return Simulated(waits, inspected, shed)


def test_a_worker_that_keeps_up_sheds_nothing():
    run = simulate(Shedding(), cameras=2, fps=10, capacity=25, seconds=60)
    assert run.shed == 0
    assert max(run.waits) < 0.5


def test_without_shedding_the_wait_grows_without_end_under_twice_the_load():
    run = simulate(None, cameras=4, fps=10, capacity=20, seconds=60)
    assert run.waits[-1] > 25  # half the frames of a minute still waiting


def test_under_twice_the_load_the_wait_stays_bounded_and_shedding_is_counted():
    run = simulate(Shedding(), cameras=4, fps=10, capacity=20, seconds=120)
    assert float(np.percentile(run.waits, 99)) < 3.0
    assert max(run.waits[len(run.waits) // 2 :]) < 3.0  # settled, not creeping up
    assert 0.3 < run.shed / (run.shed + len(run.waits)) < 0.7


def test_shed_frames_are_spread_evenly_over_each_camera():
    """A part crosses the lines' view in about 0.7 s: with no gap between inspected frames
    wider than 0.35 s, every part is still seen in at least two frames."""
    run = simulate(Shedding(), cameras=4, fps=10, capacity=20, seconds=120)
    for times in run.inspected.values():
        settled = np.diff(times[len(times) // 4 :])
        assert settled.max() <= 0.35
    counts = [len(t) for t in run.inspected.values()]
    assert max(counts) - min(counts) <= 0.1 * max(counts)  # no camera starved


def test_a_fresh_frame_is_inspected_however_close_to_the_last():
    shedder = FrameShedder(Shedding(late_after_s=0.5, gap_per_late_s=0.2))
    assert all(shedder.inspect("line-1", t / 100, waited_s=0.4) for t in range(10))


def test_a_late_frame_needs_a_gap_that_grows_with_its_wait_up_to_the_most():
    assert Shedding(late_after_s=0.5, gap_per_late_s=0.2, max_gap_s=0.3).min_gap_s(5.0) == 0.3
    shedder = FrameShedder(Shedding(late_after_s=0.5, gap_per_late_s=0.2, max_gap_s=1.0))
    assert shedder.inspect("line-1", 10.0, waited_s=1.0)
    assert not shedder.inspect("line-1", 10.1, waited_s=1.0)  # needs 0.2 s
    assert shedder.inspect("line-1", 10.2, waited_s=1.0)
    assert not shedder.inspect("line-1", 10.5, waited_s=2.0)  # needs 0.4 s
    assert shedder.inspect("line-2", 10.25, waited_s=2.0)  # cameras apart


def test_a_replayed_older_frame_is_inspected_and_off_means_off():
    shedder = FrameShedder(Shedding())
    assert shedder.inspect("line-1", 100.0, waited_s=5.0)
    assert shedder.inspect("line-1", 50.0, waited_s=5.0)  # before the last: a replay
    off = FrameShedder(Shedding(late_after_s=0))
    assert all(off.inspect("line-1", t / 100, waited_s=30.0) for t in range(10))


def test_after_an_outage_every_part_keeps_frames_and_the_backlog_drains():
    """The worker stopped for 20 s under two 10-fps lines it can otherwise inspect: no gap
    between inspected frames wider than 0.3 s (a part is in view 0.7 s), and the wait is
    back under a second within 15 s of the restart."""
    shedder, clock, waits = FrameShedder(Shedding()), 20.0, []
    arrivals = sorted((k / 10 + c * 0.01, f"line-{c}") for c in range(2) for k in range(600))
    inspected: dict[str, list[float]] = {}
    for arrived, camera in arrivals:
        clock = max(clock, arrived)
        if not shedder.inspect(camera, arrived, clock - arrived):
            clock += SHED_COST_S
            continue
        clock += 1 / 25
        waits.append((arrived, clock - arrived))
        inspected.setdefault(camera, []).append(arrived)
    for times in inspected.values():
        assert np.diff(times).max() <= 0.3 + 1e-9
    assert max(w for at, w in waits if at > 35) < 1.0


def test_the_shedder_says_how_many_frames_it_shed_before_each_inspected_one() -> None:
    shedder = FrameShedder(Shedding(late_after_s=0.25, gap_per_late_s=0.4, max_gap_s=0.3))
    late = 1.0  # every frame waited: a gap of 0.3 s
    said = {}  # what the inspect worker publishes with each inspected frame
    for t in (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7):
        if shedder.inspect("a", t, late):
            said[t] = shedder.shed_before("a")
    assert said == {0.0: 0, 0.3: 2, 0.6: 2}
    assert shedder.shed_before("a") == 1  # 0.7, shed after the last inspected frame
    assert shedder.shed_before("a") == 0  # taken once
    assert shedder.inspect("b", 0.0, 0.0) and shedder.shed_before("b") == 0
