"""Drift detection: signals, detector wiring, confirmation policy, isolation, saved state."""

from __future__ import annotations

import random

import numpy as np
import pytest
from prometheus_client import CollectorRegistry, Gauge
from river import drift

from tests.factories import (
    drift_event,
    frame_meta,
    model_ref,
    observed_part,
    part_observations,
    source_ref,
)
from tests.factories import prediction as make_prediction
from visionline.drift.bank import CameraBank, DriftMonitor, SavedBank, model_changes
from visionline.drift.detectors import (
    DEFAULT_DETECTORS,
    DetectorSpec,
    build_detector,
    load_detectors,
)
from visionline.drift.signals import (
    FrameRef,
    FrameSignals,
    extract,
    hellinger,
    total_variation,
)
from visionline.drift.tracker import CONFIRMED, STABLE, SUSPECTED, Policy, SignalTracker
from visionline.imaging import quality_measures
from visionline.messages import (
    DefectFinding,
    DriftEvent,
    ObservedPart,
    PartObservations,
    Prediction,
    Quality,
    SourceRef,
    Topic,
    drift_event_id,
    from_json,
    to_json,
)
from visionline.observability import DriftStates
from visionline.settings import REPO_ROOT, DriftSettings

MODEL = model_ref("m", "1")
POLICY = Policy()  # the defaults of DriftSettings


def prediction(
    camera: str,
    i: int,
    r: random.Random,
    brightness: float = 120.0,
    confidence: float = 0.6,
    histogram=None,
) -> Prediction:
    quality = Quality(
        brightness=r.gauss(brightness, 4),
        contrast=r.gauss(50, 2),
        blur=r.lognormvariate(5.5, 0.3),
        saturation=r.gauss(70, 3),
        histogram=histogram,
    )
    scores = sorted((r.random() for _ in range(3)), reverse=True)
    conf = min(1.0, max(0.0, r.gauss(confidence, 0.1)))
    return make_prediction(
        camera,
        f"f{i:05d}",
        [(f"label-{c}", s) for c, s in enumerate(scores)],
        captured_at=1_800_000_000 + i / 10,
        model=MODEL,
        label="label-0",
        confidence=conf,
        quality=quality,
    )


def source(i: int, partition: int = 0, topic: Topic = Topic.PREDICTIONS) -> SourceRef:
    return source_ref(i, topic, partition)


def scalar_stream(values, signal: str = "brightness"):
    for i, v in enumerate(values):
        yield FrameSignals("cam", FrameRef(f"f{i:05d}", 1000.0 + i / 10), {signal: float(v)})


def feed(bank_or_tracker, frames) -> list[tuple[int, DriftEvent]]:
    """Every confirmed drift with the index of the frame that confirmed it."""
    out = []
    for i, f in enumerate(frames):
        if isinstance(bank_or_tracker, SignalTracker):
            (value,) = f.scalars.values()
            event = bank_or_tracker.update(value, f.frame)
            events = [event] if event else []
        else:
            events = bank_or_tracker.observe(f)
        out.extend((i, e) for e in events)
    return out


def step(before: float, after: float, at: int, n: int, sd: float, seed: int = 0):
    rng = np.random.default_rng(seed)
    return np.where(np.arange(n) < at, before, after) + rng.normal(0, sd, n)


class MemoryState:
    """The StateStore protocol on a dict: what PostgreSQL's drift_state holds."""

    def __init__(self) -> None:
        self.rows: dict[str, SavedBank] = {}
        self.saves = 0

    def load(self, camera_id: str) -> bytes | None:
        row = self.rows.get(camera_id)
        return row.state if row else None

    def save(self, banks: list[SavedBank]) -> None:
        self.saves += 1
        self.rows.update({b.camera_id: b for b in banks})


def monitor(store: MemoryState | None = None, every: int = 100, **policy) -> DriftMonitor:
    specs = dict(DEFAULT_DETECTORS)
    return DriftMonitor(Policy(**policy), specs, store or MemoryState(), checkpoint_every=every)


