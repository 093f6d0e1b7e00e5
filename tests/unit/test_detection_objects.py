"""The detect pipeline's object rules on synthetic box sequences: tracking, events, state."""

from __future__ import annotations

import pickle
from collections.abc import Iterable, Sequence

import pytest
from pydantic import ValidationError

from visionline.detection.config import DetectRule, DetectRules, check_unique_names, parse_rule
from visionline.detection.objects import CameraObjects, DetectFrame, ObjectBox, ObjectEvent

W, H, DT = 640, 480, 0.1  # frame size and 10 FPS
UP_LINE = [[0.5, 1.0], [0.5, 0.0]]  # drawn bottom to top: left to right is "in"
LEFT_ZONE = [[0.0, 0.0], [0.5, 0.0], [0.5, 1.0], [0.0, 1.0]]


def rule(kind: str, name: str = "r", **fields: object) -> DetectRule:
    return parse_rule({"kind": kind, "name": name, "classes": ["person"], **fields})


def obj(x: float, y: float = 200, cls: str = "person", score: float = 0.9) -> ObjectBox:
    """A 40 x 100 box; its anchor is (x + 20, y + 100)."""
    return ObjectBox((x, y, x + 40, y + 100), cls, score)


def frame(i: int, boxes: Iterable[ObjectBox] = (), camera: str = "c1") -> DetectFrame:
    return DetectFrame(camera, f"f{i}", 1000.0 + i * DT, W, H, tuple(boxes))


def run(
    rules: Sequence[DetectRule],
    frames: Sequence[Iterable[ObjectBox]],
    cam: CameraObjects | None = None,
    start: int = 0,
) -> list[tuple[int, ObjectEvent]]:
    """Feed frames ``start``, ``start + 1``, ...; the events with their frame number."""
    cam = cam or CameraObjects("c1", "f0")
    return [
        (start + i, e) for i, b in enumerate(frames) for e in cam.update(frame(start + i, b), rules)
    ]


def still(boxes: Sequence[ObjectBox], n: int) -> list[Sequence[ObjectBox]]:
    return [boxes] * n


# Line -----------------------------------------------------------------------------------------


def test_crossing_left_to_right_is_in_and_back_is_out_with_counts() -> None:
    xs = list(range(100, 500, 20))
    frames = [[obj(x)] for x in xs + [480] * 5 + xs[::-1]]
    events = [e for _, e in run([rule("line", "door", line=UP_LINE)], frames)]
    assert [e.detail for e in events] == [
        {"direction": "in", "count_in": 1, "count_out": 0},
        {"direction": "out", "count_in": 1, "count_out": 1},
    ]
    assert all(e.kind == "line" and e.class_name == "person" for e in events)
    assert events[0].event_id == f"c1:f0:door:{events[0].track_id}:1"
    assert len({e.event_id for e in events}) == 2


def test_line_drawn_top_to_bottom_flips_the_direction_and_ends_bound_it() -> None:
    frames = [[obj(x)] for x in range(100, 500, 20)]
    down = rule("line", "door", line=[[0.5, 0.0], [0.5, 1.0]])
    assert [e.detail["direction"] for _, e in run([down], frames)] == ["out"]
    short = rule("line", "door", line=[[0.5, 0.0], [0.5, 0.3]])  # ends above the anchors
    assert run([short], frames) == []


def test_a_track_crossing_twice_numbers_its_crossings() -> None:
    xs = list(range(240, 420, 20))
    frames = [[obj(x)] for x in xs + [400] * 5 + xs[::-1] + [240] * 5 + xs]
    ids = [e.event_id for _, e in run([rule("line", "door", line=UP_LINE)], frames)]
    assert len(ids) == 3 and len(set(ids)) == 3
    assert all(i.startswith("c1:f0:door:") for i in ids)


# Dwell ----------------------------------------------------------------------------------------


def test_dwell_fires_once_after_the_seconds_and_not_before() -> None:
    events = run([rule("dwell", "loiter", zone=LEFT_ZONE, seconds=1.0)], still([obj(50)], 60))
    assert len(events) == 1
    i, event = events[0]
    # Confirmed on frame 1, so inside from t=0.1; more than 1 s is first reached at frame 12.
    assert i == 12 and event.detail["dwell_s"] == pytest.approx(1.1)
    assert event.event_id == f"c1:f0:loiter:{event.track_id}" and event.kind == "dwell"


def test_dwell_starts_again_after_leaving() -> None:
    dwell = rule("dwell", "loiter", zone=LEFT_ZONE, seconds=1.0)
    # Anchors at x=280 inside, out to x=330 (the zone ends at 320) and back, in small steps.
    inside, outside = [[obj(260)]] * 8, [[obj(x)] for x in (270, 290, 310, 310, 290, 270)]
    assert run([dwell], inside + outside + inside) == []
    assert len(run([dwell], inside + outside + inside * 2)) == 1


