"""`visionline datasets` on the real stack's PostgreSQL: import, list, show, export, a refused
import that leaves nothing, --skip-invalid's record, and an import that fails half-way."""

from __future__ import annotations

import getpass
import uuid
from pathlib import Path

import pytest
from sqlalchemy import text
from typer.testing import CliRunner

from tests.unit.dataset_photos import CLASSES, classification_folders, detection_coco
from visionline.cli import app
from visionline.datasets.importing import import_dataset
from visionline.datasets.store import LocalDatasetStore


@pytest.fixture()
def run(database_url, tmp_path):
    """The CLI against the stack's database and a dataset store of this test's own."""
    env = {
        "VISIONLINE_DATABASE_URL": database_url,
        "VISIONLINE_DATASETS_STORE_DIR": str(tmp_path / "store"),
        "COLUMNS": "250",
    }

    def invoke(*args: str):
        return CliRunner().invoke(app, ["datasets", *args], env=env)

    return invoke


def _name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _rows(engine, name: str) -> list:
    query = text("SELECT * FROM dataset_versions WHERE name = :n ORDER BY id")
    with engine.connect() as connection:
        return list(connection.execute(query, {"n": name}).mappings())


def _manifests(tmp_path: Path, name: str) -> list[Path]:
    return sorted((tmp_path / "store" / "manifests" / name).glob("*.json"))


def test_import_list_show_export_and_reimport(run, engine, tmp_path) -> None:
    source = classification_folders(tmp_path / "photos")
    name = _name("photos")
    imported = run("import", str(source), "--format", "folders", "--name", name)
    assert imported.exit_code == 0, imported.output
    [row] = _rows(engine, name)
    assert row["task"] == "classification" and row["format"] == "folders"
    assert row["classes"] == sorted(CLASSES) and row["image_count"] == 24
    assert row["counts"]["per_class"] == dict.fromkeys(CLASSES, 6)
    assert row["counts"]["per_split"] == {"train": 16, "val": 8}
    assert row["sizes"]["median"] == [64, 64] and row["skipped"] == []
    assert row["created_by"] == getpass.getuser() and row["created_at"] is not None
    assert [p.stem for p in _manifests(tmp_path, name)] == [row["version"]]
    assert f"imported {name}@{row['version'][:12]}" in imported.output

    again = run("import", str(source), "--format", "folders", "--name", name, "--by", "other")
    assert again.exit_code == 0 and "no new version" in again.output
    assert len(_rows(engine, name)) == 1

    listed = run("list")
    assert listed.exit_code == 0 and name in listed.output and row["version"][:12] in listed.output
    shown = run("show", f"{name}@{row['version'][:10]}")
    assert shown.exit_code == 0, shown.output
    assert row["version"] in shown.output and "train 16, val 8" in shown.output

    out = tmp_path / "exported"
    exported = run("export", name, "--format", "folders", "--out", str(out))
    assert exported.exit_code == 0, exported.output
    assert sorted(p.name for p in (out / "train").iterdir()) == sorted(CLASSES)
    copy = _name("copy")
    reimported = run("import", str(out), "--format", "folders", "--name", copy, "--by", "tester")
    assert reimported.exit_code == 0, reimported.output
    [copied] = _rows(engine, copy)
    assert copied["version"] == row["version"] and copied["created_by"] == "tester"


def test_detection_exports_to_each_format_and_comes_back_the_same(run, engine, tmp_path) -> None:
    name = _name("scenes")
    source = detection_coco(tmp_path / "scenes")
    assert run("import", str(source), "--format", "coco", "--name", name).exit_code == 0
    [row] = _rows(engine, name)
    assert row["task"] == "detection" and sum(row["counts"]["per_class"].values()) == 48
    for fmt in ("yolo", "voc", "cvat"):
        out = tmp_path / fmt
        assert run("export", name, "--format", fmt, "--out", str(out)).exit_code == 0
        back = _name(fmt)
        assert run("import", str(out), "--format", fmt, "--name", back).exit_code == 0
        assert _rows(engine, back)[0]["version"] == row["version"], fmt
    refused = run("export", name, "--format", "folders", "--out", str(tmp_path / "no"))
    assert refused.exit_code == 1 and "not folders" in refused.output
    assert not (tmp_path / "no").exists()


def _damaged(tmp_path: Path) -> Path:
    source = detection_coco(tmp_path / "damaged")
    image = source / "train/images/frame-000.jpg"
    image.write_bytes(image.read_bytes()[:500])
    (source / "train/images/frame-001.jpg").unlink()
    return source


def test_a_refused_import_leaves_no_row_and_no_manifest(run, engine, tmp_path) -> None:
    name = _name("damaged")
    refused = run("import", str(_damaged(tmp_path)), "--format", "coco", "--name", name)
    assert refused.exit_code == 1, refused.output
    assert "train/images/frame-000.jpg" in refused.output
    assert "unreadable or truncated image" in refused.output
    assert "train/images/frame-001.jpg" in refused.output and "missing image file" in refused.output
    assert _rows(engine, name) == [] and _manifests(tmp_path, name) == []