# ================================ messages and signals =======================================


def test_drift_event_schema_and_topic():
    assert Topic.DRIFT_EVENTS == "visionline.drift.events"
    event = drift_event(
        "cam", "brightness", "f9", event_id=drift_event_id("cam", "brightness", "f9")
    )
    assert event.schema_version == 1 and event.event_id == "cam:brightness:f9"
    assert from_json(to_json(event), DriftEvent) == event


def test_old_messages_without_a_histogram_still_parse():
    r = random.Random(1)
    old = (
        to_json(prediction("cam", 0, r))
        .replace(b'"histogram":null,', b"")
        .replace(b',"histogram":null', b"")
    )
    assert b"histogram" not in old
    parsed = from_json(old, Prediction)
    assert parsed.quality.histogram is None
    assert "embedding_distance" not in extract(parsed).distributions


def test_quality_measures_carry_a_colour_histogram():
    image = np.zeros((64, 64, 3), np.uint8)
    image[:, :32] = (255, 0, 0)  # blue half (BGR)
    hist = quality_measures(image).histogram
    assert len(hist) == 64 and sum(hist) == pytest.approx(1.0)
    assert hist[0] == pytest.approx(0.5)  # black: b=g=r=0
    assert hist[3 * 16] == pytest.approx(0.5)  # blue: b bin 3, g=r=0


def test_signals_of_a_prediction():
    r = random.Random(2)
    p = prediction("cam", 7, r, histogram=tuple([1 / 64] * 64))
    s = extract(p)
    assert s.camera_id == "cam" and s.frame == FrameRef("f00007", p.captured_at)
    assert s.scalars == {
        "brightness": p.quality.brightness,
        "contrast": p.quality.contrast,
        "blur": p.quality.blur,
        "saturation": p.quality.saturation,
        "confidence": p.confidence,
    }
    mix = s.distributions["class_mix"]
    assert set(mix) == {"label-0", "label-1", "label-2"} and sum(mix.values()) == pytest.approx(1)
    assert mix["label-0"] >= mix["label-2"]
    assert len(s.distributions["embedding_distance"]) == 64


def observations(camera: str, parts: list[ObservedPart]) -> PartObservations:
    frame = frame_meta(camera, "f1", captured_at=5.0, size=(10, 10))
    measured = Quality(brightness=100, contrast=20, blur=50, saturation=10)
    return part_observations(frame, parts, [MODEL], quality=measured)


def test_signals_of_part_observations():
    scratch = DefectFinding(defect_class="scratch", box=(1, 1, 2, 2), score=0.9, area=1.0)
    stain = DefectFinding(defect_class="stain", box=(1, 1, 2, 2), score=0.4, area=1.0)
    parts = [
        observed_part(
            (0, 0, 5, 5), 0.9, anomaly_score=0.7, confidence=0.9, defects=[stain, scratch]
        ),
        observed_part((0, 0, 5, 5), 0.1, anomaly_score=0.1, confidence=0.7),
    ]
    s = extract(observations("line-1", parts))
    assert s.camera_id == "line-1" and s.frame.frame_id == "f1"
    assert s.scalars["brightness"] == 100 and s.scalars["blur"] == 50
    assert s.scalars["part_confidence"] == pytest.approx(0.8)
    assert s.scalars["anomaly_score"] == pytest.approx(0.4)
    assert s.scalars["defect_score"] == pytest.approx(0.5)
    assert s.distributions["class_mix"] == {"scratch": 0.5, "ok": 0.5}
    assert "confidence" not in s.scalars
    empty = extract(observations("line-1", []))
    assert set(empty.scalars) == {"brightness", "contrast", "blur", "saturation"}
    assert empty.distributions == {}


