"""Which pair of crop models ``part_crops`` was built from, and whether that is the pair Triton
serves: torch-free, so a light worker can ask (the retrain worker rebuilds ``part_crops``,
in a child process, when a promotion through the API or the CLI made it stale)."""

from __future__ import annotations

import json
from pathlib import Path

from visionline.inspection.vision import DEFECT_DETECTOR, PART_ANOMALY, PART_CROPS
from visionline.model_registry.versions import configured_serving, version_folders
from visionline.models.spec import METADATA_FILENAME


def served_pair(repository: Path) -> tuple[int, int] | None:
    """The versions of the two models that Triton serves by the repository's files."""
    anomaly = configured_serving(repository / PART_ANOMALY)
    defect = configured_serving(repository / DEFECT_DETECTOR)
    return None if anomaly is None or defect is None else (anomaly, defect)


def built_from(repository: Path, pair: tuple[int, int]) -> int | None:
    """The version of ``part_crops`` built from ``pair``, if one is."""
    model_dir = repository / PART_CROPS
    for version in sorted(version_folders(model_dir), reverse=True):
        meta = json.loads((model_dir / str(version) / METADATA_FILENAME).read_text())
        if (meta["sources"][PART_ANOMALY], meta["sources"][DEFECT_DETECTOR]) == pair:
            return version
    return None


def part_crops_stale(repository: Path) -> bool:
    """``part_crops`` is in use here (it has a version) but none is built from the pair served
    now: until one is, the inspect worker asks the two crop models apart (slower)."""
    if not version_folders(repository / PART_CROPS):
        return False
    pair = served_pair(repository)
    return pair is not None and built_from(repository, pair) is None
