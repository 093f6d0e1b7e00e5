"""Parts' business logic: observations per frame in, one ``PartVerdict`` per physical part out.

``CameraLine`` holds one camera's ``PartTracker``, the frames its open tracks still refer to and
the events not yet safe to acknowledge; ``Lines`` holds every camera's. No Kafka here: events
are opaque objects that come back from ``observe``/``flush_idle`` once they may be acked.
"""

from __future__ import annotations

import json
import logging
from collections import deque
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from visionline.inspection.config import InspectionConfig, config_for
from visionline.inspection.tracking import (
    Decided,
    PartDecision,
    PartDetections,
    PartTracker,
)
from visionline.inspection.wire import to_detection, to_finding
from visionline.messages import (
    FloatBox,
    LineCounts,
    ModelRef,
    PartObservations,
    PartVerdict,
)

log = logging.getLogger(__name__)

# ByteTrack reports a new part as id -1 in the frame it first sees it, and names it one frame
# later: a frame with parts is held back until the next one shows whether a track starts there.
LOOKBACK_FRAMES = 1


@dataclass(frozen=True)
class FrameInfo:
    """What a verdict needs to know of a frame after the tracker has moved on."""

    frame_id: str
    captured_at: float
    snapshot: str | None
    models: tuple[ModelRef, ...]


def frame_info(obs: PartObservations) -> FrameInfo:
    return FrameInfo(obs.frame.frame_id, obs.frame.captured_at, obs.snapshot, tuple(obs.models))


def counted(counts: LineCounts, decision: PartDecision) -> LineCounts:
    """Line counts after one more decision (the tracker's own counting rule)."""
    if not decision.crossed_line:
        return counts
    return LineCounts(
        crossed=counts.crossed + 1,
        passed=counts.passed + (not decision.defective),
        rejected=counts.rejected + decision.defective,
        insufficient=counts.insufficient + (decision.status == "insufficient"),
    )


def decision_id(camera_id: str, frame_id: str, k: int) -> str:
    """``camera:frame`` for the first part decided in a frame, ``camera:frame:k`` for others."""
    return f"{camera_id}:{frame_id}" if k == 0 else f"{camera_id}:{frame_id}:{k}"


def build_verdicts(
    camera_id: str,
    decisions: Sequence[PartDecision],
    deciding: FrameInfo,
    frames: Mapping[int, FrameInfo],
    counts: LineCounts,
    now: float,
    first_k: int = 0,
) -> tuple[list[PartVerdict], LineCounts]:
    """The verdicts of the parts decided in one frame, and the line counts after them.

    Parts decided in the same frame are numbered most recently seen first (a part crossing the
    exit line in this frame before one lost a few frames ago), then by frame and box: the last
    observation of a part is the same on a replay, its track id and first frame may not be.
    Numbers start at ``first_k``: parts decided later in a frame that already decided some (an
    idle flush in the last frame seen) must not take their ids.
    """

    def first(d: PartDecision) -> FrameInfo:
        return frames.get(d.first_frame, deciding)

    def order(d: PartDecision) -> tuple:
        last = frames.get(d.last_frame, deciding)
        return -last.captured_at, last.frame_id, d.last_box or d.best_box

    verdicts = []
    for k, d in enumerate(sorted(decisions, key=order)):
        counts = counted(counts, d)
        best = frames.get(d.best_frame, deciding)
        part = d.best_part
        verdicts.append(
            PartVerdict(
                decision_id=decision_id(camera_id, deciding.frame_id, first_k + k),
                camera_id=camera_id,
                track_id=d.track_id,
                status=d.status,
                defective=d.defective,
                defect_class=d.top_class,
                score=d.max_defect_score,
                frames_seen=d.frames_seen,
                defect_frames=d.defect_frames,
                frames_shed=d.frames_shed,
                evidence=d.class_evidence,
                first_frame_id=first(d).frame_id,
                last_frame_id=frames.get(d.last_frame, deciding).frame_id,
                best_frame_id=best.frame_id,
                captured_at=best.captured_at,
                decided_at=now,
                crossed_line=d.crossed_line,
                box=part.box if part else d.best_box,
                defects=[to_finding(x) for x in part.defects] if part else [],
                snapshot=best.snapshot,
                models=list(best.models),
                counts=counts,
            )
        )
    return verdicts, counts


# Acknowledgement -----------------------------------------------------------------------------