def test_signals_of_a_detect_cameras_detections():
    from visionline.messages import DetectedObject, FrameDetections

    def found(*objects: tuple[str, float]) -> FrameDetections:
        boxes = [DetectedObject(box=(0, 0, 9, 9), class_name=c, score=p) for c, p in objects]
        meta = frame_meta("dock-1", "f7")
        q = Quality(brightness=90, contrast=30, blur=40, saturation=20)
        return FrameDetections(frame=meta, quality=q, model=model_ref("det"), objects=boxes)

    s = extract(found(("person", 0.9), ("person", 0.5), ("forklift", 0.7)))
    assert s.camera_id == "dock-1" and s.frame.frame_id == "f7" and s.models == {"det": "1"}
    assert s.scalars["brightness"] == 90 and s.scalars["object_confidence"] == pytest.approx(0.7)
    assert s.distributions["class_mix"] == pytest.approx({"person": 2 / 3, "forklift": 1 / 3})
    empty = extract(found())
    assert set(empty.scalars) == {"brightness", "contrast", "blur", "saturation"}
    assert "class_mix" not in empty.distributions


def test_distances():
    assert total_variation({"a": 1.0}, {"b": 1.0}) == pytest.approx(1.0)
    assert total_variation({"a": 0.5, "b": 0.5}, {"a": 0.5, "b": 0.5}) == 0
    assert total_variation({"a": 0.75, "b": 0.25}, {"a": 0.25, "b": 0.75}) == pytest.approx(0.5)
    assert hellinger({"a": 1.0}, {"b": 1.0}) == pytest.approx(1.0)
    assert hellinger({"a": 0.5, "b": 0.5}, {"a": 0.5, "b": 0.5}) == pytest.approx(0.0, abs=1e-7)


# ================================ detectors ==================================================


def test_default_detectors_per_signal_and_the_file_agrees():
    kinds = {name: spec.detector for name, spec in DEFAULT_DETECTORS.items()}
    assert kinds["brightness"] == kinds["contrast"] == kinds["saturation"] == "adwin"
    assert kinds["confidence"] == "page_hinkley" and kinds["anomaly_score"] == "page_hinkley"
    assert DEFAULT_DETECTORS["confidence"].params["mode"] == "down"
    assert DEFAULT_DETECTORS["anomaly_score"].params["mode"] == "up"
    assert kinds["blur"] == kinds["class_mix"] == "kswin"
    assert load_detectors(DriftSettings().detectors_file) == DEFAULT_DETECTORS
    assert DriftSettings().detectors_file == REPO_ROOT / "infra" / "drift.yaml"
    assert isinstance(build_detector(DEFAULT_DETECTORS["brightness"]), drift.ADWIN)
    assert isinstance(build_detector(DEFAULT_DETECTORS["blur"], seed=3), drift.KSWIN)
    ph = build_detector(DEFAULT_DETECTORS["confidence"])
    assert isinstance(ph, drift.PageHinkley) and ph.threshold == 30.0 and ph.mode == "down"


def test_detectors_file_overrides_one_signal_and_refuses_unknown_ones(tmp_path):
    path = tmp_path / "drift.yaml"
    path.write_text("signals:\n  brightness: {detector: kswin, params: {alpha: 0.001}}\n")
    specs = load_detectors(path)
    assert specs["brightness"] == DetectorSpec(detector="kswin", params={"alpha": 0.001})
    assert specs["contrast"] == DEFAULT_DETECTORS["contrast"]
    path.write_text("signals:\n  brightnes: {detector: adwin}\n")
    with pytest.raises(ValueError, match="unknown signals"):
        load_detectors(path)
    path.write_text("signals:\n  brightness: {detector: ddm}\n")
    with pytest.raises(ValueError):
        load_detectors(path)


def tracker(signal: str, spec: DetectorSpec | None = None, **policy) -> SignalTracker:
    spec = spec or DEFAULT_DETECTORS[signal]
    return SignalTracker("cam", signal, spec, Policy(**policy), seed=7)


