"""A model's versions in the Triton repository, and the one serving (registry.versions)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import create_engine
from sqlalchemy.orm import Session

from visionline.db.models import Base, ModelVersionRow
from visionline.model_registry import versions
from visionline.model_registry.version_policy import with_versions


def folder(model_dir: Path, version: str, *files: str) -> None:
    (model_dir / version).mkdir(parents=True, exist_ok=True)
    for name in files:
        (model_dir / version / name).write_bytes(b"x")


def config(model_dir: Path, pinned: list[int] | None = None) -> None:
    model_dir.mkdir(parents=True, exist_ok=True)
    text = 'name: "m"\n'
    (model_dir / "config.pbtxt").write_text(with_versions(text, pinned) if pinned else text)


def test_repository_models_are_folders_with_a_config(tmp_path):
    for name in ("a_model", "b_model", ".hidden", "no_config"):
        (tmp_path / name).mkdir()
    for name in ("a_model", "b_model", ".hidden"):
        (tmp_path / name / "config.pbtxt").write_text("")
    (tmp_path / "file.txt").write_text("")
    assert versions.repository_models(tmp_path) == ["a_model", "b_model"]
    assert versions.repository_models(tmp_path / "missing") == []


def test_version_folders_are_numbered_folders_holding_the_model(tmp_path):
    folder(tmp_path, "1", "model.onnx")
    folder(tmp_path, "2")  # being written
    folder(tmp_path, "10", "model.py")
    folder(tmp_path, "x", "model.onnx")
    (tmp_path / "3").write_text("a file, not a folder")
    assert versions.version_folders(tmp_path) == [1]
    assert versions.version_folders(tmp_path, holding="model.*") == [1, 10]
    assert versions.version_folders(tmp_path, holding=None) == [1, 2, 10]
    assert versions.newest(tmp_path, holding=None) == 10
    assert versions.version_folders(tmp_path / "missing") == []
    assert versions.newest(tmp_path / "missing") is None


def test_the_next_version_is_past_every_number_taken(tmp_path):
    assert versions.next_version(tmp_path / "missing") == 1
    folder(tmp_path, "1")
    folder(tmp_path, "3")
    assert versions.next_version(tmp_path) == 4
    (tmp_path / "7").write_text("")  # a stray file still takes its number
    assert versions.next_version(tmp_path) == 8


def test_the_config_pins_what_serves_else_the_newest_folder(tmp_path):
    model = tmp_path / "m"
    for v in ("1", "2", "3"):
        folder(model, v, "model.onnx")
    assert versions.pinned_versions(model) is None  # no config
    config(model)
    assert versions.pinned_versions(model) is None  # no specific policy
    assert versions.configured_serving(model) == 3
    assert versions.serving_candidates(model) == [3, 2, 1]
    config(model, [1, 2])
    assert versions.pinned_versions(model) == [1, 2]
    assert versions.configured_serving(model) == 2
    assert versions.serving_candidates(model) == [2, 1]


def test_a_runnable_pick_skips_a_pinned_version_without_its_model(tmp_path):
    model = tmp_path / "m"
    folder(model, "1", "model.onnx")
    folder(model, "2", "model.onnx")
    folder(model, "5")
    config(model, [5])
    assert versions.configured_serving(model) == 5  # what Triton is told to serve
    assert versions.configured_serving(model, runnable=True) == 2  # what can be run here
    assert versions.configured_serving(tmp_path / "missing") is None


def row(version: int, status: str) -> ModelVersionRow:
    now = datetime.now(UTC)
    return ModelVersionRow(model="m", version=version, status=status, metrics={}, updated_at=now)


def test_the_registry_record_comes_before_the_files(tmp_path):
    engine = create_engine(f"sqlite:///{tmp_path / 'registry.db'}")
    Base.metadata.create_all(engine, tables=[ModelVersionRow.__table__])
    model = tmp_path / "m"
    folder(model, "1", "model.onnx")
    folder(model, "2", "model.onnx")
    config(model)
    assert versions.recorded_serving(engine, "m") is None
    assert versions.serving_version(engine, tmp_path, "m") == 2
    with Session(engine) as session, session.begin():
        session.add_all([row(1, "serving"), row(2, "retired")])
    assert versions.recorded_serving(engine, "m").version == 1
    assert versions.serving_version(engine, tmp_path, "m") == 1
    engine.dispose()
