"""The detect worker's logic without a broker or Triton: the detector's outputs decoded into
named boxes in frame pixels, its input and quality, which repository models are detectors,
and the alert a tracked object's event becomes."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from services.detect.logic import annotated_snapshot, found_objects, model_input
from services.rules.logic import object_alert
from tests.factories import model_ref
from visionline.messages import DetectedObject, ObjectEvent
from visionline.models.classifiers import is_classifier
from visionline.models.detectors import INPUT, is_detector

GRID = INPUT // 8


def outputs(peaks: list[tuple[int, int, int, float, float, float]], classes: int = 2) -> dict:
    """Outputs of a batch of one: (class, y, x, score, box w, box h) peaks in input pixels."""
    heatmap = np.zeros((1, classes, GRID, GRID), np.float32)
    size = np.zeros((1, 2, GRID, GRID), np.float32)
    offset = np.full((1, 2, GRID, GRID), 0.5, np.float32)
    for c, y, x, score, w, h in peaks:
        heatmap[0, c, y, x] = score
        size[0, :, y, x] = (math.log(w / 8), math.log(h / 8))
    return {"heatmap": heatmap, "size": size, "offset": offset}


def test_boxes_come_back_in_frame_pixels_with_their_class_names() -> None:
    found = found_objects(outputs([(1, 10, 12, 0.9, 40, 24)]), 0.5, ["cup", "face"], 0.3, 10, 0.6)
    assert len(found) == 1 and found[0].class_name == "face"
    x0, y0, x1, y1 = found[0].box
    assert (x0 + x1) / 2 == pytest.approx(12.5 * 8 / 0.5)  # the cell's centre, scaled back
    assert (y0 + y1) / 2 == pytest.approx(10.5 * 8 / 0.5)
    assert x1 - x0 == pytest.approx(40 / 0.5, rel=1e-4) and y1 - y0 == pytest.approx(48, rel=1e-4)
    assert found[0].score == pytest.approx(0.9)


def test_weak_peaks_are_left_out_and_the_best_come_first() -> None:
    peaks = [(0, 4, 4, 0.2, 16, 16), (0, 20, 20, 0.5, 16, 16), (1, 8, 24, 0.8, 16, 16)]
    found = found_objects(outputs(peaks), 1.0, ["cup", "face"], 0.3, 10, 0.6)
    assert [(o.class_name, round(o.score, 2)) for o in found] == [("face", 0.8), ("cup", 0.5)]
    assert len(found_objects(outputs(peaks), 1.0, ["cup", "face"], 0.3, 1, 0.6)) == 1


def test_fewer_labels_than_heatmap_classes_is_an_error() -> None:
    with pytest.raises(ValueError, match="1 labels for 2"):
        found_objects(outputs([(1, 4, 4, 0.9, 16, 16)]), 1.0, ["cup"], 0.3, 10, 0.6)


def test_the_input_is_letterboxed_and_quality_measured_without_the_padding() -> None:
    bgr = np.full((240, 320, 3), 200, np.uint8)
    batch, scale, quality = model_input(bgr)
    assert batch.shape == (1, INPUT, INPUT, 3) and batch.dtype == np.uint8
    assert scale == pytest.approx(INPUT / 320)
    assert batch[0, -1, -1].tolist() == [0, 0, 0]  # padding at the bottom
    assert quality.brightness == pytest.approx(200, abs=1)  # the padding is not measured
    jpeg = annotated_snapshot(
        bgr, [DetectedObject(box=(10, 10, 50, 40), class_name="cup", score=0.9)], 80
    )
    assert jpeg[:2] == b"\xff\xd8"


def _config(folder: Path, text: str) -> None:
    folder.mkdir(parents=True)
    (folder / "config.pbtxt").write_text(text)


DETECTOR = """name: "d"
input [ { name: "image" data_type: TYPE_UINT8 dims: [ 256, 256, 3 ] } ]
output [
  { name: "heatmap" data_type: TYPE_FP32 dims: [ 2, 32, 32 ] },
  { name: "size" data_type: TYPE_FP32 dims: [ 2, 32, 32 ] },
  { name: "offset" data_type: TYPE_FP32 dims: [ 2, 32, 32 ] }
]
"""
CLASSIFIER = """name: "c"
input [ { name: "image" data_type: TYPE_UINT8 dims: [ 224, 224, 3 ] } ]
output [ { name: "logits" data_type: TYPE_FP32 dims: [ 4 ] } ]
"""


def test_detectors_and_classifiers_are_told_apart_by_their_contract(tmp_path: Path) -> None:
    _config(tmp_path / "d", DETECTOR)
    _config(tmp_path / "c", CLASSIFIER)
    _config(tmp_path / "half", DETECTOR.replace('"offset"', '"other"'))
    assert is_detector(tmp_path, "d") and not is_classifier(tmp_path, "d")
    assert is_classifier(tmp_path, "c") and not is_detector(tmp_path, "c")
    assert not is_detector(tmp_path, "half") and not is_detector(tmp_path, "missing")
    assert not is_detector(tmp_path, "../d")


def test_an_object_event_becomes_one_alert_under_its_own_id() -> None:
    event = ObjectEvent(
        event_id="dock-1:f0:cup-crossing:3:1",
        camera_id="dock-1",
        frame_id="f9",
        captured_at=10.0,
        rule="cup-crossing",
        kind="line",
        severity="info",
        track_id=3,
        class_name="cup",
        box=(1, 2, 3, 4),
        score=0.8,
        detail={"direction": "in", "count_in": 1, "count_out": 0},
        model=model_ref("det"),
        snapshot="snapshot://dock-1/f9",
    )
    alert = object_alert(event, now=11.0)
    assert alert.alert_id == event.event_id and alert.label == "cup" and alert.part is None
    assert alert.object is not None and alert.object.detail["direction"] == "in"
    assert alert.object.snapshot == "snapshot://dock-1/f9" and alert.model.name == "det"
    count = event.model_copy(update={"kind": "count", "track_id": -1, "class_name": ""})
    assert object_alert(count).label == "cup-crossing"  # about a zone: the rule names it
