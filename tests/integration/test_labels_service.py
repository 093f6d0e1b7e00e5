"""The labels worker through the real stack: observations and verdicts joined to late labels in
either order, a label delivered twice counted once, a newer label replacing an older one, bad
labels dead-lettered, and the accuracy that comes out (stored rows, the query, the CLI).

Observations, verdicts and labels go straight onto their topics for a camera of this test's own
(no camera, ingest or Triton involved). The parts worker tracks these observations too and may
decide parts of its own from them: exact counts are asserted on this test's predictions only.
"""

from __future__ import annotations

import json
import time
import uuid

from typer.testing import CliRunner

from tests.factories import (
    frame_meta,
    label_feedback,
    model_ref,
    observed_part,
    part_observations,
    part_verdict,
    quality,
)
from tests.factories import labelled_part as lpart
from tests.integration.pipeline import rows, wait_rows
from visionline.kafka import producer
from visionline.labels.store import accuracy, labelled_frames, labels_for_frames
from visionline.messages import (
    LabelFeedback,
    LabelledPart,
    ObservedPart,
    Topic,
    to_json,
)

MODELS = [model_ref("part_detector", "1"), model_ref("defect_detector", "3")]
VERDICT_MODEL = model_ref("defect_detector", "9")
OUTCOMES = """SELECT prediction_id, label_id, model, version, kind, slot, match, outcome
              FROM label_outcomes WHERE camera_id = :camera AND prediction_id LIKE :prefix
              ORDER BY prediction_id, slot, model"""
PREDICTION = "SELECT * FROM label_predictions WHERE prediction_id = :id"
LABEL = "SELECT * FROM frame_labels WHERE camera_id = :camera AND frame_id = :frame"


class Frames:
    def __init__(self, bootstrap: str, camera: str) -> None:
        self.out, self.camera, self.t0 = producer(bootstrap), camera, time.time() - 300

    def captured(self, frame_id: str) -> float:
        return self.t0 + int(frame_id.rsplit("-", 1)[1])

    def send(self, topic: Topic, value: bytes) -> None:
        self.out.produce(str(topic), key=self.camera.encode(), value=value)
        assert self.out.flush(30) == 0

    def observations(self, frame_id: str, parts: list[ObservedPart]) -> None:
        frame = frame_meta(self.camera, frame_id, captured_at=self.captured(frame_id))
        self.send(Topic.PART_OBSERVATIONS, to_json(part_observations(frame, parts, MODELS)))

    def label(self, frame_id: str, parts: list[LabelledPart], **kw) -> LabelFeedback:
        captured_at = self.captured(frame_id)
        label = label_feedback(self.camera, frame_id, parts, captured_at=captured_at, **kw)
        self.send(Topic.LABELS_FEEDBACK, to_json(label))
        return label

    def verdict(self, frame_id: str, box, defective: bool) -> str:
        decision_id = f"{self.camera}:{frame_id}:test"
        v = part_verdict(
            self.camera,
            decision_id,
            "rejected",
            defective=defective,
            defect_class="scratch",
            score=0.9,
            frames_seen=5,
            defect_frames=4,
            first_frame_id=frame_id,
            last_frame_id=frame_id,
            best_frame_id=frame_id,
            captured_at=self.captured(frame_id),
            decided_at=time.time(),
            box=box,
            models=[VERDICT_MODEL],
        )
        self.send(Topic.PART_DECISIONS, to_json(v))
        return f"verdict:{decision_id}"


def counts(found: list[dict]) -> dict[tuple[str, str], int]:
    out: dict[tuple[str, str], int] = {}
    for r in found:
        key = (r["prediction_id"].split(":")[-1], r["outcome"])
        out[key] = out.get(key, 0) + 1
    return out


