"""COCO, YOLO and Pascal VOC through supervision's dataset converters.

Layouts written and read (``images/`` holds copies of the frames):

- coco: ``images/``, ``annotations.json`` (masks as polygons, or RLE when a mask has holes or
  several pieces; supervision decides)
- yolo: ``images/``, ``labels/``, ``data.yaml`` (boxes only)
- voc:  ``images/``, ``annotations/`` one XML per image (boxes only, as LabelImg writes them)

YOLO and VOC carry boxes only: supervision writes a masked object as one polygon per connected
piece, so a defect in two pieces would come back as two objects with other boxes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import supervision as sv

from visionline.annotations.labels import ImageLabels, LabelObject, LabelSet, mask_to_rle


def export_coco(labels: LabelSet, images_dir: Path, out: Path) -> None:
    dataset = _to_supervision(labels, images_dir, with_masks=True)
    dataset.as_coco(str(out / "images"), str(out / "annotations.json"))


def import_coco(source: Path) -> LabelSet:
    dataset = sv.DetectionDataset.from_coco(
        str(source / "images"), str(source / "annotations.json")
    )
    return _from_supervision(dataset)


def export_yolo(labels: LabelSet, images_dir: Path, out: Path) -> None:
    dataset = _to_supervision(labels, images_dir, with_masks=False)
    dataset.as_yolo(str(out / "images"), str(out / "labels"), str(out / "data.yaml"))


def import_yolo(source: Path) -> LabelSet:
    dataset = sv.DetectionDataset.from_yolo(
        str(source / "images"), str(source / "labels"), str(source / "data.yaml")
    )
    return _from_supervision(dataset)


def export_voc(labels: LabelSet, images_dir: Path, out: Path) -> None:
    dataset = _to_supervision(labels, images_dir, with_masks=False)
    dataset.as_pascal_voc(str(out / "images"), str(out / "annotations"))


def import_voc(source: Path) -> LabelSet:
    dataset = sv.DetectionDataset.from_pascal_voc(
        str(source / "images"), str(source / "annotations")
    )
    return _from_supervision(dataset)


def _to_supervision(labels: LabelSet, images_dir: Path, with_masks: bool) -> sv.DetectionDataset:
    index = {name: i for i, name in enumerate(labels.classes)}
    paths, annotations = [], {}
    for image in labels.images:
        path = str(images_dir / image.file_name)
        paths.append(path)
        annotations[path] = _detections(image, index, with_masks)
    return sv.DetectionDataset(classes=labels.classes, images=paths, annotations=annotations)


def _detections(image: ImageLabels, index: dict[str, int], with_masks: bool) -> sv.Detections:
    if not image.objects:
        return sv.Detections.empty()
    size = (image.width, image.height)
    mask = None
    if with_masks and any(o.mask is not None for o in image.objects):
        empty = np.zeros((image.height, image.width), bool)
        mask = np.stack(
            [m if (m := o.full_mask(size)) is not None else empty for o in image.objects]
        )
    return sv.Detections(
        xyxy=np.array([o.box for o in image.objects], np.float32),
        class_id=np.array([index[o.label] for o in image.objects], int),
        mask=mask,
    )


def _from_supervision(dataset: sv.DetectionDataset) -> LabelSet:
    images = []
    for path, frame, detections in dataset:
        height, width = frame.shape[:2]
        objects = [_object(dataset.classes, detections, i) for i in range(len(detections))]
        images.append(
            ImageLabels(file_name=Path(path).name, width=width, height=height, objects=objects)
        )
    images.sort(key=lambda image: image.file_name)
    return LabelSet(classes=list(dataset.classes), images=images)


def _object(classes: list[str], detections: sv.Detections, i: int) -> LabelObject:
    x0, y0, x1, y1 = (round(float(v), 3) for v in detections.xyxy[i])
    mask = None if detections.mask is None else mask_to_rle(detections.mask[i])
    assert detections.class_id is not None  # every format reader sets the classes
    return LabelObject(label=classes[int(detections.class_id[i])], box=(x0, y0, x1, y1), mask=mask)
