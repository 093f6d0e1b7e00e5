"""A classifier's figures from true and predicted class indices, and score thresholds.

Plain numpy, no model: accuracy, the confusion matrix (rows: true class, columns: predicted),
per-class precision, recall and F1, macro F1 (the unweighted mean of the per-class F1 over
the classes that occur, in truth or prediction), and the score threshold that meets a precision.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def confusion_matrix(truth: Any, predicted: Any, classes: int) -> np.ndarray:
    matrix = np.zeros((classes, classes), np.int64)
    np.add.at(matrix, (np.asarray(truth, int), np.asarray(predicted, int)), 1)
    return matrix


def _ratio(numerator: float, denominator: float) -> float:
    return float(numerator / denominator) if denominator else 0.0


def per_class(matrix: np.ndarray, names: Sequence[str]) -> dict[str, dict[str, float]]:
    """Precision, recall, F1 and support (true count) per class; 0 where undefined."""
    out = {}
    for k, name in enumerate(names):
        hit, predicted, actual = matrix[k, k], matrix[:, k].sum(), matrix[k, :].sum()
        precision, recall = _ratio(hit, predicted), _ratio(hit, actual)
        f1 = _ratio(2 * precision * recall, precision + recall)
        out[name] = {"precision": precision, "recall": recall, "f1": f1, "support": int(actual)}
    return out


def macro_f1(matrix: np.ndarray) -> float:
    """Mean F1 over the classes present in truth or prediction (sklearn's ``labels=`` the union:
    a class absent from a small held-out split does not count as a zero)."""
    present = (matrix.sum(axis=0) + matrix.sum(axis=1)) > 0
    if not present.any():
        return 0.0
    scores = per_class(matrix, [str(k) for k in range(len(matrix))])
    f1 = np.array([scores[str(k)]["f1"] for k in range(len(matrix))])
    return float(f1[present].mean())


def accuracy(matrix: np.ndarray) -> float:
    return _ratio(np.trace(matrix), matrix.sum())


def summary(truth: Any, predicted: Any, names: Sequence[str]) -> dict:
    """Everything the eval JSON holds about one set of predictions."""
    matrix = confusion_matrix(truth, predicted, len(names))
    return {
        "images": int(matrix.sum()),
        "accuracy": accuracy(matrix),
        "macro_f1": macro_f1(matrix),
        "per_class": per_class(matrix, names),
        "confusion_matrix": matrix.tolist(),
    }


def threshold_for_precision(
    scores: np.ndarray, correct: np.ndarray, target: float
) -> dict[str, float | int | None]:
    """The lowest score threshold at which the predictions kept (score >= threshold) are at
    least ``target`` precise, and the share of predictions it keeps; ``threshold`` is None when
    no threshold reaches the target. Ties in score are kept or dropped together."""
    order = np.argsort(-scores, kind="stable")
    ranked, hits = scores[order], correct[order].astype(float)
    precision = np.cumsum(hits) / np.arange(1, len(hits) + 1)
    # Only cut where the next score is lower: equal scores are on the same side of a threshold.
    cut = np.append(ranked[1:] < ranked[:-1], True) if len(ranked) else np.array([], bool)
    meets = np.flatnonzero(cut & (precision >= target))
    if not len(meets):
        return {"threshold": None, "precision": None, "kept": 0, "coverage": 0.0}
    last = int(meets[-1])
    return {
        "threshold": float(ranked[last]),
        "precision": float(precision[last]),
        "kept": last + 1,
        "coverage": float((last + 1) / len(ranked)),
    }


def suggest_thresholds(
    probabilities: np.ndarray, truth: np.ndarray, names: Sequence[str], target: float
) -> dict:
    """Overall (top-1 score of every prediction) and per predicted class."""
    predicted = probabilities.argmax(axis=1)
    top = probabilities.max(axis=1)
    correct = predicted == truth
    result: dict = {"target_precision": target, "score": "softmax probability of the top class"}
    result["overall"] = threshold_for_precision(top, correct, target)
    result["per_class"] = {
        name: threshold_for_precision(top[predicted == k], correct[predicted == k], target)
        for k, name in enumerate(names)
    }
    return result
