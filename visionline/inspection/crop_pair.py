"""Which pair of crop models ``part_crops`` was built from, and whether that is the pair Triton
serves: torch-free, so a light worker can ask (the retrain worker rebuilds ``part_crops``,
in a child process, when a promotion through the API or the CLI made it stale)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from visionline.inspection.vision import DEFECT_DETECTOR, PART_ANOMALY, PART_CROPS
from visionline.model_registry.versions import configured_serving, version_folders
from visionline.models.spec import LEARNED, METADATA_FILENAME


def served_pair(repository: Path) -> tuple[int, int] | None:
    """The versions of the two models that Triton serves by the repository's files."""
    anomaly = configured_serving(repository / PART_ANOMALY)
    defect = configured_serving(repository / DEFECT_DETECTOR)
    return None if anomaly is None or defect is None else (anomaly, defect)


def weights_digest(version_dir: Path) -> str | None:
    """The sha256 of a crop model version's learned weights; None when it has none. A version
    number alone does not name weights: a release, or ``visionline train --version N``,
    rewrites a version in place."""
    path = version_dir / LEARNED
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None


def source_digests(repository: Path, pair: tuple[int, int]) -> dict[str, str | None]:
    """The digests of the weights of ``pair`` (anomaly, defect versions) as they are now."""
    names = (PART_ANOMALY, DEFECT_DETECTOR)
    return {
        name: weights_digest(repository / name / str(v))
        for name, v in zip(names, pair, strict=True)
    }


def built_from(repository: Path, pair: tuple[int, int]) -> int | None:
    """The version of ``part_crops`` Triton serves (the newest), if it was built from ``pair``
    with the weights those versions hold now; None otherwise (also for a build that predates
    the digests: it is rebuilt once)."""
    model_dir = repository / PART_CROPS
    versions = version_folders(model_dir)
    if not versions:
        return None
    meta = json.loads((model_dir / str(versions[-1]) / METADATA_FILENAME).read_text())
    if (meta["sources"][PART_ANOMALY], meta["sources"][DEFECT_DETECTOR]) != pair:
        return None
    built = meta.get("source_digests")
    return versions[-1] if built == source_digests(repository, pair) else None


def part_crops_stale(repository: Path) -> bool:
    """``part_crops`` is in use here (it has a version) but none is built from the pair served
    now: until one is, the inspect worker asks the two crop models apart (slower)."""
    if not version_folders(repository / PART_CROPS):
        return False
    pair = served_pair(repository)
    return pair is not None and built_from(repository, pair) is None
