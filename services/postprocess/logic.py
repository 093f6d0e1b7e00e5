"""Postprocess's business logic: logits to a public Prediction."""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np

from visionline.messages import InferenceResult, LabelScore, Prediction


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)  # no overflow for large logits
    exp = np.exp(shifted)
    return exp / exp.sum(axis=-1, keepdims=True)


def top_k(probabilities: np.ndarray, k: int, labels: Sequence[str]) -> list[LabelScore]:
    k = min(k, probabilities.shape[-1])
    best = np.argpartition(-probabilities, k - 1)[:k]
    best = best[np.argsort(-probabilities[best], kind="stable")]
    return [
        LabelScore(class_id=int(i), label=labels[i], score=float(probabilities[i])) for i in best
    ]


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
