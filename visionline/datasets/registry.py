"""The PostgreSQL record of each dataset version (``dataset_versions``)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from visionline.datasets.entries import Problem
from visionline.datasets.model import Dataset
from visionline.db.models import DatasetVersionRow


class DatasetNotFound(LookupError):
    pass


@dataclass(frozen=True)
class VersionRecord:
    """What an import records besides the dataset itself."""

    name: str
    format: str
    source: str
    created_by: str
    created_at: datetime


def new_row(dataset: Dataset, record: VersionRecord, skipped: list[Problem]) -> DatasetVersionRow:
    summary = dataset.summary()
    return DatasetVersionRow(
        name=record.name,
        version=dataset.version_id(),
        format=record.format,
        task=dataset.task,
        classes=sorted(dataset.classes),
        image_count=summary["images"],
        counts={"per_class": summary["per_class"], "per_split": summary["per_split"]},
        sizes=summary["sizes"],
        skipped=[{"file": p.file, "reason": p.reason} for p in skipped],
        source=record.source[:2000],
        created_by=record.created_by[:100],
        created_at=record.created_at,
    )


def list_versions(engine: Engine, name: str | None = None) -> list[DatasetVersionRow]:
    """Every version (of ``name`` only, when given), by name then newest first."""
    query = select(DatasetVersionRow).order_by(
        DatasetVersionRow.name, DatasetVersionRow.created_at.desc(), DatasetVersionRow.id.desc()
    )
    if name is not None:
        query = query.where(DatasetVersionRow.name == name)
    with Session(engine) as session:
        return list(session.scalars(query))


def find_version(engine: Engine, reference: str) -> DatasetVersionRow:
    """``NAME`` (its newest version) or ``NAME@VERSION`` (the full id or a unique prefix)."""
    name, _, version = reference.partition("@")
    rows = list_versions(engine, name)
    if version:
        rows = [row for row in rows if row.version.startswith(version.lower())]
    if not rows:
        raise DatasetNotFound(f"no dataset version {reference!r}")
    if version and len(rows) > 1:
        raise DatasetNotFound(f"{reference!r} names {len(rows)} versions: give more of the id")
    return rows[0]


def existing_version(session: Session, name: str, version: str) -> DatasetVersionRow | None:
    query = select(DatasetVersionRow).where(
        DatasetVersionRow.name == name, DatasetVersionRow.version == version
    )
    return session.scalars(query).first()
