"""visionline.models without the real export: label logic, LocalModel and Triton's model.py
on a tiny ONNX model built here, and the Triton config parsed with Triton's own schema."""

import importlib.util
import json
import os
import sys
import types
from pathlib import Path

import numpy as np
import onnx
import pytest
from google.protobuf import text_format
from onnx import TensorProto, helper
from tritonclient.grpc import model_config_pb2

from visionline.models import spec
from visionline.models.export import (
    LABEL_OVERRIDES,
    copy_serving_files,
    first_lemma,
    imagenet_class_names,
    is_fresh,
    parse_synset_lemmas,
)
from visionline.models.local import LocalModel, load_labels
from visionline.models.preprocessing import resize_center_crop

ROOT = Path(__file__).resolve().parents[2]
TRITON_MODEL = ROOT / "triton_models" / spec.MODEL_NAME
TINY = (4, 4, 3)  # the tiny model's image dims (H, W, C)


def tiny_onnx(path: Path, scale: float = 1.0) -> Path:
    """uint8 NHWC [N, 4, 4, 3] -> float32 [N, 3]: per-channel pixel sums times `scale`."""
    nodes = [
        helper.make_node("Cast", ["image"], ["x"], to=TensorProto.FLOAT),
        helper.make_node("ReduceSum", ["x", "axes"], ["sums"], keepdims=0),
        helper.make_node("Mul", ["sums", "scale"], ["logits"]),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("image", TensorProto.UINT8, ["batch", *TINY])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 3])],
        initializer=[
            helper.make_tensor("axes", TensorProto.INT64, [2], [1, 2]),
            helper.make_tensor("scale", TensorProto.FLOAT, [], [scale]),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8  # readable by any onnxruntime of the last years
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, path)
    return path


def images(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, *TINY), dtype=np.uint8)


def expected(batch: np.ndarray, scale: float = 1.0) -> np.ndarray:
    return batch.astype(np.float32).sum(axis=(1, 2)) * scale


# --- labels -----------------------------------------------------------------------------


def test_first_lemma_keeps_the_first_name() -> None:
    assert first_lemma("tabby, tabby cat") == "tabby"
    assert first_lemma("tiger cat") == "tiger cat"
    assert first_lemma(" espresso ,  caffe") == "espresso"


def test_parse_synset_lemmas_splits_on_the_first_tab_only() -> None:
    text = "n02123045\ttabby, tabby cat\nn07920052\tespresso\n\n"
    assert parse_synset_lemmas(text) == {"n02123045": "tabby, tabby cat", "n07920052": "espresso"}


def test_class_names_follow_synset_order_and_are_unique() -> None:
    lemmas = {
        "n1": "tabby, tabby cat",
        "n02012849": "crane",
        "n03126707": "crane",
        "n2": "jay",
        "n3": "jay, bird",
    }
    names = imagenet_class_names(["n2", "n1", "n02012849", "n03126707", "n3"], lemmas)
    assert names[1:4] == ["tabby", LABEL_OVERRIDES["n02012849"], LABEL_OVERRIDES["n03126707"]]
    # A collision the overrides do not cover still ends up unique.
    assert names[0] == "jay (n2)" and names[4] == "jay (n3)"
    assert len(set(names)) == len(names)


def test_load_labels_reads_one_name_per_line(tmp_path: Path) -> None:
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "labels.txt").write_text("tabby\ntiger cat\nEgyptian cat\n")
    assert load_labels(tmp_path, "m") == ["tabby", "tiger cat", "Egyptian cat"]
    with pytest.raises(FileNotFoundError, match="make models"):
        load_labels(tmp_path, "missing")


def test_is_fresh_compares_mtimes(tmp_path: Path) -> None:
    source, out = tmp_path / "in", tmp_path / "out"
    source.write_text("x")
    assert not is_fresh([out], [source])
    out.write_text("y")
    os.utime(source, (1_000, 1_000))
    os.utime(out, (2_000, 2_000))
    assert is_fresh([out], [source])
    os.utime(source, (3_000, 3_000))
    assert not is_fresh([out], [source])


