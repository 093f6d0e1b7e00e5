"""`visionline bench --path inspect`'s figures from what a phase read back (no stack)."""

from __future__ import annotations

from collections import Counter

from visionline.acceptance.run import plan
from visionline.bench.inspection import (
    Collected,
    InspectBenchOptions,
    Phase,
    assemble,
    ends_the_ladder,
    latency_of,
    phase_figures,
    sustains,
)

T0 = 1_000_000.0


def _phase(lines: int = 2, fps: float = 10.0) -> Phase:
    runs = plan(lines, 0, fps, seed=1, run_id="r1")
    return Phase(runs, {r.camera: [b""] * 200 for r in runs}, fps)


def _verdict(phase: Phase, camera: int, last: int, after_s: float, status="accepted") -> dict:
    run = phase.runs[camera]
    return {
        "decision_id": f"{run.camera}:{last}",
        "camera_id": run.camera,
        "last_frame_id": run.frame_id(last),
        "best_frame_id": run.frame_id(last - 2),
        "decided_at": T0 + last / phase.fps + after_s,
        "status": status,
        "box": (0, 0, 1, 1),
    }


def test_decision_latency_runs_from_the_capture_of_the_parts_last_frame():
    """...and leaves out the parts still in view in the last second (an idle flush)."""
    phase = _phase()
    verdicts = [_verdict(phase, k % 2, 10 + k, 0.2 + 0.01 * k) for k in range(20)]
    verdicts.append(_verdict(phase, 0, 195, 5.5))  # in view when the line stopped
    alert = {
        "camera_id": phase.runs[0].camera,
        "created_at": verdicts[0]["decided_at"] + 0.1,
        "part": {"decision_id": verdicts[0]["decision_id"]},
    }
    got = Collected(verdicts=verdicts, alerts=[alert])
    latency = latency_of(phase, T0, got)
    assert latency["decision_ms"]["p50"] == 295.0
    assert latency["decision_ms"]["max"] == 390.0
    assert latency["alert_ms"]["p50"] == 300.0


def test_a_phase_sustains_only_under_a_second_with_few_insufficient_parts_and_no_shedding():
    phase = _phase()  # 400 frames sent
    every = Counter({"x": 400})
    verdicts = [_verdict(phase, 0, 10 + k, 0.3) for k in range(99)]
    fast = phase_figures(phase, T0, Collected(every, [T0 + 5], verdicts, []), {})
    assert sustains(fast)
    late = [_verdict(phase, 0, 10 + k, 0.3 if k < 90 else 1.5) for k in range(99)]
    slow = phase_figures(phase, T0, Collected(every, [T0 + 5], late, []), {})
    assert not sustains(slow)
    shedding = phase_figures(phase, T0, Collected(Counter({"x": 300}), [T0 + 5], verdicts, []), {})
    assert shedding["shed_share"] == 0.25 and not sustains(shedding)  # in time, on fewer frames
    some = [
        _verdict(phase, 0, 10 + k, 0.3, "insufficient" if k < 3 else "accepted") for k in range(99)
    ]
    insufficient = phase_figures(phase, T0, Collected(every, [T0 + 5], some, []), {})
    assert insufficient["insufficient_share"] == round(3 / 99, 4)
    assert not sustains(insufficient)
    # Only a full-rate load ends the bench; the half-rate reference phase never does.
    options = InspectBenchOptions()
    assert ends_the_ladder(insufficient, options.fps, options)
    assert not ends_the_ladder(insufficient, options.fps / 2, options)
    assert not ends_the_ladder(fast, options.fps, options)


def test_shed_share_and_rates_come_from_what_was_sent_and_inspected():
    phase = _phase()  # 2 cameras x 200 frames sent
    got = Collected(Counter({"line-1": 120, "line-2": 120}), [T0 + 1, T0 + 24], [], [])
    usage = {"inspect": {"cpu_s": 1.2}, "idle": {"cpu_s": 0.01}}
    figures = phase_figures(phase, T0, got, usage)
    assert figures["shed_share"] == 0.4
    assert figures["inspected_fps"] == 10.0  # 240 frames over the 24 s since the first was due
    assert figures["cpu_ms_per_inspected_frame"] == {"inspect": 5.0}


def test_the_ratio_takes_the_most_inspected_phase_and_overload_is_twice_the_rated(monkeypatch):
    monkeypatch.setenv("VISIONLINE_INSPECT_FRAMES_IN_FLIGHT", "4")  # the workers inherit it
    phases = [
        {"offered_fps": 10.0, "inspected_fps": 9.0, "decision_ms": {"p99": 400.0}},
        {"offered_fps": 20.0, "inspected_fps": 12.0, "decision_ms": {"p99": 2500.0}},
    ]
    figures = assemble(InspectBenchOptions(), {"fps": 15.0}, phases, rated_fps=10.0)
    assert figures["rated_lines"] == 1.0
    assert figures["pipeline_over_bare"] == 0.8
    assert figures["overload_p99_under_3s"] is True
    assert figures["inspect_worker"]["frames_in_flight"] == 4  # what the figures were made with
    phases[1]["decision_ms"]["p99"] = 3500.0
    assert (
        assemble(InspectBenchOptions(), {"fps": 15.0}, phases, 10.0)["overload_p99_under_3s"]
        is False
    )
