"""Where a dataset's files go: blobs by sha256 and one manifest per version.

``DatasetStore`` is the whole interface an import and an export use, so that an object store
(S3, GCS, MinIO) can take the local folder's place: a blob or a manifest is written whole or
not at all, and a blob, once written, never changes (its name is its content's hash).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Protocol


class DatasetStore(Protocol):
    def has_blob(self, sha256: str) -> bool: ...
    def put_blob(self, sha256: str, data: bytes) -> None: ...
    def get_blob(self, sha256: str) -> bytes: ...
    def put_manifest(self, name: str, version: str, data: bytes) -> None: ...
    def get_manifest(self, name: str, version: str) -> bytes: ...
    def has_manifest(self, name: str, version: str) -> bool: ...
    def delete_manifest(self, name: str, version: str) -> None: ...


class LocalDatasetStore:
    """``<root>/blobs/<sha256[:2]>/<sha256>`` and ``<root>/manifests/<name>/<version>.json``."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _blob(self, sha256: str) -> Path:
        if len(sha256) != 64 or not all(c in "0123456789abcdef" for c in sha256):
            raise ValueError(f"not a sha256: {sha256!r}")
        return self.root / "blobs" / sha256[:2] / sha256

    def _manifest(self, name: str, version: str) -> Path:
        return self.root / "manifests" / name / f"{version}.json"

    def has_blob(self, sha256: str) -> bool:
        return self._blob(sha256).is_file()

    def put_blob(self, sha256: str, data: bytes) -> None:
        if not self.has_blob(sha256):
            _write_whole(self._blob(sha256), data)

    def get_blob(self, sha256: str) -> bytes:
        return self._blob(sha256).read_bytes()

    def put_manifest(self, name: str, version: str, data: bytes) -> None:
        _write_whole(self._manifest(name, version), data)

    def get_manifest(self, name: str, version: str) -> bytes:
        return self._manifest(name, version).read_bytes()

    def has_manifest(self, name: str, version: str) -> bool:
        return self._manifest(name, version).is_file()

    def delete_manifest(self, name: str, version: str) -> None:
        self._manifest(name, version).unlink(missing_ok=True)


def _write_whole(path: Path, data: bytes) -> None:
    """Write to a temporary file beside ``path`` and rename: a reader sees all or nothing."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=".partial-")
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
