"""Datasets (issue 17): every format round-trips to the same labels and version id, each kind
of bad input is reported with its file and reason, and versions are content-addressed. Built
on scikit-image's photographs (tests/unit/dataset_photos.py)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.unit.dataset_photos import CLASSES, classification_folders, detection_coco
from visionline.datasets.cli import app
from visionline.datasets.exporting import ImpossibleConversion, export_dataset
from visionline.datasets.importing import read_and_check
from visionline.datasets.model import Dataset
from visionline.datasets.readers import DETECTION_FORMATS, read_dataset
from visionline.datasets.store import LocalDatasetStore
from visionline.datasets.validate import Checked


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("sources")
    return {
        "classification": classification_folders(root / "classification"),
        "detection": detection_coco(root / "detection"),
    }


@pytest.fixture(scope="module")
def stored(sources, tmp_path_factory) -> tuple[LocalDatasetStore, dict[str, Checked]]:
    """Both datasets checked and their files in a store, as an import leaves them."""
    store = LocalDatasetStore(tmp_path_factory.mktemp("store"))
    checked = {
        "classification": read_and_check(sources["classification"], "folders"),
        "detection": read_and_check(sources["detection"], "coco"),
    }
    for result in checked.values():
        for sha256, path in result.files.items():
            store.put_blob(sha256, path.read_bytes())
    return store, checked


@pytest.fixture(scope="module")
def yolo_source(stored, tmp_path_factory) -> Path:
    """The detection dataset as YOLO, to damage in the bad-input cases."""
    store, checked = stored
    out = tmp_path_factory.mktemp("yolo") / "dataset"
    export_dataset(checked["detection"].dataset, store, "yolo", out)
    return out


def _labels(dataset: Dataset) -> dict[str, tuple]:
    return {
        i.sha256: (i.split, i.label, sorted(b.model_dump().items() for b in i.boxes))
        for i in dataset.images
    }


def test_the_photo_datasets_read_clean_with_their_classes_splits_and_sizes(stored) -> None:
    _, checked = stored
    classification, detection = checked["classification"], checked["detection"]
    assert classification.problems == [] and detection.problems == []
    summary = classification.dataset.summary()
    assert classification.dataset.task == "classification"
    assert summary["per_class"] == dict.fromkeys(CLASSES, 6)
    assert summary["per_split"] == {"train": 16, "val": 8}
    assert summary["sizes"] == {"min": [64, 64], "median": [64, 64], "max": [64, 64]}
    assert detection.dataset.task == "detection" and detection.dataset.classes == list(CLASSES)
    assert detection.dataset.summary()["per_split"] == {"train": 18, "val": 6}
    assert sum(len(i.boxes) for i in detection.dataset.images) == 48


@pytest.mark.parametrize(
    ("task", "fmt"), [("classification", "folders")] + [("detection", f) for f in DETECTION_FORMATS]
)
def test_export_then_import_gives_the_same_labels_and_version(
    stored, tmp_path: Path, task: str, fmt: str
) -> None:
    store, checked = stored
    original = checked[task].dataset
    export_dataset(original, store, fmt, tmp_path / "out")
    back = read_and_check(tmp_path / "out", fmt)
    assert back.problems == []
    assert _labels(back.dataset) == _labels(original)
    assert back.dataset.classes == original.classes
    assert back.dataset.version_id() == original.version_id()


def test_same_content_same_version_whatever_the_names_and_order(stored, sources, tmp_path) -> None:
    _, checked = stored
    copy = tmp_path / "renamed"
    shutil.copytree(sources["classification"], copy)
    for path in sorted(copy.rglob("*.jpg")):
        path.rename(path.with_name(f"renamed-{path.name}"))
    again = read_and_check(copy, "folders").dataset
    assert again.version_id() == checked["classification"].dataset.version_id()
    again.images.reverse()
    assert again.version_id() == checked["classification"].dataset.version_id()


def test_a_changed_label_or_box_is_a_new_version(stored, sources, tmp_path) -> None:
    _, checked = stored
    copy = tmp_path / "relabelled"
    shutil.copytree(sources["classification"], copy)
    shutil.move(copy / "train/coffee/coffee-1.jpg", copy / "train/rocket/coffee-1.jpg")
    relabelled = read_and_check(copy, "folders").dataset
    assert relabelled.version_id() != checked["classification"].dataset.version_id()
    moved = checked["detection"].dataset.model_copy(deep=True)
    box = moved.images[0].boxes[0]
    moved.images[0].boxes[0] = box.model_copy(update={"box": (box.box[0] + 1, *box.box[1:])})
    assert moved.version_id() != checked["detection"].dataset.version_id()


def test_roboflow_layouts_read_the_same(stored, yolo_source, sources, tmp_path) -> None:
    """Roboflow writes ``valid/`` for the validation split, YOLO's data.yaml once at the top
    and COCO's ``_annotations.coco.json`` beside the images."""
    _, checked = stored
    version = checked["detection"].dataset.version_id()
    yolo = _copy(yolo_source, tmp_path / "yolo")
    (yolo / "val").rename(yolo / "valid")
    (yolo / "train/data.yaml").rename(yolo / "data.yaml")
    (yolo / "valid/data.yaml").unlink()
    (yolo / "README.roboflow.txt").write_text("exported by hand")
    coco = _copy(sources["detection"], tmp_path / "coco")
    for split in ("train", "val"):
        for image in (coco / split / "images").iterdir():
            image.rename(coco / split / image.name)
        (coco / split / "images").rmdir()
        (coco / split / "annotations.json").rename(coco / split / "_annotations.coco.json")
    for root, fmt in ((yolo, "yolo"), (coco, "coco")):
        result = read_and_check(root, fmt)
        assert result.problems == [] and result.dataset.version_id() == version, fmt