def test_adwin_confirms_a_brightness_step_within_a_bounded_number_of_frames():
    for seed in range(5):
        t = tracker("brightness")
        events = feed(t, scalar_stream(step(120, 135, at=400, n=700, sd=4, seed=seed)))
        assert len(events) == 1, events
        at, event = events[0]
        assert 400 + POLICY.confirm_frames - 1 <= at <= 400 + 120
        assert (event.signal, event.detector, event.camera_id) == ("brightness", "adwin", "cam")
        assert event.event_id == f"cam:brightness:f{at:05d}" and event.frame_id == f"f{at:05d}"
        assert event.before.mean == pytest.approx(120, abs=1.5) and event.before.frames == 100
        assert event.after.mean == pytest.approx(135, abs=2) and event.after.frames == 50
        assert event.statistic >= 0.8 and event.p_value < 1e-6
        assert event.detector_params == {"delta": 0.002, "clock": 32}
        assert t.cooldown_left == max(0, POLICY.cooldown_frames - (699 - at))


def test_page_hinkley_confirms_a_confidence_drop_and_not_a_rise():
    values = np.clip(step(0.7, 0.45, at=300, n=600, sd=0.1, seed=1), 0, 1)
    events = feed(tracker("confidence"), scalar_stream(values, "confidence"))
    assert len(events) == 1 and 300 < events[0][0] <= 300 + 120
    assert events[0][1].detector == "page_hinkley"
    assert events[0][1].after.mean < events[0][1].before.mean - 0.15
    rising = np.clip(step(0.45, 0.7, at=300, n=600, sd=0.1, seed=1), 0, 1)
    assert feed(tracker("confidence"), scalar_stream(rising, "confidence")) == []


def test_a_signal_can_confirm_on_more_frames_than_the_policy():
    spec = DEFAULT_DETECTORS["confidence"].model_copy(update={"confirm_frames": 150})
    values = np.clip(step(0.7, 0.45, at=300, n=700, sd=0.1, seed=1), 0, 1)
    events = feed(tracker("confidence", spec), scalar_stream(values, "confidence"))
    assert len(events) == 1 and events[0][1].after.frames == 150
    assert events[0][0] >= 300 + 149


def test_the_detectors_file_gives_content_signals_a_longer_confirmation():
    specs = load_detectors(DriftSettings().detectors_file)
    content = ("defect_score", "anomaly_score", "class_mix", "embedding_distance")
    assert {specs[s].confirm_frames for s in content} == {150}
    light = ("brightness", "contrast", "saturation", "blur")
    assert {specs[s].confirm_frames for s in light} == {None}  # the policy's


def test_kswin_confirms_a_change_of_shape_that_keeps_the_mean():
    rng = np.random.default_rng(3)
    sharp = rng.normal(300, 10, 400)  # in focus, steady
    bimodal = np.where(rng.random(400) < 0.5, 150, 450) + rng.normal(0, 10, 400)  # flickering
    values = np.concatenate([sharp, bimodal])
    assert abs(bimodal.mean() - sharp.mean()) < 15  # the mean barely moves
    events = feed(tracker("blur"), scalar_stream(values, "blur"))
    assert len(events) >= 1 and 400 < events[0][0] <= 400 + 150
    assert events[0][1].detector == "kswin" and events[0][1].after.std > 100
    assert feed(tracker("blur"), scalar_stream(sharp, "blur")) == []


# ================================ confirmation policy ========================================


def full_frames(camera: str, n: int, seed: int, **changes) -> list[FrameSignals]:
    r = random.Random(seed)
    return [extract(prediction(camera, i, r, **changes)) for i in range(n)]


def test_a_stable_noisy_stream_raises_nothing_over_thousands_of_frames():
    bank = CameraBank("cam", POLICY, dict(DEFAULT_DETECTORS))
    hist_rng = np.random.default_rng(0)
    seen_states = set()
    for i, frame in enumerate(full_frames("cam", 6000, seed=11)):
        hist = hist_rng.dirichlet(np.full(64, 50.0))
        frame.distributions["embedding_distance"] = {str(k): v for k, v in enumerate(hist)}
        assert bank.observe(frame) == [], i
        seen_states |= set(bank.states().values())
    assert CONFIRMED not in seen_states
    assert set(bank.trackers) == {
        "brightness",
        "contrast",
        "blur",
        "saturation",
        "confidence",
        "class_mix",
        "embedding_distance",
    }
    assert all(t.detector is not None for t in bank.trackers.values())  # all were watching


