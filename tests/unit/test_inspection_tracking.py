"""Tracking and per-part decisions, with the generator's ground truth as perfect detections."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import supervision as sv

from visionline.inspection.tracking import (
    DecisionRules,
    DefectDetection,
    PartDecision,
    PartDetection,
    PartDetections,
    PartTracker,
    TrackerConfig,
    make_bytetrack,
    nms_parts,
)
from visionline.synthetic import FrameTruth, LineGenerator, PartLabel

STOP, SIZE = 150, (320, 180)


class OracleTracker:
    """Ids from the detections' refs: tests the aggregation without any tracker's errors."""

    def update(self, detections: sv.Detections) -> sv.Detections:
        detections.tracker_id = detections.data["ref"].astype(int)
        return detections


def tracker_for(name: str, config: TrackerConfig):
    return make_bytetrack(config) if name == "bytetrack" else OracleTracker()


@pytest.fixture(scope="module")
def line() -> tuple[list[FrameTruth], list[PartLabel], float]:
    gen = LineGenerator(seed=3, resolution=SIZE, defect_rate=0.3)
    return [gen.frame(i)[1] for i in range(STOP)], gen.part_truth(STOP), gen.travel


def detections(truth: FrameTruth, rng: np.random.Generator, drop: set[int]) -> PartDetections:
    """Truth boxes with a little jitter; parts in ``drop`` are missed in this frame."""
    parts = []
    for p in truth.parts:
        if p.part_id in drop:
            continue
        box = tuple(float(v) for v in np.array(p.box) + rng.uniform(-1.5, 1.5, 4))
        defects = [
            DefectDetection(
                defect_class=d.defect_class,
                box=d.box,
                score=1.0,
                area=float(sum(d.mask.counts[1::2])),
            )
            for d in p.defects
        ]
        score = 1.0 if p.defective else 0.05
        parts.append(
            PartDetection(
                box=box, confidence=0.9, defect_score=score, defects=defects, ref=p.part_id
            )
        )
    return PartDetections(camera="line-1", frame_index=truth.frame_index, parts=parts)


def run(tracker: PartTracker, truths: list[FrameTruth], misses: int = 4) -> list[PartDecision]:
    """Every frame through the tracker; every ``misses``-th part is missed in its 3rd frame."""
    rng, seen, decisions = np.random.default_rng(0), {}, []
    for truth in truths:
        drop = set()
        for p in truth.parts:
            seen[p.part_id] = seen.get(p.part_id, 0) + 1
            if p.part_id % misses == 0 and seen[p.part_id] == 3:
                drop.add(p.part_id)
        decisions += tracker.update(detections(truth, rng, drop))
    return decisions + tracker.flush()


@pytest.mark.parametrize("name", ["oracle", "bytetrack"])
def test_one_decision_per_part_matching_truth(name: str, line) -> None:
    truths, labels, travel = line
    config = TrackerConfig(belt_px_per_frame=travel)
    tracker = PartTracker("line-1", SIZE, config=config, tracker=tracker_for(name, config))
    decisions = run(tracker, truths)
    full = {lab.part_id: lab for lab in labels if lab.first_frame > 0 and lab.last_frame < STOP - 1}
    by_ref: dict[int, list[PartDecision]] = {}
    for d in decisions:
        by_ref.setdefault(d.ref, []).append(d)
    assert len({d.track_id for d in decisions}) == len(decisions)  # one decision per track
    assert None not in by_ref and len(full) > 30 and sum(lab.defective for lab in full.values())
    for part_id, label in full.items():
        (decision,) = by_ref[part_id]  # exactly one, so a defective part alerts once
        assert decision.status != "insufficient" and decision.crossed_line
        assert decision.defective == label.defective  # recall and precision 1.0
        assert decision.top_class in (label.classes or [None])
    crossed = [d.ref for d in decisions if d.crossed_line]
    assert len(crossed) == len(set(crossed)) == tracker.counts.crossed
    assert tracker.line.in_count + tracker.line.out_count == tracker.counts.crossed
    assert tracker.counts.rejected == sum(d.defective for d in decisions if d.crossed_line)
    assert tracker.counts.passed == tracker.counts.crossed - tracker.counts.rejected


def part(x0: float, ref: int = 1, defects: tuple[str, ...] = (), area: float = 50.0):
    """A 40 px part; each ref has its own lane so that NMS keeps them apart."""
    y0 = 10 + 55 * ((ref - 1) % 3)
    found = [
        DefectDetection(defect_class=c, box=(x0, y0, x0 + 5, y0 + 5), score=0.9, area=area)
        for c in defects
    ]
    return PartDetection(
        box=(x0, y0, x0 + 40, y0 + 40), defect_score=0.9 if defects else 0.0, defects=found, ref=ref
    )


def feed(tracker: PartTracker, frames: list[list[PartDetection]]) -> list[PartDecision]:
    out = []
    for i, parts in enumerate(frames):
        out += tracker.update(PartDetections(camera="c", frame_index=i, parts=parts))
    return out


def test_short_track_is_insufficient_not_defective() -> None:
    tracker = PartTracker("c", SIZE, tracker=OracleTracker())
    frames = [[part(10, defects=("crack",))], [part(50, defects=("crack",))]] + [[]] * 4
    (decision,) = feed(tracker, frames)  # lost after the buffer, not at flush
    assert decision.status == "insufficient" and not decision.defective
    assert decision.frames_seen == 2 and tracker.flush() == []


def feed_shed(tracker: PartTracker, frames: list[tuple[int, list[PartDetection]]]):
    """Frames with the count of the camera's frames shed just before each."""
    out = []
    for i, (shed, parts) in enumerate(frames):
        frame = PartDetections(camera="c", frame_index=i, parts=parts, shed_before=shed)
        out += tracker.update(frame)
    return out + tracker.flush()


