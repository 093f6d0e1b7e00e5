"""Plain decisions of a retraining job: no database, no training.

- ``model_for_drift``: the model a confirmed drift should retrain, or None and why not.
- ``dataset_plan``: the seeded generator dataset of a job (its JSON description).
- ``decide_promotion``: promote only when the candidate beats the serving version by a margin.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from visionline.messages import DriftEvent
from visionline.synthetic.schedule import NUISANCES

DEFECT_DETECTOR, PART_DETECTOR, PART_ANOMALY = "defect_detector", "part_detector", "part_anomaly"
MODELS = (PART_DETECTOR, PART_ANOMALY, DEFECT_DETECTOR)

# Drift of an inspection camera's signal -> the model retrained. Input statistics and the
# defect/anomaly scores point at the defect detector (it decides verdicts); a drop of the part
# detector's confidence at the part detector.
INSPECT_SIGNAL_MODEL = {
    "brightness": DEFECT_DETECTOR,
    "contrast": DEFECT_DETECTOR,
    "blur": DEFECT_DETECTOR,
    "saturation": DEFECT_DETECTOR,
    "embedding_distance": DEFECT_DETECTOR,
    "anomaly_score": DEFECT_DETECTOR,
    "defect_score": DEFECT_DETECTOR,
    "class_mix": DEFECT_DETECTOR,
    "part_confidence": PART_DETECTOR,
}
# Generator nuisances (visionline.synthetic.schedule.NUISANCES) that move a drift signal: the
# job's training data adds them at several strengths. Signals not listed (model scores) say
# nothing of the cause: the job adds stronger random mixes of every factor instead.
SIGNAL_NUISANCES = {
    "brightness": ("glare", "brightness", "flicker", "shadow"),
    "contrast": ("gradient", "shadow", "brightness"),
    "blur": ("lens_blur", "motion_blur", "resolution"),
    "saturation": ("colour_temperature", "white_balance"),
    "embedding_distance": ("colour_temperature", "white_balance", "brightness"),
}


def model_for_drift(
    event: DriftEvent, pipeline: str | None, enabled: tuple[str, ...] | frozenset[str]
) -> tuple[str | None, str]:
    """The model a drift event should retrain, or None, and why, in words."""
    where = f"{event.signal} drift on {event.camera_id}"
    if pipeline is None:
        return None, f"{where}: camera not registered, no model to retrain"
    if pipeline == "classify":
        return None, (
            f"{where}: classify camera; retraining the classifier "
            "(efficientnet_lite0) is not supported yet"
        )
    if pipeline == "detect":
        return None, (
            f"{where}: detect camera; its detector learns from labelled data: import new "
            "labelled frames (`visionline datasets import`) and `visionline train detector`"
        )
    if pipeline != "inspect":
        return None, f"{where}: unknown pipeline {pipeline!r}"
    model = INSPECT_SIGNAL_MODEL.get(event.signal)
    if model is None:
        return None, f"{where}: no model is retrained for signal {event.signal!r}"
    if model not in enabled:
        return None, f"{where}: {model} is not among the enabled models ({', '.join(enabled)})"
    return model, f"{where} (statistic {event.statistic:.2f}, p {event.p_value:.1e}): {model}"


def dataset_plan(
    seed: int,
    base_conditions: int,
    frames_per_condition: int,
    drift_conditions: int,
    signal: str | None = None,
    max_strength: float = 0.6,
) -> dict[str, Any]:
    """A job's training data as JSON: seeded generator conditions, clean and each nuisance alone
    first, then random mixes, then ``drift_conditions`` with the drift window's nuisances at
    strengths from 0.3 to 0.8 (random mixes of three at up to 0.8 when the signal names none)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    conditions: list[list[Any]] = [["clean", {}]]
    for name in NUISANCES[: max(0, base_conditions - 1)]:
        conditions.append([name, {name: round(float(rng.uniform(0.1, max_strength)), 3)}])
    while len(conditions) < base_conditions:
        chosen = rng.choice(NUISANCES, size=3, replace=False)
        conditions.append(
            ["mixed", {str(n): round(float(rng.uniform(0.1, max_strength)), 3) for n in chosen}]
        )
    drift = SIGNAL_NUISANCES.get(signal or "", ())
    strengths = np.linspace(0.3, 0.8, max(1, drift_conditions))
    for k in range(drift_conditions):
        if drift:
            factor = drift[k % len(drift)]
            conditions.append([f"drift:{factor}", {factor: round(float(strengths[k]), 3)}])
        else:
            chosen = rng.choice(NUISANCES, size=3, replace=False)
            conditions.append(
                ["drift:mixed", {str(n): round(float(rng.uniform(0.3, 0.8)), 3) for n in chosen}]
            )
    return {
        "source": "generator",
        "seed": seed,
        "frames_per_condition": frames_per_condition,
        "conditions": conditions,
        "frames": frames_per_condition * len(conditions),
        "drift_signal": signal,
        "drift_nuisances": list(drift),
    }


def metric_value(metrics: Mapping[str, Any], path: str) -> float | None:
    """``metrics`` at a dotted path (``summary.nuisance_mean.detector_auroc``), as a float."""
    node: Any = metrics
    for key in path.split("."):
        if not isinstance(node, Mapping) or key not in node:
            return None
        node = node[key]
    if isinstance(node, bool) or not isinstance(node, int | float):
        return None
    return float(node)


def decide_promotion(
    candidate_metrics: Mapping[str, Any],
    serving_metrics: Mapping[str, Any],
    metric: str,
    margin: float,
    guards: Sequence[tuple[str, float]] = (),
) -> tuple[bool, str]:
    """Promote only if the candidate beats the serving version by at least ``margin`` on
    ``metric`` (higher is better) and, for each guard (metric, largest drop), fell by no more
    than that on the guard's metric; the reason says why either way."""
    for path, largest_drop in guards:
        now, then = metric_value(candidate_metrics, path), metric_value(serving_metrics, path)
        if now is None and then is None:
            continue  # nothing to guard here (one camera: no other cameras' traffic)
        if now is None or then is None:
            return False, f"rejected: no {path} to guard against forgetting"
        if now < then - largest_drop - 1e-12:
            return False, (
                f"rejected: {path} fell to {now:.4f} from {then:.4f}, more than "
                f"{largest_drop:.4f}: the candidate forgot what it knew"
            )
    candidate = metric_value(candidate_metrics, metric)
    serving = metric_value(serving_metrics, metric)
    if candidate is None:
        return False, f"rejected: the candidate has no {metric}"
    if serving is None:
        return False, f"rejected: the serving version has no {metric} to compare with"
    gain = candidate - serving
    told = f"{metric} {candidate:.4f} vs serving {serving:.4f} ({gain:+.4f}, margin {margin:.4f})"
    if gain >= margin - 1e-12:
        return True, f"promoted: {told}"
    if gain > 0:
        return False, f"rejected: better, but by less than the margin: {told}"
    return False, f"rejected: not better: {told}"