def test_nothing_is_raised_before_the_reference_window_is_full():
    t = tracker("brightness", reference_frames=200)
    values = step(120, 200, at=20, n=199, sd=2)
    assert feed(t, scalar_stream(values)) == [] and t.detector is None
    assert t.state == STABLE


def test_a_short_spike_raises_an_alarm_that_is_dismissed():
    values = step(120, 120, at=0, n=700, sd=4, seed=5)
    values[400:408] += 60  # eight frames of glare
    t = tracker("brightness")
    states = []
    for frame in scalar_stream(values):
        assert t.update(frame.scalars["brightness"], frame.frame) is None
        states.append(t.state)
    assert SUSPECTED in states  # the detector did react
    assert states[-1] == STABLE and CONFIRMED not in states
    # the same glare for most of the confirmation window is a drift
    values[400:460] += 60
    assert len(feed(tracker("brightness"), scalar_stream(values))) == 1


def test_a_drift_needs_its_minimum_number_of_frames():
    values = step(120, 160, at=400, n=700, sd=4, seed=2)
    for confirm in (20, 80):
        (at, event), *_ = feed(tracker("brightness", confirm_frames=confirm), scalar_stream(values))
        detected = int(event.detected_frame_id[1:])
        assert detected >= 400 and at == detected + confirm - 1
        assert event.after.frames == confirm


def test_cooldown_holds_back_a_second_event():
    values = step(120, 160, at=300, n=1100, sd=4, seed=3)
    values[600:] -= 40  # and back, 230 frames after the first drift was confirmed
    with_cooldown = feed(tracker("brightness", cooldown_frames=400), scalar_stream(values))
    without = feed(tracker("brightness", cooldown_frames=0), scalar_stream(values))
    assert len(with_cooldown) == 1 and with_cooldown[0][1].after.mean > 150
    assert len(without) == 2 and without[1][1].before.mean > 150 > 130 > without[1][1].after.mean


def test_distribution_signal_confirms_a_new_class_mix_and_takes_it_as_reference():
    bank = CameraBank("cam", POLICY, dict(DEFAULT_DETECTORS))
    rng = np.random.default_rng(4)
    events = []
    for i in range(900):
        top = "cat" if rng.random() < (0.8 if i < 400 else 0.2) else "dog"
        mix = {top: 0.7, ("dog" if top == "cat" else "cat"): 0.3}
        frame = FrameSignals("cam", FrameRef(f"f{i}", float(i)), {}, {"class_mix": mix})
        events += [(i, e) for e in bank.observe(frame)]
    assert [e.signal for _, e in events] == ["class_mix"] and events[0][0] > 400
    assert bank.references["class_mix"].seen < POLICY.reference_frames or (
        bank.references["class_mix"].mean["cat"] < 0.5  # the new reference is the new mix
    )


def test_a_new_model_version_restarts_the_references_and_a_drift_it_was_trained_for_is_normal():
    """Glare confirmed as a drift, a version retrained for it promoted: the glare is the new
    normal, so the rest of the ramp raises nothing; without the promotion it raises again."""
    values = np.concatenate(
        [step(120, 150, at=300, n=700, sd=4, seed=8), step(150, 175, at=200, n=900, sd=4, seed=9)]
    )

    def run(promote_at: int | None) -> list[int]:
        bank, confirmed = CameraBank("cam", POLICY, dict(DEFAULT_DETECTORS)), []
        for i, frame in enumerate(scalar_stream(values)):
            version = "2" if promote_at is not None and i >= promote_at else "1"
            frame.models.update({"defect_detector": version, "part_detector": "1"})
            confirmed += [i for _ in bank.observe(frame)]
        return confirmed

    first, *again = run(None)
    assert 300 <= first < 700 and again and again[0] > 900  # the ramp's second step
    # promoted as the second step begins (the version was trained on the glare of the ramp's
    # end): the new reference is taken under it
    assert run(promote_at=905) == [first]


