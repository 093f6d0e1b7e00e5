"""Robustness cards made by hand in the shapes ``dataset_eval`` and ``detector_eval`` write
(their own ``_brief`` makes each cell), for the chart and API tests."""

from __future__ import annotations

from visionline.training import dataset_eval, detector_eval, nuisance_images

STRENGTHS = nuisance_images.STRENGTHS
FACTORS = list(nuisance_images.FACTORS)


def _fall(index: int, strength: float, slope: float) -> float:
    """A figure that falls with strength, faster for later factors."""
    return max(0.0, 1.0 - slope * strength * (1 + index) / len(FACTORS))


def classifier_evaluation(clean: float = 0.9, slope: float = 0.6, worst: str = "") -> dict:
    clean_figures = {"accuracy": clean, "macro_f1": clean - 0.02, "true_class_score": 0.8}
    card = {
        factor: {
            str(s): dataset_eval._brief(
                {
                    "accuracy": clean * _fall(i, s, slope),
                    "macro_f1": (clean - 0.02) * _fall(i, s, slope),
                    "true_class_score": 0.8 * _fall(i, s, slope),
                },
                clean_figures,
            )
            for s in STRENGTHS
        }
        for i, factor in enumerate(FACTORS)
    }
    worst = worst or FACTORS[-1]
    return {
        "accuracy": clean,
        "macro_f1": clean - 0.02,
        "classes": ["cat", "coffee", "rocket"],
        "robustness": card,
        "strengths": list(STRENGTHS),
        "clean": clean_figures,
        "worst_factor": worst,
        "worst": {"factor": worst, "strength": 1.0, **card[worst]["1.0"]},
    }


def detector_evaluation(clean: float = 0.8) -> dict:
    keys = ("map50", "map50_95", "precision", "recall")
    clean_figures = dict(zip(keys, (clean, clean / 2, 0.9, 0.85), strict=True))
    card = {
        factor: {
            str(s): detector_eval._brief(
                {k: v * _fall(len(FACTORS) - 1 - i, s, 0.9) for k, v in clean_figures.items()},
                clean_figures,
            )
            for s in STRENGTHS
        }
        for i, factor in enumerate(FACTORS)
    }
    return {
        **clean_figures,
        "task": "detection",
        "robustness": card,
        "strengths": list(STRENGTHS),
        "clean": clean_figures,
        "worst_factor": FACTORS[0],
        "worst": {"factor": FACTORS[0], "strength": 1.0, **card[FACTORS[0]]["1.0"]},
        "model": "photo_detector",
        "version": 3,
        "dataset": "scenes@" + "ab" * 32,
    }
