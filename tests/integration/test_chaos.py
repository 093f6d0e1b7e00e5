"""`visionline chaos`, short: frames from two classify cameras and a conveyor line flow through the
stack while the rules, inspect and parts workers are killed with SIGKILL and Redis is killed,
stopped and paused for 10 s; afterwards every frame has one prediction row, every alert is in
PostgreSQL and on the alerts topic exactly once, every part that crossed has one verdict,
nothing is dead-lettered and no lag is left.

The parts worker, killed, replays the frames of its open tracks; it recalls from Redis the parts
it had decided before (services/parts/handlers.py), so none is decided twice. Redis paused
blocks its calls: the parts worker's group session may expire and its partitions be taken and
given back while it holds frames unacked (Worker.manual does not wait for them). A second
verdict that only rejects a part first decided while its line was silent is counted apart."""

from __future__ import annotations

import pytest

from visionline.chaos.faults import plan_faults
from visionline.chaos.run import ChaosConfig, run_chaos

pytestmark = pytest.mark.integration


def test_a_short_chaos_run_loses_nothing_and_doubles_nothing(stack) -> None:
    struck = ("rules", "inspect", "parts", "redis")
    faults = [f for f in plan_faults(stack, False) if f.component in struck]
    assert [f.name for f in faults] == [
        "kill -9 rules",
        "kill -9 inspect",
        "kill -9 parts",
        "kill -9 redis",
        "stop redis",
        "pause redis 10 s",
    ]
    config = ChaosConfig(classify_cameras=2, lines=1, fps=2.0, settle_s=6.0)
    report = run_chaos(stack, faults, config, print)
    totals = report["totals"]
    print(report["faults"], totals)
    assert [row["fault"] for row in report["faults"]] == [f.name for f in faults]
    assert all(row["restarted_s"] is not None for row in report["faults"])
    # Each worker read again before the next fault struck: one fault at a time.
    workers = [row for row in report["faults"] if row["kind"] == "worker"]
    assert all(row["consuming_s"] >= row["restarted_s"] for row in workers)
    assert totals["frames"] > 50 and totals["alerts"] > 0 and totals["parts"] > 0
    assert totals["lost"] == totals["duplicated"] == 0
    assert totals["missing_on_topic"] == totals["duplicated_on_topic"] == 0
    assert totals["alerts_lost"] == totals["alerts_doubled"] == 0
    # While the inspect worker restarts, its line is silent for longer than the parts worker's
    # idle flush: the parts in view are decided then (with the frames seen so far). When the
    # frames resume, such a part is known and decided again only to reject it (counted apart).
    assert totals["parts_lost"] == totals["parts_decided_twice"] == 0
    assert totals["dead_letters"] == 0 and totals["lag"] == 0
    assert report["passed"]


def test_a_short_soak_counts_every_frame_and_samples_every_process_s_memory(stack) -> None:
    config = ChaosConfig(
        classify_cameras=2, lines=1, fps=4.0, frames=150, settle_s=3.0, memory_every_s=1.0
    )
    report = run_chaos(stack, [], config, print)
    totals = report["totals"]
    assert report["faults"] == [] and report["frames_sent"] == 150
    assert totals["frames"] == 100 and totals["line_frames"] == 50  # 2 cameras and a line
    assert report["passed"], totals
    memory = report["memory_mb"]
    assert {"rules", "postgres", "broker", "supervisor"} <= set(memory)
    for curve in memory.values():
        assert 0 < curve["start"] <= curve["peak"] and curve["end"] <= curve["peak"]


def test_the_broker_killed_mid_run_comes_back_with_everything(stack) -> None:
    """Apache Kafka killed with SIGKILL while frames flow: the supervisor restarts it on its
    log; producers and workers wait for it; nothing is lost or doubled."""
    from visionline.chaos.cli import broker_on_disk

    assert broker_on_disk(stack), "the test stack runs Apache Kafka with its log on disk"
    faults = [f for f in plan_faults(stack, True) if f.component == "broker"]
    config = ChaosConfig(classify_cameras=2, lines=1, fps=2.0, settle_s=6.0)
    report = run_chaos(stack, faults, config, print)
    totals = report["totals"]
    print(report["faults"], totals)
    assert report["faults"][0]["restarted_s"] is not None
    assert totals["frames"] > 30 and totals["alerts"] > 0
    assert totals["lost"] == totals["duplicated"] == 0
    assert totals["missing_on_topic"] == totals["duplicated_on_topic"] == 0
    assert totals["alerts_lost"] == totals["alerts_doubled"] == 0
    assert totals["parts_lost"] == totals["parts_decided_twice"] == 0
    assert totals["dead_letters"] == 0 and totals["lag"] == 0