def ack_watermark(
    current: int, open_sightings: Iterable[int], with_parts: Iterable[int], lookback: int
) -> int:
    """Frames of a camera with an index below this may be acked.

    Held back: every frame from the oldest open track's first sighting on (where the tracker
    first saw its part, ``TrackEvidence.first_sighting``), and the last ``lookback`` + 1 frames
    that had parts in them (a part there may yet become a track).

    Not one frame more: a replay from further back would also see the tail of a part decided
    before the crash, and when that tail is two frames or more, track and decide it again
    (from fewer frames, in another frame: a second verdict) unless the line's memory is
    recalled.
    """
    watermark = current + 1
    sightings = list(open_sightings)
    if sightings:
        watermark = min(watermark, min(sightings))
    recent = [f for f in with_parts if f >= current - lookback]
    if recent:
        watermark = min(watermark, min(recent))
    return watermark


def release(pending: deque[tuple[int, Any]], watermark: int) -> list[Any]:
    """Pop the events of frames below the watermark, oldest first."""
    out = []
    while pending and pending[0][0] < watermark:
        out.append(pending.popleft()[1])
    return out


# One camera -----------------------------------------------------------------------------------


TrackerFactory = Callable[[str, tuple[int, int], InspectionConfig], PartTracker]


def make_tracker(camera_id: str, resolution: tuple[int, int], config: InspectionConfig):
    return PartTracker(
        camera_id, resolution, config=config.tracker_config(), rules=config.decision_rules()
    )


RECENT_FRAME_IDS = 2048  # per camera: more than an inspect worker's redelivery holds


class RecentIds:
    """The last ``size`` ids seen, in a set for lookups and a queue for forgetting."""

    def __init__(self, size: int) -> None:
        self.order: deque[str] = deque()
        self.ids: set[str] = set()
        self.size = size

    def saw(self, frame_id: str) -> bool:
        """Whether ``frame_id`` was seen before; remembered from now on either way."""
        if frame_id in self.ids:
            return True
        self.order.append(frame_id)
        self.ids.add(frame_id)
        if len(self.order) > self.size:
            self.ids.discard(self.order.popleft())
        return False


@dataclass
class CameraLine:
    """One camera's tracking state, from its first frame (or its last idle flush) on."""

    camera_id: str
    config: InspectionConfig
    tracker: PartTracker
    counts: LineCounts = field(default_factory=LineCounts)
    frames: dict[int, FrameInfo] = field(default_factory=dict)
    pending: deque[tuple[int, Any]] = field(default_factory=deque)
    with_parts: deque[int] = field(default_factory=lambda: deque(maxlen=LOOKBACK_FRAMES + 1))
    index: int = -1  # frames seen: drives min_frames and lost_frames
    origin: float | None = None  # capture time of the first frame: belt shift 0
    last_seen: float = 0.0  # monotonic time of the last frame, for the idle flush
    source: Hashable | None = None  # the partition its frames come from
    seen: RecentIds = field(default_factory=lambda: RecentIds(RECENT_FRAME_IDS))
    # How many parts the frame ``decided_frame`` decided: an idle flush there numbers on.
    decided_frame: int = -1
    decided_here: int = 0

    def observe(self, obs: PartObservations, event: Any, now: float, wall: float):
        """Feed one frame; (its verdicts, the events that may now be acked). A frame seen
        already (the inspect worker redelivers what it handled before a crash) is not tracked
        again: fed back in time, it would split its parts' tracks into two verdicts each."""
        if self.seen.saw(obs.frame.frame_id):
            self.pending.append((self.index, event))  # acked with the frame seen last
            return self._settle([], None, wall)
        self.index += 1
        info = frame_info(obs)
        self.frames[self.index] = info
        self.pending.append((self.index, event))
        self.last_seen = now
        if self.origin is None:
            self.origin = obs.frame.captured_at
        if obs.parts:
            self.with_parts.append(self.index)
        frame = PartDetections(
            camera=self.camera_id,
            frame_index=self.index,
            parts=[to_detection(p) for p in obs.parts],
            belt_shift=(obs.frame.captured_at - self.origin) * self.config.speed_px_per_s,
            shed_before=obs.frames_shed_before,
        )
        decisions = self.tracker.update(frame)
        return self._settle(decisions, info, wall)

    def flush(self, wall: float):
        """Decide every open track in the last frame seen; every pending event may be acked."""
        decisions = self.tracker.flush()
        verdicts: list[PartVerdict] = []
        if decisions:
            verdicts = self._verdicts(decisions, self.frames[self.index], wall)
        self.frames.clear()
        self.with_parts.clear()
        return verdicts, release(self.pending, self.index + 1)

    def _settle(self, decisions: list[PartDecision], deciding: FrameInfo | None, wall: float):
        verdicts = self._verdicts(decisions, deciding, wall) if decisions and deciding else []
        sightings = [ev.first_sighting for ev in self.tracker.open.values()]
        keep = min([*sightings, self.index - LOOKBACK_FRAMES])
        for index in [i for i in self.frames if i < keep]:
            del self.frames[index]
        watermark = ack_watermark(self.index, sightings, self.with_parts, LOOKBACK_FRAMES)
        return verdicts, release(self.pending, watermark)

    def _verdicts(self, decisions, deciding: FrameInfo, wall: float) -> list[PartVerdict]:
        """Verdicts decided in the current frame, numbered after those it decided already."""
        first_k = self.decided_here if self.decided_frame == self.index else 0
        verdicts, self.counts = build_verdicts(
            self.camera_id, decisions, deciding, self.frames, self.counts, wall, first_k
        )
        self.decided_frame, self.decided_here = self.index, first_k + len(verdicts)
        return verdicts


