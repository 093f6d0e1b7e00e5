"""A model's versions in the Triton repository, and which one serves: the one place that lists
``<repository>/<model>/<N>/`` folders and reads the version the config pins.

Triton serves the versions the ``version_policy`` of ``config.pbtxt`` names (``policy``), or
with none named the newest version folder. The registry records the version serving once one
was promoted (``model_versions``), and that record comes first where there is one.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from visionline.model_registry.version_policy import CONFIG, served_versions
from visionline.models.spec import MODEL_FILENAME

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from visionline.db.models import ModelVersionRow


def _numbered(model_dir: Path) -> list[Path]:
    """What is named by a version number in ``model_dir`` (nothing when it is missing)."""
    return [p for p in model_dir.glob("[0-9]*") if p.name.isascii() and p.name.isdigit()]


def version_folders(model_dir: Path, holding: str | None = MODEL_FILENAME) -> list[int]:
    """The version folders of ``model_dir``, ascending: those holding a file ``holding`` (a
    name or a glob, e.g. ``model.*``), or every one when ``holding`` is None."""
    found = [p for p in _numbered(model_dir) if p.is_dir()]
    if holding is not None:
        found = [p for p in found if any(f.is_file() for f in p.glob(holding))]
    return sorted(int(p.name) for p in found)


def newest(model_dir: Path, holding: str | None = MODEL_FILENAME) -> int | None:
    """The highest of ``version_folders``; None when there is none."""
    return max(version_folders(model_dir, holding), default=None)


def next_version(model_dir: Path) -> int:
    """The number a new version gets: one past every number taken in ``model_dir``."""
    return max((int(p.name) for p in _numbered(model_dir)), default=0) + 1


def repository_models(repository: Path) -> list[str]:
    """The models of a Triton repository: folders with a config.pbtxt."""
    if not repository.is_dir():
        return []
    found = [p for p in repository.iterdir() if not p.name.startswith(".")]
    return sorted(p.name for p in found if (p / CONFIG).is_file())


def pinned_versions(model_dir: Path) -> list[int] | None:
    """The versions the config's policy names; None without a config or a ``specific`` policy
    (Triton then serves the newest folder)."""
    config = model_dir / CONFIG
    return served_versions(config.read_text(encoding="utf-8")) if config.is_file() else None


def serving_candidates(model_dir: Path) -> list[int]:
    """What Triton may be serving, highest first: the pinned versions, else every version
    folder (to be asked which is ready)."""
    return sorted(pinned_versions(model_dir) or version_folders(model_dir, None), reverse=True)


def configured_serving(model_dir: Path, runnable: bool = False) -> int | None:
    """The version Triton serves by the files alone: the highest pinned version, else the newest
    folder holding a model. ``runnable``: only a pinned version whose model file is there counts
    (for a process that runs the file itself)."""
    pinned = pinned_versions(model_dir) or []
    if runnable:
        pinned = [v for v in pinned if (model_dir / str(v) / MODEL_FILENAME).is_file()]
    return max(pinned) if pinned else newest(model_dir)


# The database only where the registry's record is read: the in-process model reads the files
# above without loading SQLAlchemy.


def recorded_serving(engine: Engine, model: str) -> ModelVersionRow | None:
    """The registry's serving row of ``model``, read only (no row lock)."""
    from sqlalchemy import select
    from sqlalchemy.orm import Session

    from visionline.db.models import ModelVersionRow
    from visionline.model_registry.store import VersionStatus

    query = select(ModelVersionRow).where(
        ModelVersionRow.model == model, ModelVersionRow.status == VersionStatus.SERVING.value
    )
    with Session(engine) as session:
        return session.scalars(query).one_or_none()


def serving_version(engine: Engine, repository: Path, model: str) -> int | None:
    """The version serving: the registry's serving row (locked: a switch being recorded is
    waited for), else ``configured_serving``."""
    from sqlalchemy.orm import Session

    from visionline.model_registry.store import serving_row

    with Session(engine) as session:
        row = serving_row(session, model)
        if row is not None:
            return row.version
    return configured_serving(repository / model)
