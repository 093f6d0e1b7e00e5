"""Per-camera post-processing: NMS, tracking, one decision per physical part, line counts.

Pure logic, no Kafka. A worker feeds ``PartTracker.update`` one ``PartDetections`` per frame
and publishes the ``PartDecision`` list it returns; ``flush`` finalises what is still open.

Tracking is ByteTrack from Roboflow's ``trackers`` package (supervision 0.31 dropped its own
``sv.ByteTrack`` in favour of it); zones and the exit line are supervision's ``PolygonZone``
and ``LineZone``. Any object with ``update(sv.Detections) -> sv.Detections`` that sets
``tracker_id`` can stand in for it (tests use an oracle tracker).

Decisions: a track that crossed the exit line, was lost for longer than ``lost_frames`` or is
flushed gives exactly one decision. Tracks seen in the inspection zone fewer than
``min_frames`` times are not dropped: they come out with ``status="insufficient"`` and
``defective=False``, so a consumer can still count them without raising an alert. Frames the
inspect worker shed (``PartDetections.shed_before``) between a track's frames in the zone count
toward ``min_frames``, so under overload a part is decided on fewer frames; but never on fewer
than two inspected ones (or ``min_frames``, when that is less).
ByteTrack (trackers 2.6) reports a new track as id -1 on the frame that spawned it, whatever
``minimum_consecutive_frames``, and names it on its next frame. That first frame is taken back
then (``Spawned``): it is evidence, and under load shedding a part may be seen only twice.
Set ``belt_px_per_frame``, or give each frame its ``belt_shift`` (the parts worker computes it
from capture times, so a dropped frame is no jump): parts move about their own width per frame,
and only in belt coordinates do consecutive boxes overlap enough for IoU matching. Each
decision carries its track's most defective frame (``best_frame``, ``best_part``) as evidence.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol, cast

import numpy as np
import supervision as sv
from pydantic import BaseModel, ConfigDict, Field

FloatBox = tuple[float, float, float, float]  # x0, y0, x1, y1 in frame pixels
Status = Literal["accepted", "rejected", "insufficient"]


class DefectDetection(BaseModel):
    model_config = ConfigDict(extra="forbid")
    defect_class: str
    box: FloatBox
    score: float = Field(ge=0, le=1)
    area: float = Field(ge=0)  # mask pixels, or box area when there is no mask
    polygon: list[tuple[float, float]] | None = None  # outline in frame pixels, when known


class PartDetection(BaseModel):
    model_config = ConfigDict(extra="forbid")
    box: FloatBox
    confidence: float = Field(default=1.0, ge=0, le=1)  # that this is a part: drives tracking
    defect_score: float = Field(default=0.0, ge=0, le=1)  # that the part is defective
    anomaly_score: float = Field(default=0.0, ge=0, le=1)  # the anomaly model's alone
    defects: list[DefectDetection] = []
    # The defect detector's peak per class in this frame, however low (see vision.class_scores)
    class_scores: dict[str, float] = {}
    ref: int | None = None  # caller's id (e.g. a ground-truth part id), carried to decisions


class PartDetections(BaseModel):
    model_config = ConfigDict(extra="forbid")
    camera: str
    frame_index: int
    parts: list[PartDetection]
    # Belt travel in pixels since the tracker's first frame; None: frame_index times
    # ``belt_px_per_frame``. A worker gives it from capture times, so a dropped frame is no jump.
    belt_shift: float | None = None
    shed_before: int = Field(default=0, ge=0)  # the camera's frames shed just before this one


class DecisionRules(BaseModel):
    """When a tracked part is defective: seen in at least ``min_frames`` frames, and either
    rule that is on holds.

    - Frames: in ``min_defect_frames`` frames, a defect passed every threshold (score, area,
      class).
    - Mean score: for some class of interest, the detector's peak score for it averaged over
      the part's frames reaches ``min_mean_score``. Evidence summed over frames separates
      parts better than any one frame: one glint is not a scratch, and a defect seen faintly
      in every frame is one.
    """

    model_config = ConfigDict(extra="forbid")
    min_score: float = 0.5
    min_area: float = 0.0
    classes: list[str] | None = None  # classes of interest; None means all
    min_frames: int = 3  # frames seen in the zone before any decision is trusted
    min_defect_frames: int | None = 1  # frames with a qualifying defect to reject; None: off
    min_mean_score: float | None = None  # a class's mean peak score to reject; None: off

    def counts(self, defect_class: str) -> bool:
        return self.classes is None or defect_class in self.classes


class TrackerConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    fps: float = 10.0
    # Parts cross the view in ~9 frames: a short buffer bridges a missed frame or two without
    # letting a finished track coast onto the next part.
    lost_frames: int = 2
    activation_threshold: float = 0.3
    high_conf_threshold: float = 0.5
    # Parts move about half their width per frame, so consecutive boxes overlap little.
    min_iou: float = 0.05
    # Known belt speed: boxes go to the tracker in belt coordinates, where a part stands still.
    # Without it a part moves about its own width per frame and IoU matching cannot follow it.
    belt_px_per_frame: float = 0.0
    nms_iou: float = 0.5
    line_x: float = 0.8  # exit line, as a fraction of the width
    # A track whose largest box, in belt coordinates, overlaps a recently decided one this much
    # is the same physical part tracked again (a missed frame or an occluder broke its track).
    same_part_iou: float = 0.3
    # Or whose box lies this much inside a recently decided one: a fragment of that part, such
    # as the sliver still in view at the frame's edge when a restarted worker first sees it
    # (parts on a belt do not overlap, so no other part can lie inside a decided one).
    same_part_inside: float = 0.8
    zone: list[tuple[float, float]] | None = None  # inspection polygon in pixels; None: frame
    # A box this close to the frame's edge (a fraction of the width or height) is a part only
    # partly in view: seen, but its scores are not judged (TrackEvidence.add). 0: none is.
    edge_margin: float = Field(0.01, ge=0, lt=0.5)


class PartDecision(BaseModel):
    model_config = ConfigDict(extra="forbid")
    camera: str
    track_id: int
    status: Status
    defective: bool
    frames_seen: int
    defect_frames: int
    frames_shed: int = 0  # shed between its frames in the zone (counted toward min_frames)
    max_defect_score: float
    top_class: str | None
    class_votes: dict[str, int]
    # Per class of interest, its peak score averaged over the frames seen (min_mean_score).
    class_evidence: dict[str, float] = {}
    best_box: FloatBox
    best_area: float  # box area of the best box
    first_frame: int
    last_frame: int
    crossed_line: bool
    ref: int | None  # the caller id most often attached to this track
    # The evidence frame with the highest defect score (the last frame seen when the part was
    # never in the zone) and the part as detected in it, defects included.
    best_frame: int = -1
    best_part: PartDetection | None = None
    last_box: FloatBox | None = None  # in the last frame it was reported (``last_frame``)


@dataclass
class Decided:
    """A part decided lately, where it lies on the belt: tracked again, it is known."""

    belt_box: FloatBox
    defective: bool
    counted: bool  # its exit-line crossing is counted


class LineCounts(BaseModel):
    crossed: int = 0
    passed: int = 0  # crossed and not rejected (insufficient ones included)
    rejected: int = 0
    insufficient: int = 0


class Tracker(Protocol):
    def update(self, detections: sv.Detections) -> sv.Detections: ...


def share_inside(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """The share of ``box``'s area inside each of ``boxes`` (xyxy), 0 for an empty box."""
    x0 = np.maximum(box[0], boxes[:, 0])
    y0 = np.maximum(box[1], boxes[:, 1])
    x1 = np.minimum(box[2], boxes[:, 2])
    y1 = np.minimum(box[3], boxes[:, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    area = max((box[2] - box[0]) * (box[3] - box[1]), 0.0)
    return inter / area if area > 0 else np.zeros(len(boxes))


# NMS ------------------------------------------------------------------------------------------


def to_sv(parts: Sequence[PartDetection]) -> sv.Detections:
    """Part boxes as ``sv.Detections``; ``data`` has the index into ``parts`` and the ref."""
    if not parts:
        empty = sv.Detections.empty()
        empty.data.update(index=np.zeros(0, int), ref=np.zeros(0, int))
        return empty
    return sv.Detections(
        xyxy=np.array([p.box for p in parts], np.float32),
        confidence=np.array([p.confidence for p in parts], np.float32),
        class_id=np.zeros(len(parts), int),
        data={
            "index": np.arange(len(parts)),
            "ref": np.array([-1 if p.ref is None else p.ref for p in parts]),
        },
    )


def nms_parts(frame: PartDetections, iou: float = 0.5) -> PartDetections:
    """Overlapping part boxes merged into the most confident one, keeping every defect found."""
    dets = to_sv(frame.parts)
    if len(dets) < 2:
        return frame
    kept = [int(i) for i in dets.with_nms(threshold=iou, class_agnostic=True).data["index"]]
    merged = {i: frame.parts[i].model_copy(deep=True) for i in kept}
    dropped = [i for i in range(len(frame.parts)) if i not in merged]
    if dropped:  # a suppressed duplicate's defects and score go to the kept box it overlaps most
        overlap = sv.box_iou_batch(dets.xyxy[dropped], dets.xyxy[kept])
        for row, i in enumerate(dropped):
            target = merged[kept[int(overlap[row].argmax())]]
            target.defects.extend(frame.parts[i].defects)
            target.defect_score = max(target.defect_score, frame.parts[i].defect_score)
    return frame.model_copy(update={"parts": [merged[i] for i in kept]})


# Evidence per track ---------------------------------------------------------------------------


@dataclass
class TrackEvidence:
    first_frame: int
    # The first frame the tracker saw the part in: ``first_frame`` when that is the frame that
    # spawned the track (taken back, see ``Spawned``); else possibly the frame before, where the
    # tracker may have seen it unnamed. A replay from here tracks the part as it was.
    first_sighting: int
    last_frame: int = -1  # last frame with evidence (in the zone)
    last_seen: int = -1  # last frame the tracker reported it, in the zone or not
    frames_seen: int = 0
    frames_judged: int = 0  # of those, the frames whose scores count (see ``add``)
    held: list[tuple[int, PartDetection]] = field(default_factory=list)  # cut frames, not judged
    frames_shed: int = 0  # the camera's frames shed between its frames in the zone
    defect_frames: int = 0
    max_defect_score: float = 0.0
    votes: Counter[str] = field(default_factory=Counter)
    class_sums: Counter[str] = field(default_factory=Counter)  # of class_scores, per frame
    refs: Counter[int] = field(default_factory=Counter)
    best_box: FloatBox = (0.0, 0.0, 0.0, 0.0)
    best_key: tuple[float, float] = (-1.0, -1.0)  # (confidence, area) of the best box
    crossed: bool = False
    belt_box: FloatBox | None = None  # its largest box, in belt coordinates: where it lies
    belt_area: float = -1.0
    evidence_frame: int = -1  # the frame of ``evidence`` below
    evidence: PartDetection | None = None  # the part in its most defective frame
    # (defect score, defects that count, confidence) of it: of two frames that score alike, the
    # one that shows the defects (not the part's first glimpse at the frame's edge).
    evidence_key: tuple[float, int, float] = (-1.0, -1, -1.0)
    seen: PartDetection | None = None  # the part in the last frame it was reported

    def add(
        self,
        frame_index: int,
        part: PartDetection,
        rules: DecisionRules,
        shed_before: int = 0,
        cut: bool = False,
    ) -> None:
        """One frame in the zone. ``cut``: the part's box meets the frame's edge, so the part is
        only partly in view (its crop padded with black): the frame counts as seen, but its
        scores are judged only when the part was never seen whole (``judge_held``)."""
        # Frames shed before this one lay within the part's pass when it had evidence already.
        self.frames_shed += shed_before if self.frames_seen else 0
        self.last_frame, self.frames_seen = frame_index, self.frames_seen + 1
        if part.ref is not None:
            self.refs[part.ref] += 1
        key = (part.confidence, box_area(part.box))
        if key > self.best_key:
            self.best_key, self.best_box = key, part.box
        if cut:
            self.held.append((frame_index, part))
        else:
            self._judge(frame_index, part, rules)

    def judge_held(self, rules: DecisionRules) -> None:
        """A part seen only cut by the frame's edge is judged on those frames after all."""
        if not self.frames_judged:
            for frame_index, part in self.held:
                self._judge(frame_index, part, rules)
        self.held.clear()

    def _judge(self, frame_index: int, part: PartDetection, rules: DecisionRules) -> None:
        self.frames_judged += 1
        self.max_defect_score = max(self.max_defect_score, part.defect_score)
        qualifying = qualifying_defects(part, rules)
        self.defect_frames += bool(qualifying)
        self.votes.update({d.defect_class for d in qualifying})  # one vote per class and frame
        self.class_sums.update({c: v for c, v in part.class_scores.items() if rules.counts(c)})
        evidence_key = (part.defect_score, len(qualifying), part.confidence)
        if evidence_key > self.evidence_key:
            self.evidence_key, self.evidence, self.evidence_frame = evidence_key, part, frame_index


@dataclass(frozen=True)
class Spawned:
    """A detection the tracker left unnamed (id -1) in the frame it came from: the first frame
    of a track it may name on the next one."""

    frame_index: int
    part: PartDetection
    belt_box: FloatBox
    in_zone: bool
    shed_before: int


def box_area(box: FloatBox) -> float:
    return max(0.0, box[2] - box[0]) * max(0.0, box[3] - box[1])


def qualifying_defects(part: PartDetection, rules: DecisionRules) -> list[DefectDetection]:
    return [
        d
        for d in part.defects
        if d.score >= rules.min_score and d.area >= rules.min_area and rules.counts(d.defect_class)
    ]


def decide(camera: str, track_id: int, ev: TrackEvidence, rules: DecisionRules) -> PartDecision:
    ev.judge_held(rules)
    evidence = {c: round(v / max(1, ev.frames_judged), 4) for c, v in ev.class_sums.items()}
    status: Status = "insufficient"
    if enough_frames(ev, rules):
        status = "rejected" if is_defective(ev, evidence, rules) else "accepted"
    ref = ev.refs.most_common(1)
    return PartDecision(
        camera=camera,
        track_id=track_id,
        status=status,
        defective=status == "rejected",
        frames_seen=ev.frames_seen,
        defect_frames=ev.defect_frames,
        frames_shed=ev.frames_shed,
        max_defect_score=ev.max_defect_score,
        top_class=top_class(ev, evidence, rules),
        class_votes=dict(ev.votes),
        class_evidence=evidence,
        best_box=ev.best_box,
        best_area=box_area(ev.best_box),
        first_frame=ev.first_frame,
        last_frame=ev.last_seen,
        crossed_line=ev.crossed,
        ref=ref[0][0] if ref else None,
        best_frame=ev.evidence_frame if ev.evidence else ev.last_seen,
        best_part=ev.evidence or ev.seen,
        last_box=ev.seen.box if ev.seen else None,
    )


def enough_frames(ev: TrackEvidence, rules: DecisionRules) -> bool:
    """``min_frames`` in the zone, counting the frames shed between them; at least two (or
    ``min_frames``) inspected: one glimpse never decides a part."""
    inspected = min(2, rules.min_frames)
    return ev.frames_seen >= inspected and ev.frames_seen + ev.frames_shed >= rules.min_frames


def mean_rejecting_class(evidence: dict[str, float], rules: DecisionRules) -> str | None:
    """The class whose mean score reaches ``min_mean_score`` (the strongest), if any."""
    strongest = max(evidence, key=evidence.__getitem__, default=None)
    if strongest is None or rules.min_mean_score is None:
        return None
    return strongest if evidence[strongest] >= rules.min_mean_score else None


def top_class(ev: TrackEvidence, evidence: dict[str, float], rules: DecisionRules) -> str | None:
    """The class whose mean score rejects the part, else the class most frames voted for."""
    top = ev.votes.most_common(1)
    return mean_rejecting_class(evidence, rules) or (top[0][0] if top else None)


def is_defective(ev: TrackEvidence, evidence: dict[str, float], rules: DecisionRules) -> bool:
    by_frames = rules.min_defect_frames is not None and ev.defect_frames >= rules.min_defect_frames
    return by_frames or mean_rejecting_class(evidence, rules) is not None


# Tracker --------------------------------------------------------------------------------------


def make_bytetrack(config: TrackerConfig) -> Tracker:
    """ByteTrack tuned for parts that stay ~9 frames in view and move fast."""
    try:
        from trackers import ByteTrackTracker
    except ImportError as error:  # an optional dependency until it is in the lock file
        raise ImportError("PartTracker needs the 'trackers' package for ByteTrack") from error
    return ByteTrackTracker(
        lost_track_buffer=round(config.lost_frames * 30 / config.fps),  # in 30 FPS frames
        frame_rate=config.fps,
        track_activation_threshold=config.activation_threshold,
        minimum_consecutive_frames=1,  # the first frame is evidence too; min_frames filters
        minimum_iou_threshold=config.min_iou,
        high_conf_det_threshold=config.high_conf_threshold,
    )


class PartTracker:
    """One camera: NMS, tracking, per-track evidence in a zone, exit line and decisions."""

    def __init__(
        self,
        camera: str,
        resolution: tuple[int, int],
        config: TrackerConfig | None = None,
        rules: DecisionRules | None = None,
        tracker: Tracker | None = None,
    ) -> None:
        self.camera, self.config = camera, config or TrackerConfig()
        self.rules = rules or DecisionRules()
        self.tracker = tracker or make_bytetrack(self.config)
        self.resolution = resolution
        self.zone, self.line = make_zones(resolution, self.config)
        self.open: dict[int, TrackEvidence] = {}
        self.finished: set[int] = set()  # ids already decided: later boxes are ignored
        self.recent: deque[Decided] = deque(maxlen=16)  # the last parts decided, by belt box
        self.counts = LineCounts()
        self.frame_index = -1
        self.shift = 0.0  # belt travel at the current frame
        self.spawned: list[Spawned] = []  # the last frame's unnamed detections

    def update(self, frame: PartDetections) -> list[PartDecision]:
        """Feed one frame; the decisions of tracks that finished with it."""
        frame = nms_parts(frame, self.config.nms_iou)
        self.frame_index = frame.frame_index
        tracked, unnamed = self._track(frame)
        earlier, self.spawned = self.spawned, self._spawned(frame, unnamed)
        if not len(tracked):
            return [d for d in self._expire() if d is not None]
        assert tracked.tracker_id is not None  # as _track returns it
        new = [
            t for t in map(int, tracked.tracker_id) if t not in self.open and t not in self.finished
        ]
        firsts = self._first_frames(tracked, new, earlier)
        in_zone = self.zone.trigger(tracked)
        crossed = np.logical_or(*self.line.trigger(tracked))  # either way ends the track
        done = []
        for k, track_id in enumerate(int(t) for t in tracked.tracker_id):
            if track_id in self.finished:
                continue
            if track_id not in self.open:
                self.open[track_id] = self._opened(firsts.get(track_id), frame.frame_index)
            ev = self.open[track_id]
            seen = frame.parts[int(tracked.data["index"][k])]
            if in_zone[k]:
                ev.add(frame.frame_index, seen, self.rules, frame.shed_before, self._cut(seen))
            ev.last_seen, ev.seen = frame.frame_index, seen
            if box_area(seen.box) > ev.belt_area:
                ev.belt_area, ev.belt_box = box_area(seen.box), self._on_belt(seen.box)
            if crossed[k]:
                ev.crossed = True
                done.append(self._finish(track_id))
        return [d for d in done + self._expire() if d is not None]

    def _opened(self, first: Spawned | None, frame_index: int) -> TrackEvidence:
        """A new track's evidence, from the frame that spawned it when there is one."""
        if first is None:
            return TrackEvidence(first_frame=frame_index, first_sighting=frame_index - 1)
        ev = TrackEvidence(first_frame=first.frame_index, first_sighting=first.frame_index)
        if first.in_zone:
            ev.add(
                first.frame_index, first.part, self.rules, first.shed_before, self._cut(first.part)
            )
        ev.last_seen, ev.seen = first.frame_index, first.part
        ev.belt_area, ev.belt_box = box_area(first.belt_box), first.belt_box
        return ev

    def _spawned(self, frame: PartDetections, unnamed: sv.Detections) -> list[Spawned]:
        if not len(unnamed):
            return []
        in_zone = self.zone.trigger(unnamed)
        return [
            Spawned(
                frame.frame_index,
                frame.parts[int(index)],
                self._on_belt(frame.parts[int(index)].box),
                bool(in_zone[k]),
                frame.shed_before,
            )
            for k, index in enumerate(unnamed.data["index"])
        ]

    def _first_frames(
        self, tracked: sv.Detections, new: list[int], earlier: list[Spawned]
    ) -> dict[int, Spawned]:
        """Each newly named track's detection in the frame before, if the tracker spawned it
        there: the unnamed one that overlaps it most on the belt. The exit line is shown that
        position first, so that a part seen only there and here still crosses it."""
        if not new or not earlier:
            return {}
        assert tracked.tracker_id is not None
        ids = [int(t) for t in tracked.tracker_id]
        rows = [ids.index(t) for t in new]
        boxes = np.array([self._on_belt(tuple(tracked.xyxy[r])) for r in rows], np.float64)
        spawned = np.array([s.belt_box for s in earlier], np.float64)
        iou = sv.box_iou_batch(boxes, spawned)
        firsts: dict[int, Spawned] = {}
        for row, col in zip(*np.unravel_index(np.argsort(-iou, axis=None), iou.shape), strict=True):
            if iou[row, col] < self.config.min_iou:
                break
            if new[row] not in firsts and earlier[col] not in firsts.values():
                firsts[new[row]] = earlier[col]
        if firsts:
            shown = sv.Detections(
                xyxy=np.array([s.part.box for s in firsts.values()], np.float32),
                tracker_id=np.array(list(firsts), int),
            )
            self.line.trigger(shown)
        return firsts

    def _cut(self, part: PartDetection) -> bool:
        """Whether the part's box meets the frame's edge (within ``edge_margin``; 0: never)."""
        if not self.config.edge_margin:
            return False
        width, height = self.resolution
        x0, y0, x1, y1 = part.box
        mx, my = self.config.edge_margin * width, self.config.edge_margin * height
        return x0 <= mx or y0 <= my or x1 >= width - mx or y1 >= height - my

    def _on_belt(self, box) -> FloatBox:
        x0, y0, x1, y1 = (float(v) for v in box)
        return (x0 - self.shift, y0, x1 - self.shift, y1)

    def _track(self, frame: PartDetections) -> tuple[sv.Detections, sv.Detections]:
        """Tracked boxes in frame coordinates, and those not yet named (id -1)."""
        dets = to_sv(frame.parts)
        shift = frame.belt_shift
        if shift is None:
            shift = frame.frame_index * self.config.belt_px_per_frame
        self.shift = float(shift)
        # A copy, so the zone and line still see frame coordinates.
        on_belt = cast(sv.Detections, dets[:])
        on_belt.xyxy = dets.xyxy - np.array([shift, 0, shift, 0], np.float32)
        tracked = self.tracker.update(on_belt)
        if not len(tracked):
            return tracked, tracked
        assert tracked.tracker_id is not None  # a tracker's output has its ids
        tracked.xyxy = dets.xyxy[tracked.data["index"]]
        named = tracked.tracker_id >= 0
        return cast(sv.Detections, tracked[named]), cast(sv.Detections, tracked[~named])

    def flush(self) -> list[PartDecision]:
        """End of stream: decide every open track."""
        decided = [self._finish(track_id) for track_id in list(self.open)]
        return [d for d in decided if d is not None]

    def _expire(self) -> list[PartDecision | None]:
        lost = [
            t
            for t, ev in self.open.items()
            if self.frame_index - ev.last_seen > self.config.lost_frames
        ]
        return [self._finish(t) for t in lost]

    def _finish(self, track_id: int) -> PartDecision | None:
        """The track's decision; None when it is a part already decided, tracked again, and
        deciding it again would add nothing (it was rejected then, or is not rejected now)."""
        ev = self.open.pop(track_id)
        decision = decide(self.camera, track_id, ev, self.rules)
        self.finished.add(track_id)
        earlier = self._same_part(ev.belt_box)
        if earlier is not None and (earlier.defective or not decision.defective):
            if decision.crossed_line and not earlier.counted:
                earlier.counted = True
                self._count(decision.model_copy(update={"defective": earlier.defective}))
            return None
        if ev.belt_box is not None:
            self.recent.append(Decided(ev.belt_box, decision.defective, decision.crossed_line))
        if decision.crossed_line:
            self._count(decision)
        return decision

    def _same_part(self, belt_box: FloatBox | None) -> Decided | None:
        if belt_box is None or not self.recent:
            return None
        boxes = np.array([d.belt_box for d in self.recent], np.float64)
        box = np.array([belt_box], np.float64)
        iou = sv.box_iou_batch(box, boxes)[0]
        inside = share_inside(box[0], boxes)
        same = (iou >= self.config.same_part_iou) | (inside >= self.config.same_part_inside)
        if not same.any():
            return None
        return self.recent[int(np.where(same, iou + inside, -1.0).argmax())]

    def _count(self, decision: PartDecision) -> None:
        self.counts.crossed += 1
        self.counts.rejected += decision.defective
        self.counts.passed += not decision.defective
        self.counts.insufficient += decision.status == "insufficient"


def make_zones(
    resolution: tuple[int, int], config: TrackerConfig
) -> tuple[sv.PolygonZone, sv.LineZone]:
    """The inspection zone and a vertical exit line; both judge a box by its centre."""
    width, height = resolution
    polygon = config.zone or [(0, 0), (width, 0), (width, height), (0, height)]
    zone = sv.PolygonZone(np.round(polygon).astype(int), triggering_anchors=[sv.Position.CENTER])
    x = round(config.line_x * width)
    line = sv.LineZone(
        start=sv.Point(x, height), end=sv.Point(x, 0), triggering_anchors=[sv.Position.CENTER]
    )
    return zone, line
