"""Latency and throughput figures from the public predictions and alerts (demo and bench)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

STAGES = ("ingested", "preprocessed", "inferred", "postprocessed")


def percentiles(values_s: Sequence[float], points=(50, 95, 99)) -> dict[str, float | None]:
    """Milliseconds at each percentile; None when there is nothing to measure."""
    if not values_s:
        return {f"p{p}": None for p in points}
    ms = np.percentile(np.asarray(values_s) * 1000.0, points)
    return {f"p{p}": round(float(v), 1) for p, v in zip(points, ms, strict=True)}


def capture_to_prediction(prediction: dict) -> float:
    return prediction["stages"]["postprocessed"] - prediction["captured_at"]


def capture_to_alert(alert: dict) -> float:
    return alert["created_at"] - alert["captured_at"]


def stage_latencies(predictions: Iterable[dict]) -> dict[str, list[float]]:
    """Seconds spent reaching each stage from the previous one (the first from capture)."""
    out: dict[str, list[float]] = {stage: [] for stage in STAGES}
    for p in predictions:
        previous = p["captured_at"]
        for stage in STAGES:
            at = p["stages"].get(stage)
            if at is not None:
                out[stage].append(at - previous)
                previous = at
    return out


@dataclass
class RunSummary:
    seconds: float
    predictions: list[dict] = field(default_factory=list)
    alerts: list[dict] = field(default_factory=list)
    dead_letters: list[dict] = field(default_factory=list)
    verdicts: list[dict] = field(default_factory=list)  # one per part on a conveyor line

    def as_dict(self) -> dict:
        return {
            "seconds": round(self.seconds, 2),
            "frames_predicted": len(self.predictions),
            "frames_per_second": round(len(self.predictions) / self.seconds, 2)
            if self.seconds > 0
            else None,
            "alerts": len(self.alerts),
            "dead_letters": dict(Counter(d["error_type"] for d in self.dead_letters)),
            "served_by": dict(Counter(p["model"]["served_by"] for p in self.predictions)),
            "capture_to_prediction_ms": percentiles(
                [capture_to_prediction(p) for p in self.predictions]
            ),
            # Frame alerts only: a part's alert waits for the part to leave the camera's view.
            "capture_to_alert_ms": percentiles(
                [capture_to_alert(a) for a in self.alerts if a.get("part") is None]
            ),
            "stage_ms": {
                stage: percentiles(values)
                for stage, values in stage_latencies(self.predictions).items()
            },
            "alerts_by_rule": dict(Counter(a["rule"] for a in self.alerts)),
            "parts": dict(Counter(v["status"] for v in self.verdicts)),
            "top_labels": dict(
                Counter(p["top_k"][0]["label"] for p in self.predictions).most_common(8)
            ),
        }
