"""Late labels: the generator's truth as a label, the delayed publisher, and the joins of
observed parts and verdicts to labelled parts (no broker, no database)."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
from prometheus_client import REGISTRY

from tests.factories import (
    frame_meta,
    label_feedback,
    model_ref,
    observed_part,
    part_observations,
    part_verdict,
    quality,
)
from tests.factories import (
    labelled_part as lpart,
)
from visionline.camera.conveyor import ConveyorSource
from visionline.labels.delayed import DelayedLabels
from visionline.labels.join import (
    JoinPolicy,
    PredictedPart,
    confusion,
    frame_outcomes,
    frame_prediction,
    greedy_match,
    iou,
    label_problem,
    outcomes,
    part_score,
    verdict_outcome,
    verdict_prediction,
)
from visionline.labels.store import Accuracy, outcome_id, outcome_rows
from visionline.labels.truth import feedback_from_truth, mask_polygon
from visionline.messages import (
    LabelFeedback,
    LabelledPart,
    ObservedPart,
    PartObservations,
    PartVerdict,
)
from visionline.observability import ModelScores
from visionline.settings import LabelsSettings
from visionline.synthetic import LineGenerator
from visionline.synthetic.truth import DefectTruth, FrameTruth, PartTruth, RoiMask

SMALL = (320, 180)
POLICY = JoinPolicy()
MODELS = [model_ref("part_detector", "1"), model_ref("defect_detector", "3")]


def label(
    parts: list[LabelledPart], label_id: str = "generator:f1", frame_id: str = "f1", **kw
) -> LabelFeedback:
    return label_feedback(
        "line-1", frame_id, parts, label_id=label_id, captured_at=100.0, labelled_at=200.0, **kw
    )


def observed(box, score: float, class_scores: dict | None = None) -> ObservedPart:
    return observed_part(box, score, class_scores=class_scores)


def observations(parts: list[ObservedPart], frame_id: str = "f1") -> PartObservations:
    frame = frame_meta("line-1", frame_id, captured_at=100.0, size=SMALL)
    return part_observations(frame, parts, MODELS)


def verdict(box, defective: bool, best_frame_id: str = "f1") -> PartVerdict:
    return part_verdict(
        "line-1",
        "line-1:f9",
        "rejected" if defective else "accepted",
        track_id=4,
        defect_class="scratch" if defective else None,
        score=0.8 if defective else 0.1,
        defect_frames=4 if defective else 0,
        first_frame_id="f0",
        last_frame_id="f9",
        best_frame_id=best_frame_id,
        box=box,
        models=MODELS[1:],
    )


# ================================ truth -> label ============================================


def square_truth() -> FrameTruth:
    part = np.ones((40, 60), bool)
    defect = np.zeros((10, 10), bool)
    defect[2:8, 3:9] = True  # a 6 x 6 square at (23, 12) in the frame
    defect_roi = RoiMask(20, 10, defect).clip(SMALL)
    part_roi = RoiMask(10, 5, part)
    defects = [
        DefectTruth(
            defect_class="stain", box=defect_roi.box, mask=defect_roi.rle(), occluded_fraction=0.0
        )
    ]
    hidden = [
        DefectTruth(
            defect_class="crack", box=defect_roi.box, mask=defect_roi.rle(), occluded_fraction=1.0
        )
    ]
    parts = [
        PartTruth(
            part_id=7,
            kind="bracket",
            box=part_roi.box,
            mask=part_roi.rle(),
            visible_fraction=1.0,
            occluded_fraction=0.0,
            defective=True,
            defects=defects,
        ),
        PartTruth(
            part_id=8,
            kind="bracket",
            box=(100, 5, 160, 45),
            mask=part_roi.rle(),
            visible_fraction=0.42,
            occluded_fraction=0.3,
            defective=True,
            defects=hidden,
        ),
    ]
    return FrameTruth(
        frame_index=3,
        t_s=0.3,
        seed=0,
        camera="line-1",
        resolution=SMALL,
        strengths={},
        jpeg_quality=90,
        parts=parts,
    )


def test_truth_becomes_a_label_with_boxes_polygons_and_visibility():
    fb = feedback_from_truth("line-1", "line-1-3-ab", 123.5, square_truth())
    expected = ("generator:line-1-3-ab", "line-1", "line-1-3-ab", "generator")
    assert (fb.label_id, fb.camera_id, fb.frame_id, fb.source) == expected
    assert fb.captured_at == 123.5
    first, second = fb.parts
    assert first.part_id == "7" and first.box == (10.0, 5.0, 70.0, 45.0) and first.defective
    (defect,) = first.defects
    assert defect.defect_class == "stain" and defect.box == (23.0, 12.0, 29.0, 18.0)
    # the polygon is the outline of the 6 x 6 square, in frame pixels
    assert sorted(defect.polygon) == [(23.0, 12.0), (23.0, 17.0), (28.0, 12.0), (28.0, 17.0)]
    # a defect hidden entirely cannot be seen in this frame: not labelled defective here
    assert second.part_id == "8" and not second.defective and second.defects == []
    assert second.visible_fraction == 0.42
    # the message round-trips as JSON (what goes on the topic)
    assert LabelFeedback.model_validate_json(fb.model_dump_json()) == fb


def test_truth_of_generated_frames_agrees_with_the_generator():
    generator = LineGenerator(1, SMALL, defect_rate=1.0, defect_classes=("scratch",))
    checked = 0
    for index in range(8):
        _, truth = generator.frame(index)
        fb = feedback_from_truth("line-1", f"fr-{index}", float(index), truth)
        assert [p.part_id for p in fb.parts] == [str(p.part_id) for p in truth.parts]
        for p, t in zip(fb.parts, truth.parts, strict=True):
            assert p.box == tuple(map(float, t.box))
            assert p.visible_fraction == t.visible_fraction
            for d in p.defects:
                checked += 1
                x0, y0, x1, y1 = d.box
                assert d.polygon and len(d.polygon) >= 3
                assert all(x0 <= x <= x1 and y0 <= y <= y1 for x, y in d.polygon)
    assert checked > 0


def test_an_empty_mask_has_no_polygon_and_a_thin_one_its_rectangle():
    assert mask_polygon(RoiMask(0, 0, np.zeros((3, 3), bool)).rle()) is None
    line = RoiMask(5, 7, np.ones((4, 1), bool))  # one pixel wide, four high, at (5, 7)
    assert mask_polygon(line.rle()) == [(5.0, 7.0), (6.0, 7.0), (6.0, 11.0), (5.0, 11.0)]


# ================================ delayed labels ============================================


class FakeProducer:
    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes, bytes]] = []
        self.flushed = 0

    def produce(self, topic, value=None, key=None):
        self.sent.append((topic, key, value))

    def poll(self, timeout=0):
        return 0

    def flush(self, timeout=0):
        self.flushed += 1
        return 0


def test_labels_are_due_once_their_delay_passed_and_published_once():
    held, out = DelayedLabels(30.0), FakeProducer()
    a, b = label([], "generator:a", frame_id="a"), label([], "generator:b", frame_id="b")
    held.add(b, now=105.0)
    held.add(a, now=100.0)
    assert held.due(129.9) == []
    assert held.due(130.0) == [a] and held.due(130.0) == [a]  # pure: asking removes nothing
    assert len(held) == 2
    assert held.publish_due(out, 130.0) == 1 and len(held) == 1
    assert held.publish_due(out, 131.0) == 0  # not again
    assert held.due(200.0) == [b]
    assert [(t, k, json.loads(v)["label_id"]) for t, k, v in out.sent] == [
        ("visionline.labels.feedback", b"line-1", "generator:a")
    ]
    assert held.flush(out) == 0 and len(held) == 0 and out.flushed == 1
    assert [json.loads(v)["frame_id"] for _, _, v in out.sent] == ["a", "b"]


def test_labels_due_at_the_same_time_keep_their_order_and_a_negative_delay_is_refused():
    held = DelayedLabels(0.0)
    labels = [label([], f"generator:{i}", frame_id=str(i)) for i in range(5)]
    for x in labels:
        held.add(x, now=10.0)
    assert held.due(10.0) == labels
    with pytest.raises(ValueError):
        DelayedLabels(-1)


def test_a_conveyor_with_labels_names_its_frames_and_publishes_their_truth_late():
    now = [1000.0]
    out = FakeProducer()
    source = ConveyorSource(
        resolution=SMALL,
        seed=1,
        camera="line-1",
        realtime_fps=10,
        clock=lambda: now[0],
        labels=DelayedLabels(1.0),
        label_producer=out,
    )
    frames = iter(source)
    ids = []
    for _ in range(3):
        ids.append(next(frames).frame_id)
        now[0] += 0.4
    assert all(i and i.startswith("line-1-") for i in ids) and len(set(ids)) == 3
    # taking the 4th frame at 1001.2 publishes the 1st frame's label (due at 1001.0) only
    fourth = next(frames)
    sent = [json.loads(v) for _, _, v in out.sent]
    assert [s["frame_id"] for s in sent] == ids[:1]
    assert sent[0]["captured_at"] == 1000.0 and sent[0]["camera_id"] == "line-1"
    source.close()  # what is still held goes out at close
    sent = [json.loads(v) for _, _, v in out.sent]
    assert [s["frame_id"] for s in sent] == [*ids, fourth.frame_id]
    with pytest.raises(ValueError):
        ConveyorSource(resolution=SMALL, labels=DelayedLabels(1.0))


def test_a_conveyor_without_labels_leaves_frame_ids_to_the_publisher():
    source = ConveyorSource(SMALL, seed=2)
    assert all(f.frame_id is None for f in itertools.islice(source, 2))


# ================================ joins ======================================================


def test_iou_of_boxes():
    assert iou((0, 0, 10, 10), (0, 0, 10, 10)) == 1.0
    assert iou((0, 0, 10, 10), (5, 0, 15, 10)) == pytest.approx(50 / 150)
    assert iou((0, 0, 10, 10), (10, 0, 20, 10)) == 0.0  # touching is not overlapping
    assert iou((0, 0, 0, 10), (0, 0, 0, 10)) == 0.0  # empty boxes


def test_greedy_match_takes_the_best_pair_first_and_uses_each_box_once():
    predicted = [(0, 0, 10, 10), (2, 0, 12, 10)]
    labelled = [(2, 0, 12, 10)]  # both predictions overlap it; the second exactly
    assert greedy_match(predicted, labelled, 0.3) == [(1, 0, 1.0)]
    # below the minimum IoU nothing matches
    assert greedy_match([(0, 0, 10, 10)], [(8, 0, 18, 10)], 0.3) == []


def test_frame_outcomes_for_matches_false_detections_and_misses():
    labelled = [
        lpart("1", (0, 0, 10, 10), defective=True),
        lpart("2", (20, 0, 30, 10), defective=False),
        lpart("3", (40, 0, 50, 10), defective=True),
        lpart("4", (60, 0, 70, 10), defective=True),  # missed
        lpart("5", (80, 0, 90, 10), defective=True, visible=0.3),  # missed, mostly outside
        lpart("6", (100, 0, 110, 10), defective=False),  # missed, good part
    ]
    parts = [
        PredictedPart((1, 0, 11, 10), 0.9),  # part 1: tp
        PredictedPart((20, 1, 30, 11), 0.7),  # part 2: fp
        PredictedPart((40, 0, 50, 10), 0.2),  # part 3: fn
        PredictedPart((200, 0, 210, 10), 0.95),  # nothing there: fp (false detection)
        PredictedPart((220, 0, 230, 10), 0.5),  # at the threshold: predicted defective
        PredictedPart((240, 0, 250, 10), 0.49),  # nothing there, not flagged: tn
    ]
    found = {o.slot: (o.match, o.outcome) for o in frame_outcomes(parts, labelled, POLICY)}
    assert found == {
        "p0:t1": ("matched", "tp"),
        "p1:t2": ("matched", "fp"),
        "p2:t3": ("matched", "fn"),
        "p3": ("false_detection", "fp"),
        "p4": ("false_detection", "fp"),
        "p5": ("false_detection", "tn"),
        "t4": ("miss", "fn"),
        "t6": ("miss", "tn"),
    }
    stricter = JoinPolicy(threshold=0.8)
    found = {o.slot: o.outcome for o in frame_outcomes(parts, labelled, stricter)}
    assert found["p1:t2"] == "tn" and found["p0:t1"] == "tp" and found["p4"] == "tn"


def test_observations_score_on_defect_score_or_the_best_class_score():
    part = observed((0, 0, 10, 10), 0.2, {"scratch": 0.7, "crack": 0.4})
    assert part_score(part) == 0.2 and part_score(part, "class_scores") == 0.7
    assert part_score(observed((0, 0, 1, 1), 0.2), "class_scores") == 0.0
    obs = observations([part])
    by_defect, by_class = frame_prediction(obs), frame_prediction(obs, "class_scores")
    assert by_defect.prediction_id == "frame:line-1:f1" and by_defect.kind == "frame_part"
    assert by_defect.models == (("part_detector", "1"), ("defect_detector", "3"))
    truth = label([lpart("1", (0, 0, 10, 10), defective=True)])
    assert [o.outcome for o in outcomes(by_defect, truth, POLICY)] == ["fn"]
    assert [o.outcome for o in outcomes(by_class, truth, POLICY)] == ["tp"]


def test_a_verdict_joins_the_labels_of_its_best_frame():
    truth = [lpart("1", (0, 0, 10, 10), defective=True), lpart("2", (20, 0, 30, 10))]
    pred = verdict_prediction(verdict((19, 0, 29, 10), defective=True, best_frame_id="f7"))
    expected = ("verdict:line-1:f9", "tracked_part", "f7")
    assert (pred.prediction_id, pred.kind, pred.frame_id) == expected
    assert pred.models == (("defect_detector", "3"),)
    (o,) = outcomes(pred, label(truth, frame_id="f7"), POLICY)
    assert (o.match, o.part_id, o.outcome) == ("matched", "2", "fp")
    good = verdict_outcome(PredictedPart((1, 0, 11, 10), 0.1, False), truth, POLICY)
    assert (good.part_id, good.outcome) == ("1", "fn")
    # the verdict's own decision counts, not the policy's threshold on its score
    flagged = verdict_outcome(PredictedPart((0, 0, 10, 10), 0.1, True), truth, POLICY)
    assert flagged.outcome == "tp"
    nowhere = verdict_outcome(PredictedPart((200, 0, 210, 10), 0.9, True), truth, POLICY)
    assert (nowhere.match, nowhere.outcome) == ("false_detection", "fp")


def test_confusion_quadrants():
    quadrants = [confusion(p, t) for p, t in itertools.product((True, False), repeat=2)]
    assert quadrants == ["tp", "fp", "fn", "tn"]


def test_outcome_rows_are_one_per_part_and_model_with_stable_ids():
    obs = observations([observed((0, 0, 10, 10), 0.9), observed((50, 0, 60, 10), 0.1)])
    truth = label([lpart("1", (0, 0, 10, 10), defective=True)])
    rows = outcome_rows(frame_prediction(obs), truth, POLICY)
    assert len(rows) == 2 * 2  # two parts, two models
    assert {(r["model"], r["version"], r["slot"], r["outcome"]) for r in rows} == {
        ("part_detector", "1", "p0:t1", "tp"),
        ("defect_detector", "3", "p0:t1", "tp"),
        ("part_detector", "1", "p1", "tn"),
        ("defect_detector", "3", "p1", "tn"),
    }
    again = outcome_rows(frame_prediction(obs), truth, POLICY)
    assert [r["outcome_id"] for r in rows] == [r["outcome_id"] for r in again]
    assert len({r["outcome_id"] for r in rows}) == 4
    newer = label(truth.parts, "annotation:f1", source="annotation")
    other = {r["outcome_id"] for r in outcome_rows(frame_prediction(obs), newer, POLICY)}
    assert other.isdisjoint(r["outcome_id"] for r in rows)
    assert outcome_id("a", "b", "c", "d", "e") != outcome_id("a", "b", "c", "d", "f")


def test_labels_that_make_no_sense_are_found():
    assert label_problem(label([lpart("1", (0, 0, 10, 10))])) is None
    assert "box" in label_problem(label([lpart("1", (10, 0, 5, 10))]))
    assert "visible_fraction" in label_problem(label([lpart("1", (0, 0, 10, 10), visible=1.5)]))
    assert "repeat" in label_problem(label([lpart("1", (0, 0, 1, 1)), lpart("1", (2, 2, 3, 3))]))


# ================================ rates, gauge, settings ====================================


def test_accuracy_rates_and_undefined_ones():
    a = Accuracy("c", "m", "1", "frame_part", tp=8, fp=2, fn=4, tn=10)
    assert a.precision == 0.8 and a.recall == pytest.approx(8 / 12)
    assert a.f1 == pytest.approx(2 * 8 / (16 + 2 + 4))
    none = Accuracy("c", "m", "1", "frame_part", tp=0, fp=0, fn=0, tn=5)
    assert (none.precision, none.recall, none.f1) == (None, None, None)
    assert none.as_dict()["tn"] == 5 and none.as_dict()["f1"] is None


def test_model_f1_gauge_shows_defined_scores_and_drops_the_rest():
    def value(*key):
        names = ("camera", "model", "version", "kind")
        return REGISTRY.get_sample_value("visionline_model_f1", dict(zip(names, key, strict=True)))

    scores = ModelScores()
    a, b = ("f1-cam", "defect_detector", "3", "frame_part"), ("f1-cam", "m", "1", "tracked_part")
    scores.show({a: 0.75, b: 0.5})
    assert (value(*a), value(*b)) == (0.75, 0.5)
    scores.show({a: 0.8, b: None})
    assert (value(*a), value(*b)) == (0.8, None)
    scores.show({})
    assert value(*a) is None


def test_labels_settings_defaults_and_policy(monkeypatch):
    monkeypatch.setenv("VISIONLINE_LABELS_DEFECT_THRESHOLD", "0.6")
    settings = LabelsSettings()
    policy = JoinPolicy.of(settings)
    assert (policy.threshold, policy.min_iou, policy.min_visible) == (0.6, 0.3, 0.5)
    assert policy.score_source == "defect_score"
    with pytest.raises(ValueError):
        LabelsSettings(min_iou=0)


def test_migration_0005_creates_the_tables_the_models_map():
    import re

    from visionline.db.models import FrameLabelRow, LabelOutcomeRow, LabelPredictionRow
    from visionline.settings import REPO_ROOT

    path = REPO_ROOT / "visionline" / "db" / "migrations" / "versions" / "0005_labels.py"
    text = path.read_text()
    assert 'down_revision = "0004"' in text and 'revision = "0005"' in text
    tables = dict(re.findall(r'op.create_table\(\s*"(\w+)",(.*?)\n    \)', text, re.S))
    for model in (FrameLabelRow, LabelPredictionRow, LabelOutcomeRow):
        columns = re.findall(r'sa.Column\("(\w+)"', tables[model.__tablename__])
        assert sorted(columns) == sorted(model.__table__.columns.keys())
        keys = re.findall(r'sa.Column\("(\w+)"[^\n]*primary_key=True', tables[model.__tablename__])
        assert keys == [c.name for c in model.__table__.primary_key.columns]


# Detect cameras: detections against labelled objects -------------------------------------------


def _detections(*objects: tuple[tuple[float, float, float, float], str, float]):
    from visionline.messages import DetectedObject, FrameDetections

    found = [DetectedObject(box=b, class_name=c, score=s) for b, c, s in objects]
    meta = frame_meta("dock-1", "f9")
    return FrameDetections(
        frame=meta, quality=quality(), model=model_ref("det", "2"), objects=found
    )


def _objects(*objects: tuple[str, tuple[float, float, float, float], str]):
    from visionline.messages import LabelledObject

    return [LabelledObject(object_id=i, box=b, class_name=c) for i, b, c in objects]


def test_detections_join_labelled_objects_by_class_and_iou():
    from visionline.labels.join import detection_prediction

    prediction = detection_prediction(
        _detections(
            ((0, 0, 100, 100), "person", 0.9),  # the person: tp
            ((200, 0, 300, 100), "person", 0.8),  # right box, wrong class: fp (and the cart fn)
            ((400, 0, 500, 100), "person", 0.7),  # nothing there: fp
            ((0, 0, 100, 100), "person", 0.6),  # a duplicate of the first: fp
        )
    )
    assert prediction.kind == "frame_object" and prediction.models == (("det", "2"),)
    label = label_feedback("dock-1", "f9", [])
    label = label.model_copy(
        update={
            "objects": _objects(
                ("a", (5, 5, 100, 100), "person"),
                ("b", (200, 0, 300, 100), "cart"),
                ("c", (600, 0, 700, 100), "person"),  # missed: fn
            )
        }
    )
    found = outcomes(prediction, label, JoinPolicy())
    assert sorted(o.outcome for o in found) == ["fn", "fn", "fp", "fp", "fp", "tp"]
    tp = next(o for o in found if o.outcome == "tp")
    assert tp.part_id == "a" and tp.score == 0.9 and tp.iou == pytest.approx(0.9025)
    assert {o.part_id for o in found if o.outcome == "fn"} == {"b", "c"}
    rows = outcome_rows(prediction, label, JoinPolicy())
    assert {r["kind"] for r in rows} == {"frame_object"} and len(rows) == 6


def test_a_label_with_a_bad_object_is_refused():
    label = label_feedback("dock-1", "f9", [])
    bad = label.model_copy(update={"objects": _objects(("a", (10, 10, 5, 20), "person"))})
    assert "object a: empty or inverted box" in str(label_problem(bad))
    twice = _objects(("a", (0, 0, 5, 5), "person"), ("a", (9, 9, 19, 19), "person"))
    assert label_problem(label.model_copy(update={"objects": twice})) == "object ids repeat"
    assert label_problem(label) is None
