"""A classifier's logits as scores: what postprocess publishes and what the bench and the export
check compute the same way."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from visionline.messages import LabelScore


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
