"""Run a model of the Triton repository in-process with ONNX Runtime.

The inference worker falls back to this when Triton is unreachable, and the benchmark's
bare loop uses it as the no-server baseline. It reads the same model.onnx Triton serves.
"""

from pathlib import Path

import numpy as np
import onnxruntime as ort

from visionline.model_registry.versions import configured_serving
from visionline.models.spec import DEFAULT_REPOSITORY, LABELS_FILENAME, MODEL_FILENAME, MODEL_NAME

_HINT = "run `make models` (or `visionline models build`) first"


def find_model_version(model_dir: Path, version: int | None = None) -> tuple[int, Path]:
    """Return (version, path to model.onnx): the highest numbered version when None, among
    those the config's ``version_policy`` names when it names some (the version Triton serves
    after `visionline models promote|rollback`)."""
    if version is None:
        version = configured_serving(model_dir, runnable=True)
        if version is None:
            raise FileNotFoundError(f"no <version>/{MODEL_FILENAME} under {model_dir}; {_HINT}")
    path = model_dir / str(version) / MODEL_FILENAME
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist; {_HINT}")
    return version, path


def load_labels(repository: Path, model: str) -> list[str]:
    """Class names of `model`, one per output index (Triton's label_filename format)."""
    path = Path(repository) / model / LABELS_FILENAME
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist; {_HINT}")
    return path.read_text(encoding="utf-8").splitlines()


class LocalModel:
    """An ONNX model from a Triton-layout repository, run on the CPU in this process.

    Takes uint8 images NHWC, as Triton's model does, so callers can swap one for the other.
    """

    def __init__(
        self,
        repository: Path | str = DEFAULT_REPOSITORY,
        model: str = MODEL_NAME,
        version: int | None = None,
        intra_op_threads: int = 1,
    ) -> None:
        self.name = model
        self.version, self.path = find_model_version(Path(repository) / model, version)
        self._open(intra_op_threads)

    @classmethod
    def from_file(cls, path: Path | str, intra_op_threads: int = 1) -> "LocalModel":
        """A model.onnx outside a repository (e.g. a fresh export being checked)."""
        self = cls.__new__(cls)
        self.name, self.version, self.path = Path(path).stem, 0, Path(path)
        self._open(intra_op_threads)
        return self

    def _open(self, intra_op_threads: int) -> None:
        options = ort.SessionOptions()
        # One thread by default: workers scale by process count, not by threads per process.
        options.intra_op_num_threads = intra_op_threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        self._session = ort.InferenceSession(
            str(self.path), options, providers=["CPUExecutionProvider"]
        )
        model_input, model_output = self._session.get_inputs()[0], self._session.get_outputs()[0]
        self.input_name: str = model_input.name
        self.output_name: str = model_output.name
        # Fixed dims after the batch axis, e.g. (224, 224, 3); None where the model is dynamic.
        self.input_shape = tuple(d if isinstance(d, int) else None for d in model_input.shape[1:])

    def infer(self, images: np.ndarray) -> np.ndarray:
        """Logits float32 [N, classes] for uint8 images [N, H, W, 3]."""
        self._check(images)
        (logits,) = self._session.run([self.output_name], {self.input_name: images})
        return np.asarray(logits, dtype=np.float32)

    def _check(self, images: np.ndarray) -> None:
        if not isinstance(images, np.ndarray) or images.dtype != np.uint8:
            raise TypeError(f"expected a uint8 numpy array, got {getattr(images, 'dtype', images)}")
        expected = self.input_shape
        shape = images.shape[1:]
        if len(shape) != len(expected) or any(
            want is not None and got != want for got, want in zip(shape, expected, strict=True)
        ):
            raise ValueError(
                f"expected images [N, {', '.join(map(str, expected))}], got {images.shape}"
            )

    def __repr__(self) -> str:
        return f"LocalModel(name={self.name!r}, version={self.version}, path='{self.path}')"
