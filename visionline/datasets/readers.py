"""Read a dataset folder in one of the formats people label in, into entries and problems.

Layouts (each may instead sit once per split under ``train/``, ``val/`` (or ``valid/``) and
``test/``, as Roboflow exports them):

- folders: ``<class>/<image>`` (classification)
- coco: ``images/`` and ``annotations.json`` (or ``_annotations.coco.json`` beside the images)
- yolo: ``images/``, ``labels/<stem>.txt`` and ``data.yaml`` (its ``names``; at the top is fine)
- voc:  ``images/`` and ``annotations/<stem>.xml`` as LabelImg writes them (or beside the images)
- cvat: ``images/`` and ``annotations.xml`` (CVAT for images 1.1)

Readers are lenient: a file they cannot use becomes a ``Problem`` and reading goes on, so that
the report lists everything at once.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import yaml
from defusedxml import ElementTree as SafeET

from visionline.datasets.entries import (
    Entry,
    Parsed,
    Problem,
    escapes,
    is_hidden,
    is_image,
    relative,
)
from visionline.datasets.model import SPLIT_FOLDERS, Box

FORMATS: tuple[str, ...] = ("folders", "coco", "yolo", "voc", "cvat")
DETECTION_FORMATS: tuple[str, ...] = ("coco", "yolo", "voc", "cvat")
COCO_FILES = ("annotations.json", "_annotations.coco.json")
CVAT_FILE = "annotations.xml"
YOLO_NAMES = ("data.yaml", "data.yml")
VOC_CLASSES = "classes.txt"
# Files tools add that carry no labels (Roboflow's READMEs, LabelImg's class list).
IGNORED_NAMES = ("readme", "license")
# What an annotation file of each suffix suggests, for the mixed-formats report.
ANNOTATION_KINDS = {
    ".txt": "YOLO txt",
    ".xml": "XML (VOC or CVAT)",
    ".json": "COCO JSON",
    ".yaml": "YOLO data.yaml",
    ".yml": "YOLO data.yaml",
}


class Layout:
    """One folder in one format: the dataset root, or one of its split folders."""

    def __init__(self, root: Path, folder: Path, split: str, parsed: Parsed) -> None:
        self.root, self.folder, self.split, self.parsed = root, folder, split, parsed
        self.used: set[Path] = set()  # files the reader took as labels or images

    def problem(self, path: Path, reason: str) -> None:
        self.parsed.problems.append(Problem(relative(path, self.root), reason))

    def entry(self, path: Path, **labels) -> Entry:
        self.used.add(path)
        entry = Entry(name=relative(path, self.root), path=path, split=self.split, **labels)
        self.parsed.entries.append(entry)
        return entry

    def images_folder(self) -> Path:
        images = self.folder / "images"
        return images if images.is_dir() else self.folder

    def image_files(self) -> list[Path]:
        folder = self.images_folder()
        return sorted(p for p in folder.iterdir() if p.is_file() and is_image(p))


def read_dataset(fmt: str, root: Path) -> Parsed:
    """Entries and problems of the dataset in ``root``; ValueError for an unknown format."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown dataset format {fmt!r}; choose one of {', '.join(FORMATS)}")
    parsed = Parsed(task="classification" if fmt == "folders" else "detection", classes=[])
    reader = READERS[fmt]
    for split, folder in split_folders(root, parsed):
        layout = Layout(root, folder, split, parsed)
        reader(layout)
        report_stray_files(layout, fmt)
    parsed.classes = sorted(set(parsed.classes))
    return parsed


def split_folders(root: Path, parsed: Parsed) -> list[tuple[str, Path]]:
    """``[(split, folder)]``: the split folders when the root has any, else the root alone.
    With split folders, a file or folder beside them is reported (top-level names files and
    READMEs excepted)."""
    children = sorted(p for p in root.iterdir() if not is_hidden(p))
    splits = [p for p in children if p.is_dir() and p.name.lower() in SPLIT_FOLDERS]
    if not splits:
        return [("", root)]
    for child in children:
        if child in splits or _ignored(child) or child.name in YOLO_NAMES + (VOC_CLASSES,):
            continue
        parsed.problems.append(Problem(child.name, "outside the split folders (train, val, test)"))
    return [(SPLIT_FOLDERS[p.name.lower()], p) for p in splits]


def _ignored(path: Path) -> bool:
    # ``.cache``: the index files YOLO trainers leave beside the labels.
    ignored = path.stem.lower().startswith(IGNORED_NAMES) or path.suffix == ".cache"
    return is_hidden(path) or ignored


def report_stray_files(layout: Layout, fmt: str) -> None:
    """Every file of the layout the reader did not use: an annotation file of another format
    is 'mixed formats', anything else in an images folder 'not an image file'."""
    for path in sorted(layout.folder.rglob("*")):
        if path in layout.used or not path.is_file() or _ignored(path):
            continue
        kind = ANNOTATION_KINDS.get(path.suffix.lower())
        if kind is not None:
            layout.problem(path, f"mixed formats: a {kind} file in a {fmt} dataset")
        elif not is_image(path):
            layout.problem(path, "not an image file")
        else:
            layout.problem(path, f"image not where a {fmt} dataset keeps its images")