def test_labels_join_in_either_order_once_and_give_accuracy(stack, engine, dead_letters):
    camera = f"labels-{uuid.uuid4().hex[:8]}"
    a, b, c = f"{camera}-1", f"{camera}-2", f"{camera}-3"
    send = Frames(stack.kafka_bootstrap, camera)
    frame_outcomes = dict(camera=camera, prefix=f"frame:{camera}:%")

    # Frame a: observations first, then its labels (the usual order).
    send.observations(
        a,
        [
            observed_part((0, 0, 100, 100), 0.9),
            observed_part((200, 0, 300, 100), 0.1),
            observed_part((500, 0, 600, 100), 0.8),
        ],
    )
    wait_rows(engine, PREDICTION, lambda f: len(f) == 1, timeout=60, id=f"frame:{camera}:{a}")
    send.label(
        a,
        [
            lpart("1", (2, 0, 102, 100), True),
            lpart("2", (200, 0, 300, 100), False),
            lpart("3", (800, 0, 900, 100), True),
            lpart("4", (1000, 0, 1100, 100), True, visible=0.2),
        ],
    )
    # Frame b: labels first, then observations.
    send.label(b, [lpart("1", (0, 0, 100, 100), False)], labelled_at=time.time() - 100)
    wait_rows(engine, LABEL, lambda f: len(f) == 1, timeout=60, camera=camera, frame=b)
    send.observations(b, [observed_part((0, 0, 100, 100), 0.7)])
    # Frame c: its label twice (the same message), a verdict decided on it, its observations.
    label_c = send.label(c, [lpart("1", (0, 0, 100, 100), True)])
    send.send(Topic.LABELS_FEEDBACK, to_json(label_c))
    verdict_id = send.verdict(c, (0, 0, 100, 100), defective=True)
    send.observations(c, [observed_part((0, 0, 100, 100), 0.2)])

    # a: tp, tn, a false detection (fp), a miss (fn; part 4 is mostly outside the frame: no
    # miss); b: fp; c: fn. Each for both models of the observations.
    expected = {(a, "tp"): 2, (a, "tn"): 2, (a, "fp"): 2, (a, "fn"): 2, (b, "fp"): 2, (c, "fn"): 2}
    wait_rows(engine, OUTCOMES, lambda f: counts(f) == expected, timeout=90, **frame_outcomes)
    (joined,) = wait_rows(
        engine, OUTCOMES, lambda f: len(f) == 1, timeout=60, camera=camera, prefix=verdict_id
    )
    assert (joined["kind"], joined["match"], joined["outcome"]) == ("tracked_part", "matched", "tp")
    assert (joined["model"], joined["version"]) == ("defect_detector", "9")

    # A newer labelling of b (an annotator: the part is defective after all) replaces the old.
    send.label(
        b, [lpart("1", (0, 0, 100, 100), True)], label_id=f"annotation:{b}", source="annotation"
    )
    expected = {**{k: v for k, v in expected.items() if k != (b, "fp")}, (b, "tp"): 2}
    found = wait_rows(
        engine, OUTCOMES, lambda f: counts(f) == expected, timeout=60, **frame_outcomes
    )
    assert {r["label_id"] for r in found if r["prediction_id"].endswith(b)} == {f"annotation:{b}"}

    # Bad labels: one that is not JSON, one whose box is inverted; both dead-lettered.
    send.send(Topic.LABELS_FEEDBACK, b"{not json")
    send.label(f"{camera}-4", [lpart("1", (100, 0, 50, 100), True)])
    letters = dead_letters.wait_for(
        lambda seen: (
            {"malformed_message", "invalid_label"}
            <= {d["error_type"] for d in seen if d.get("camera_id") == camera}
        ),
        timeout=60,
    )
    invalid = [d for d in letters if d.get("camera_id") == camera and d["stage"] == "labels"]
    assert any("inverted box" in d["error_message"] for d in invalid)

    # Redelivery, as after a crash: everything again, nothing counted twice.
    send.observations(
        a,
        [
            observed_part((0, 0, 100, 100), 0.9),
            observed_part((200, 0, 300, 100), 0.1),
            observed_part((500, 0, 600, 100), 0.8),
        ],
    )
    send.send(Topic.LABELS_FEEDBACK, to_json(label_c))
    send.verdict(c, (0, 0, 100, 100), defective=True)
    # Markers, one per topic: each is handled after the repeats before it (same key, so the
    # same partition, in order); once all three are stored, the repeats were handled.
    marker = f"{camera}-9"
    send.label(marker, [])
    send.observations(marker, [])
    marker_verdict = send.verdict(f"{camera}-8", (0, 0, 10, 10), defective=False)  # unlabelled
    wait_rows(engine, LABEL, lambda f: len(f) == 1, timeout=60, camera=camera, frame=marker)
    for prediction in (f"frame:{camera}:{marker}", marker_verdict):
        wait_rows(engine, PREDICTION, lambda f: len(f) == 1, timeout=60, id=prediction)
    assert counts(rows(engine, OUTCOMES, **frame_outcomes)) == expected
    assert len(rows(engine, OUTCOMES, camera=camera, prefix=verdict_id)) == 1

    # Accuracy: a (tp, tn, fp, fn) + b (tp) + c (fn), per model; the verdict's model apart.
    got = {(r.model, r.version, r.kind): r for r in accuracy(engine, camera_id=camera)}
    for model in (("part_detector", "1"), ("defect_detector", "3")):
        r = got[(*model, "frame_part")]
        assert (r.tp, r.fp, r.fn, r.tn) == (2, 1, 2, 1)
        assert (r.precision, r.recall, r.f1) == (2 / 3, 0.5, 4 / 7)
    v = got[("defect_detector", "9", "tracked_part")]
    assert (v.tp, v.fp, v.fn, v.tn, v.f1) == (1, 0, 0, 0, 1.0)
    only = accuracy(engine, camera_id=camera, model="part_detector")
    assert {(r.model, r.kind) for r in only} <= {
        ("part_detector", "frame_part"),
        ("part_detector", "tracked_part"),
    }
    assert accuracy(engine, camera_id=camera, since=time.time() + 60) == []

    # The CLI prints the same.
    result = CliRunner().invoke(
        _cli(),
        ["labels", "accuracy", "--camera", camera, "--model", "defect_detector", "--json"],
        env={"VISIONLINE_DATABASE_URL": stack.database_url},
    )
    assert result.exit_code == 0, result.output
    printed = {(r["version"], r["kind"]): r for r in json.loads(result.output)}
    assert printed[("3", "frame_part")]["tp"] == 2 and printed[("9", "tracked_part")]["f1"] == 1.0

    # The dataset queries of the retraining job: the latest labels of each frame.
    labels = labels_for_frames(engine, [a, b, c, "no-such-frame"])
    assert set(labels) == {a, b, c} and labels[b].source == "annotation"
    window = labelled_frames(engine, camera, send.captured(a), send.captured(c))
    assert [x.frame_id for x in window] == [a, b, c]
    assert [p.part_id for p in window[0].parts] == ["1", "2", "3", "4"]


