"""Per-camera object tracking and the detect rules' events: pure logic, no broker.

A service keeps one ``CameraObjects`` per camera, feeds ``update`` one ``DetectFrame`` of
detector boxes per frame and publishes the ``ObjectEvent`` list it returns. The state is
plain, picklable Python (the ByteTrack tracker included), so the service can save it after
every frame and restore it after a crash: a restored state gives the same events as one that
never stopped.

Tracking is ByteTrack from Roboflow's ``trackers`` package, fed the capture times, so a dropped
frame is a longer Kalman step and not a jump. ByteTrack reports a new track as id -1 on its
first frame; that frame still counts in the track's ``frames`` (it is the frame the track was
spawned from). An object is where its box's anchor is: the bottom-centre
``((x0 + x1) / 2, y1)``, the point on the ground. Zones and lines are compared in fractions of
the frame (the anchor divided by width and height): scaling both axes keeps inside/outside
and the sign of a cross product, so this equals comparing in pixels, needs no per-resolution
cache, and the state stays valid when a camera's resolution changes.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import supervision as sv
from trackers import ByteTrackTracker

from visionline.detection.config import (
    CountRule,
    DetectRule,
    DwellRule,
    LineRule,
    ObjectRule,
    Point,
    Polygon,
    SeenRule,
)

Box = tuple[float, float, float, float]  # x0, y0, x1, y1 in frame pixels


@dataclass(frozen=True)
class ObjectBox:
    box: Box
    class_name: str
    score: float


@dataclass(frozen=True)
class DetectFrame:
    camera_id: str
    frame_id: str
    captured_at: float  # seconds since the epoch
    width: int
    height: int
    boxes: tuple[ObjectBox, ...]


@dataclass(frozen=True)
class ObjectEvent:
    event_id: str
    rule: str
    kind: str
    camera_id: str
    frame_id: str
    track_id: int  # -1 for count events
    class_name: str  # "" for count events
    box: Box | None
    score: float
    severity: str
    detail: dict[str, Any]


@dataclass
class TrackState:
    """What the rules need of one track; keyed by rule name, so bounded by the rules."""

    last_seen: float  # on the state's clock (see ``CameraObjects.clock``)
    frames: int = 1  # the spawn frame, where ByteTrack still said -1, counts
    votes: Counter[str] = field(default_factory=Counter)
    inside_since: dict[str, float] = field(default_factory=dict)  # dwell rule -> entered
    sides: dict[str, tuple[int, Point]] = field(default_factory=dict)  # line -> side, anchor
    crossings: dict[str, int] = field(default_factory=dict)  # line rule -> crossings so far
    fired: set[str] = field(default_factory=set)  # dwell and seen rules that fired

    @property
    def class_name(self) -> str:
        """The majority of its boxes' classes (ties: the first seen, as Counter keeps order)."""
        return self.votes.most_common(1)[0][0] if self.votes else ""


@dataclass
class CountState:
    since: float | None = None  # clock when the condition began to hold
    fired: bool = False  # fired in this episode; re-arms when the condition stops holding


Tracked = list[tuple[int, ObjectBox]]  # confirmed track id and its box in this frame


def anchor(box: ObjectBox, width: int, height: int) -> Point:
    """Bottom-centre of the box, in fractions of the frame."""
    x0, _, x1, y1 = box.box
    return ((x0 + x1) / 2 / max(width, 1), y1 / max(height, 1))


def inside(point: Point, polygon: Polygon) -> bool:
    """Even-odd ray casting; a point exactly on an edge may fall either way."""
    x, y = point
    result = False
    for (xa, ya), (xb, yb) in zip(polygon, polygon[1:] + polygon[:1], strict=True):
        if (ya > y) != (yb > y) and x < xa + (y - ya) * (xb - xa) / (yb - ya):
            result = not result
    return result


def cross(p1: Point, p2: Point, a: Point) -> float:
    """> 0: ``a`` is right of p1 -> p2 as the image is shown (y down); < 0: left."""
    return (p2[0] - p1[0]) * (a[1] - p1[1]) - (p2[1] - p1[1]) * (a[0] - p1[0])


def side(p1: Point, p2: Point, a: Point) -> int:
    value = cross(p1, p2, a)
    return (value > 0) - (value < 0)


def make_tracker(fps: float, lost_s: float) -> ByteTrackTracker:
    """ByteTrack that tracks every box it is given: the rules' min_confidence filters first."""
    return ByteTrackTracker(
        lost_track_buffer=round(lost_s * 30),  # in 30 FPS frames, i.e. lost_s seconds
        frame_rate=fps,
        track_activation_threshold=0.0,
        minimum_consecutive_frames=1,
        minimum_iou_threshold=0.1,
        high_conf_det_threshold=0.0,
    )


