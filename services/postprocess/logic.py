"""Postprocess's business logic: logits to a public Prediction."""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np

from visionline.messages import InferenceResult, Prediction
from visionline.models.scores import softmax, top_k


def to_prediction(
    result: InferenceResult,
    logits: np.ndarray,
    labels: Sequence[str],
    k: int,
    min_confidence: float,
) -> Prediction:
    if logits.shape[-1] != len(labels):
        raise ValueError(f"{logits.shape[-1]} logits but {len(labels)} labels")
    ranked = top_k(softmax(logits.astype(np.float64)), k, labels)
    best = ranked[0]
    frame = result.frame.stamped("postprocessed", time.time())
    return Prediction(
        camera_id=frame.camera_id,
        frame_id=frame.frame_id,
        captured_at=frame.captured_at,
        model=result.model,
        top_k=ranked,
        label=best.label if best.score >= min_confidence else None,
        confidence=best.score,
        quality=result.quality,
        stages=frame.stages,
    )
