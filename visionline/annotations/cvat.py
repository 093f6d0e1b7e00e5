"""CVAT for images 1.1 XML, which supervision does not cover.

Written as ``images/`` (copies of the frames) and ``annotations.xml``. An object with a mask is
written as a CVAT ``<mask>`` (its run lengths over its box, the same encoding as ``RleMask``, so
masks round-trip exactly and the box comes back as the mask's tight box); one without, as a
``<box>``. Reading also accepts ``<polygon>`` shapes, rasterised to a mask. Other shapes
(polylines, points, cuboids, tracks) are skipped: they carry no box to correct.
"""

from __future__ import annotations

import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import cv2
import numpy as np
from defusedxml import ElementTree as SafeET

from visionline.annotations.labels import ImageLabels, LabelObject, LabelSet, mask_to_rle
from visionline.synthetic.truth import RleMask

ANNOTATIONS_FILE = "annotations.xml"


def export_cvat(labels: LabelSet, images_dir: Path, out: Path) -> None:
    (out / "images").mkdir(parents=True, exist_ok=True)
    for image in labels.images:
        shutil.copyfile(images_dir / image.file_name, out / "images" / image.file_name)
    root = ET.Element("annotations")
    ET.SubElement(root, "version").text = "1.1"
    root.append(_meta(labels))
    for image_id, image in enumerate(labels.images):
        root.append(_image_element(image_id, image))
    ET.indent(root)
    ET.ElementTree(root).write(out / ANNOTATIONS_FILE, encoding="utf-8", xml_declaration=True)


def import_cvat(source: Path) -> LabelSet:
    """Labels from ``annotations.xml`` in ``source`` (or ``source`` itself if it is the file)."""
    path = source if source.is_file() else source / ANNOTATIONS_FILE
    root = SafeET.parse(path).getroot()
    images = sorted((_read_image(e) for e in root.iter("image")), key=lambda i: i.file_name)
    declared = [name.text or "" for name in root.findall("./meta//labels/label/name")]
    seen = sorted({o.label for image in images for o in image.objects} - set(declared))
    return LabelSet(classes=declared + seen, images=images)


def _meta(labels: LabelSet) -> ET.Element:
    meta = ET.Element("meta")
    task = ET.SubElement(meta, "task")
    ET.SubElement(task, "name").text = "visionline"
    ET.SubElement(task, "size").text = str(len(labels.images))
    ET.SubElement(task, "mode").text = "annotation"
    label_list = ET.SubElement(task, "labels")
    for name in labels.classes:
        label = ET.SubElement(label_list, "label")
        ET.SubElement(label, "name").text = name
        ET.SubElement(label, "type").text = "any"
        ET.SubElement(label, "attributes")
    return meta


def _image_element(image_id: int, image: ImageLabels) -> ET.Element:
    element = ET.Element(
        "image",
        id=str(image_id),
        name=image.file_name,
        width=str(image.width),
        height=str(image.height),
    )
    for obj in image.objects:
        element.append(_shape(obj))
    return element


def _shape(obj: LabelObject) -> ET.Element:
    common = {"label": obj.label, "source": "manual", "occluded": "0", "z_order": "0"}
    if obj.mask is None:
        xtl, ytl, xbr, ybr = (f"{v:.2f}" for v in obj.box)
        return ET.Element("box", common, xtl=xtl, ytl=ytl, xbr=xbr, ybr=ybr)
    x0, y0, x1, y1 = obj.mask.box
    rle = ", ".join(str(c) for c in obj.mask.counts)
    return ET.Element(
        "mask", common, rle=rle, left=str(x0), top=str(y0), width=str(x1 - x0), height=str(y1 - y0)
    )


def _read_image(element: ET.Element) -> ImageLabels:
    width, height = int(element.get("width", 0)), int(element.get("height", 0))
    objects = [obj for shape in element if (obj := _read_shape(shape, (width, height))) is not None]
    name = Path(element.get("name", "")).name
    return ImageLabels(file_name=name, width=width, height=height, objects=objects)


def _read_shape(shape: ET.Element, size: tuple[int, int]) -> LabelObject | None:
    label = shape.get("label", "")
    if shape.tag == "box":
        box = tuple(float(shape.get(k, 0)) for k in ("xtl", "ytl", "xbr", "ybr"))
        return LabelObject(label=label, box=box)  # type: ignore[arg-type]
    if shape.tag == "mask":
        return _read_mask(shape, label)
    if shape.tag == "polygon":
        return _read_polygon(shape, label, size)
    return None


def _read_mask(shape: ET.Element, label: str) -> LabelObject:
    x0, y0 = int(float(shape.get("left", 0))), int(float(shape.get("top", 0)))
    x1, y1 = x0 + int(float(shape.get("width", 0))), y0 + int(float(shape.get("height", 0)))
    counts = [int(c) for c in shape.get("rle", "").split(",") if c.strip()]
    mask = RleMask(box=(x0, y0, x1, y1), counts=counts)
    return LabelObject(label=label, box=(x0, y0, x1, y1), mask=mask)


def _read_polygon(shape: ET.Element, label: str, size: tuple[int, int]) -> LabelObject | None:
    pairs = [p.split(",") for p in shape.get("points", "").split(";") if p.strip()]
    points = np.array([[float(x), float(y)] for x, y in pairs], np.float64)
    if len(points) < 3:
        return None
    x0, y0 = points.min(0)
    x1, y1 = points.max(0)
    full = np.zeros((size[1], size[0]), np.uint8)
    cv2.fillPoly(full, [np.round(points).astype(np.int32)], 1)
    box = (float(x0), float(y0), float(x1), float(y1))
    return LabelObject(label=label, box=box, mask=mask_to_rle(full.astype(bool)))