def test_model_changes_names_what_changed_and_ignores_models_a_frame_does_not_name():
    before = {"part_detector": "1", "defect_detector": "3"}
    assert model_changes(before, {"part_detector": "1"}) == ""
    assert model_changes(before, {"defect_detector": "4", "part_anomaly": "1"}) == (
        "defect_detector 3 -> 4"
    )
    assert model_changes({}, {"defect_detector": "4"}) == ""


# ================================ cameras and state ==========================================


def test_drift_on_one_camera_never_raises_an_event_for_another():
    m = monitor()
    ra, rb = random.Random(1), random.Random(2)
    events, states_a, states_b = [], set(), set()
    for i in range(900):
        a = prediction("cam-a", i, ra, brightness=120 if i < 400 else 160)
        b = prediction("cam-b", i, rb)
        events += m.observe(a, source(2 * i)).events + m.observe(b, source(2 * i + 1)).events
        states_a.add(m.states("cam-a").get("brightness"))
        states_b |= set(m.states("cam-b").values())
    assert {e.camera_id for e in events} == {"cam-a"}
    assert [e.signal for e in events] == ["brightness"]
    assert CONFIRMED in states_a and CONFIRMED not in states_b
    tracker_a, tracker_b = (m.banks[c].trackers["brightness"] for c in ("cam-a", "cam-b"))
    assert tracker_a is not tracker_b and tracker_b.mean == pytest.approx(120, abs=1.5)


def run(m: DriftMonitor, messages, start: int = 0, stop: int | None = None):
    """Feed messages[start:stop] at their offsets; (events, tokens acked by checkpoints)."""
    events, acked = [], []
    for offset in range(start, len(messages) if stop is None else stop):
        seen = m.observe(messages[offset], source(offset), token=offset)
        acked += [offset] if seen.skipped else []
        events += seen.events
        acked += m.checkpoint(m.due())
    return events, acked


def test_state_round_trip_continues_where_it_left_off():
    r = random.Random(8)
    messages = [prediction("cam", i, r, brightness=120 if i < 500 else 150) for i in range(800)]
    straight, _ = run(monitor(), messages)
    assert [e.signal for e in straight] == ["brightness"]

    store = MemoryState()
    first = monitor(store, every=100)
    before, acked = run(first, messages, stop=450)
    assert before == [] and acked == list(range(400))  # held until saved
    assert store.rows["cam"].offsets == {"visionline.predictions:0": 399}
    assert first.checkpoint() == list(range(400, 450))  # the shutdown save
    assert store.rows["cam"].frames == 450

    second = monitor(store, every=100)
    bank = second.bank("cam")
    assert bank.frames == 450 and bank.trackers["brightness"].detector is not None  # warm
    after, _ = run(second, messages, start=450)
    dump = lambda events: [e.model_dump(exclude={"created_at"}) for e in events]  # noqa: E731
    assert dump(after) == dump(straight)  # the same drift, same frame, same values
    assert second.bank("cam").frames == 800


def test_a_replay_after_a_crash_skips_what_was_saved_and_confirms_the_same_event():
    r = random.Random(9)
    messages = [prediction("cam", i, r, brightness=120 if i < 340 else 150) for i in range(600)]
    store = MemoryState()
    crashed = monitor(store, every=200)
    events, acked = run(crashed, messages, stop=460)
    assert [e.signal for e in events] == ["brightness"] and acked == list(range(400))
    assert int(events[0].frame_id[1:]) >= 400  # confirmed after the last save
    # crash: the unsaved frames 400..419 are lost with the process; the broker's committed
    # offset is at most the saved one, here the group replays from offset 250
    restarted = monitor(store, every=200)
    replayed, acked = run(restarted, messages, start=250, stop=600)
    assert acked[:150] == list(range(250, 400))  # reflected already: acked at once, not fed
    assert restarted.bank("cam").frames == 600
    assert [e.event_id for e in replayed] == [e.event_id for e in events]
    assert replayed[0].after == events[0].after and replayed[0].before == events[0].before