def test_skip_invalid_imports_the_rest_and_records_what_was_skipped(run, engine, tmp_path) -> None:
    name = _name("skipping")
    source = _damaged(tmp_path)
    done = run("import", str(source), "--format", "coco", "--name", name, "--skip-invalid")
    assert done.exit_code == 0, done.output
    [row] = _rows(engine, name)
    assert row["image_count"] == 22
    skipped = {item["file"]: item["reason"] for item in row["skipped"]}
    assert set(skipped) == {"train/images/frame-000.jpg", "train/images/frame-001.jpg"}
    assert skipped["train/images/frame-001.jpg"] == "missing image file"
    assert skipped["train/images/frame-000.jpg"].startswith("unreadable or truncated image")
    shown = run("show", name)
    assert "skipped at import: 2 file(s)" in shown.output and "missing image file" in shown.output


def test_an_import_failing_half_way_leaves_no_row_and_no_manifest(engine, tmp_path) -> None:
    class FailingStore(LocalDatasetStore):
        def put_manifest(self, name: str, version: str, data: bytes) -> None:
            super().put_manifest(name, version, data[: len(data) // 2])
            raise OSError("disk full")

    name = _name("half")
    store = FailingStore(tmp_path / "store")
    source = classification_folders(tmp_path / "photos")
    with pytest.raises(OSError, match="disk full"):
        import_dataset(source, "folders", name, engine, store)
    assert _rows(engine, name) == [] and _manifests(tmp_path, name) == []
    # The blobs written first stay, harmless: the next import reuses them.
    assert len([p for p in (tmp_path / "store" / "blobs").rglob("*") if p.is_file()]) == 24


def test_frames_labelled_in_production_become_a_dataset_version(
    database_url, bootstrap, engine, tmp_path
) -> None:
    """A detect camera's frames on the raw-frames topic and their labels through the labels
    worker come back, by `visionline datasets from-labels`, as a detection version whose boxes
    are the labels'; a label whose frame never reached the topic is reported, and skipped only
    with --skip-invalid."""
    import time

    import cv2

    from tests.unit.dataset_photos import detection_scene
    from visionline.camera.publisher import FramePublisher
    from visionline.kafka import producer
    from visionline.labels import labelled_frames
    from visionline.messages import LabelFeedback, LabelledObject, Topic, to_json

    camera, captured = _name("detect-cam"), time.time() - 60
    frames, labels = FramePublisher(bootstrap), producer(bootstrap)
    objects = []
    for index in range(6):
        image, truth = detection_scene(index)
        frame_id = f"{camera}-{index}"
        if index < 5:  # the last frame's labels arrive, its image never reached the broker
            data = cv2.imencode(".jpg", image)[1].tobytes()
            frames.publish(camera, data, frame_id, captured_at=int((captured + index) * 1000))
        found = [
            LabelledObject(object_id=str(k), box=b, class_name=n) for k, (n, b) in enumerate(truth)
        ]
        objects += [o.class_name for o in found] if index < 5 else []
        label = LabelFeedback(
            label_id=f"l-{frame_id}",
            camera_id=camera,
            frame_id=frame_id,
            captured_at=captured + index,
            source="annotation",
            parts=[],
            objects=found,
        )
        labels.produce(str(Topic.LABELS_FEEDBACK), to_json(label), camera.encode())
    assert frames.flush(30) == 0 and labels.flush(30) == 0
    frames.close()
    deadline = time.monotonic() + 60
    while len(labelled_frames(engine, camera, captured - 1, captured + 10)) < 6:
        assert time.monotonic() < deadline, "the labels worker did not store the labels"
        time.sleep(1)

    env = {
        "VISIONLINE_DATABASE_URL": database_url,
        "VISIONLINE_KAFKA_BOOTSTRAP": bootstrap,
        "VISIONLINE_DATASETS_STORE_DIR": str(tmp_path / "store"),
        "COLUMNS": "250",
    }
    name = _name("from-labels")
    args = ["datasets", "from-labels", "--camera", camera, "--name", name, "--hours", "1"]
    refused = CliRunner().invoke(app, args, env=env)
    assert refused.exit_code == 1, refused.output
    assert "6 labelled frames" in refused.output and "5 found" in refused.output
    assert f"{camera}-5.jpg" in refused.output and "raw-frames topic" in refused.output
    assert _rows(engine, name) == []
    made = CliRunner().invoke(app, [*args, "--skip-invalid"], env=env)
    assert made.exit_code == 0, made.output
    [row] = _rows(engine, name)
    assert row["task"] == "detection" and row["format"] == "labels" and row["image_count"] == 5
    counts = {c: objects.count(c) for c in sorted(set(objects))}
    assert {k: v for k, v in row["counts"]["per_class"].items() if v} == counts
    assert [s["file"] for s in row["skipped"]] == [f"{camera}/{camera}-5.jpg"]
    assert camera in row["source"]