def _cli():
    from visionline.cli import app

    return app


def test_a_detect_cameras_detections_join_its_labelled_objects(stack, engine):
    """Detections (``visionline.detect.detections``) and late labels of objects, in both
    orders: tp/fp/fn per object by class and IoU, per detector version."""
    from visionline.messages import DetectedObject, FrameDetections, LabelledObject

    camera = f"labels-det-{uuid.uuid4().hex[:8]}"
    send, detector = Frames(stack.kafka_bootstrap, camera), model_ref("dock_objects", "2")

    def detections(frame_id: str, *objects: tuple) -> None:
        meta = frame_meta(camera, frame_id, captured_at=send.captured(frame_id))
        found = [DetectedObject(box=b, class_name=c, score=0.8) for b, c in objects]
        message = FrameDetections(frame=meta, quality=quality(), model=detector, objects=found)
        send.send(Topic.DETECTIONS, to_json(message))

    def label(frame_id: str, *objects: tuple) -> None:
        truth = [LabelledObject(object_id=i, box=b, class_name=c) for i, b, c in objects]
        message = label_feedback(camera, frame_id, [], captured_at=send.captured(frame_id))
        send.send(Topic.LABELS_FEEDBACK, to_json(message.model_copy(update={"objects": truth})))

    a, b = f"{camera}-1", f"{camera}-2"
    person, cart = ((0, 0, 100, 100), "person"), ((200, 0, 300, 100), "cart")
    detections(a, person, ((400, 0, 500, 100), "person"))  # then labels: tp, fp
    label(a, ("p", *person))
    label(b, ("p", *person), ("c", *cart))  # labels first: tp, fn
    detections(b, person)
    outcomes = dict(camera=camera, prefix=f"detect:{camera}:%")
    found = wait_rows(engine, OUTCOMES, lambda f: len(f) == 4, timeout=90, **outcomes)
    assert {r["kind"] for r in found} == {"frame_object"}
    assert counts(found) == {(a, "tp"): 1, (a, "fp"): 1, (b, "tp"): 1, (b, "fn"): 1}
    (r,) = accuracy(engine, camera_id=camera)
    assert (r.model, r.version, r.kind) == ("dock_objects", "2", "frame_object")
    assert (r.tp, r.fp, r.fn, r.precision, r.recall) == (2, 1, 1, 2 / 3, 2 / 3)
