"""What a chaos run counts (``visionline.chaos.check``) and which faults it plans."""

from __future__ import annotations

from pathlib import Path

from visionline.chaos.check import (
    Outcome,
    SentFrame,
    alert_counts,
    frame_counts,
    in_flight,
    part_counts,
    passed,
)
from visionline.chaos.faults import plan_faults, rejoined
from visionline.stack.state import ComponentStatus, StackStatus

SENT = [SentFrame("c", f"f{k}", 100.0 + k) for k in range(5)]


def out(frame: str, at: float, alerts: bool = False) -> Outcome:
    return Outcome("c", frame, at, alerts)


def test_frames_lost_and_doubled_are_counted() -> None:
    seen = [out("f0", 101), out("f1", 102), out("f1", 109), out("f3", 104), out("f4", 105)]
    assert frame_counts(SENT, seen) == {"frames": 5, "lost": 1, "duplicated": 1}


def test_alerts_are_checked_in_the_table_and_on_the_topic() -> None:
    seen = [out("f0", 101, True), out("f1", 102, True), out("f2", 103, False)]
    stored = [("a0", "c", "f0"), ("a0b", "c", "f0"), ("p1", "line", "x")]
    counts = alert_counts(seen, stored, ["a0", "a0", "p1", "stray"])
    assert counts == {
        "alerts": 3,
        "missing_on_topic": 1,  # a0b
        "duplicated_on_topic": 1,  # a0 twice
        "on_topic_not_stored": 1,
        "alerts_lost": 1,  # f1 alerts by its prediction, no alert row
        "alerts_doubled": 1,  # f0 has two
    }


def test_parts_without_a_verdict_with_two_or_rejected_late() -> None:
    def v(status: str, last: str) -> dict:
        return {"status": status, "last_frame_id": last}

    parts = [("l", 1), ("l", 2), ("l", 3), ("l", 4)]
    decided = {
        ("l", 1): [v("accepted", "f3")],
        ("l", 3): [v("accepted", "f5"), v("accepted", "f9")],  # the same outcome twice
        ("l", 4): [v("rejected", "f8"), v("insufficient", "f6")],  # early, then rejected
        ("l", 9): [v("accepted", "f1")],  # not a part that crossed
    }
    assert part_counts(parts, decided) == {
        "parts": 4,
        "parts_lost": 1,
        "parts_decided_twice": 1,
        "parts_rejected_late": 1,
    }


def test_frames_in_flight_at_a_fault_and_when_the_last_came_out() -> None:
    # struck at 102.5: f0, f1, f2 were sent; f0 was out already, f1 came out at 110, f2 never
    seen = [out("f0", 102.0), out("f1", 110.0), out("f3", 104.0), out("f4", 105.0)]
    assert in_flight(102.5, SENT, seen) == {
        "in_flight": 2,
        "lost": 1,
        "duplicated": 0,
        "recovered_s": 7.5,
    }


def test_a_run_passes_only_with_nothing_lost_doubled_or_left() -> None:
    assert passed({"frames": 10, "alerts": 3, "parts": 4, "lag": 0})
    assert not passed({"frames": 10, "duplicated_on_topic": 1})
    assert not passed({"frames": 10, "lag": 5})


class StackOf:
    def __init__(self, components: list[ComponentStatus]) -> None:
        self._status = StackStatus(
            run_id="r", state="ready", supervisor_pid=1, started_at=0.0, components=components
        )

    def status(self) -> StackStatus:
        return self._status


def component(name: str, group: str, kind: str, external: bool = False) -> ComponentStatus:
    return ComponentStatus(name=name, group=group, kind=kind, pid=10, external=external)  # type: ignore[arg-type]


def test_one_kill_per_worker_kind_then_the_servers_the_stack_runs() -> None:
    stack = StackOf(
        [
            component("broker", "broker", "infra"),
            component("postgres", "postgres", "infra", external=True),
            component("redis", "redis", "infra"),
            component("ingest-1", "ingest", "worker"),
            component("ingest-2", "ingest", "worker"),
            component("rules", "rules", "worker"),
            component("camera", "camera", "worker"),
        ]
    )
    names = [f.name for f in plan_faults(stack, broker_on_disk=False)]  # type: ignore[arg-type]
    assert names == [
        "kill -9 ingest",
        "kill -9 rules",
        "kill -9 redis",
        "stop redis",
        "pause redis 10 s",
    ]  # the outside PostgreSQL is not the stack's to strike
    with_broker = plan_faults(stack, broker_on_disk=True)  # type: ignore[arg-type]
    assert [f.component for f in with_broker][-4:] == ["redis", "broker", "redis", "redis"]
    assert [f.action for f in with_broker][-2:] == ["stop", "pause"]


def test_a_worker_consumes_again_once_a_new_member_holds_partitions() -> None:
    before = frozenset({"parts-1"})
    assert not rejoined(before, None)  # the broker does not say
    assert not rejoined(before, {"parts-1": 6})  # the killed member, until its session ends
    assert not rejoined(before, {"parts-1": 6, "parts-2": 0})  # joined, not yet assigned
    assert rejoined(before, {"parts-2": 6})
    assert rejoined(frozenset(), {"parts-2": 3})


def test_memory_curve_reports_start_warmup_peak_end_and_growth() -> None:
    from visionline.chaos.check import memory_curve

    mib = 2**20
    samples = [(float(t), {"rules": (100 + t) * mib, "api": 50 * mib}) for t in range(20)]
    samples[5][1]["api"] = 80 * mib  # a spike, then back
    curve = memory_curve(samples, warmup=0.1)
    assert curve["rules"] == {
        "start": 100.0,
        "after_warmup": 102.0,
        "peak": 119.0,
        "end": 119.0,
        "growth": 17.0,
    }
    assert curve["api"]["peak"] == 80.0 and curve["api"]["growth"] == 0.0
    assert memory_curve([]) == {}


def test_a_stack_on_a_cluster_has_its_partition_leader_killed_last() -> None:
    from visionline.chaos.faults import plan_faults
    from visionline.stack.kafka_cluster import KafkaCluster

    stack = StackOf([component("rules", "rules", "worker")])
    kafka = KafkaCluster(Path("/nonexistent"))
    faults = plan_faults(stack, broker_on_disk=False, cluster=kafka)  # type: ignore[arg-type]
    assert [f.name for f in faults] == [
        "kill -9 rules",
        "kill -9 leader of visionline.frames.raw/0",
    ]
    assert faults[-1].cluster is kafka and faults[-1].component == "kafka-cluster"
