"""Export a stored dataset version to one of the formats, into a folder of its own.

A classification dataset exports to ``folders`` only (it has no boxes); a detection dataset to
``coco``, ``yolo``, ``voc`` or ``cvat`` (through ``visionline.annotations``' codecs) and not to
``folders`` (an image holds several classes or none). The export is written to a temporary
folder beside ``out`` and renamed into place: an interrupted export leaves no half folder.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from sqlalchemy import Engine

from visionline.annotations import ImageLabels, LabelObject, LabelSet, export_labels
from visionline.datasets.model import Dataset, DatasetImage
from visionline.datasets.readers import DETECTION_FORMATS, FORMATS, VOC_CLASSES
from visionline.datasets.registry import find_version
from visionline.datasets.store import DatasetStore
from visionline.db.models import DatasetVersionRow


class ImpossibleConversion(ValueError):
    pass


def load_version(
    engine: Engine, store: DatasetStore, reference: str
) -> tuple[DatasetVersionRow, Dataset]:
    row = find_version(engine, reference)
    dataset = Dataset.model_validate_json(store.get_manifest(row.name, row.version))
    return row, dataset


def check_conversion(task: str, fmt: str) -> None:
    if fmt not in FORMATS:
        raise ValueError(f"unknown dataset format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if task == "classification" and fmt != "folders":
        raise ImpossibleConversion(
            f"a classification dataset has no boxes: it exports to folders, not {fmt}"
        )
    if task == "detection" and fmt not in DETECTION_FORMATS:
        raise ImpossibleConversion(
            "a detection dataset has no single class per image: it exports to "
            f"{', '.join(DETECTION_FORMATS)}, not {fmt}"
        )


def export_dataset(dataset: Dataset, store: DatasetStore, fmt: str, out: Path) -> None:
    """Write ``dataset`` as ``fmt`` into ``out`` (which must not exist or be empty)."""
    check_conversion(dataset.task, fmt)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise FileExistsError(f"{out} exists and is not an empty folder: nothing overwritten")
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.partial-"))
    try:
        for split, images in by_split(dataset).items():
            target = partial / split if split else partial
            if fmt == "folders":
                write_folders(images, store, target)
            else:
                write_detection(dataset.classes, images, store, fmt, target)
        if out.exists():
            out.rmdir()
        partial.rename(out)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise


def by_split(dataset: Dataset) -> dict[str, list[DatasetImage]]:
    groups: dict[str, list[DatasetImage]] = {}
    for image in sorted(dataset.images, key=lambda i: (i.split, i.file_name, i.sha256)):
        groups.setdefault(image.split, []).append(image)
    return groups


def unique_names(images: list[DatasetImage]) -> list[str]:
    """Each image's base name, prefixed by its hash where two in one folder share it."""
    seen: set[str] = set()
    names = []
    for image in images:
        name = Path(image.file_name).name
        if name in seen:
            name = f"{image.sha256[:12]}-{name}"
        seen.add(name)
        names.append(name)
    return names


def write_folders(images: list[DatasetImage], store: DatasetStore, target: Path) -> None:
    by_class: dict[str, list[DatasetImage]] = {}
    for image in images:
        by_class.setdefault(image.label or "", []).append(image)
    for label, members in by_class.items():
        folder = target / label
        folder.mkdir(parents=True, exist_ok=True)
        for image, name in zip(members, unique_names(members), strict=True):
            (folder / name).write_bytes(store.get_blob(image.sha256))


def write_detection(
    classes: list[str], images: list[DatasetImage], store: DatasetStore, fmt: str, target: Path
) -> None:
    """The codecs copy images from a folder by file name: the blobs are laid out there first."""
    names = unique_names(images)
    with tempfile.TemporaryDirectory(dir=target.parent) as staging:
        for image, name in zip(images, names, strict=True):
            (Path(staging) / name).write_bytes(store.get_blob(image.sha256))
        labels = LabelSet(classes=sorted(classes), images=[])
        for image, name in zip(images, names, strict=True):
            objects = [LabelObject(label=b.label, box=b.box) for b in image.boxes]
            labels.images.append(
                ImageLabels(file_name=name, width=image.width, height=image.height, objects=objects)
            )
        target.mkdir(parents=True, exist_ok=True)
        export_labels(labels, Path(staging), fmt, target)
    if fmt == "voc":  # VOC has no class list: without it, a class with no box would be lost
        (target / VOC_CLASSES).write_text("".join(f"{c}\n" for c in sorted(classes)))