def test_two_objects_dwelling_give_two_events_with_distinct_ids() -> None:
    events = run([rule("dwell", zone=LEFT_ZONE, seconds=0.5)], still([obj(20), obj(200)], 30))
    assert len(events) == 2
    assert len({e.event_id for _, e in events}) == 2
    assert len({e.track_id for _, e in events}) == 2


# Count ----------------------------------------------------------------------------------------


def test_count_more_than_fires_once_per_episode_and_rearms() -> None:
    three, two = [obj(20), obj(200), obj(400)], [obj(20), obj(200)]
    frames = still(two, 5) + still(three, 10) + still(two, 5) + still(three, 10)
    events = run([rule("count", "crowd", more_than=2)], frames)
    # The third object is confirmed on its second frame; back within ByteTrack's lost buffer,
    # its track is revived on its first.
    assert [i for i, _ in events] == [6, 20]
    assert events[0][1].detail == {"count": 3, "more_than": 2, "held_s": 0.0}
    assert events[0][1].event_id == "c1:f0:crowd:f6"
    assert events[0][1].track_id == -1 and events[0][1].class_name == "" and not events[0][1].box


def test_count_holds_for_seconds_and_counts_in_its_zone_only() -> None:
    count = rule("count", "crowd", more_than=1, seconds=0.5, zone=LEFT_ZONE)
    assert run([count], still([obj(20), obj(400)], 30)) == []  # one of them is in the zone
    events = run([count], still([obj(20), obj(200)], 30))
    assert [i for i, _ in events] == [6]  # held from frame 1 for 0.5 s


def test_count_fewer_than() -> None:
    empty: list[ObjectBox] = []
    frames = still(empty, 5) + still([obj(20)], 10) + still(empty, 30)
    events = run([rule("count", "nobody", fewer_than=1, seconds=0.2)], frames)
    assert [i for i, _ in events] == [2, 17]
    assert events[0][1].detail["fewer_than"] == 1 and events[0][1].detail["count"] == 0


# Seen, classes, confidence, cameras -----------------------------------------------------------


def test_seen_fires_once_when_a_track_has_min_frames() -> None:
    events = run([rule("seen", "someone", min_frames=4)], still([obj(20)], 20))
    assert [(i, e.detail) for i, e in events] == [(3, {"frames": 4})]
    assert events[0][1].event_id == f"c1:f0:someone:{events[0][1].track_id}"
    assert run([rule("seen", min_frames=4)], still([obj(20)], 3)) == []


def test_classes_filter_by_majority_and_star_means_any() -> None:
    car = parse_rule({"kind": "seen", "name": "car", "classes": ["car", "truck"]})
    anything = parse_rule({"kind": "seen", "name": "any", "classes": ["*"]})
    assert run([car], still([obj(20)], 10)) == []
    assert len(run([anything], still([obj(20)], 10))) == 1
    mostly_car = [[obj(20, cls="person")]] + still([obj(20, cls="car")], 3)
    (_, event), *_ = run([car], mostly_car)
    assert event.class_name == "car"


def test_min_confidence_filters_boxes() -> None:
    faint = still([obj(20, score=0.2)], 10)
    assert run([rule("seen")], faint) == []
    assert len(run([rule("seen", min_confidence=0.1)], faint)) == 1
    # A strict rule beside a lenient one: the box is tracked, but the strict rule ignores it.
    strict = rule("seen", "strict", min_confidence=0.5)
    assert [e.rule for _, e in run([strict, rule("seen", min_confidence=0.1)], faint)] == ["r"]


def test_rule_cameras_globs() -> None:
    dock = parse_rule({"kind": "seen", "name": "s", "classes": ["*"], "cameras": ["dock-*"]})
    assert dock.applies_to("dock-1") and not dock.applies_to("yard-1")
    for camera, expected in [("dock-1", 1), ("yard-1", 0)]:
        cam = CameraObjects(camera, "f0")
        events = [e for i in range(5) for e in cam.update(frame(i, [obj(20)], camera), [dock])]
        assert len(events) == expected
    assert DetectRules(rules=[dock]).for_camera("yard-1") == []
    assert DetectRules.rules_for("dock-7", [dock]) == [dock]


# State ----------------------------------------------------------------------------------------


def scene(n: int) -> list[list[ObjectBox]]:
    """Objects coming and going: every 25 frames one walks right across the frame, every 40
    one stands 3 s in the left half; a third of the frames have a faint distractor."""
    frames: list[list[ObjectBox]] = []
    for i in range(n):
        boxes = [obj(20 + 15 * (i % 25), y=50)] if i % 50 < 25 else []
        if i % 40 < 30:
            boxes.append(obj(100, y=300, cls="car" if i % 80 < 40 else "person"))
        if i % 3 == 0:
            boxes.append(obj(500, y=10, score=0.1))
        frames.append(boxes)
    return frames