def test_impossible_conversions_are_refused(stored, tmp_path: Path) -> None:
    store, checked = stored
    with pytest.raises(ImpossibleConversion, match="exports to folders, not coco"):
        export_dataset(checked["classification"].dataset, store, "coco", tmp_path / "a")
    with pytest.raises(ImpossibleConversion, match="not folders"):
        export_dataset(checked["detection"].dataset, store, "folders", tmp_path / "b")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError):
        export_dataset(checked["classification"].dataset, store, "folders", tmp_path / "full")
    assert (tmp_path / "full" / "keep.txt").read_text() == "mine"
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


# --- bad input: each case gives its file and reason -----------------------------------------


def _truncate(root: Path) -> str:
    path = root / "train/images/frame-000.jpg"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return "train/images/frame-000.jpg"


def _garbage(root: Path) -> str:
    (root / "train/images/frame-001.jpg").write_bytes(b"not an image at all")
    return "train/images/frame-001.jpg"


def _coco_edit(root: Path, edit) -> None:
    path = root / "train/annotations.json"
    document = json.loads(path.read_text())
    edit(document)
    path.write_text(json.dumps(document))


def _missing_image(root: Path) -> str:
    (root / "train/images/frame-002.jpg").unlink()
    return "train/images/frame-002.jpg"


def _box_outside(root: Path) -> str:
    _coco_edit(root, lambda d: d["annotations"][0].update(bbox=[150, 10, 40, 20]))
    return "train/images/frame-000.jpg"


def _empty_box(root: Path) -> str:
    _coco_edit(root, lambda d: d["annotations"][0].update(bbox=[20, 10, 0, 20]))
    return "train/images/frame-000.jpg"


def _unknown_category(root: Path) -> str:
    _coco_edit(root, lambda d: d["annotations"][0].update(category_id=99))
    return "train/images/frame-000.jpg"


def _escaping_name(root: Path) -> str:
    _coco_edit(root, lambda d: d["images"][0].update(file_name="../../outside.jpg"))
    return "train/annotations.json"


def _absolute_name(root: Path) -> str:
    _coco_edit(root, lambda d: d["images"][0].update(file_name="/etc/passwd"))
    return "train/annotations.json"


def _symlink_out(root: Path) -> str:
    target = root.parent / "elsewhere.jpg"
    shutil.copyfile(root / "train/images/frame-000.jpg", target)
    (root / "train/images/frame-000.jpg").unlink()
    os.symlink(target, root / "train/images/frame-000.jpg")
    return "train/images/frame-000.jpg"


COCO_CASES = {
    "truncated image": (_truncate, "unreadable or truncated image"),
    "unreadable image": (_garbage, "unreadable or truncated image"),
    "missing image file": (_missing_image, "missing image file"),
    "box outside the image": (_box_outside, "box outside the image (160x120)"),
    "empty box": (_empty_box, "empty box"),
    "unknown class id": (_unknown_category, "unknown class id 99"),
    "path with ..": (_escaping_name, "path escapes the dataset folder: '../../outside.jpg'"),
    "absolute path": (_absolute_name, "path escapes the dataset folder: '/etc/passwd'"),
    "symlink out": (_symlink_out, "path escapes the dataset folder (it leads to"),
}


