"""Import a dataset folder as a new immutable version: read, check, store, record.

Nothing is half-imported: the blobs go into the store first (content-addressed, so a blob an
import left behind on failure is harmless and the next import reuses it), then, in one
PostgreSQL transaction, the row and the manifest; the manifest is removed again when the
transaction does not commit. A version nobody recorded does not exist.
"""

from __future__ import annotations

import getpass
import hashlib
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from visionline.datasets.entries import Problem
from visionline.datasets.model import Dataset
from visionline.datasets.readers import read_dataset
from visionline.datasets.registry import VersionRecord, existing_version, new_row
from visionline.datasets.store import DatasetStore
from visionline.datasets.validate import Checked, check

NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


class InvalidDataset(ValueError):
    """The folder has problems and ``--skip-invalid`` was not given (or nothing was valid)."""

    def __init__(self, problems: list[Problem], summary: str) -> None:
        super().__init__(summary)
        self.problems = problems


@dataclass
class ImportResult:
    name: str
    version: str
    created: bool  # False: the same content was already this dataset's version
    dataset: Dataset
    skipped: list[Problem] = field(default_factory=list)


def check_name(name: str) -> str:
    if not NAME_PATTERN.fullmatch(name):
        raise ValueError(
            f"dataset name {name!r}: letters, digits, '.', '_' and '-', at most 100, "
            "starting with a letter or digit"
        )
    return name


def current_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no login name (a container without a passwd entry)
        return "unknown"


def read_and_check(source: Path, fmt: str) -> Checked:
    if not source.is_dir():
        raise ValueError(f"{source} is not a folder")
    return check(source, read_dataset(fmt, source))


def import_dataset(
    source: Path,
    fmt: str,
    name: str,
    engine: Engine,
    store: DatasetStore,
    *,
    created_by: str | None = None,
    skip_invalid: bool = False,
) -> ImportResult:
    """Import ``source`` as a version of dataset ``name``. InvalidDataset lists every problem
    when there are any and ``skip_invalid`` is false, or when no image is valid."""
    check_name(name)
    checked = read_and_check(source, fmt)
    where = str(source.absolute())
    return keep_checked(checked, name, fmt, where, engine, store, created_by, skip_invalid)


def keep_checked(
    checked: Checked,
    name: str,
    fmt: str,
    source: str,
    engine: Engine,
    store: DatasetStore,
    created_by: str | None,
    skip_invalid: bool,
) -> ImportResult:
    """``checked`` stored as a version of ``name``, unless it has problems and ``skip_invalid``
    is false, or nothing in it is valid (InvalidDataset with every problem)."""
    if checked.problems and not skip_invalid:
        raise InvalidDataset(checked.problems, f"{len(checked.problems)} problem(s) in {source}")
    if not checked.dataset.images:
        raise InvalidDataset(checked.problems, f"no valid image in {source}: nothing to import")
    record = VersionRecord(
        name=name,
        format=fmt,
        source=source,
        created_by=created_by or current_user(),
        created_at=datetime.now(UTC),
    )
    return store_version(checked, record, engine, store)


def store_version(
    checked: Checked, record: VersionRecord, engine: Engine, store: DatasetStore
) -> ImportResult:
    """Blobs first, then the row and the manifest in one transaction (see the module doc)."""
    dataset, version = checked.dataset, checked.dataset.version_id()
    result = ImportResult(record.name, version, False, dataset, checked.problems)
    for sha256, path in checked.files.items():
        store.put_blob(sha256, read_verified(path, sha256))
    manifest_tried = False
    try:
        with Session(engine) as session, session.begin():
            if existing_version(session, record.name, version) is not None:
                return result
            session.add(new_row(dataset, record, checked.problems))
            session.flush()  # a concurrent import of the same version fails here, before
            # Set before the write: a store may fail having written part of it.
            manifest_tried = True
            store.put_manifest(record.name, version, dataset.model_dump_json().encode())
    except BaseException:
        if manifest_tried:
            store.delete_manifest(record.name, version)
        raise
    result.created = True
    return result


def read_verified(path: Path, sha256: str) -> bytes:
    """The file's bytes, refused if they changed since they were checked."""
    data = path.read_bytes()
    if hashlib.sha256(data).hexdigest() != sha256:
        raise InvalidDataset(
            [Problem(str(path), "changed while it was imported")], f"{path} changed during import"
        )
    return data
