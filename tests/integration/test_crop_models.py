"""part_crops: both crop models on one backbone pass, built from the released weights."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from visionline.inspection.crop_pair import part_crops_stale
from visionline.inspection.vision import DEFECT_DETECTOR, PART_ANOMALY, PART_CROPS
from visionline.model_registry.version_policy import with_versions
from visionline.settings import REPO_ROOT
from visionline.training.serving import OnnxModel

REPOSITORY = REPO_ROOT / "triton_models"
pytestmark = pytest.mark.skipif(
    not (REPOSITORY / PART_ANOMALY / "1" / "learned.npz").is_file(),
    reason="the inspection models are built by `make models` (make test runs it first)",
)


def _copy_model(repository: Path, name: str, version: int, as_version: int | None = None):
    source = REPOSITORY / name
    target = repository / name
    target.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source / "config.pbtxt", target / "config.pbtxt")
    shutil.copytree(source / str(version), target / str(as_version or version))


def _crops() -> np.ndarray:
    """Part crops of a line frame (real parts, not noise), and crops of two photographs
    nobody in the project made (scikit-image's astronaut and coffee)."""
    import cv2
    from skimage import data

    from visionline.inspection.vision import crop_tensors
    from visionline.synthetic.generator import LineGenerator

    bgr, truth = LineGenerator(seed=11, fps=10.0, camera="line-1").frame(5)
    assert truth.parts
    line = crop_tensors(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), [p.box for p in truth.parts])[0]
    photos = [
        crop_tensors(data.astronaut(), [(100, 40, 400, 340)])[0],
        crop_tensors(data.coffee(), [(150, 50, 450, 350)])[0],
    ]
    return np.concatenate([line, *photos])


def test_part_crops_answers_what_the_two_models_answer(tmp_path):
    from visionline.training.crop_models import ensure_part_crops

    for name in (PART_ANOMALY, DEFECT_DETECTOR):
        _copy_model(tmp_path, name, 1)
    version, built = ensure_part_crops(tmp_path)
    assert (version, built) == (1, True)
    assert ensure_part_crops(tmp_path) == (1, False)  # the same pair: nothing to build
    crops = _crops()
    both = OnnxModel(tmp_path / PART_CROPS / "1" / "model.onnx").run(crops)
    for name in (PART_ANOMALY, DEFECT_DETECTOR):
        alone = OnnxModel(tmp_path / name / "1" / "model.onnx").run(crops)
        for output, value in alone.items():
            np.testing.assert_allclose(both[output], value, rtol=0, atol=1e-5)
    assert both["source_versions"].tolist() == [[1, 1]] * len(crops)


def test_a_promotion_of_either_model_gets_a_part_crops_of_the_new_pair(tmp_path):
    from visionline.training.crop_models import ensure_part_crops

    _copy_model(tmp_path, PART_ANOMALY, 1)
    _copy_model(tmp_path, PART_ANOMALY, 1, as_version=2)
    _copy_model(tmp_path, DEFECT_DETECTOR, 1)
    config = tmp_path / PART_ANOMALY / "config.pbtxt"
    config.write_text(with_versions(config.read_text(), [1]))  # version 1 promoted, 2 a candidate
    assert not part_crops_stale(tmp_path)  # none built: not in use here, nothing to rebuild
    assert ensure_part_crops(tmp_path) == (1, True)
    assert not part_crops_stale(tmp_path)
    config.write_text(with_versions(config.read_text(), [2]))  # version 2 promoted
    assert part_crops_stale(tmp_path)  # what the retrain worker checks, and then rebuilds
    assert ensure_part_crops(tmp_path) == (2, True)
    assert not part_crops_stale(tmp_path)
    crops = _crops()[:1]
    both = OnnxModel(tmp_path / PART_CROPS / "2" / "model.onnx").run(crops)
    assert both["source_versions"].tolist() == [[2, 1]]
    config.write_text(with_versions(config.read_text(), [1]))  # rolled back to version 1
    # Triton serves the newest part_crops, built from (2, 1): the older build of (1, 1) is
    # no answer, a new one is.
    assert part_crops_stale(tmp_path)
    assert ensure_part_crops(tmp_path) == (3, True)
    assert not part_crops_stale(tmp_path)