@pytest.mark.parametrize(
    ("frames", "status", "shed"),
    [
        # Two inspected frames with one shed between: three frames of its pass, decided.
        ([(0, [part(10, defects=("crack",))]), (1, [part(90, defects=("crack",))])], "rejected", 1),
        ([(0, [part(10)]), (2, [part(120)])], "accepted", 2),
        # Shed before its first frame: not of its pass, so two frames are too few.
        ([(3, [part(10)]), (0, [part(50)])], "insufficient", 0),
        # One glimpse never decides, however many frames were shed around it.
        ([(0, [part(10)]), (5, [])], "insufficient", 0),
    ],
)
def test_frames_shed_within_a_parts_pass_count_toward_min_frames(frames, status, shed) -> None:
    tracker = PartTracker("c", SIZE, tracker=OracleTracker())  # min_frames 3
    (decision,) = feed_shed(tracker, frames)
    assert (decision.status, decision.frames_shed) == (status, shed)
    assert decision.frames_seen == sum(bool(parts) for _, parts in frames)


def test_rules_thresholds_and_counts() -> None:
    rules = DecisionRules(classes=["crack"], min_area=20, min_frames=3)
    tracker = PartTracker("c", SIZE, rules=rules, tracker=OracleTracker())
    xs = [0, 50, 100, 150, 200, 240]  # the centre crosses the exit line (x=256) last
    frames = [
        [part(x, 1, ("crack",)), part(x, 2, ("stain",), 80), part(x, 3, ("crack",), 5)] for x in xs
    ]
    decisions = {d.ref: d for d in feed(tracker, frames)}
    assert decisions[1].defective and decisions[1].top_class == "crack"
    # Six frames seen; the first, at the frame's edge (x 0), is not judged.
    assert decisions[1].class_votes == {"crack": 5} and decisions[1].first_frame == 0
    assert decisions[1].frames_seen == 6
    assert not decisions[2].defective  # class not of interest
    assert not decisions[3].defective  # defect too small
    counts = tracker.counts.model_dump()
    assert counts == {"crossed": 3, "passed": 2, "rejected": 1, "insufficient": 0}


