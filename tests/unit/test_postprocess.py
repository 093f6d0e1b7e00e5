import numpy as np

from services.postprocess.logic import to_prediction
from tests.factories import frame_meta, model_ref, quality
from visionline.messages import InferenceResult, TensorSpec
from visionline.models.scores import softmax, top_k

LABELS = ["cat", "dog", "cup", "car"]


def result() -> InferenceResult:
    return InferenceResult(
        frame=frame_meta("cam-1", "f-1"),
        quality=quality(),
        model=model_ref("m", "1"),
        batch_size=1,
        tensor=TensorSpec(shape=(4,), dtype="float32"),
    )


def test_softmax_is_stable_and_normalised():
    p = softmax(np.array([1000.0, 1000.0, -1000.0]))
    assert np.allclose(p, [0.5, 0.5, 0.0]) and np.isclose(p.sum(), 1)


def test_top_k_sorted_with_labels():
    ranked = top_k(np.array([0.1, 0.6, 0.05, 0.25]), 3, LABELS)
    assert [r.label for r in ranked] == ["dog", "car", "cat"]
    assert len(top_k(np.array([0.5, 0.5]), 10, ["a", "b"])) == 2


def test_prediction_threshold():
    logits = np.array([4.0, 1.0, 0.0, 0.0], np.float32)
    sure = to_prediction(result(), logits, LABELS, 2, 0.5)
    assert sure.label == "cat" and sure.confidence > 0.5 and len(sure.top_k) == 2
    unsure = to_prediction(result(), np.zeros(4, np.float32), LABELS, 2, 0.5)
    assert unsure.label is None and np.isclose(unsure.confidence, 0.25)
    assert "postprocessed" in sure.stages


def test_label_count_mismatch_is_an_error():
    import pytest

    with pytest.raises(ValueError):
        to_prediction(result(), np.zeros(3, np.float32), LABELS, 2, 0.5)
