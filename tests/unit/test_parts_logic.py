"""The parts worker's logic: verdicts, acknowledgement watermark, idle flush, inspection config."""

from __future__ import annotations

from collections import deque
from pathlib import Path

import numpy as np
import pytest
import supervision as sv
from pydantic import ValidationError

from services.parts.logic import (
    FrameInfo,
    LineMemory,
    Lines,
    ack_watermark,
    build_verdicts,
    release,
)
from tests.factories import (
    frame_meta,
    model_ref,
    observed_part,
    part_decision,
    part_observations,
    source_ref,
)
from visionline.inspection import wire
from visionline.inspection.config import (
    InspectionConfig,
    config_for,
    load_inspection,
    parse_inspection,
)
from visionline.inspection.tracking import Decided, PartDecision, PartTracker
from visionline.messages import (
    DefectFinding,
    LineCounts,
    ObservedPart,
    PartObservations,
)
from visionline.settings import REPO_ROOT
from visionline.synthetic import LineGenerator

T0 = 1_795_000_000.0
MODELS = [model_ref("part_detector", "1"), model_ref("defect_detector", "2")]


def observations(
    camera: str, index: int, parts: list[ObservedPart], fps: float = 10.0, size=(320, 180)
) -> PartObservations:
    frame = frame_meta(
        camera, f"f{index:04d}", captured_at=T0 + index / fps, size=size, source=source_ref(index)
    )
    snapshot = f"snapshot://{camera}/{index}" if any(p.defect_score > 0.5 for p in parts) else None
    return part_observations(frame, parts, MODELS, snapshot=snapshot)


def observed(x0: float, lane: int = 0, defect: str | None = None, score: float = 0.9):
    """A 40 px part in its own lane (the oracle tracker's id), with one defect if given."""
    y0 = 10.0 + 55 * lane
    defects = []
    if defect:
        box = (x0 + 5, y0 + 5, x0 + 15, y0 + 15)
        defects = [DefectFinding(defect_class=defect, box=box, score=score, area=60.0)]
    box = (x0, y0, x0 + 40, y0 + 40)
    return observed_part(box, score if defect else 0.05, anomaly_score=0.1, defects=defects)


