"""Which models a camera may use, each answering model's own labels, and what the stack loads."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from services.postprocess.handlers import PostprocessHandlers
from tests.factories import frame_meta, model_ref, quality
from tests.unit.test_service_handlers import event
from visionline.imaging import FrameRejected
from visionline.messages import InferenceResult, Prediction, TensorSpec, from_json, pack_envelope
from visionline.model_registry.version_policy import write_versions
from visionline.models import spec
from visionline.models.classifiers import is_classifier, model_labels, promoted_classifiers
from visionline.settings import PostprocessSettings
from visionline.stack.config import StackSettings
from visionline.stack.triton import served_models
from visionline.training.classifier_serving import config_text

SHIPPED = Path(__file__).resolve().parents[2] / "triton_models"


def _classifier(repo: Path, name: str, version: int, classes: list[str], own: bool) -> None:
    folder = repo / name
    (folder / str(version)).mkdir(parents=True, exist_ok=True)
    (folder / "config.pbtxt").write_text(config_text(name, len(classes)))
    (folder / str(version) / spec.MODEL_FILENAME).write_bytes(b"onnx")
    target = folder / str(version) if own else folder
    (target / spec.LABELS_FILENAME).write_text("\n".join(classes) + "\n")


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    _classifier(tmp_path, "default", 1, ["tench", "goldfish"], own=False)
    _classifier(tmp_path, "mine", 1, ["cat", "dog", "cup"], own=True)
    _classifier(tmp_path, "mine", 2, ["ant", "bee"], own=True)
    shutil.copytree(SHIPPED / "part_anomaly", tmp_path / "part_anomaly", dirs_exist_ok=True)
    return tmp_path


def test_only_folders_with_the_classify_contract_are_classifiers(repo: Path) -> None:
    assert is_classifier(repo, "default") and is_classifier(repo, "mine")
    assert not is_classifier(repo, "part_anomaly")  # takes crops, answers an anomaly map
    assert not is_classifier(repo, "nowhere") and not is_classifier(repo, "../default")
    assert is_classifier(SHIPPED, spec.MODEL_NAME)


def test_each_model_version_answers_with_its_own_labels_read_once(repo: Path) -> None:
    labels = model_labels(repo)
    assert labels("mine", "1") == ["cat", "dog", "cup"]
    assert labels("mine", "2") == ["ant", "bee"]
    assert labels("default", "1") == ["tench", "goldfish"]  # the model folder's labels
    (repo / "mine" / "1" / spec.LABELS_FILENAME).write_text("changed\n")
    assert labels("mine", "1") == ["cat", "dog", "cup"]  # cached
    with pytest.raises(FileNotFoundError):
        labels("gone", "1")
    with pytest.raises(FileNotFoundError):
        labels("..", "1")


def _result(model: str, version: str, logits: list[float]) -> bytes:
    result = InferenceResult(
        frame=frame_meta("cam-1", "f-1"),
        quality=quality(),
        model=model_ref(model, version),
        batch_size=1,
        tensor=TensorSpec(shape=(len(logits),), dtype="float32"),
    )
    return pack_envelope(result, np.asarray(logits, np.float32).tobytes())


def test_postprocess_names_classes_with_the_answering_model_s_labels(repo: Path) -> None:
    handlers = PostprocessHandlers(PostprocessSettings(top_k=2), model_labels(repo))
    mine = event(0, key=b"cam-1")
    mine.message.value = _result("mine", "1", [0.0, 5.0, 1.0])
    _, value = handlers.handle(mine)
    prediction = from_json(value, Prediction)
    assert prediction.model.name == "mine"
    assert [s.label for s in prediction.top_k] == ["dog", "cup"]
    default = event(1, key=b"cam-2")
    default.message.value = _result("default", "1", [3.0, 0.0])
    assert from_json(handlers.handle(default)[1], Prediction).label == "tench"


def test_postprocess_dead_letters_a_model_it_has_no_labels_for(repo: Path) -> None:
    handlers = PostprocessHandlers(PostprocessSettings(), model_labels(repo))
    gone = event(0, key=b"cam-1")
    gone.message.value = _result("gone", "1", [0.0, 1.0])
    with pytest.raises(FrameRejected) as rejected:
        handlers.handle(gone)
    assert rejected.value.error_type == "unknown_model"
    wrong = event(1, key=b"cam-1")
    wrong.message.value = _result("mine", "2", [0.0, 1.0, 2.0])  # 3 logits, 2 labels
    with pytest.raises(FrameRejected) as rejected:
        handlers.handle(wrong)
    assert rejected.value.error_type == "malformed_message"


def test_the_stack_loads_promoted_classifiers_but_not_candidates(repo: Path) -> None:
    settings = StackSettings(model_repository=repo, model_name="default", inspection_models=())
    assert promoted_classifiers(repo) == [] and served_models(settings) == ["default"]
    write_versions(repo / "mine", [2])  # what `visionline models promote` pins
    assert promoted_classifiers(repo) == ["mine"]
    assert served_models(settings) == ["default", "mine"]
