"""Annotation formats: export then import gives the same labels, and CVAT's own XML reads in."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from visionline.annotations import (
    FORMATS,
    PART_CLASS,
    LabelSet,
    export_dataset,
    from_generated,
    import_labels,
)
from visionline.annotations.cli import app
from visionline.synthetic import LineGenerator
from visionline.synthetic.dataset import write_dataset

SIZE = (320, 180)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("generated")
    write_dataset(LineGenerator(0, SIZE, defect_rate=1.0), out, 8)
    return out


def _objects(labels: LabelSet, name: str) -> list[tuple[str, tuple[float, ...]]]:
    image = next(i for i in labels.images if i.file_name == name)
    return sorted((o.label, o.box) for o in image.objects)


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum()) / max(1, int((a | b).sum()))


def test_generated_labels_have_several_defect_classes(dataset: Path) -> None:
    labels = from_generated(dataset)
    seen = {o.label for image in labels.images for o in image.objects}
    assert len(labels.images) == 8 and len(seen) >= 3 and PART_CLASS not in seen
    assert all(o.mask is not None for image in labels.images for o in image.objects)
    with_parts = from_generated(dataset, include_parts=True)
    assert PART_CLASS in {o.label for image in with_parts.images for o in image.objects}


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_export_then_import_gives_the_same_boxes(dataset: Path, tmp_path: Path, fmt: str) -> None:
    labels = export_dataset(dataset, fmt, tmp_path)
    back = import_labels(fmt, tmp_path)
    assert [i.file_name for i in back.images] == [i.file_name for i in labels.images]
    assert {(i.width, i.height) for i in back.images} == {SIZE}
    seen = {o.label for image in labels.images for o in image.objects}
    assert seen <= set(back.classes)
    for image in labels.images:
        expected, got = _objects(labels, image.file_name), _objects(back, image.file_name)
        assert [label for label, _ in got] == [label for label, _ in expected]
        for (_, want), (_, have) in zip(expected, got, strict=True):
            assert np.allclose(want, have, atol=1.0), (fmt, image.file_name, want, have)


@pytest.mark.parametrize(("fmt", "min_iou"), [("cvat", 1.0), ("coco", 0.5)])
def test_masks_survive_where_the_format_keeps_them(
    dataset: Path, tmp_path: Path, fmt: str, min_iou: float
) -> None:
    labels = export_dataset(dataset, fmt, tmp_path)
    back = import_labels(fmt, tmp_path)
    for image, other in zip(labels.images, back.images, strict=True):
        # Both lists are in the same order: one object per shape, in the order written.
        for want, have in zip(image.objects, other.objects, strict=True):
            assert want.label == have.label
            assert have.mask is not None
            assert _iou(want.mask.paste(SIZE), have.mask.paste(SIZE)) >= min_iou  # type: ignore[union-attr]


CVAT_XML = """<?xml version="1.0" encoding="utf-8"?>
<annotations>
  <version>1.1</version>
  <meta>
    <task>
      <id>7</id><name>line-1 review</name><size>2</size><mode>annotation</mode>
      <labels>
        <label><name>scratch</name><color>#fa3253</color><type>any</type><attributes/></label>
        <label><name>crack</name><color>#33ddff</color><type>any</type><attributes/></label>
      </labels>
    </task>
    <dumped>2024-05-01 10:00:00.000000+00:00</dumped>
  </meta>
  <image id="0" name="frames/000000.jpg" width="320" height="180">
    <box label="scratch" source="manual" occluded="0" xtl="10.50" ytl="20.00" xbr="40.25"
         ybr="30.00" z_order="0"></box>
    <polygon label="crack" source="manual" occluded="0" points="100.0,50.0;120.0,50.0;120.0,70.0"
             z_order="0"></polygon>
    <mask label="crack" source="semi-auto" occluded="0" rle="1, 2, 2, 2, 1" left="5" top="6"
          width="4" height="2" z_order="0"></mask>
    <polyline label="crack" source="manual" occluded="0" points="1,1;5,5" z_order="0"></polyline>
  </image>
  <image id="1" name="000001.jpg" width="320" height="180"></image>
</annotations>
"""


def test_a_cvat_file_as_cvat_writes_it_imports(tmp_path: Path) -> None:
    (tmp_path / "annotations.xml").write_text(CVAT_XML)
    labels = import_labels("cvat", tmp_path)
    assert labels.classes == ["scratch", "crack"]
    assert [i.file_name for i in labels.images] == ["000000.jpg", "000001.jpg"]
    box, polygon, mask = labels.images[0].objects  # the polyline has no box: skipped
    assert (box.label, box.box, box.mask) == ("scratch", (10.5, 20.0, 40.25, 30.0), None)
    assert polygon.label == "crack" and polygon.box == (100.0, 50.0, 120.0, 70.0)
    assert polygon.mask is not None and polygon.mask.decode().sum() > 150
    assert mask.box == (5, 6, 9, 8)
    assert mask.mask is not None
    assert mask.mask.decode().tolist() == [[False, True, True, False], [False, True, True, False]]
    assert labels.images[1].objects == []


def test_an_unknown_format_is_refused_clearly(dataset: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown annotation format 'labelme'.*coco"):
        export_dataset(dataset, "labelme", tmp_path)
    with pytest.raises(ValueError, match="choose one of"):
        import_labels("kitti", tmp_path)
    result = CliRunner().invoke(
        app, ["export", "--dataset", str(dataset), "--format", "kitti", "--out", str(tmp_path)]
    )
    assert result.exit_code != 0
    assert "unknown format 'kitti'" in result.output


def test_cli_generates_exports_and_imports(tmp_path: Path) -> None:
    runner = CliRunner()
    data, out, labels = tmp_path / "data", tmp_path / "voc", tmp_path / "labels.json"
    args = ["generate", "--out", str(data), "--frames", "3", "--seed", "1"]
    assert runner.invoke(app, [*args, "--width", "320", "--height", "180"]).exit_code == 0
    exported = runner.invoke(
        app, ["export", "--dataset", str(data), "--format", "voc", "--out", str(out), "--parts"]
    )
    assert exported.exit_code == 0, exported.output
    imported = runner.invoke(
        app, ["import", "--format", "voc", "--source", str(out), "--out", str(labels)]
    )
    assert imported.exit_code == 0, imported.output
    back = LabelSet.read(labels)
    assert len(back.images) == 3 and PART_CLASS in back.classes