def test_zone_limits_evidence() -> None:
    config = TrackerConfig(zone=[(100, 0), (320, 0), (320, 180), (100, 180)])
    tracker = PartTracker("c", SIZE, config=config, tracker=OracleTracker())
    frames = [[part(x, 1, ("crack",) if x < 60 else ())] for x in (0, 30, 90, 150, 210, 280)]
    (decision,) = feed(tracker, frames)
    assert decision.frames_seen == 4 and not decision.defective  # cracks seen outside the zone


def test_a_part_cut_by_the_frames_edge_is_seen_there_but_judged_where_whole() -> None:
    """A crop of a part half out of view is padded with black: its scores are not evidence
    while the part is seen whole in another frame, and are when it never is."""
    rules = DecisionRules(min_frames=2)
    tracker = PartTracker("c", SIZE, rules=rules, tracker=OracleTracker())
    cut_crack = part(-20, 1, ("crack",))  # x0 < 0: meets the left edge
    frames = [[cut_crack, part(300, 2, ("crack",))], [part(60, 1), part(290, 2, ("crack",))]]
    decisions = {d.ref: d for d in feed(tracker, frames + [[]] * 4)}
    assert decisions[1].frames_seen == 2 and decisions[1].status == "accepted"
    assert decisions[1].class_votes == {}  # the crack was seen only in the cut frame
    assert decisions[2].frames_seen == 2 and decisions[2].status == "rejected"  # never whole
    assert decisions[2].class_votes == {"crack": 2}


def test_bytetrack_gives_a_part_its_first_frame_back_under_load_shedding() -> None:
    """ByteTrack names a track on its second frame: the frame that spawned it is taken back,
    so a part inspected only twice (every third frame, the others shed) is still decided."""
    gen = LineGenerator(seed=5, resolution=SIZE, defect_rate=0.3)
    config = TrackerConfig(belt_px_per_frame=gen.travel)
    rules = DecisionRules(min_frames=3)
    tracker = PartTracker("line-1", SIZE, config, rules, make_bytetrack(config))
    rng, decisions, inspected = np.random.default_rng(0), [], Counter()
    for k, index in enumerate(range(0, STOP, 3)):  # the parts worker numbers inspected frames
        truth = gen.frame(index)[1]
        inspected.update(p.part_id for p in truth.parts)
        update = {"frame_index": k, "belt_shift": index * gen.travel, "shed_before": 2}
        decisions += tracker.update(detections(truth, rng, set()).model_copy(update=update))
    decisions += tracker.flush()
    by_ref = {d.ref: d for d in decisions}
    twice = [part_id for part_id, n in inspected.items() if n >= 2]
    assert len(twice) > 30 and len(by_ref) == len(decisions)  # one decision per part
    for part_id in twice:  # (a last sliver at the edge may be too thin to be matched)
        assert by_ref[part_id].frames_seen >= 2 and by_ref[part_id].status != "insufficient"


def test_nms_merges_duplicates_and_keeps_their_defects() -> None:
    first = part(10, ref=1)
    twin = part(12, ref=1, defects=("scratch",)).model_copy(update={"confidence": 0.6})
    other = part(200, ref=2)
    merged = nms_parts(PartDetections(camera="c", frame_index=0, parts=[first, twin, other]))
    assert [p.box for p in merged.parts] == [first.box, other.box]
    assert [d.defect_class for d in merged.parts[0].defects] == ["scratch"]
    assert merged.parts[0].defect_score == pytest.approx(0.9)


class SplittingTracker(OracleTracker):
    """Gives a part a new id from frame ``split`` on, as ByteTrack does after losing it."""

    def __init__(self, split: int) -> None:
        self.split, self.frame = split, -1

    def update(self, detections: sv.Detections) -> sv.Detections:
        self.frame += 1
        detections = super().update(detections)
        if self.frame >= self.split:
            detections.tracker_id = detections.tracker_id + 100
        return detections


