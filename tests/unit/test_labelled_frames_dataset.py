"""Frames labelled in production as a dataset version (``visionline.datasets.labelled_frames``):
classify frames as classes, detect frames' objects and inspect frames' parts as boxes, frames
missing from the topic reported, checked and stored like an import."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import pytest

from tests.unit.dataset_photos import CLASSES, detection_scene
from visionline.datasets.exporting import export_dataset, load_version
from visionline.datasets.importing import InvalidDataset, import_dataset
from visionline.datasets.labelled_frames import (
    MixedTasks,
    boxes_of,
    clipped,
    store_labelled_frames,
)
from visionline.datasets.registry import list_versions
from visionline.datasets.store import LocalDatasetStore
from visionline.messages import LabelFeedback, LabelledObject, LabelledPart


def _label(frame: str, **labels) -> LabelFeedback:
    return LabelFeedback(
        label_id=f"l-{frame}",
        camera_id=labels.pop("camera", "cam-1"),
        frame_id=frame,
        captured_at=1_700_000_000.0,
        source="annotation",
        parts=labels.pop("parts", []),
        **labels,
    )


def _jpeg(image) -> bytes:
    ok, data = cv2.imencode(".jpg", image)
    assert ok
    return data.tobytes()


def _detect_frames(count: int) -> list[tuple[LabelFeedback, bytes, str]]:
    frames = []
    for index in range(count):
        image, objects = detection_scene(index)
        labelled = [
            LabelledObject(object_id=str(k), box=tuple(map(float, box)), class_name=name)
            for k, (name, box) in enumerate(objects)
        ]
        frames.append((_label(f"f{index}", objects=labelled), _jpeg(image), "image/jpeg"))
    return frames


@pytest.fixture()
def store(tmp_path: Path) -> LocalDatasetStore:
    return LocalDatasetStore(tmp_path / "store")


def test_a_box_is_cut_to_the_frame_or_left_out_when_mostly_outside() -> None:
    assert clipped((-10.0, 5.0, 30.0, 25.0), (100, 50)) == (0.0, 5.0, 30.0, 25.0)
    assert clipped((-30.0, 5.0, 10.0, 25.0), (100, 50)) is None  # a quarter inside
    assert clipped((10.0, 10.0, 10.0, 20.0), (100, 50)) is None  # empty


def test_inspect_parts_become_good_and_defective_boxes() -> None:
    parts = [
        LabelledPart(part_id="a", box=(10.0, 10.0, 40.0, 30.0), defective=True),
        LabelledPart(part_id="b", box=(50.0, 10.0, 90.0, 30.0), defective=False),
        LabelledPart(part_id="c", box=(-80.0, 0.0, 5.0, 20.0), defective=False),  # leaving
    ]
    boxes = boxes_of(_label("f", parts=parts), (100, 50))
    assert [(b.label, b.box) for b in boxes] == [
        ("defective", (10.0, 10.0, 40.0, 30.0)),
        ("good", (50.0, 10.0, 90.0, 30.0)),
    ]


def test_detect_frames_make_a_detection_version_with_their_boxes(engine, store, tmp_path) -> None:
    frames = _detect_frames(6)
    labels = [label for label, _, _ in frames]
    kept = store_labelled_frames(frames + frames[:2], labels, "line-1", "test", engine, store)
    assert kept.created and kept.skipped == []
    dataset = kept.dataset
    assert dataset.task == "detection" and len(dataset.images) == 6  # repeats are one image
    expected = sorted(o.class_name for label in labels for o in label.objects)
    assert sorted(b.label for i in dataset.images for b in i.boxes) == expected
    assert set(dataset.classes) <= set(CLASSES)
    [row] = list_versions(engine, "line-1")
    assert row.format == "labels" and row.image_count == 6 and row.source == "test"
    # exported to COCO and imported back: the same content, the same version
    export_dataset(load_version(engine, store, "line-1")[1], store, "coco", tmp_path / "coco")
    again = import_dataset(tmp_path / "coco", "coco", "line-1", engine, store)
    assert again.version == kept.version and not again.created


def test_classify_frames_make_a_classification_version(engine, store) -> None:
    frames = []
    for index, name in enumerate(CLASSES):
        image, _ = detection_scene(index)
        frames.append((_label(f"c{index}", label=name), _jpeg(image), "image/jpeg"))
    kept = store_labelled_frames(frames, [f[0] for f in frames], "photos", "t", engine, store)
    assert kept.dataset.task == "classification"
    assert sorted(i.label for i in kept.dataset.images) == sorted(CLASSES)
    assert json.loads(store.get_manifest("photos", kept.version))["task"] == "classification"


def test_a_frame_missing_from_the_topic_is_reported_and_skipped_only_when_asked(
    engine, store
) -> None:
    frames = _detect_frames(3)
    labels = [label for label, _, _ in frames]
    with pytest.raises(InvalidDataset) as refused:
        store_labelled_frames(frames[:2], labels, "line-2", "t", engine, store)
    [problem] = refused.value.problems
    assert problem.file == "cam-1/f2.jpg" and "not found on the raw-frames topic" in problem.reason
    assert list_versions(engine, "line-2") == []  # nothing half-made
    kept = store_labelled_frames(
        frames[:2], labels, "line-2", "t", engine, store, skip_invalid=True
    )
    assert len(kept.dataset.images) == 2 and [p.file for p in kept.skipped] == ["cam-1/f2.jpg"]
    [row] = list_versions(engine, "line-2")
    assert row.skipped == [{"file": "cam-1/f2.jpg", "reason": problem.reason}]


def test_a_corrupt_frame_is_refused_with_its_reason(engine, store) -> None:
    frames = _detect_frames(2)
    label, data, kind = frames[1]
    frames[1] = (label, data[: len(data) // 2], kind)
    with pytest.raises(InvalidDataset) as refused:
        store_labelled_frames(frames, [f[0] for f in frames], "line-3", "t", engine, store)
    assert [p.file for p in refused.value.problems] == ["cam-1/f1.jpg"]
    assert "unreadable or truncated" in refused.value.problems[0].reason


def test_classify_and_detect_frames_are_not_one_dataset(engine, store) -> None:
    frames = _detect_frames(1)
    image, _ = detection_scene(3)
    frames.append((_label("c", label="coffee"), _jpeg(image), "image/jpeg"))
    with pytest.raises(MixedTasks, match="choose the cameras of one pipeline"):
        store_labelled_frames(frames, [f[0] for f in frames], "mixed", "t", engine, store)