def test_a_changed_detector_restarts_only_that_signal(tmp_path):
    store = MemoryState()
    r = random.Random(3)
    run(monitor(store, every=50), [prediction("cam", i, r) for i in range(300)])
    specs = {**DEFAULT_DETECTORS, "brightness": DetectorSpec(detector="kswin")}
    m = DriftMonitor(POLICY, specs, store)
    bank = m.bank("cam")
    assert "brightness" not in bank.trackers and bank.trackers["contrast"].seen == 300
    assert CameraBank.loads(b"not a pickle") is None


def test_unsaved_frames_are_held_per_camera_and_partitions_can_be_dropped():
    m = monitor(every=3)
    r = random.Random(4)
    for i in range(5):
        m.observe(prediction("cam-a", i, r), source(i, partition=0), token=("a", i))
        m.observe(prediction("cam-b", i, r), source(i, partition=1), token=("b", i))
    assert sorted(m.due()) == ["cam-a", "cam-b"]
    assert m.checkpoint(["cam-a"]) == [("a", i) for i in range(5)]
    assert m.due() == ["cam-b"]
    gone = m.drop(lambda key: key == "visionline.predictions:1")
    assert gone == ["cam-b"] and set(m.banks) == {"cam-a"} and m.checkpoint() == []


def test_drift_state_gauge_shows_changes_and_forgets_cameras():
    registry = CollectorRegistry()
    gauge = Gauge("visionline_drift_state", "test", ["camera", "signal"], registry=registry)
    states = DriftStates(gauge)
    states.show("cam-a", {"brightness": CONFIRMED, "blur": STABLE})
    states.show("cam-b", {"brightness": SUSPECTED})
    value = registry.get_sample_value
    assert value("visionline_drift_state", {"camera": "cam-a", "signal": "brightness"}) == 2
    assert value("visionline_drift_state", {"camera": "cam-b", "signal": "brightness"}) == 1
    states.forget(["cam-a"])
    assert value("visionline_drift_state", {"camera": "cam-a", "signal": "brightness"}) is None
    assert value("visionline_drift_state", {"camera": "cam-b", "signal": "brightness"}) == 1


# ================================ settings and schema ========================================


def test_settings_give_the_policy_and_read_their_prefix(monkeypatch, tmp_path):
    assert Policy.of(DriftSettings()) == POLICY
    monkeypatch.setenv("VISIONLINE_DRIFT_CONFIRM_FRAMES", "30")
    monkeypatch.setenv("VISIONLINE_DRIFT_COOLDOWN_FRAMES", "0")
    assert Policy.of(DriftSettings()) == Policy(confirm_frames=30, cooldown_frames=0)
    monkeypatch.setenv("VISIONLINE_DRIFT_MIN_KS", "1.5")
    with pytest.raises(ValueError):
        DriftSettings()
    assert load_detectors(tmp_path / "absent.yaml") == DEFAULT_DETECTORS == load_detectors(None)


def test_migration_0003_creates_the_tables_the_models_map():
    import re

    from visionline.db.models import DriftEventRow, DriftStateRow

    path = REPO_ROOT / "visionline" / "db" / "migrations" / "versions" / "0003_drift.py"
    text = path.read_text()
    assert 'down_revision = "0002"' in text and 'revision = "0003"' in text
    tables = dict(re.findall(r'op.create_table\(\s*"(\w+)",(.*?)\n    \)', text, re.S))
    for model in (DriftEventRow, DriftStateRow):
        columns = re.findall(r'sa.Column\("(\w+)"', tables[model.__tablename__])
        assert sorted(columns) == sorted(model.__table__.columns.keys())
    assert "primary_key=True" in tables["drift_events"].split("\n")[1]  # event_id: idempotent