def _copy(source: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "dataset"
    shutil.copytree(source, copy)
    return copy


def _reasons(checked: Checked, file: str) -> list[str]:
    return [p.reason for p in checked.problems if p.file == file]


@pytest.mark.parametrize("case", sorted(COCO_CASES))
def test_bad_coco_input_is_reported_with_file_and_reason(sources, tmp_path, case) -> None:
    root = _copy(sources["detection"], tmp_path)
    damage, reason = COCO_CASES[case]
    file = damage(root)
    checked = read_and_check(root, "coco")
    assert any(reason in r for r in _reasons(checked, file)), checked.problems
    # That image alone is refused (an annotation that no longer names its image leaves it
    # unnamed, which is reported too); the other 23 are taken.
    assert {p.file for p in checked.problems} <= {file, "train/images/frame-000.jpg"}
    assert len(checked.dataset.images) == 23


def test_yolo_unknown_class_id_and_label_without_image(yolo_source, tmp_path) -> None:
    root = _copy(yolo_source, tmp_path)
    (root / "train/labels/frame-000.txt").write_text("9 0.5 0.5 0.2 0.2\n")
    (root / "train/labels/ghost.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    checked = read_and_check(root, "yolo")
    assert _reasons(checked, "train/images/frame-000.jpg") == [
        "frame-000.txt line 1: unknown class id 9 (4 names)"
    ]
    assert _reasons(checked, "train/labels/ghost.txt") == ["label file for a missing image"]


def test_yolo_with_voc_xml_beside_it_is_mixed_formats(yolo_source, tmp_path) -> None:
    root = _copy(yolo_source, tmp_path)
    (root / "train/labels/frame-000.xml").write_text("<annotation/>")
    checked = read_and_check(root, "yolo")
    assert _reasons(checked, "train/labels/frame-000.xml") == [
        "mixed formats: a XML (VOC or CVAT) file in a yolo dataset"
    ]


def test_voc_label_file_for_a_missing_image(stored, tmp_path) -> None:
    store, checked = stored
    root = tmp_path / "voc"
    export_dataset(checked["detection"].dataset, store, "voc", root)
    (root / "train/images/frame-000.jpg").unlink()
    result = read_and_check(root, "voc")
    assert _reasons(result, "train/annotations/frame-000.xml") == [
        "label file for a missing image (frame-000.jpg)"
    ]


def test_cvat_unknown_label_and_missing_image(stored, tmp_path) -> None:
    store, checked = stored
    root = tmp_path / "cvat"
    export_dataset(checked["detection"].dataset, store, "cvat", root)
    xml = root / "train/annotations.xml"
    xml.write_text(xml.read_text().replace('<box label="astronaut"', '<box label="dog"', 1))
    (root / "train/images/frame-005.jpg").unlink()
    result = read_and_check(root, "cvat")
    assert _reasons(result, "train/images/frame-005.jpg") == ["missing image file"]
    [unknown] = [p for p in result.problems if "dog" in p.reason]
    assert unknown.reason == "unknown class 'dog' (not in the task's labels)"
    assert len(result.dataset.images) == 22


def test_voc_xml_that_is_not_voc_is_mixed_formats(stored, tmp_path) -> None:
    store, checked = stored
    root = tmp_path / "voc"
    export_dataset(checked["detection"].dataset, store, "voc", root)
    (root / "val/annotations/cvat.xml").write_text(
        "<annotations><version>1.1</version></annotations>"
    )
    result = read_and_check(root, "voc")
    assert _reasons(result, "val/annotations/cvat.xml") == [
        "mixed formats: <annotations> is not a Pascal VOC annotation"
    ]


def test_duplicate_images_are_reported_once_each(sources, tmp_path) -> None:
    root = _copy(sources["classification"], tmp_path)
    shutil.copyfile(root / "train/coffee/coffee-1.jpg", root / "val/rocket/again.jpg")
    checked = read_and_check(root, "folders")
    assert _reasons(checked, "val/rocket/again.jpg") == [
        "duplicate image: same content as train/coffee/coffee-1.jpg"
    ]
    assert len(checked.dataset.images) == 24


def test_folders_refuse_stray_files_and_annotation_files(sources, tmp_path) -> None:
    root = _copy(sources["classification"], tmp_path)
    (root / "train/coffee/labels.json").write_text("{}")
    (root / "notes.docx").write_bytes(b"x")
    checked = read_and_check(root, "folders")
    assert _reasons(checked, "train/coffee/labels.json") == [
        "mixed formats: a COCO JSON file in a folders dataset"
    ]
    assert _reasons(checked, "notes.docx") == ["outside the split folders (train, val, test)"]


def test_every_problem_is_reported_at_once(sources, tmp_path) -> None:
    root = _copy(sources["detection"], tmp_path)
    files = {_truncate(root), _missing_image(root), _unknown_category(root)}
    checked = read_and_check(root, "coco")
    assert {p.file for p in checked.problems} == files | {"train/images/frame-000.jpg"}


def test_unknown_format_is_refused(sources) -> None:
    with pytest.raises(ValueError, match="unknown dataset format 'labelme'"):
        read_dataset("labelme", sources["detection"])


# --- store and command line ----------------------------------------------------------------


def test_the_store_keeps_blobs_by_hash_and_refuses_other_names(tmp_path: Path) -> None:
    store = LocalDatasetStore(tmp_path)
    sha = "ab" * 32
    store.put_blob(sha, b"bytes")
    assert store.has_blob(sha) and store.get_blob(sha) == b"bytes"
    with pytest.raises(ValueError, match="not a sha256"):
        store.put_blob("../../etc/passwd", b"x")
    store.put_manifest("cats", "v1", b"{}")
    assert store.has_manifest("cats", "v1")
    store.delete_manifest("cats", "v1")
    assert not store.has_manifest("cats", "v1")
    assert not list(tmp_path.rglob(".partial-*"))


def test_import_of_a_bad_folder_refuses_with_the_report_and_stores_nothing(
    sources, tmp_path, monkeypatch
) -> None:
    root = _copy(sources["detection"], tmp_path)
    _truncate(root)
    store = tmp_path / "store"
    monkeypatch.setenv("VISIONLINE_DATASETS_STORE_DIR", str(store))
    # No database is reached: the checks refuse before anything is stored or recorded.
    monkeypatch.setenv("VISIONLINE_DATABASE_URL", "postgresql+psycopg2://nobody@127.0.0.1:9/none")
    result = CliRunner().invoke(
        app, ["import", str(root), "--format", "coco", "--name", "photos"], terminal_width=200
    )
    assert result.exit_code == 1, result.output
    assert "train/images/frame-000.jpg" in result.output
    assert "unreadable or truncated image" in result.output
    assert "--skip-invalid" in result.output
    assert not store.exists()


def test_import_refuses_a_bad_name_and_an_unknown_format(sources, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("VISIONLINE_DATASETS_STORE_DIR", str(tmp_path / "store"))
    runner = CliRunner()
    path = str(sources["detection"])
    bad_name = runner.invoke(app, ["import", path, "--format", "coco", "--name", "../x"])
    assert bad_name.exit_code == 2 and "dataset name '../x'" in bad_name.output
    bad_format = runner.invoke(app, ["import", path, "--format", "labelme", "--name", "x"])
    assert bad_format.exit_code == 2 and "unknown format 'labelme'" in bad_format.output


def test_frames_labelled_in_production_come_back_as_a_dataset(tmp_path: Path) -> None:
    """The samples the inspect worker keeps go to CVAT (`visionline annotations export --samples
    --format cvat`, the same codec as here) and come back corrected in that layout: they import
    as a detection dataset as they are, masks giving their boxes."""
    from visionline.annotations import export_dataset as export_annotations
    from visionline.synthetic import LineGenerator
    from visionline.synthetic.dataset import write_dataset

    generated = tmp_path / "generated"
    write_dataset(LineGenerator(0, (320, 180), defect_rate=1.0), generated, 4)
    labels = export_annotations(generated, "cvat", tmp_path / "cvat", include_parts=True)
    checked = read_and_check(tmp_path / "cvat", "cvat")
    assert checked.problems == []
    assert checked.dataset.task == "detection" and len(checked.dataset.images) == 4
    objects = sorted(o.label for image in labels.images for o in image.objects)
    assert sorted(b.label for i in checked.dataset.images for b in i.boxes) == objects