# --- folders -------------------------------------------------------------------------------


def read_folders(layout: Layout) -> None:
    for class_folder in sorted(p for p in layout.folder.iterdir() if p.is_dir()):
        if is_hidden(class_folder):
            continue
        layout.parsed.classes.append(class_folder.name)
        for path in sorted(class_folder.iterdir()):
            if path.is_file() and is_image(path) and not is_hidden(path):
                layout.entry(path, label=class_folder.name)


# --- YOLO ----------------------------------------------------------------------------------


def read_yolo(layout: Layout) -> None:
    names = _yolo_names(layout)
    layout.parsed.classes.extend(names)
    labels_folder = layout.folder / "labels"
    stems = set()
    for image in layout.image_files():
        stems.add(image.stem)
        entry = layout.entry(image)
        label_file = labels_folder / f"{image.stem}.txt"
        if label_file.is_file():
            layout.used.add(label_file)
            _read_yolo_lines(label_file, names, entry)
    for label_file in sorted(labels_folder.glob("*.txt")) if labels_folder.is_dir() else []:
        if label_file.stem not in stems and not _ignored(label_file):
            layout.used.add(label_file)
            layout.problem(label_file, "label file for a missing image")


def _yolo_names(layout: Layout) -> list[str]:
    candidates = [f / n for f in (layout.folder, layout.root) for n in YOLO_NAMES]
    found = next((path for path in candidates if path.is_file()), None)
    if found is None:
        layout.problem(layout.folder / YOLO_NAMES[0], "missing: YOLO needs data.yaml's names")
        return []
    layout.used.add(found)
    try:
        names = (yaml.safe_load(found.read_text()) or {}).get("names", [])
    except (yaml.YAMLError, UnicodeDecodeError, AttributeError) as error:
        layout.problem(found, f"unreadable YAML: {error}")
        return []
    if isinstance(names, dict):
        names = [names[k] for k in sorted(names, key=int)]
    return [str(name) for name in names]


def _read_yolo_lines(label_file: Path, names: list[str], entry: Entry) -> None:
    try:
        lines = label_file.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as error:
        entry.problems.append(f"{label_file.name}: unreadable: {error}")
        return
    for number, line in enumerate(lines, 1):
        values = line.split()
        if not values:
            continue
        where = f"{label_file.name} line {number}"
        try:
            class_id, cx, cy, w, h = int(values[0]), *map(float, values[1:])
        except ValueError:
            entry.problems.append(f"{where}: not a YOLO box 'class cx cy w h': {line.strip()!r}")
            continue
        if not 0 <= class_id < len(names):
            entry.problems.append(f"{where}: unknown class id {class_id} ({len(names)} names)")
            continue
        entry.relative_boxes.append((names[class_id], cx, cy, w, h))


# --- Pascal VOC ----------------------------------------------------------------------------


def read_voc(layout: Layout) -> None:
    declared = _voc_classes(layout)
    annotations = layout.folder / "annotations"
    xml_folder = annotations if annotations.is_dir() else layout.images_folder()
    images_folder = layout.images_folder()
    named: set[Path] = set()
    for xml_file in sorted(xml_folder.glob("*.xml")):
        layout.used.add(xml_file)
        named.update(_read_voc_file(layout, xml_file, images_folder, declared))
    for image in layout.image_files():
        if image not in named:
            layout.entry(image)  # no annotation file: an image with nothing to detect


def _voc_classes(layout: Layout) -> list[str]:
    for path in (layout.folder / VOC_CLASSES, layout.root / VOC_CLASSES):
        if path.is_file():
            layout.used.add(path)
            names = [line.strip() for line in path.read_text().splitlines() if line.strip()]
            layout.parsed.classes.extend(names)
            return names
    return []


def _read_voc_file(layout: Layout, xml_file: Path, images: Path, declared: list[str]) -> set:
    try:
        root = SafeET.parse(xml_file).getroot()
    except Exception as error:  # defusedxml raises several kinds for hostile or broken XML
        layout.problem(xml_file, f"unreadable XML: {error}")
        return set()
    if root.tag != "annotation":
        layout.problem(xml_file, f"mixed formats: <{root.tag}> is not a Pascal VOC annotation")
        return set()
    name = (root.findtext("filename") or "").strip()
    if escapes(name):
        layout.problem(xml_file, f"path escapes the dataset folder: {name!r}")
        return set()
    image = images / name
    if not name or not image.is_file() and not image.is_symlink():
        layout.problem(xml_file, f"label file for a missing image ({name or 'no filename'})")
        return set()
    entry = layout.entry(image)
    for obj in root.iter("object"):
        _read_voc_object(obj, entry, declared, layout)
    return {image}