# --- LocalModel -------------------------------------------------------------------------


@pytest.fixture
def repository(tmp_path: Path) -> Path:
    tiny_onnx(tmp_path / "tiny" / "2" / "model.onnx", scale=2.0)
    tiny_onnx(tmp_path / "tiny" / "10" / "model.onnx", scale=10.0)
    (tmp_path / "tiny" / "11").mkdir()  # a version folder without a model: ignored
    (tmp_path / "tiny" / "old").mkdir()
    return tmp_path


def test_local_model_picks_the_highest_numbered_version(repository: Path) -> None:
    model = LocalModel(repository, "tiny")
    assert (model.name, model.version) == ("tiny", 10)  # numeric, not "2" > "10"
    batch = images(5)
    logits = model.infer(batch)
    assert logits.dtype == np.float32 and logits.shape == (5, 3)
    np.testing.assert_allclose(logits, expected(batch, 10.0), rtol=1e-6)


def test_local_model_loads_a_given_version(repository: Path) -> None:
    model = LocalModel(repository, "tiny", version=2, intra_op_threads=2)
    assert model.version == 2
    np.testing.assert_allclose(model.infer(images(1)), expected(images(1), 2.0), rtol=1e-6)


def test_local_model_rejects_bad_input(repository: Path) -> None:
    model = LocalModel(repository, "tiny")
    assert model.input_shape == TINY
    with pytest.raises(TypeError):
        model.infer(images(1).astype(np.float32))
    with pytest.raises(ValueError):
        model.infer(np.zeros((1, 4, 4, 4), np.uint8))
    with pytest.raises(ValueError):
        model.infer(np.zeros((4, 4, 3), np.uint8))


def test_local_model_missing_model_says_how_to_build_it(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="make models"):
        LocalModel(tmp_path, "tiny")
    tiny_onnx(tmp_path / "tiny" / "1" / "model.onnx")
    with pytest.raises(FileNotFoundError, match="make models"):
        LocalModel(tmp_path, "tiny", version=3)


# --- preprocessing ----------------------------------------------------------------------


@pytest.mark.parametrize(("height", "width"), [(300, 451), (451, 300), (224, 224), (100, 150)])
def test_resize_center_crop_gives_model_input(height: int, width: int) -> None:
    out = resize_center_crop(np.zeros((height, width, 3), np.uint8))
    assert out.shape == (224, 224, 3) and out.dtype == np.uint8 and out.flags.c_contiguous


def test_resize_center_crop_keeps_the_centre() -> None:
    image = np.zeros((224, 448, 3), np.uint8)
    image[:, 112:336] = 255  # the middle half: exactly what the crop must keep
    assert resize_center_crop(image).min() == 255


# --- Triton: config.pbtxt and model.py ----------------------------------------------------


def triton_config() -> model_config_pb2.ModelConfig:
    return text_format.Parse(
        (TRITON_MODEL / "config.pbtxt").read_text(), model_config_pb2.ModelConfig()
    )


def test_triton_config_matches_the_model_contract() -> None:
    config = triton_config()
    (image,), (logits,) = config.input, config.output
    assert config.name == TRITON_MODEL.name == spec.MODEL_NAME
    assert config.backend == "python" and config.max_batch_size == 32
    assert (image.name, image.data_type) == (spec.INPUT_NAME, model_config_pb2.TYPE_UINT8)
    assert list(image.dims) == [spec.IMAGE_SIZE, spec.IMAGE_SIZE, 3]
    assert (logits.name, logits.data_type) == (spec.OUTPUT_NAME, model_config_pb2.TYPE_FP32)
    assert list(logits.dims) == [spec.NUM_CLASSES]
    assert logits.label_filename == spec.LABELS_FILENAME
    assert config.dynamic_batching.max_queue_delay_microseconds == 2000
    assert config.instance_group[0].kind == model_config_pb2.ModelInstanceGroup.KIND_CPU
    assert int(config.parameters["intra_op_thread_count"].string_value) >= 0