def to_sv(boxes: Sequence[ObjectBox]) -> sv.Detections:
    """Boxes as ``sv.Detections``; ``data["index"]`` maps the tracker's output back."""
    if not boxes:
        empty = sv.Detections.empty()
        empty.data["index"] = np.zeros(0, int)
        return empty
    return sv.Detections(
        xyxy=np.array([b.box for b in boxes], np.float64),
        confidence=np.array([b.score for b in boxes], np.float64),
        class_id=np.zeros(len(boxes), int),
        data={"index": np.arange(len(boxes))},
    )


class CameraObjects:
    """One camera's tracker and rule state; picklable.

    ``epoch`` is the frame id of the first frame of this state: it goes into every event id,
    so ids never repeat after a state is lost and rebuilt (track ids restart at 0 then).
    Tracks not seen for ``forget_s`` of capture time are forgotten (ByteTrack drops them
    after ``lost_s``), so the state stays bounded however long the camera runs.
    """

    def __init__(
        self,
        camera_id: str,
        epoch: str,
        fps: float = 10.0,
        lost_s: float = 1.0,
        forget_s: float = 2.0,
        clock_step_back_s: float = 5.0,
    ) -> None:
        self.camera_id, self.epoch, self.fps = camera_id, epoch, fps
        self.forget_s = max(forget_s, lost_s)  # never forget a track ByteTrack may revive
        # A frame older than the last by less than this is late: skipped. By more, the camera's
        # clock was set back: the state's clock goes on from the new time.
        self.clock_step_back_s = clock_step_back_s
        self.tracker = make_tracker(fps, lost_s)
        self.tracks: dict[int, TrackState] = {}
        self.counts: dict[str, CountState] = {}  # per count rule
        self.line_counts: dict[str, dict[str, int]] = {}  # per line rule: in/out since start
        # Seconds of capture time since the first frame, never going back: the tracker, dwell
        # and forgetting run on it, so a camera clock set back cannot freeze or rewind them.
        self.clock = 0.0
        self.last_captured: float | None = None
        self.last_frame_id: str | None = None

    def update(self, frame: DetectFrame, rules: Sequence[DetectRule]) -> list[ObjectEvent]:
        """Track one frame's boxes and return the events the rules fire with it.

        A repeated frame (same id as the last), a late one (captured before the last) or one
        without a finite capture time changes nothing and gives no events."""
        rules = [r for r in rules if r.applies_to(self.camera_id)]
        if not self._advance(frame):
            return []
        floor = min((r.min_confidence for r in rules), default=0.0)
        tracked = self._track(frame, floor)
        events: list[ObjectEvent] = []
        for rule in rules:
            if isinstance(rule, DwellRule):
                events += self._dwell(rule, frame, tracked)
            elif isinstance(rule, LineRule):
                events += self._line(rule, frame, tracked)
            elif isinstance(rule, CountRule):
                events += self._count(rule, frame, tracked)
            elif isinstance(rule, SeenRule):
                events += self._seen(rule, frame, tracked)
        self._forget({r.name for r in rules if isinstance(r, CountRule)})
        return events

    def state_size(self) -> int:
        """Tracks held: this state's plus the tracker's own (lost ones included)."""
        return len(self.tracks) + len(self.tracker.tracks)

    # Frames and tracking --------------------------------------------------------------------

    def _advance(self, frame: DetectFrame) -> bool:
        """Move the clock to the frame; False when the frame is to be skipped."""
        if frame.frame_id == self.last_frame_id or not math.isfinite(frame.captured_at):
            return False
        step = 0.0
        if self.last_captured is not None:
            step = frame.captured_at - self.last_captured
            if -self.clock_step_back_s < step <= 0:
                return False
            if step <= 0:
                step = 1 / self.fps
        self.clock += step
        self.last_captured, self.last_frame_id = frame.captured_at, frame.frame_id
        return True

    def _track(self, frame: DetectFrame, floor: float) -> Tracked:
        """The confirmed tracks in this frame with their boxes; each track's state updated."""
        boxes = [
            b
            for b in frame.boxes
            if b.score >= floor and all(math.isfinite(v) for v in (*b.box, b.score))
        ]
        result = self.tracker.update(to_sv(boxes), timestamp=self.clock)
        tracked: Tracked = []
        if not len(result):
            return tracked
        assert result.tracker_id is not None  # a tracker's output has its ids
        for track_id, index in zip(result.tracker_id, result.data["index"], strict=True):
            if track_id < 0:
                continue
            box = boxes[int(index)]
            state = self.tracks.get(int(track_id))
            if state is None:  # confirmed now; it was spawned on the previous frame
                state = self.tracks[int(track_id)] = TrackState(self.clock)
            state.frames += 1
            state.last_seen = self.clock
            state.votes[box.class_name] += 1
            tracked.append((int(track_id), box))
        return tracked

    def _forget(self, count_rules: set[str]) -> None:
        """Drop tracks unseen for ``forget_s`` and the state of count rules now gone."""
        lost = [t for t, s in self.tracks.items() if self.clock - s.last_seen > self.forget_s]
        for track_id in lost:
            del self.tracks[track_id]
        for name in [n for n in self.counts if n not in count_rules]:
            del self.counts[name]

    def _qualifying(self, rule: ObjectRule, tracked: Tracked) -> Tracked:
        """Tracks the rule looks at: of its classes (by majority) and confident enough now."""
        return [
            (t, b)
            for t, b in tracked
            if b.score >= rule.min_confidence and rule.matches(self.tracks[t].class_name)
        ]

    # Rules ----------------------------------------------------------------------------------

    def _event(
        self,
        rule: DetectRule,
        frame: DetectFrame,
        key: str,
        detail: dict[str, Any],
        item: tuple[int, ObjectBox] | None = None,
        score: float = 0.0,
    ) -> ObjectEvent:
        """An event on a track (``item``) or, for count rules, on the frame (``score``)."""
        track_id, box = item if item is not None else (-1, None)
        return ObjectEvent(
            event_id=f"{self.camera_id}:{self.epoch}:{rule.name}:{key}",
            rule=rule.name,
            kind=rule.kind,
            camera_id=self.camera_id,
            frame_id=frame.frame_id,
            track_id=track_id,
            class_name=self.tracks[track_id].class_name if box is not None else "",
            box=box.box if box is not None else None,
            score=box.score if box is not None else score,
            severity=rule.severity,
            detail=detail,
        )

    def _dwell(self, rule: DwellRule, frame: DetectFrame, tracked: Tracked) -> list[ObjectEvent]:
        events = []
        for item in self._qualifying(rule, tracked):
            state = self.tracks[item[0]]
            if rule.name in state.fired:
                continue
            if not inside(anchor(item[1], frame.width, frame.height), rule.zone):
                state.inside_since.pop(rule.name, None)  # left: the dwell starts again
                continue
            dwell = self.clock - state.inside_since.setdefault(rule.name, self.clock)
            if dwell > rule.seconds:
                state.fired.add(rule.name)
                state.inside_since.pop(rule.name)
                detail = {"dwell_s": round(dwell, 3), "seconds": rule.seconds}
                events.append(self._event(rule, frame, str(item[0]), detail, item))
        return events

    def _line(self, rule: LineRule, frame: DetectFrame, tracked: Tracked) -> list[ObjectEvent]:
        events = []
        p1, p2 = rule.line
        counts = self.line_counts.setdefault(rule.name, {"in": 0, "out": 0})
        for item in self._qualifying(rule, tracked):
            state, point = self.tracks[item[0]], anchor(item[1], frame.width, frame.height)
            now = side(p1, p2, point)
            if now == 0:  # on the line: wait for the side it goes on to
                continue
            last = state.sides.get(rule.name)
            state.sides[rule.name] = (now, point)
            # A crossing: the other side now, and the move passed between p1 and p2 (the
            # segment's ends lie on either side of the move) rather than beyond an end.
            if (
                last is None
                or last[0] == now
                or side(last[1], point, p1) * side(last[1], point, p2) > 0
            ):
                continue
            direction = "in" if now > 0 else "out"
            counts[direction] += 1
            n = state.crossings[rule.name] = state.crossings.get(rule.name, 0) + 1
            detail = {"direction": direction, "count_in": counts["in"], "count_out": counts["out"]}
            events.append(self._event(rule, frame, f"{item[0]}:{n}", detail, item))
        return events

    def _count(self, rule: CountRule, frame: DetectFrame, tracked: Tracked) -> list[ObjectEvent]:
        found = [
            b
            for _, b in self._qualifying(rule, tracked)
            if rule.zone is None or inside(anchor(b, frame.width, frame.height), rule.zone)
        ]
        state = self.counts.setdefault(rule.name, CountState())
        if not rule.holds(len(found)):
            state.since, state.fired = None, False
            return []
        if state.since is None:
            state.since = self.clock
        held = self.clock - state.since
        if state.fired or held < rule.seconds:
            return []
        state.fired = True
        threshold = (
            {"more_than": rule.more_than}
            if rule.more_than is not None
            else {"fewer_than": rule.fewer_than}
        )
        detail = {"count": len(found), **threshold, "held_s": round(held, 3)}
        score = max((b.score for b in found), default=0.0)
        return [self._event(rule, frame, frame.frame_id, detail, score=score)]

    def _seen(self, rule: SeenRule, frame: DetectFrame, tracked: Tracked) -> list[ObjectEvent]:
        events = []
        for item in self._qualifying(rule, tracked):
            state = self.tracks[item[0]]
            if rule.name not in state.fired and state.frames >= rule.min_frames:
                state.fired.add(rule.name)
                detail = {"frames": state.frames}
                events.append(self._event(rule, frame, str(item[0]), detail, item))
        return events
