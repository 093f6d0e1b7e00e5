"""The postprocess worker's handler: an inference result to a public prediction, named with
the labels of the model (and version) that answered."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from services.postprocess.logic import to_prediction
from visionline.imaging import FrameRejected
from visionline.messages import InferenceResult, to_json
from visionline.settings import PostprocessSettings
from visionline.worker import decode_message


@dataclass
class PostprocessHandlers:
    settings: PostprocessSettings
    labels: Callable[[str, str], list[str]]  # (model, version) -> class names

    def handle(self, event) -> tuple[bytes, bytes]:
        result, payload = decode_message(event.message.value, InferenceResult)
        logits = np.frombuffer(payload, dtype=result.tensor.dtype)
        try:
            labels = self.labels(result.model.name, result.model.version)
        except FileNotFoundError as exc:
            raise FrameRejected("unknown_model", str(exc)).of(result.frame) from None
        try:
            prediction = to_prediction(
                result, logits, labels, self.settings.top_k, self.settings.min_confidence
            )
        except ValueError as exc:
            raise FrameRejected("malformed_message", str(exc)).of(result.frame) from None
        return event.message.key, to_json(prediction)
