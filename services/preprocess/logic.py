"""Preprocess's business logic: one valid frame in, one model-ready tensor out."""

from __future__ import annotations

from visionline.imaging import ImageHeader, model_input
from visionline.messages import FrameMeta, PreprocessedFrame, TensorSpec


def preprocess(meta: FrameMeta, image: bytes, size: int, reduced: bool = True):
    """(PreprocessedFrame, tensor bytes). Raises FrameRejected when the image will not decode."""
    header = ImageHeader(meta.content_type, meta.width, meta.height)
    tensor, quality = model_input(image, header, size, reduced)
    out = PreprocessedFrame(
        frame=meta.stamped("preprocessed"),
        quality=quality,
        tensor=TensorSpec(shape=tensor.shape, dtype=str(tensor.dtype)),
    )
    return out, tensor.tobytes()