class LaneTracker:
    """Track id = lane (from the box's top), so ack and verdict logic is tested without
    ByteTrack's own choices."""

    def update(self, detections: sv.Detections) -> sv.Detections:
        detections.tracker_id = ((detections.xyxy[:, 1] - 10) // 55).astype(int) + 1
        return detections


def lane_lines(**overrides) -> Lines:
    config = InspectionConfig(cameras=["*"], belt_px_per_s=0.0, **overrides)

    def make(camera, resolution, cfg):
        return PartTracker(
            camera, resolution, cfg.tracker_config(), cfg.decision_rules(), tracker=LaneTracker()
        )

    return Lines([config], make=make)


def feed(lines: Lines, frames: list[list[ObservedPart]], camera="c", start=0):
    verdicts, acked = [], []
    for i, parts in enumerate(frames, start):
        v, ready = lines.observe(observations(camera, i, parts), f"e{i}", now=i, wall=T0 + i)
        verdicts += v
        acked += ready
    return verdicts, acked


# Verdicts ------------------------------------------------------------------------------------


def test_verdict_carries_best_frame_evidence_and_frame_ids() -> None:
    lines = lane_lines()
    xs = [0, 50, 100, 150, 200, 240]  # the centre crosses the exit line (x=256) last
    scores = [None, 0.6, 0.95, 0.7, None, None]
    frames = [
        [observed(x, defect="crack", score=s) if s else observed(x)]
        for x, s in zip(xs, scores, strict=True)
    ]
    (verdict,), _ = feed(lines, frames)
    assert verdict.decision_id == "c:f0005" and verdict.status == "rejected"
    assert (verdict.first_frame_id, verdict.last_frame_id) == ("f0000", "f0005")
    assert verdict.best_frame_id == "f0002" and verdict.captured_at == pytest.approx(T0 + 0.2)
    assert verdict.box == (100, 10, 140, 50) and verdict.score == pytest.approx(0.95)
    assert [d.defect_class for d in verdict.defects] == ["crack"]
    assert verdict.snapshot == "snapshot://c/2" and verdict.models == MODELS
    assert verdict.defect_class == "crack" and verdict.defect_frames == 3
    assert verdict.crossed_line and verdict.counts == LineCounts(crossed=1, rejected=1)


def test_frames_the_inspect_worker_shed_let_a_part_be_decided_on_fewer_frames() -> None:
    """Every other frame shed: the part's two inspected frames and the one shed between them
    make the three min_frames needs; the verdict says how many were shed."""
    lines = lane_lines(min_frames=3)
    verdicts = []
    for i, x in ((0, 160.0), (2, 240.0)):  # frame 1 was shed
        message = observations("c", i, [observed(x, defect="crack")])
        message = message.model_copy(update={"frames_shed_before": 1 if i else 0})
        verdicts += lines.observe(message, f"e{i}", now=i, wall=T0 + i)[0]
    (verdict,) = verdicts  # crossed the exit line in the second frame
    assert (verdict.status, verdict.frames_seen, verdict.frames_shed) == ("rejected", 2, 1)


def test_parts_decided_in_one_frame_get_distinct_ids_in_a_stable_order() -> None:
    def decision(track: int, first: int, last: int, x: float) -> PartDecision:
        box = (x, 0, x + 10, 10)
        return part_decision("c", track, box, first, last_frame=last, crossed_line=last == 9)

    frames = {i: FrameInfo(f"f{i}", T0 + i, None, ()) for i in range(10)}
    # Track ids and first frames differ on a replay; the last sighting does not.
    decisions = [decision(7, 5, 6, 0), decision(3, 2, 9, 50), decision(9, 1, 9, 20)]
    verdicts, counts = build_verdicts("c", decisions, frames[9], frames, LineCounts(), T0)
    ids = [(v.decision_id, v.track_id) for v in verdicts]
    assert ids == [("c:f9", 9), ("c:f9:1", 3), ("c:f9:2", 7)]
    again = [decision(70, 6, 6, 0), decision(30, 4, 9, 50), decision(90, 3, 9, 20)]
    replayed, _ = build_verdicts("c", again[::-1], frames[9], frames, LineCounts(), T0)
    assert [v.track_id for v in replayed] == [90, 30, 70]
    assert counts == LineCounts(crossed=2, passed=2)
    assert [v.counts.crossed for v in verdicts] == [1, 2, 2]


# Acknowledgement -----------------------------------------------------------------------------


def test_ack_watermark() -> None:
    assert ack_watermark(10, [], [], lookback=1) == 11  # nothing open: everything
    assert ack_watermark(10, [6, 8], [10], lookback=1) == 6  # the oldest track's first sighting
    assert ack_watermark(10, [], [10], lookback=1) == 10  # a part not yet tracked is held
    assert ack_watermark(10, [], [9], lookback=1) == 9
    assert ack_watermark(10, [], [5], lookback=1) == 11  # never became a track: released
    pending = deque((i, f"e{i}") for i in range(3, 8))
    assert release(pending, 5) == ["e3", "e4"] and [i for i, _ in pending] == [5, 6, 7]
    assert release(pending, 0) == []


def test_frames_are_acked_only_once_no_open_track_holds_them() -> None:
    lines = lane_lines()
    frames = [[], [], *([observed(x)] for x in (0, 50, 100, 150, 200, 240)), [], []]
    expected = {0: [0], 1: [1], 7: [2, 3, 4, 5], 8: [6], 9: [7, 8, 9]}
    for i, parts in enumerate(frames):
        verdicts, acked = feed(lines, [parts], start=i)
        assert acked == [f"e{k}" for k in expected.get(i, [])], i
        assert len(verdicts) == (i == 7)  # the part crossed the exit line in frame 7


def test_a_second_track_holds_back_frames_after_the_first_is_decided() -> None:
    lines = lane_lines()
    a = [observed(x, lane=0) for x in (0, 50, 100, 150, 200, 240)]
    b = [observed(x, lane=1) for x in (0, 50, 100, 150, 200, 240)]
    frames = [[a[0]], [a[1]], [a[2], b[0]], [a[3], b[1]], [a[4], b[2]], [a[5], b[3]], [b[4]]]
    verdicts, acked = feed(lines, frames)
    assert len(verdicts) == 1  # a decided in frame 5; b opened in frame 2
    assert acked == ["e0"]  # b is open since frame 2, and frame 1 may have seen it unnamed


def test_idle_flush_decides_open_tracks_releases_events_and_restarts() -> None:
    lines = lane_lines()
    feed(lines, [[observed(0, 0, "scratch")], [observed(50, 0, "scratch")], [observed(100, 0)]])
    assert lines.flush_idle(now=3, idle_s=5, wall=T0) == ([], [])  # not silent long enough
    verdicts, events = lines.flush_idle(now=10, idle_s=5, wall=T0)
    (verdict,) = verdicts
    assert verdict.decision_id == "c:f0002" and verdict.status == "rejected"
    assert not verdict.crossed_line and events == ["e0", "e1", "e2"]
    assert "c" not in lines.cameras and lines.flush_idle(now=20, idle_s=5, wall=T0) == ([], [])
    feed(lines, [[observed(0)]], start=3)  # a fresh tracker; the frame counter restarts
    assert lines.cameras["c"].index == 0


def test_revoked_partitions_forget_their_cameras() -> None:
    lines = lane_lines()
    lines.observe(observations("a", 0, [observed(0)]), "ea", 0, T0, source=("t", 0))
    lines.observe(observations("b", 0, [observed(0)]), "eb", 0, T0, source=("t", 1))
    assert lines.drop({("t", 1)}) == ["b"] and list(lines.cameras) == ["a"]


# The synthetic line, with ByteTrack and dropped frames ----------------------------------------


def test_synthetic_line_one_verdict_per_part_with_dropped_frames() -> None:
    size, stop, fps = (320, 180), 150, 10.0
    gen = LineGenerator(seed=3, resolution=size, defect_rate=0.3)
    config = InspectionConfig(cameras=["line-*"], fps=fps, belt_px_per_frame=gen.travel)
    lines = Lines([config])
    truths = [gen.frame(i)[1] for i in range(stop)]
    dropped = {40, 77, 78}  # frames lost on the way: the belt shift comes from capture times
    rng = np.random.default_rng(0)
    verdicts, acked = [], []
    for truth in truths:
        if truth.frame_index in dropped:
            continue
        parts = []
        for p in truth.parts:
            box = tuple(float(v) for v in np.array(p.box) + rng.uniform(-1.5, 1.5, 4))
            defects = [
                DefectFinding(defect_class=d.defect_class, box=d.box, score=1.0, area=60.0)
                for d in p.defects
            ]
            score = 1.0 if p.defective else 0.05
            parts.append(observed_part(box, score, defects=defects))
        obs = observations("line-1", truth.frame_index, parts, fps, size)
        v, ready = lines.observe(obs, truth.frame_index, now=truth.frame_index, wall=T0)
        verdicts += v
        acked += ready
    flushed, rest = lines.flush_idle(now=1e9, idle_s=1, wall=T0)
    verdicts += flushed
    acked += rest
    assert acked == [i for i in range(stop) if i not in dropped]  # all, in order
    assert len({v.decision_id for v in verdicts}) == len(verdicts)
    centres: dict[int, list[tuple[float, bool]]] = {}
    for truth in truths:
        if truth.frame_index not in dropped:
            for p in truth.parts:
                centres.setdefault(p.part_id, []).append(((p.box[0] + p.box[2]) / 2, p.defective))
    line_x = 0.8 * size[0]
    # ByteTrack names a part on its second frame, and its first is taken back then: a part
    # seen twice or more crosses from its first frame on.
    crossing = [xs for xs in centres.values() if len(xs) > 1 and xs[0][0] < line_x <= xs[-1][0]]
    crossed = [v for v in verdicts if v.crossed_line]
    assert len(crossed) == len(crossing) > 30  # each physical part counted once, none split
    defective = sum(xs[0][1] for xs in crossing)
    assert sum(v.defective for v in crossed) == defective > 5
    assert crossed[-1].counts.crossed == len(crossing)
    assert crossed[-1].counts.rejected == defective
    for v in verdicts:
        if v.defective:
            assert v.snapshot == f"snapshot://line-1/{int(v.best_frame_id[1:])}"
            assert v.score == 1.0 and v.defects


def synthetic_line_verdicts(order: list[int], flush_after: int | None = None) -> tuple[list, list]:
    """The synthetic line's frames observed in ``order`` (an index again: a redelivery), with
    an idle flush after frame ``flush_after`` if given (its upstream was down for a while)."""
    size, fps = (320, 180), 10.0
    gen = LineGenerator(seed=3, resolution=size, defect_rate=0.3)
    config = InspectionConfig(cameras=["line-*"], fps=fps, belt_px_per_frame=gen.travel)
    lines = Lines([config])
    verdicts, acked = [], []
    for index in order:
        parts = [
            observed_part(tuple(float(v) for v in p.box), 1.0 if p.defective else 0.05)
            for p in gen.frame(index)[1].parts
        ]
        v, ready = lines.observe(observations("line-1", index, parts, fps, size), index, index, T0)
        verdicts += v
        acked += ready
        if index == flush_after:
            v, ready = lines.flush_idle(now=index + 100, idle_s=1, wall=T0)
            verdicts += v
            acked += ready
    flushed, rest = lines.flush_idle(now=1e9, idle_s=1, wall=T0)
    return verdicts + flushed, acked + rest


def test_parts_in_view_at_an_idle_flush_are_known_when_their_frames_resume() -> None:
    gen = LineGenerator(seed=3, resolution=(320, 180), defect_rate=0.3)
    in_view = [p for p in gen.frame(60)[1].parts]
    plain, _ = synthetic_line_verdicts(list(range(120)))
    flushed, acked = synthetic_line_verdicts(list(range(120)), flush_after=60)
    assert sorted(acked) == list(range(120))
    decided_at_flush = [v for v in flushed if v.decision_id.startswith("line-1:f0060")]
    assert len(decided_at_flush) == len(in_view) >= 2
    # Seen again after the flush, a part is decided a second time only to reject it.
    again = len(flushed) - len(plain)
    assert 0 <= again <= sum(p.defective for p in in_view)


def test_frames_redelivered_after_an_inspect_crash_do_not_split_parts() -> None:
    once = list(range(120))
    redelivered = once[:60] + once[45:60] + once[60:]  # inspect replays 45..59 after a crash
    verdicts, acked = synthetic_line_verdicts(once)
    again, acked_again = synthetic_line_verdicts(redelivered)
    assert len(verdicts) > 10
    assert [v.decision_id for v in again] == [v.decision_id for v in verdicts]
    assert sorted(acked_again) == sorted(redelivered)  # the repeats are acked too


# Inspection config ---------------------------------------------------------------------------


def test_inspection_config_needs_exactly_one_belt_speed() -> None:
    with pytest.raises(ValidationError, match="exactly one"):
        InspectionConfig(cameras=["x"])
    with pytest.raises(ValidationError, match="exactly one"):
        InspectionConfig(cameras=["x"], belt_px_per_s=1, belt_px_per_frame=1)
    with pytest.raises(ValidationError):
        InspectionConfig(cameras=["x"], belt_px_per_s=1, speed=3)  # unknown keys refused
    with pytest.raises(ValidationError):
        InspectionConfig(cameras=["x"], belt_px_per_s=1, zone=[(0, 0), (1, 1)])
    with pytest.raises(ValidationError, match="no part could be rejected"):
        InspectionConfig(cameras=["x"], belt_px_per_s=1, min_defect_frames=None)
    config = InspectionConfig(
        cameras=["x"], belt_px_per_s=1, min_defect_frames=None, min_mean_score=0.2
    )
    assert config.decision_rules().min_mean_score == 0.2
    config = InspectionConfig(cameras=["x"], fps=5, belt_px_per_frame=20)
    assert config.speed_px_per_s == 100 and config.tracker_config().belt_px_per_frame == 20


def test_the_edge_margin_of_the_rules_file_decides_which_frames_are_judged() -> None:
    # A defect seen only while the part enters at the frame's left edge (its crop half black).
    frames = [[observed(0, defect="crack")], *([observed(x)] for x in (50, 100, 150, 200, 240))]
    verdicts, _ = feed(lane_lines(), frames)
    assert [v.status for v in verdicts] == ["accepted"]  # 1 % of the width: x 0 is cut
    verdicts, _ = feed(lane_lines(edge_margin=0), frames)
    assert [v.status for v in verdicts] == ["rejected"]  # every frame judged
    with pytest.raises(ValidationError):
        InspectionConfig(cameras=["x"], belt_px_per_s=1, edge_margin=0.5)


def test_parse_inspection_picks_the_first_matching_entry() -> None:
    configs = parse_inspection(
        {
            "rules": [],
            "inspection": [
                {"name": "a", "cameras": ["line-1"], "belt_px_per_s": 10, "classes": ["crack"]},
                {"name": "b", "cameras": ["line-*"], "belt_px_per_s": 20, "severity": "info"},
            ],
        }
    )
    assert config_for(configs, "line-1").name == "a"
    assert config_for(configs, "line-2").speed_px_per_s == 20
    assert config_for(configs, "dock-1") is None
    assert configs[0].decision_rules().classes == ["crack"]
    assert parse_inspection({"rules": []}) == []
    with pytest.raises(ValueError, match="duplicate"):
        parse_inspection({"inspection": [{"cameras": ["a"], "belt_px_per_s": 1}] * 2})


def test_shipped_inspection_config_fits_the_synthetic_line() -> None:
    configs = load_inspection(Path(REPO_ROOT / "infra" / "rules.yaml"))
    travel = LineGenerator(resolution=(1280, 720), frames_per_part=9).travel
    for camera in ("line-1", "test-line-abc"):
        config = config_for(configs, camera)
        assert config is not None
        assert config.speed_px_per_s == pytest.approx(travel * config.fps, rel=1e-3)


def test_a_camera_behind_a_backlog_is_not_taken_for_silent() -> None:
    lines = lane_lines()
    tp = ("observations", 0)
    for i, x in enumerate((0, 50, 100)):
        obs = observations("c", i, [observed(x, 0, "scratch")])
        lines.observe(obs, f"e{i}", now=0, wall=T0, source=tp, offset=40 + i)
    behind = {tp: 50}.get  # the broker holds up to offset 49: eight frames still to read
    assert lines.flush_idle(now=100, idle_s=5, wall=T0, highwater=behind) == ([], [])
    assert "c" in lines.cameras
    caught_up = {tp: 43}.get
    verdicts, events = lines.flush_idle(now=100, idle_s=5, wall=T0, highwater=caught_up)
    assert len(verdicts) == 1 and events == ["e0", "e1", "e2"]


def test_class_scores_cross_the_wire_clamped() -> None:
    part = observed(0).model_copy(update={"class_scores": {"crack": 0.3, "stain": 1.2}})
    detection = wire.to_detection(part)
    assert detection.class_scores == {"crack": 0.3, "stain": 1.0}
    assert wire.observed_part(detection).class_scores == {"crack": 0.3, "stain": 1.0}


# A crash and a replay -------------------------------------------------------------------------


def line_until_crash(crash_after: int, frames: int, with_memory: bool) -> tuple[list, list]:
    """The synthetic line through a worker killed after frame ``crash_after`` and its successor,
    which replays from the first frame not acked (what Faust committed) and recalls what the
    first one saved after each publish (``LineMemory``, as Redis holds it), if ``with_memory``.
    Returns (every verdict sent by either, in order), (the decision ids of an unbroken run)."""
    size, fps = (320, 180), 10.0
    gen = LineGenerator(seed=3, resolution=size, defect_rate=0.3)
    config = InspectionConfig(cameras=["line-*"], fps=fps, belt_px_per_frame=gen.travel)

    def obs(index: int):
        parts = [
            observed_part(tuple(float(v) for v in p.box), 1.0 if p.defective else 0.05)
            for p in gen.frame(index)[1].parts
        ]
        return observations("line-1", index, parts, fps, size)

    saved: dict[str, LineMemory] = {}
    first = Lines([config])
    sent, acked = [], set()
    for index in range(crash_after + 1):
        verdicts, ready = first.observe(obs(index), index, index, T0 + index)
        sent += verdicts
        if verdicts and (memory := first.memory("line-1", T0 + index)) is not None:
            saved["line-1"] = LineMemory.from_json(memory.to_json()) or memory
        acked.update(ready)
    committed = next(i for i in range(frames) if i not in acked)
    recall = saved.get if with_memory else (lambda _: None)
    second = Lines([config], recall=recall)
    for index in range(committed, frames):
        sent += second.observe(obs(index), index, index, T0 + index)[0]
    sent += second.flush_idle(now=1e9, idle_s=1, wall=T0)[0]
    plain, _ = synthetic_line_verdicts(list(range(frames)))
    return sent, [v.decision_id for v in plain]


def test_a_crash_replays_from_where_bytetrack_first_saw_the_oldest_open_part() -> None:
    # Not a frame before: the replay would also see the tail of a part decided already, and
    # decide it again without the line's memory (Redis down while the worker restarts).
    size, fps = (320, 180), 10.0
    gen = LineGenerator(seed=3, resolution=size, defect_rate=0.3)
    config = InspectionConfig(cameras=["line-*"], fps=fps, belt_px_per_frame=gen.travel)
    lines, acked = Lines([config]), set()
    for index in range(100):
        parts = [
            observed_part(tuple(float(v) for v in p.box), 0.05) for p in gen.frame(index)[1].parts
        ]
        acked.update(
            lines.observe(observations("line-1", index, parts, fps, size), index, index, T0)[1]
        )
        tracks = lines.cameras["line-1"].tracker.open.values()
        if index < 5 or not tracks:
            continue
        # ByteTrack named each open part a frame after it spawned it, and that frame was taken back
        assert all(ev.first_sighting == ev.first_frame < ev.last_seen for ev in tracks)
        committed = next(i for i in range(index + 1) if i not in acked)
        assert committed == min(ev.first_sighting for ev in tracks), index


def test_a_restarted_worker_recalls_parts_decided_before_the_crash() -> None:
    doubled_without_memory = 0
    for crash_after in range(20, 100, 7):
        sent, plain = line_until_crash(crash_after, 120, with_memory=True)
        ids = [v.decision_id for v in sent]
        assert set(plain) <= set(ids)  # no part lost
        assert len(set(ids)) == len(plain), crash_after  # none decided twice
        forgetful, _ = line_until_crash(crash_after, 120, with_memory=False)
        doubled_without_memory += len({v.decision_id for v in forgetful}) - len(plain)
    assert doubled_without_memory > 0  # what the memory prevents does happen without it


def test_line_memory_round_trips_and_forgets_old_parts() -> None:
    decided = (Decided((1.0, 2.0, 30.0, 40.0), True, False),)
    memory = LineMemory(LineCounts(crossed=3, rejected=1), decided, saved_at=T0)
    again = LineMemory.from_json(memory.to_json())
    assert again == memory
    assert again.recalled(T0 + 10, trust_s=60) == memory
    assert again.recalled(T0 + 61, trust_s=60).decided == ()
    assert again.recalled(T0 + 61, trust_s=60).counts.crossed == 3
    assert LineMemory.from_json(b"not json") is None
    assert LineMemory.from_json(b'{"v": 99}') is None


def test_an_idle_flush_in_a_frame_that_decided_parts_numbers_on() -> None:
    # The flush decides in the last frame seen; a part decided there already holds camera:frame,
    # and the rules worker writes one verdict per id: a repeated id would lose a part.
    collided = 0
    for flush_after in range(20, 110):
        verdicts, _ = synthetic_line_verdicts(list(range(120)), flush_after=flush_after)
        ids = [v.decision_id for v in verdicts]
        assert len(ids) == len(set(ids)), flush_after
        at_flush = [i for i in ids if i.startswith(f"line-1:f{flush_after:04d}")]
        collided += len(at_flush) > 1
    assert collided > 0  # frames that decided a part and then had the flush decide more
