"""What the drift service watches: the signals of one frame, taken from a classify camera's
``Prediction``, an inspect camera's ``PartObservations`` or a detect camera's ``FrameDetections``.

Scalar signals are fed to a detector as they are. Distribution signals (the class mix, the
image descriptor) are turned into a scalar: their distance to the mean distribution of a
reference window of the camera (``DistributionReference``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from visionline.messages import FrameDetections, PartObservations, Prediction, Quality

QUALITY_SIGNALS = ("brightness", "contrast", "blur", "saturation")
CLASSIFY_SIGNALS = ("confidence",)  # top-1 score of the classifier (Prediction)
INSPECT_SIGNALS = ("part_confidence", "anomaly_score", "defect_score")  # means over the parts
DETECT_SIGNALS = ("object_confidence",)  # mean score of the objects a detector found
DISTRIBUTION_SIGNALS = ("class_mix", "embedding_distance")
SIGNALS = (
    *QUALITY_SIGNALS,
    *CLASSIFY_SIGNALS,
    *INSPECT_SIGNALS,
    *DETECT_SIGNALS,
    *DISTRIBUTION_SIGNALS,
)

Distribution = Mapping[str, float]  # non-negative, summing to 1


@dataclass(frozen=True)
class FrameRef:
    frame_id: str
    captured_at: float


@dataclass(frozen=True)
class FrameSignals:
    """One frame's values: scalars by signal, and distributions by the signal they feed."""

    camera_id: str
    frame: FrameRef
    scalars: dict[str, float] = field(default_factory=dict)
    distributions: dict[str, Distribution] = field(default_factory=dict)
    models: dict[str, str] = field(default_factory=dict)  # name -> version that made the frame


def quality_signals(quality: Quality) -> dict[str, float]:
    return {name: float(getattr(quality, name)) for name in QUALITY_SIGNALS}


def histogram_distribution(quality: Quality) -> dict[str, Distribution]:
    """The colour histogram as the ``embedding_distance`` signal's distribution, when present."""
    if not quality.histogram:
        return {}
    return {"embedding_distance": {str(i): v for i, v in enumerate(quality.histogram)}}


def normalised(weights: Mapping[str, float]) -> Distribution:
    total = sum(max(0.0, w) for w in weights.values())
    if total <= 0:
        return {}
    return {k: max(0.0, w) / total for k, w in weights.items() if w > 0}


def from_prediction(p: Prediction) -> FrameSignals:
    """Classify path: image quality, top-1 confidence, the top-k scores as the class mix."""
    mix = normalised({e.label: e.score for e in p.top_k})
    distributions = {**histogram_distribution(p.quality), **({"class_mix": mix} if mix else {})}
    return FrameSignals(
        camera_id=p.camera_id,
        frame=FrameRef(p.frame_id, p.captured_at),
        scalars={**quality_signals(p.quality), "confidence": p.confidence},
        distributions=distributions,
        models={p.model.name: p.model.version},
    )


def part_category(part) -> str:
    """A part's class for the class mix: its strongest defect's class, or ``ok``."""
    if not part.defects:
        return "ok"
    return max(part.defects, key=lambda d: d.score).defect_class


def from_observations(obs: PartObservations) -> FrameSignals:
    """Inspection path: image quality; with parts in view, their mean detection confidence,
    anomaly and defect scores, and the share of each part class (ok or a defect class)."""
    scalars = quality_signals(obs.quality)
    distributions = histogram_distribution(obs.quality)
    parts = obs.parts
    if parts:
        n = len(parts)
        scalars["part_confidence"] = sum(p.confidence for p in parts) / n
        scalars["anomaly_score"] = sum(p.anomaly_score for p in parts) / n
        scalars["defect_score"] = sum(p.defect_score for p in parts) / n
        counts: dict[str, float] = {}
        for part in parts:
            counts[part_category(part)] = counts.get(part_category(part), 0.0) + 1.0
        distributions["class_mix"] = normalised(counts)
    frame = FrameRef(obs.frame.frame_id, obs.frame.captured_at)
    models = {m.name: m.version for m in obs.models}
    return FrameSignals(obs.frame.camera_id, frame, scalars, distributions, models)


def from_detections(found: FrameDetections) -> FrameSignals:
    """Detect path: image quality; with objects in view, their mean score and the share of each
    class (a class the detector stops finding, or starts confusing, moves the mix)."""
    scalars = quality_signals(found.quality)
    distributions = histogram_distribution(found.quality)
    if found.objects:
        scalars["object_confidence"] = sum(o.score for o in found.objects) / len(found.objects)
        counts: dict[str, float] = {}
        for obj in found.objects:
            counts[obj.class_name] = counts.get(obj.class_name, 0.0) + 1.0
        distributions["class_mix"] = normalised(counts)
    frame = FrameRef(found.frame.frame_id, found.frame.captured_at)
    models = {found.model.name: found.model.version}
    return FrameSignals(found.frame.camera_id, frame, scalars, distributions, models)


Watched = Prediction | PartObservations | FrameDetections


def extract(message: Watched) -> FrameSignals:
    if isinstance(message, Prediction):
        return from_prediction(message)
    if isinstance(message, FrameDetections):
        return from_detections(message)
    return from_observations(message)


# Distances between distributions -----------------------------------------------------------


def total_variation(p: Distribution, q: Distribution) -> float:
    """Half the L1 distance: the share of mass that moved, in [0, 1]."""
    return 0.5 * sum(abs(p.get(k, 0.0) - q.get(k, 0.0)) for k in p.keys() | q.keys())


def hellinger(p: Distribution, q: Distribution) -> float:
    """Hellinger distance in [0, 1]: smooth for histograms, sensitive to mass in small bins."""
    keys = p.keys() | q.keys()
    bc = sum(math.sqrt(p.get(k, 0.0) * q.get(k, 0.0)) for k in keys)
    return math.sqrt(max(0.0, 1.0 - bc))


DISTANCES: dict[str, Callable[[Distribution, Distribution], float]] = {
    "class_mix": total_variation,
    "embedding_distance": hellinger,
}


@dataclass
class DistributionReference:
    """The mean distribution of a reference window of ``frames`` frames; until it is full,
    ``distance`` is None. ``reset`` starts a new window (after a confirmed drift)."""

    frames: int
    seen: int = 0
    total: dict[str, float] = field(default_factory=dict)
    mean: dict[str, float] | None = None  # once full

    def add(self, dist: Distribution) -> None:
        for k, v in dist.items():
            self.total[k] = self.total.get(k, 0.0) + v
        self.seen += 1
        if self.seen >= self.frames:
            self.mean = {k: v / self.seen for k, v in self.total.items()}

    def distance(self, dist: Distribution, metric) -> float | None:
        """The distance to the reference once it is full; until then the frame joins it."""
        if self.mean is None:
            self.add(dist)
            return None
        return metric(dist, self.mean)

    def reset(self) -> None:
        self.seen, self.total, self.mean = 0, {}, None