@pytest.mark.parametrize(
    ("first", "second", "decisions"),
    [
        (("crack",), ("crack",), ["rejected"]),  # rejected once: its second track says nothing new
        ((), (), ["accepted"]),
        ((), ("crack",), ["accepted", "rejected"]),  # found defective later: it must still alert
    ],
)
def test_a_part_tracked_twice_is_decided_once(first, second, decisions) -> None:
    config = TrackerConfig(belt_px_per_frame=40, lost_frames=1)
    rules = DecisionRules(min_frames=2)
    tracker = PartTracker("c", SIZE, config, rules, tracker=SplittingTracker(split=4))
    # The belt moves 40 px a frame; the part is missed in frames 2 and 3, long enough for its
    # first track to be decided (lost) before it is seen again under a new id.
    xs = {0: 10, 1: 50, 4: 170, 5: 210, 6: 250, 7: 290}
    frames = [[part(xs[i], 1, first if i < 4 else second)] if i in xs else [] for i in range(9)]
    out = feed(tracker, frames) + tracker.flush()
    assert [d.status for d in out] == decisions
    assert tracker.counts.crossed == 1  # one part crossed the exit line, counted once


def test_a_part_tracked_twice_and_lost_on_an_empty_frame_is_not_a_none_decision() -> None:
    config = TrackerConfig(belt_px_per_frame=40, lost_frames=1)
    tracker = PartTracker(
        "c", SIZE, config, DecisionRules(min_frames=2), tracker=SplittingTracker(split=4)
    )
    # As above, but the second track is lost (in frames without a box) before the exit line.
    xs = {0: 10, 1: 50, 4: 170, 5: 210}
    frames = [[part(xs[i], 1, ("crack",))] if i in xs else [] for i in range(9)]
    out = feed(tracker, frames)
    assert [d.status for d in out] == ["rejected"] and tracker.flush() == []


def faint(x0: float, ref: int, scores: dict[str, float]) -> PartDetection:
    """A part whose detector peaks are ``scores``: no defect passes a frame threshold."""
    return part(x0, ref).model_copy(update={"class_scores": scores})


def test_mean_score_rejects_faint_evidence_seen_in_every_frame() -> None:
    rules = DecisionRules(
        classes=["crack", "missing_hole"], min_defect_frames=None, min_mean_score=0.2
    )
    tracker = PartTracker("c", SIZE, rules=rules, tracker=OracleTracker())
    xs = [5, 50, 100, 150, 200, 240]  # all whole in view (x 0 would be cut)
    frames = [
        [
            faint(x, 1, {"missing_hole": 0.25, "crack": 0.05}),  # faint, but in every frame
            faint(x, 2, {"crack": 0.9 if x == 100 else 0.0}),  # one glint: mean 0.15
            faint(x, 3, {"stain": 0.8, "crack": 0.1}),  # a class not of interest
        ]
        for x in xs
    ]
    decisions = {d.ref: d for d in feed(tracker, frames)}
    assert decisions[1].defective and decisions[1].top_class == "missing_hole"
    assert decisions[1].class_evidence == {"missing_hole": 0.25, "crack": 0.05}
    assert decisions[1].defect_frames == 0  # no single frame would have rejected it
    assert not decisions[2].defective and decisions[2].class_evidence["crack"] == 0.15
    assert not decisions[3].defective and "stain" not in decisions[3].class_evidence


def test_either_rule_rejects_when_both_are_on() -> None:
    rules = DecisionRules(min_defect_frames=1, min_mean_score=0.5)
    tracker = PartTracker("c", SIZE, rules=rules, tracker=OracleTracker())
    frames = [[part(x, 1, ("crack",) if x == 100 else ())] for x in (0, 50, 100, 150, 200, 240)]
    (decision,) = feed(tracker, frames)
    assert decision.defective and decision.defect_frames == 1  # by frames; its mean is 0