def _read_voc_object(obj, entry: Entry, declared: list[str], layout: Layout) -> None:
    label = (obj.findtext("name") or "").strip()
    if declared and label not in declared:
        entry.problems.append(f"unknown class {label!r} (not in {VOC_CLASSES})")
        return
    try:
        # VOC counts pixels from 1 and its max is inclusive: as supervision reads it.
        xmin, ymin, xmax, ymax = (float(obj.findtext(f"bndbox/{k}")) for k in _VOC_KEYS)
    except (TypeError, ValueError):
        entry.problems.append(f"object {label!r}: bndbox without four numbers")
        return
    layout.parsed.classes.append(label)
    entry.boxes.append(Box(label=label, box=(xmin - 1, ymin - 1, xmax, ymax)))


_VOC_KEYS = ("xmin", "ymin", "xmax", "ymax")


# --- COCO ----------------------------------------------------------------------------------


def read_coco(layout: Layout) -> None:
    found = next((layout.folder / n for n in COCO_FILES if (layout.folder / n).is_file()), None)
    if found is None:
        layout.problem(layout.folder / COCO_FILES[0], "missing: COCO needs its annotations file")
        return
    layout.used.add(found)
    try:
        document = json.loads(found.read_text())
        categories = {c["id"]: str(c["name"]) for c in document.get("categories", [])}
        images = {i["id"]: str(i["file_name"]) for i in document.get("images", [])}
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        layout.problem(found, f"not a COCO annotations file: {error!r}")
        return
    layout.parsed.classes.extend(categories.values())
    entries = _coco_entries(layout, images, found)
    for number, annotation in enumerate(document.get("annotations", [])):
        _read_coco_annotation(layout, found, number, annotation, categories, entries)
    for image in layout.image_files():
        if image not in layout.used:
            layout.used.add(image)
            layout.problem(image, f"image not named in {found.name}")


def _coco_entries(layout: Layout, images: dict, found: Path) -> dict:
    entries = {}
    folder = layout.images_folder()
    for image_id, name in images.items():
        if escapes(name):
            layout.problem(found, f"path escapes the dataset folder: {name!r}")
        elif not (folder / name).is_file() and not (folder / name).is_symlink():
            layout.problem(folder / name, "missing image file")
        else:
            entries[image_id] = layout.entry(folder / name)
    return entries


def _read_coco_annotation(layout, found, number, annotation, categories, entries) -> None:
    where = f"{found.name} annotation {number}"
    entry = entries.get(annotation.get("image_id")) if isinstance(annotation, dict) else None
    if entry is None:
        if isinstance(annotation, dict) and annotation.get("image_id") not in entries:
            return  # its image is missing or escapes: reported with the image
        layout.problem(found, f"{where}: not an annotation object")
        return
    label = categories.get(annotation.get("category_id"))
    if label is None:
        entry.problems.append(f"{where}: unknown class id {annotation.get('category_id')}")
        return
    try:
        x, y, w, h = (float(v) for v in annotation["bbox"])
    except (KeyError, TypeError, ValueError):
        entry.problems.append(f"{where}: bbox is not [x, y, width, height]")
        return
    entry.boxes.append(Box(label=label, box=(x, y, x + w, y + h)))


# --- CVAT ----------------------------------------------------------------------------------


def read_cvat(layout: Layout) -> None:
    found = layout.folder / CVAT_FILE
    if not found.is_file():
        layout.problem(found, "missing: CVAT needs annotations.xml")
        return
    layout.used.add(found)
    try:
        root = SafeET.parse(found).getroot()
    except Exception as error:  # defusedxml raises several kinds for hostile or broken XML
        layout.problem(found, f"unreadable XML: {error}")
        return
    declared = [name.text or "" for name in root.findall("./meta//labels/label/name")]
    layout.parsed.classes.extend(declared)
    for element in root.iter("image"):
        _read_cvat_image(layout, found, element, declared)
    for image in layout.image_files():
        if image not in layout.used:
            layout.used.add(image)
            layout.problem(image, f"image not named in {CVAT_FILE}")


def _read_cvat_image(layout: Layout, found: Path, element, declared: list[str]) -> None:
    from visionline.annotations.cvat import _read_shape

    name = element.get("name", "")
    folder = layout.images_folder()
    if escapes(name):
        layout.problem(found, f"path escapes the dataset folder: {name!r}")
        return
    if not (folder / name).is_file() and not (folder / name).is_symlink():
        layout.problem(folder / name, "missing image file")
        return
    entry = layout.entry(folder / name)
    size = (int(element.get("width", 0)), int(element.get("height", 0)))
    for shape in element:
        obj = _read_shape(shape, size)
        if obj is None:
            continue
        if obj.label not in declared:
            entry.problems.append(f"unknown class {obj.label!r} (not in the task's labels)")
            continue
        entry.boxes.append(Box(label=obj.label, box=obj.box))


READERS: dict[str, Callable[[Layout], None]] = {
    "folders": read_folders,
    "coco": read_coco,
    "yolo": read_yolo,
    "voc": read_voc,
    "cvat": read_cvat,
}