# Memory across restarts ----------------------------------------------------------------------

MEMORY_KEY = "visionline:parts:line:{camera}"
MEMORY_VERSION = 1


@dataclass(frozen=True)
class LineMemory:
    """What a camera's line keeps across a worker restart: its counts and the parts it decided
    lately, on the belt's absolute axis (``on_belt``), as of ``saved_at`` (wall time)."""

    counts: LineCounts
    decided: tuple[Decided, ...]
    saved_at: float

    def to_json(self) -> bytes:
        decided = [[*d.belt_box, d.defective, d.counted] for d in self.decided]
        body = {"v": MEMORY_VERSION, "saved_at": self.saved_at, "decided": decided}
        return json.dumps({**body, "counts": self.counts.model_dump()}).encode()

    @classmethod
    def from_json(cls, blob: bytes) -> LineMemory | None:
        """None for anything that is not a memory of this version (logged by the caller)."""
        try:
            body = json.loads(blob)
            if body.get("v") != MEMORY_VERSION:
                return None
            decided = tuple(
                Decided((float(x0), float(y0), float(x1), float(y1)), bool(bad), bool(counted))
                for x0, y0, x1, y1, bad, counted in body["decided"]
            )
            counts = LineCounts.model_validate(body["counts"])
            return cls(counts, decided, float(body["saved_at"]))
        except (ValueError, TypeError, KeyError, AttributeError):
            return None

    def recalled(self, now: float, trust_s: float) -> LineMemory:
        """The memory as a restarted worker takes it: decided parts older than ``trust_s`` are
        forgotten (they left the camera's view long ago; on a belt that does not move, an old
        one would hide a new part on the same spot)."""
        if now - self.saved_at <= trust_s:
            return self
        return replace(self, decided=())


Recall = Callable[[str], "LineMemory | None"]


def _no_memory(_camera_id: str) -> LineMemory | None:
    return None


# Every camera ---------------------------------------------------------------------------------


