"""Snapshot store (atomic writes, safe keys, pruning) and annotation drawing."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from visionline.inspection.snapshots import (
    GREEN,
    ORANGE,
    RED,
    TEMP_GRACE_S,
    AnnotatedBox,
    SnapshotStore,
    annotate,
    encode_snapshot,
    mask_outlines,
    part_boxes,
)

NOW = 1_800_000_000.0


def age(store: SnapshotStore, ref: str, mtime: float) -> None:
    os.utime(store.path_of(ref), (mtime, mtime))


def all_files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def test_put_get_round_trip(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path / "snaps")
    ref = store.put("line-1/000123-7", b"\xff\xd8jpeg")
    assert ref == "snapshot://line-1/000123-7.jpg"
    assert store.get(ref) == b"\xff\xd8jpeg"
    assert store.path_of(ref) == (tmp_path / "snaps" / "line-1" / "000123-7.jpg").resolve()
    assert store.put("line-1/000123-7", b"newer") == ref  # same key replaces
    assert store.get(ref) == b"newer"


def test_put_leaves_no_temp_files_and_cleans_up_on_failure(tmp_path: Path, monkeypatch) -> None:
    store = SnapshotStore(tmp_path)
    for i in range(5):
        store.put(f"cam/{i}", bytes(100))
    assert all_files(tmp_path) == [f"cam/{i}.jpg" for i in range(5)]

    def broken_replace(src: str, dst: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        store.put("cam/9", b"half")
    assert all_files(tmp_path) == [f"cam/{i}.jpg" for i in range(5)]  # no temp, no partial


@pytest.mark.parametrize(
    "key",
    [
        "../evil",
        "a/../../evil",
        "/etc/passwd",
        "",
        "a//b",
        "a/",
        ".hidden",
        "a/.b",
        "a\\b",
        "a b",
        "line-1/x..y",
        "ü",
        "x" * 600,
        "a.jpg/b",
    ],
)
def test_unsafe_keys_are_rejected(tmp_path: Path, key: str) -> None:
    store = SnapshotStore(tmp_path / "s")
    with pytest.raises(ValueError):
        store.put(key, b"x")
    assert not any((tmp_path / "s").iterdir())


@pytest.mark.parametrize(
    "ref",
    [
        "line-1/1.jpg",
        "file:///etc/passwd",
        "snapshot://../x.jpg",
        "snapshot:///etc/x.jpg",
        "snapshot://a/b.png",
        "snapshot://a/../../b.jpg",
    ],
)
def test_bad_references_are_rejected(tmp_path: Path, ref: str) -> None:
    store = SnapshotStore(tmp_path)
    with pytest.raises(ValueError):
        store.path_of(ref)
    with pytest.raises(ValueError):
        store.get(ref)


def test_symlink_out_of_the_store_is_rejected(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    store = SnapshotStore(tmp_path / "store")
    (tmp_path / "store" / "cam").symlink_to(outside)
    with pytest.raises(ValueError, match="leaves"):
        store.put("cam/1", b"x")
    assert not any(outside.iterdir())


def test_prune_by_age_removes_old_files_and_empty_dirs(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path, max_age_s=3600)
    old = store.put("cam-a/1", b"a" * 10)
    fresh = store.put("cam-b/2", b"b" * 10)
    age(store, old, NOW - 3601)
    age(store, fresh, NOW - 10)
    assert store.prune(now=NOW) == 1
    with pytest.raises(FileNotFoundError):
        store.get(old)
    assert store.get(fresh) == b"b" * 10
    assert not (tmp_path / "cam-a").exists()  # emptied directory removed
    assert tmp_path.exists()  # never the root
    assert store.prune(now=NOW) == 0


def test_prune_by_size_removes_oldest_first(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path, max_bytes=250)
    refs = [store.put(f"cam/{i}", bytes(100)) for i in range(4)]
    for i, ref in enumerate(refs):
        age(store, ref, NOW - 100 + i)  # refs[0] is the oldest
    assert store.prune(now=NOW) == 2
    assert [p.name for p in sorted((tmp_path / "cam").iterdir())] == ["2.jpg", "3.jpg"]


def test_prune_applies_age_then_size(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path, max_age_s=60, max_bytes=100)
    refs = [store.put(f"cam/{i}", bytes(60)) for i in range(3)]
    for ref, mtime in zip(refs, (NOW - 120, NOW - 30, NOW - 20), strict=True):
        age(store, ref, mtime)
    assert store.prune(now=NOW) == 2  # one too old, then one for size
    assert store.get(refs[2]) == bytes(60)


def test_prune_without_limits_keeps_everything_but_stale_temp_files(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path)
    store.put("cam/1", b"x")
    stale = tmp_path / "cam" / ".2.jpg.abc.tmp"
    stale.write_bytes(b"partial")
    os.utime(stale, (NOW - TEMP_GRACE_S - 1,) * 2)
    recent = tmp_path / "cam" / ".3.jpg.def.tmp"
    recent.write_bytes(b"in progress")
    os.utime(recent, (NOW - 1,) * 2)
    assert store.prune(now=NOW) == 0
    assert all_files(tmp_path) == ["cam/.3.jpg.def.tmp", "cam/1.jpg"]


def image() -> np.ndarray:
    return np.full((60, 80, 3), 128, np.uint8)


def test_annotate_draws_the_border_and_leaves_the_input_alone() -> None:
    src = image()
    before = src.copy()
    out = annotate(src, [AnnotatedBox((10, 20, 40, 50), colour=RED, thickness=1)])
    assert np.array_equal(src, before)
    assert out is not src
    assert tuple(out[20, 25]) == RED  # top edge
    assert tuple(out[49, 39]) == RED  # bottom-right corner: the end is exclusive
    assert tuple(out[35, 25]) == (128, 128, 128)  # inside untouched
    assert tuple(out[35, 41]) == (128, 128, 128)  # outside untouched


def test_annotate_label_and_polygon() -> None:
    plain = annotate(image(), [AnnotatedBox((10, 30, 40, 50), thickness=1)])
    labelled = annotate(image(), [AnnotatedBox((10, 30, 40, 50), "crack 0.91", thickness=1)])
    above = (slice(0, 30), slice(0, 80))
    assert np.array_equal(plain[above], image()[above])
    assert not np.array_equal(labelled[above], plain[above])  # label strip above the box
    at_top = annotate(image(), [AnnotatedBox((10, 0, 40, 20), "x", thickness=1)])
    assert not np.array_equal(at_top[1:19, 11:39], image()[1:19, 11:39])  # label moved inside
    square = np.array([[50, 5], [70, 5], [70, 25], [50, 25]])
    out = annotate(image(), [AnnotatedBox((0, 0, 1, 1), polygons=[square], colour=GREEN)])
    assert tuple(out[5, 60]) == GREEN
    assert tuple(out[15, 60]) == (128, 128, 128)


def test_annotate_accepts_grey_and_rejects_float() -> None:
    out = annotate(np.zeros((20, 20), np.uint8), [AnnotatedBox((2, 2, 10, 10), colour=RED)])
    assert out.shape == (20, 20, 3)
    assert tuple(out[2, 5]) == RED
    with pytest.raises(ValueError):
        annotate(np.zeros((20, 20, 3), np.float32), [])


def test_part_boxes_colours_and_labels() -> None:
    ok = part_boxes((0, 0, 10, 10), defective=False, score=0.1)
    assert [(b.colour, b.label) for b in ok] == [(GREEN, "ok 0.10")]
    bad = part_boxes((0, 0, 10, 10), True, 0.93, defects=[("scratch", (1, 1, 4, 4), 0.876)])
    assert [(b.colour, b.label) for b in bad] == [(RED, "defect 0.93"), (ORANGE, "scratch 0.88")]


def test_mask_outlines_in_frame_pixels() -> None:
    mask = np.zeros((10, 10), bool)
    mask[2:5, 3:7] = True
    (poly,) = mask_outlines(mask, x0=100, y0=50)
    assert poly[:, 0].min() == 103 and poly[:, 0].max() == 106
    assert poly[:, 1].min() == 52 and poly[:, 1].max() == 54


def test_encode_snapshot_round_trip_and_store(tmp_path: Path) -> None:
    drawn = annotate(np.full((240, 320, 3), 128, np.uint8), part_boxes((10, 10, 50, 40), True, 0.8))
    jpeg = encode_snapshot(drawn, quality=90)
    assert jpeg[:2] == b"\xff\xd8"
    store = SnapshotStore(tmp_path)
    decoded = cv2.imdecode(np.frombuffer(store.get(store.put("l/1", jpeg)), np.uint8), 1)
    assert decoded.shape == drawn.shape
    assert np.abs(decoded.astype(int) - drawn.astype(int)).mean() < 3  # lossy, but close
    with pytest.raises(ValueError):
        encode_snapshot(drawn, quality=0)


def _frame_jpeg() -> tuple[np.ndarray, bytes]:
    image = np.full((120, 160, 3), 90, np.uint8)
    return image, encode_snapshot(image, 95)


def test_a_frame_stored_as_sent_is_drawn_when_rendered(tmp_path: Path) -> None:
    """The camera's bytes are kept as they came; the boxes are drawn on the way out, as
    ``annotate`` draws them on the decoded frame."""
    image, jpeg = _frame_jpeg()
    store = SnapshotStore(tmp_path)
    boxes = part_boxes((20, 20, 80, 80), True, 0.9, [("scratch", (30, 30, 50, 50), 0.7)])
    boxes.append(
        AnnotatedBox((90, 10, 150, 70), polygons=[np.array([[95, 15], [140, 15], [120, 60]])])
    )
    ref = store.put_frame("cam/7", jpeg, boxes)
    assert store.get(ref) == jpeg  # as sent
    rendered = cv2.imdecode(np.frombuffer(store.render(ref), np.uint8), cv2.IMREAD_COLOR)
    decoded = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    drawn_now = cv2.imdecode(
        np.frombuffer(encode_snapshot(annotate(decoded, boxes)), np.uint8), cv2.IMREAD_COLOR
    )
    np.testing.assert_array_equal(rendered, drawn_now)
    assert not np.array_equal(rendered, decoded)  # the boxes are there
    assert store.render(store.put("cam/8", jpeg)) == jpeg  # stored drawn: served as it is


def test_a_frame_replaced_by_a_drawn_snapshot_and_pruned_leaves_no_boxes(tmp_path: Path) -> None:
    _, jpeg = _frame_jpeg()
    store = SnapshotStore(tmp_path, max_age_s=3600)
    ref = store.put_frame("cam/7", jpeg, part_boxes((10, 10, 50, 50), False))
    assert all_files(tmp_path) == ["cam/7.jpg", "cam/7.jpg.boxes.json"]
    store.put("cam/7", jpeg)  # the same key stored drawn: nothing left to draw on it
    assert all_files(tmp_path) == ["cam/7.jpg"] and store.render(ref) == jpeg
    age(store, ref, NOW - 10)
    old = store.put_frame("cam/9", jpeg, [])
    age(store, old, NOW - 3601)
    assert store.prune(now=NOW) == 1
    assert all_files(tmp_path) == ["cam/7.jpg"]