ALL_RULES = [
    rule("line", "door", line=UP_LINE),
    rule("dwell", "loiter", zone=LEFT_ZONE, seconds=1.0),
    parse_rule({"kind": "count", "name": "busy", "classes": ["*"], "more_than": 1}),
    rule("count", "empty", fewer_than=1, seconds=0.3),
    rule("seen", "someone", min_frames=3),
]


def test_pickle_round_trip_gives_the_same_events_as_an_uninterrupted_run() -> None:
    frames = scene(400)
    whole = run(ALL_RULES, frames)
    assert {e.rule for _, e in whole} == {r.name for r in ALL_RULES}
    # Cut at 205: two objects are mid-dwell, one walks towards the line, the frame is busy.
    assert {e.rule for i, e in whole if 205 <= i < 240} == {"loiter", "door", "empty"}
    cam = CameraObjects("c1", "f0")
    before = run(ALL_RULES, frames[:205], cam)
    restored = pickle.loads(pickle.dumps(cam))
    assert before + run(ALL_RULES, frames[205:], restored, start=205) == whole
    assert len({e.event_id for _, e in whole}) == len(whole)


def test_state_stays_bounded_over_10000_frames() -> None:
    cam = CameraObjects("c1", "f0")
    sizes, pickled = [], []
    for i, boxes in enumerate(scene(10_000)):
        cam.update(frame(i, boxes), ALL_RULES)
        if i % 500 == 499:
            sizes.append(cam.state_size())
            pickled.append(len(pickle.dumps(cam)))
    assert max(sizes) <= 10
    assert max(pickled) < 2 * pickled[0] + 10_000
    assert cam.tracker._next_track_id > 300  # tracks did come and go


def test_repeated_late_and_odd_frames_do_not_crash() -> None:
    cam = CameraObjects("c1", "f0")
    seen = [rule("seen", min_frames=3)]
    assert cam.update(frame(0, [obj(20)]), seen) == []
    assert cam.update(frame(0, [obj(20)]), seen) == []  # delivered twice
    late = DetectFrame("c1", "late", 999.0, W, H, (obj(20),))
    odd = DetectFrame("c1", "nan", float("nan"), W, H, (obj(20),))
    assert cam.update(late, seen) == cam.update(odd, seen) == []
    assert cam.state_size() == 1  # nothing moved: one tracklet spawned by frame 0
    assert len(cam.update(frame(1, [obj(20)]), seen) + cam.update(frame(2, [obj(20)]), seen)) == 1
    stepped_back = DetectFrame("c1", "back", 100.0, W, H, (obj(20),))  # the clock was reset
    assert cam.update(stepped_back, seen) == []
    assert cam.update(DetectFrame("c1", "x", 100.1, W, H, (obj(20),)), seen) == []
    assert cam.clock == pytest.approx(0.4)


# Config ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "fields",
    [
        {"kind": "dwell", "zone": [[0, 0], [1, 0]], "seconds": 1},  # two points
        {"kind": "dwell", "zone": [[0, 0], [0.5, 0.5], [1, 1]], "seconds": 1},  # no area
        {"kind": "dwell", "zone": [[0, 0], [1.2, 0], [1, 1]], "seconds": 1},  # outside [0, 1]
        {"kind": "dwell", "zone": LEFT_ZONE, "seconds": 0},
        {"kind": "line", "line": [[0.5, 0.5], [0.5, 0.5]]},
        {"kind": "line", "line": [[0.5, -0.1], [0.5, 0.5]]},
        {"kind": "count", "more_than": 2, "fewer_than": 1},
        {"kind": "count"},
        {"kind": "count", "fewer_than": 0},
        {"kind": "seen", "min_frames": 0},
        {"kind": "seen", "classes": []},
        {"kind": "seen", "classes": ["*", "car"]},
        {"kind": "seen", "name": "Bad Name"},
        {"kind": "seen", "min_confidence": 1.5},
        {"kind": "seen", "colour": "red"},
        {"kind": "teleport"},
    ],
)
def test_invalid_rules_are_refused(fields: dict) -> None:
    with pytest.raises(ValidationError):
        parse_rule({"name": "r", "classes": ["person"], **fields})


def test_duplicate_names_are_refused() -> None:
    rules = [rule("seen", "same"), rule("count", "same", more_than=1)]
    with pytest.raises(ValueError, match="same"):
        check_unique_names(rules)
    with pytest.raises(ValidationError, match="same"):
        DetectRules.model_validate({"rules": [r.model_dump() for r in rules]})