class Lines:
    """Every camera this worker sees, made on its first frame."""

    def __init__(
        self,
        configs: list[InspectionConfig],
        default: InspectionConfig | None = None,
        make: TrackerFactory = make_tracker,
        recall: Recall = _no_memory,
    ) -> None:
        self.configs, self.make, self.recall = configs, make, recall
        self.default = default or InspectionConfig(cameras=["*"], belt_px_per_s=0.0)
        self.cameras: dict[str, CameraLine] = {}
        # Cameras retired (an idle flush, a new tracking config) until their next frame: their
        # counts and parts decided lately, on the belt's absolute axis (``on_belt``), so that a
        # part still in view when the frames resume is known, not decided again.
        self.carried: dict[str, LineMemory] = {}
        self.positions: dict[Hashable, int] = {}  # partition -> last offset observed

    def line(self, obs: PartObservations, source: Hashable | None = None) -> CameraLine:
        camera_id = obs.frame.camera_id
        line = self.cameras.get(camera_id)
        if line is None:
            config = config_for(self.configs, camera_id)
            if config is None:
                log.warning("camera %s has no inspection config: defaults, no belt", camera_id)
                config = self.default
            resolution = (obs.frame.width, obs.frame.height)
            tracker = self.make(camera_id, resolution, config)
            # Retired here, else new to this worker: what a worker before it left, if anything.
            memory = self.carried.pop(camera_id, None) or self.recall(camera_id)
            counts = memory.counts if memory is not None else LineCounts()
            line = CameraLine(camera_id, config, tracker, counts=counts, source=source)
            line.origin = obs.frame.captured_at
            if memory is not None:
                offset = line.origin * config.speed_px_per_s
                tracker.recent.extend(absolute(memory.decided, offset))
            self.cameras[camera_id] = line
        return line

    def memory(self, camera_id: str, wall: float) -> LineMemory | None:
        """What to keep of a camera now (None: a camera this worker does not hold)."""
        line = self.cameras.get(camera_id)
        if line is None:
            return self.carried.get(camera_id)
        return line_memory(line, wall)

    def observe(
        self,
        obs: PartObservations,
        event: Any,
        now: float,
        wall: float,
        source: Hashable | None = None,
        offset: int | None = None,
    ):
        if source is not None and offset is not None:
            self.positions[source] = offset
        return self.line(obs, source).observe(obs, event, now, wall)

    def flush_idle(
        self,
        now: float,
        idle_s: float,
        wall: float,
        highwater: Callable[[Hashable], int | None] = lambda _: None,
    ):
        """Decide the open tracks of every camera silent for ``idle_s``; each such camera then
        starts afresh on its next frame: a new tracker and belt origin (so the belt shift stays
        small), the line counts carried over.

        Silent means no frame arrived for ``idle_s`` *and* its partition is caught up
        (``highwater``: the broker's next offset, None when unknown): a worker behind a backlog
        has not heard from a camera for a while although its frames are waiting, and deciding
        its parts then would cut each in two."""
        verdicts, events = [], []
        for camera_id, line in list(self.cameras.items()):
            if now - line.last_seen < idle_s or self.behind(line.source, highwater):
                continue
            decided, released = self._retire(camera_id, line, wall)
            verdicts += decided
            events += released
        return verdicts, events

    def behind(self, source: Hashable | None, highwater: Callable[[Hashable], int | None]) -> bool:
        if source is None or source not in self.positions:
            return False
        end = highwater(source)
        return end is not None and self.positions[source] + 1 < end

    def _retire(self, camera_id: str, line: CameraLine, wall: float):
        """Decide the camera's open tracks; it starts afresh (counts carried) on its next frame."""
        decided, released = line.flush(wall)
        del self.cameras[camera_id]
        self.carried[camera_id] = line_memory(line, wall)
        return decided, released

    def drop(self, sources: Iterable[Hashable]) -> list[str]:
        """Forget the cameras whose partitions this worker lost: their new owner replays them
        from the committed offsets. Nothing is acked or sent for them."""
        lost = set(sources)
        gone = [c for c, line in self.cameras.items() if line.source in lost]
        for camera_id in gone:
            del self.cameras[camera_id]
        return gone

    def reconfigure(self, configs: list[InspectionConfig], wall: float):
        """New inspection configs (a new rules version): (verdicts, events), as ``flush_idle``.

        A camera whose tracking stays the same (belt, zone, line, frames) keeps its tracks and
        decides them by the new thresholds from the next frame on. One whose tracking changed
        has its open tracks decided now, under the old config, and starts afresh with the new
        one on its next frame: a part on the belt at that moment may be decided twice."""
        self.configs = configs
        verdicts, events = [], []
        for camera_id, line in list(self.cameras.items()):
            config = config_for(configs, camera_id) or self.default
            if config == line.config:
                continue
            if same_tracking(config, line.config):
                line.config, line.tracker.rules = config, config.decision_rules()
                continue
            decided, released = self._retire(camera_id, line, wall)
            verdicts += decided
            events += released
        return verdicts, events


def on_belt(box: FloatBox, offset: float) -> FloatBox:
    """A belt box moved along the belt by ``offset`` px: from one tracker's origin to the
    absolute axis (``-origin * speed``) and back (``+origin * speed``)."""
    x0, y0, x1, y1 = box
    return (x0 + offset, y0, x1 + offset, y1)


def line_memory(line: CameraLine, wall: float) -> LineMemory:
    """A line's counts and lately decided parts, moved to the belt's absolute axis."""
    offset = -(line.origin or 0.0) * line.config.speed_px_per_s
    return LineMemory(line.counts, tuple(absolute(line.tracker.recent, offset)), wall)


def absolute(decided: Iterable[Decided], offset: float) -> list[Decided]:
    """Decided parts moved by ``offset`` along the belt (copies: the tracker's stay as they are)."""
    return [replace(d, belt_box=on_belt(d.belt_box, offset)) for d in decided]


def same_tracking(a: InspectionConfig, b: InspectionConfig) -> bool:
    """Whether two configs track parts alike (and differ at most in how parts are decided)."""
    return a.tracker_config() == b.tracker_config() and a.speed_px_per_s == b.speed_px_per_s
