"""The exported EfficientNet-Lite0 (make models) classifies real photos correctly.

Needs no running service: it runs the ONNX model Triton serves with ONNX Runtime in-process.
"""

from pathlib import Path

import numpy as np
import pytest
import skimage.data

from visionline.models import spec
from visionline.models.export import CAT_LABELS
from visionline.models.local import LocalModel, load_labels
from visionline.models.preprocessing import resize_center_crop
from visionline.models.scores import softmax

REPOSITORY = Path(__file__).resolve().parents[2] / "triton_models"


@pytest.fixture(scope="module")
def model() -> LocalModel:
    onnx_path = REPOSITORY / spec.MODEL_NAME / "1" / spec.MODEL_FILENAME
    if not onnx_path.is_file():
        # A missing model is a broken build, not an optional extra: fail, never skip.
        pytest.fail(f"{onnx_path} does not exist: run `make models` first", pytrace=False)
    return LocalModel(REPOSITORY, spec.MODEL_NAME, intra_op_threads=2)


@pytest.fixture(scope="module")
def labels(model: LocalModel) -> list[str]:
    return load_labels(REPOSITORY, spec.MODEL_NAME)


def top1(model: LocalModel, labels: list[str], photo: np.ndarray) -> tuple[str, float]:
    probs = softmax(model.infer(resize_center_crop(photo)[None]))[0]
    return labels[int(probs.argmax())], float(probs.max())


def test_model_has_the_served_contract(model: LocalModel, labels: list[str]) -> None:
    assert model.version == 1
    assert (model.input_name, model.output_name) == (spec.INPUT_NAME, spec.OUTPUT_NAME)
    assert model.input_shape == (spec.IMAGE_SIZE, spec.IMAGE_SIZE, 3)
    assert len(labels) == spec.NUM_CLASSES == len(set(labels))
    assert {"tabby", "tiger cat", "Egyptian cat", "espresso"} <= set(labels)


def test_chelsea_is_a_cat(model: LocalModel, labels: list[str]) -> None:
    label, _ = top1(model, labels, skimage.data.chelsea())
    assert label in CAT_LABELS


def test_coffee_is_espresso(model: LocalModel, labels: list[str]) -> None:
    label, prob = top1(model, labels, skimage.data.coffee())
    assert label == "espresso" and prob > 0.5


def test_batches_give_the_same_logits_as_single_images(model: LocalModel) -> None:
    photos = np.stack(
        [resize_center_crop(skimage.data.chelsea()), resize_center_crop(skimage.data.coffee())]
    )
    batched = model.infer(photos)
    singles = np.concatenate([model.infer(photo[None]) for photo in photos])
    assert batched.shape == (2, spec.NUM_CLASSES) and batched.dtype == np.float32
    np.testing.assert_allclose(batched, singles, atol=1e-4)