def test_copy_serving_files_makes_another_repository_servable(tmp_path: Path) -> None:
    target = tmp_path / "models"
    copied = copy_serving_files(TRITON_MODEL.parent, target)
    assert sorted(p.relative_to(target).as_posix() for p in copied) == [
        f"{spec.MODEL_NAME}/config.pbtxt",
    ]
    assert copy_serving_files(TRITON_MODEL.parent, target) == []  # unchanged: nothing written
    assert copy_serving_files(TRITON_MODEL.parent, TRITON_MODEL.parent) == []


class FakeTensor:
    def __init__(self, name: str, array: np.ndarray) -> None:
        self.name, self.array = name, array

    def as_numpy(self) -> np.ndarray:
        return self.array


class FakeResponse:
    def __init__(self, output_tensors: list | None = None, error: object = None) -> None:
        self.output_tensors, self.error = output_tensors or [], error


def fake_pb_utils() -> types.ModuleType:
    """The parts of triton_python_backend_utils model.py uses, for running it without Triton."""
    pb = types.ModuleType("triton_python_backend_utils")
    numpy_types = {"TYPE_UINT8": np.uint8, "TYPE_FP32": np.float32}

    def config_by_name(section: str):
        return lambda config, name: next(t for t in config[section] if t["name"] == name)

    pb.get_input_config_by_name = config_by_name("input")
    pb.get_output_config_by_name = config_by_name("output")
    pb.triton_string_to_numpy = numpy_types.__getitem__
    pb.get_input_tensor_by_name = lambda request, name: request.get(name)
    pb.Tensor = FakeTensor
    pb.InferenceResponse = FakeResponse
    pb.TritonError = type("TritonError", (Exception,), {})
    return pb


@pytest.fixture
def triton_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Triton's model.py, initialised as the Python backend would, on the tiny model."""
    monkeypatch.setitem(sys.modules, "triton_python_backend_utils", fake_pb_utils())
    model_py = importlib.util.spec_from_file_location("triton_model", spec.TRITON_MODEL_PY)
    module = importlib.util.module_from_spec(model_py)
    model_py.loader.exec_module(module)
    tiny_onnx(tmp_path / "tiny" / "1" / "model.onnx", scale=3.0)
    config = {
        "input": [{"name": "image", "data_type": "TYPE_UINT8", "dims": ["4", "4", "3"]}],
        "output": [{"name": "logits", "data_type": "TYPE_FP32", "dims": ["3"]}],
        "parameters": {"intra_op_thread_count": {"string_value": "1"}},
    }
    model = module.TritonPythonModel()
    model.initialize(
        {
            "model_config": json.dumps(config),
            "model_repository": str(tmp_path / "tiny"),
            "model_version": "1",
        }
    )
    yield model
    model.finalize()


def test_triton_model_runs_a_dynamic_batch_and_fails_only_bad_requests(triton_model) -> None:
    first, second = images(2, seed=1), images(1, seed=2)
    requests = [
        {"image": FakeTensor("image", first)},
        {"image": FakeTensor("image", np.zeros((1, 4, 4, 4), np.uint8))},
        {},
        {"image": FakeTensor("image", first.astype(np.float32))},
        {"image": FakeTensor("image", second)},
    ]
    responses = triton_model.execute(requests)
    assert len(responses) == len(requests)
    for i, batch in ((0, first), (4, second)):
        assert responses[i].error is None
        (logits,) = responses[i].output_tensors
        assert logits.name == "logits" and logits.array.dtype == np.float32
        np.testing.assert_allclose(logits.array, expected(batch, 3.0), rtol=1e-6)
    for i, message in ((1, "must be [N, 4, 4, 3]"), (2, "missing input"), (3, "uint8")):
        assert responses[i].output_tensors == []
        assert message in str(responses[i].error)
