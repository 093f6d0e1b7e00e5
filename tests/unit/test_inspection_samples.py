"""Frames kept for labelling: why, within a budget, and exported as pre-annotations."""

import os
import time
from pathlib import Path

import cv2
import numpy as np
from typer.testing import CliRunner

from tests.factories import frame_meta, observed_part, part_observations
from visionline.annotations import import_labels
from visionline.annotations.cli import app
from visionline.inspection.samples import SampleStore, reasons_for, sample_key, sample_labels
from visionline.inspection.sampling import LabelSampler, LabelSampling
from visionline.messages import (
    DefectFinding,
    PartObservations,
)


def obs(frame_id: str, anomaly: float, classed: float, camera: str = "line-1") -> PartObservations:
    defects = (
        [DefectFinding(defect_class="scratch", box=(20, 20, 40, 30), score=classed, area=50.0)]
        if classed
        else []
    )
    part = observed_part(
        (10, 10, 90, 70), max(anomaly, classed), anomaly_score=anomaly, defects=defects
    )
    frame = frame_meta(camera, frame_id, captured_at=1.0, size=(128, 96))
    return part_observations(frame, [part])


def jpeg() -> bytes:
    return cv2.imencode(".jpg", np.full((96, 128, 3), 128, np.uint8))[1].tobytes()


def test_reasons_name_uncertain_disagreeing_and_defective_frames_within_a_budget():
    now = [0.0]
    sampler = LabelSampler(LabelSampling(max_per_camera_per_minute=2), clock=lambda: now[0])
    assert reasons_for(obs("a", 0.05, 0.0), sampler, 0.5) == []  # clearly good: not kept
    assert reasons_for(obs("b", 0.9, 0.1), sampler, 0.5) == ["disagreement", "rejected"]
    assert reasons_for(obs("c", 0.45, 0.0), sampler, 0.5) == ["uncertain"]
    assert reasons_for(obs("d", 0.9, 0.9), sampler, 0.5) == []  # over this minute's budget
    now[0] = 61.0
    assert reasons_for(obs("e", 0.9, 0.9), sampler, 0.5) == ["rejected"]


def test_kept_frames_export_as_pre_annotations_and_come_back(tmp_path: Path):
    store = SampleStore(tmp_path / "samples", max_age_s=None, max_bytes=None)
    ref = store.keep(obs("f:1", 0.9, 0.8), jpeg(), ["rejected"])
    assert ref == "snapshot://line-1__f_1.jpg" and sample_key("line-1", "f:1") == "line-1__f_1"
    labels = sample_labels(tmp_path / "samples")
    (image,) = labels.images
    assert image.file_name == "line-1__f_1.jpg" and (image.width, image.height) == (128, 96)
    assert sorted(o.label for o in image.objects) == ["part", "scratch"]
    out = tmp_path / "cvat"
    result = CliRunner().invoke(
        app,
        [
            "export",
            "--samples",
            str(tmp_path / "samples"),
            "--format",
            "cvat",
            "--out",
            str(out),
            "--parts",
        ],
    )
    assert result.exit_code == 0, result.output
    back = import_labels("cvat", out)
    assert sorted(o.label for o in back.images[0].objects) == ["part", "scratch"]


def test_export_needs_exactly_one_source(tmp_path: Path):
    result = CliRunner().invoke(app, ["export", "--format", "voc", "--out", str(tmp_path)])
    assert result.exit_code != 0 and "exactly one of --dataset and --samples" in result.output


def test_pruned_frames_take_their_predictions_with_them(tmp_path: Path):
    store = SampleStore(tmp_path, max_age_s=60, max_bytes=None)
    store.keep(obs("old", 0.9, 0.8), jpeg(), ["rejected"])
    store.keep(obs("new", 0.9, 0.8), jpeg(), ["rejected"])
    old = store.frames.root / "line-1__old.jpg"
    os.utime(old, (time.time() - 3600, time.time() - 3600))
    assert store.prune() == 1
    assert [p.stem for p in store.predictions.glob("*.json")] == ["line-1__new"]
