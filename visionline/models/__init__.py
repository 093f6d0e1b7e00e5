"""The image model Triton serves, and the same ONNX model run in-process as a fallback.

Contract shared by Triton, the local fallback and the workers: the model takes uint8 RGB
images NHWC [batch, 224, 224, 3] (input ``image``), normalises inside, and returns float32
ImageNet logits [batch, 1000] (output ``logits``). Labels are ``<model>/labels.txt``.
"""

from typing import TYPE_CHECKING, Any

from visionline.models.spec import (
    DEFAULT_REPOSITORY,
    IMAGE_SIZE,
    INPUT_NAME,
    LABELS_FILENAME,
    MODEL_NAME,
    NUM_CLASSES,
    OUTPUT_NAME,
)

if TYPE_CHECKING:
    from visionline.models.local import LocalModel, load_labels
    from visionline.models.preprocessing import resize_center_crop

# Imported on first use, so a worker that only resizes images does not load onnxruntime.
_LAZY = {
    "LocalModel": "visionline.models.local",
    "load_labels": "visionline.models.local",
    "resize_center_crop": "visionline.models.preprocessing",
}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(_LAZY[name]), name)


__all__ = [
    "DEFAULT_REPOSITORY",
    "IMAGE_SIZE",
    "INPUT_NAME",
    "LABELS_FILENAME",
    "MODEL_NAME",
    "NUM_CLASSES",
    "OUTPUT_NAME",
    "LocalModel",
    "load_labels",
    "resize_center_crop",
]
