"""Labels to and from annotation tools: CVAT XML, Pascal VOC (LabelImg), YOLO and COCO.

``from_generated(dataset)`` turns a generated dataset into a neutral ``LabelSet``;
``export_labels`` writes it for a tool, ``import_labels`` reads corrected labels back, and
``export_labels`` then ``import_labels`` gives the same classes and boxes (within 1 px).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path

from visionline.annotations.labels import (
    PART_CLASS,
    ImageLabels,
    LabelObject,
    LabelSet,
    from_generated,
)

Exporter = Callable[[LabelSet, Path, Path], None]
Importer = Callable[[Path], LabelSet]

FORMATS = ("coco", "yolo", "voc", "cvat")

# Which formats keep masks; the others carry boxes only (see their modules for why).
KEEPS_MASKS = {"coco": "approximate (polygons)", "cvat": "exact (CVAT mask RLE)"}


def _codec(fmt: str) -> tuple[Exporter, Importer]:
    if fmt not in FORMATS:
        raise ValueError(f"unknown annotation format {fmt!r}; choose one of {', '.join(FORMATS)}")
    # Imported on use: supervision takes over a second to import, and the CLI loads this module.
    module = "cvat" if fmt == "cvat" else "supervision_formats"
    codecs = importlib.import_module(f"visionline.annotations.{module}")
    return getattr(codecs, f"export_{fmt}"), getattr(codecs, f"import_{fmt}")


def export_labels(labels: LabelSet, images_dir: Path, fmt: str, out: Path) -> None:
    """Write ``labels`` and copies of their images (from ``images_dir``) under ``out``."""
    _codec(fmt)[0](labels, images_dir, out)


def import_labels(fmt: str, source: Path) -> LabelSet:
    """Read labels from a folder laid out as ``export_labels`` writes it for ``fmt``."""
    return _codec(fmt)[1](source)


def export_dataset(dataset: Path, fmt: str, out: Path, include_parts: bool = False) -> LabelSet:
    """Export a ``write_dataset`` folder; returns the labels written."""
    labels = from_generated(dataset, include_parts)
    export_labels(labels, dataset / "frames", fmt, out)
    return labels


__all__ = [
    "FORMATS",
    "KEEPS_MASKS",
    "PART_CLASS",
    "ImageLabels",
    "LabelObject",
    "LabelSet",
    "export_dataset",
    "export_labels",
    "from_generated",
    "import_labels",
]
