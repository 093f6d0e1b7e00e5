"""The drift scenario's plan and scoring (``visionline drift scenario``), without a stack."""

from __future__ import annotations

import pytest

from visionline.drift.scenario import (
    CAMERAS,
    ScenarioConfig,
    frames_to_event,
    phase_scores,
    plan,
    targets,
)


def test_glare_ramps_on_the_drifting_camera_only() -> None:
    config = ScenarioConfig(before=100, ramp=50, glare=0.8, fps=2.0)
    runs = {r.camera: r for r in plan(config, "t")}
    assert set(runs) == set(CAMERAS)
    drifting = runs["drift-line-2"].generator
    assert drifting.strengths(99)["glare"] == 0.0
    assert drifting.strengths(125)["glare"] == pytest.approx(0.4)
    assert drifting.strengths(150)["glare"] == pytest.approx(0.8)
    assert drifting.strengths(400)["glare"] == pytest.approx(0.8)
    assert runs["drift-line-2"].generator.strengths(0)["colour_temperature"] == 0.5  # its mix
    others = ("drift-line-1", "drift-line-3")
    assert all(runs[c].generator.strengths(400)["glare"] == 0 for c in others)
    with pytest.raises(ValueError, match="drift camera"):
        plan(ScenarioConfig(drift_camera="line-2"), "t")


def verdict(run, part, frame: int, version: str, rejected: bool) -> dict:
    box = dict(run.boxes[frame])[part]
    return {
        "best_frame_id": run.frame_id(frame),
        "box": list(box),
        "status": "rejected" if rejected else "accepted",
        "models": [{"name": "defect_detector", "version": version}],
    }


def test_parts_are_scored_by_phase_and_by_the_version_that_decided_them() -> None:
    config = ScenarioConfig(before=30, ramp=10, fps=1.0)
    run = plan(config, "t")[1]
    for index in range(90):
        run.render(index)
    labels = [p for p in run.generator.part_truth(90) if p.first_frame > 0 and p.last_frame < 89]
    verdicts, expected = [], {"before": [], "during": [], "after": []}
    for label in labels:
        if label.first_frame < 30 <= label.last_frame:
            continue
        frame = (label.first_frame + label.last_frame) // 2
        if label.last_frame < 30:
            phase, version = "before", "1"
        elif label.first_frame < 60:
            phase, version = "during", "1"
        else:
            phase, version = "after", "2"
        rejected = label.defective if phase != "during" else False  # the drift hides all
        verdicts.append(verdict(run, label.part_id, frame, version, rejected))
        expected[phase].append(label.defective)
    scores = phase_scores(run, verdicts, onset=30, old="1")
    for phase, truth in expected.items():
        assert scores[phase]["parts"] == len(truth) and scores[phase]["defective"] == sum(truth)
    assert scores["before"].get("f1", 1.0) == 1.0 and scores["after"].get("f1", 1.0) == 1.0
    if any(expected["during"]):
        assert scores["during"]["recall"] == 0.0


def test_frames_to_event_counts_from_the_onset_and_ignores_earlier_events() -> None:
    run = plan(ScenarioConfig(), "t")[1]
    events = [
        {
            "event_id": "early",
            "signal": "blur",
            "detector": "kswin",
            "detected_frame_id": run.frame_id(50),
            "frame_id": run.frame_id(90),
            "created_at": 1.0,
        },
        {
            "event_id": "e",
            "signal": "brightness",
            "detector": "adwin",
            "detected_frame_id": run.frame_id(260),
            "frame_id": run.frame_id(310),
            "created_at": 2.0,
        },
        {
            "event_id": "later",
            "signal": "contrast",
            "detector": "adwin",
            "detected_frame_id": run.frame_id(300),
            "frame_id": run.frame_id(350),
            "created_at": 3.0,
        },
    ]
    found = frames_to_event(run, events, onset=200)
    assert found["event_id"] == "e" and found["alarm_frames"] == 60
    assert found["confirmed_frames"] == 110
    assert frames_to_event(run, events[:1], onset=200) is None


def figures(**change) -> dict:
    base = {
        "frames_to_event": 120,
        "versions": {"before": "1", "after": "2"},
        "f1_after_minus_before": -0.01,
        "frames_lost": 0,
        "frames": {"a": {"dead_letters": 0}},
        "other_camera_events": [],
    }
    return {**base, **change}


def test_targets() -> None:
    assert all(targets(figures()).values())
    assert not targets(figures(frames_to_event=301))["frames_to_event <= 300"]
    assert not targets(figures(f1_after_minus_before=-0.03))["F1 after within 2 points of before"]
    assert not targets(figures(frames={"a": {"dead_letters": 1}}))["no frame lost"]
    missed = targets(figures(other_camera_events=[{"camera_id": "x"}]))
    assert not missed["no drift event on other cameras"]
    assert not targets(figures(versions={"before": "1", "after": None}))["new version serving"]
