"""Which River drift detector watches which signal, with its parameters (``infra/drift.yaml``).

Detectors see each value standardised against the signal's reference window,
``(x - mean) / max(std, min_scale)``, so their parameters are in units of the reference's
spread and one set of defaults fits cameras of any noise level. ``min_scale`` (in the signal's
own units) keeps a near-constant reference from making every tiny change look huge.

Defaults: ADWIN for slowly moving means (brightness, contrast, saturation, the image
descriptor's distance to its reference), Page-Hinkley for one-sided moves of model outputs
(confidence down, anomaly and defect scores up), KSWIN for the shape of a distribution (blur,
whose Laplacian variance is heavy-tailed, and the class mix's distance to its reference).
"""

from __future__ import annotations

import zlib
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator

from visionline.drift.signals import SIGNALS

if TYPE_CHECKING:
    from river.base import DriftDetector

DetectorKind = Literal["adwin", "kswin", "page_hinkley"]


class DetectorSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    detector: DetectorKind
    params: dict[str, float | int | str] = Field(default_factory=dict)
    min_scale: float = Field(1e-6, gt=0)
    # Frames to confirm an alarm on, instead of the policy's: model scores, the class mix and
    # the colour histogram move with the product mix (a run of defective parts, of red parts),
    # and neighbouring frames show the same parts, so they need more than the light's statistics.
    confirm_frames: int | None = Field(None, ge=5)


ADWIN = {"delta": 0.002, "clock": 32}
KSWIN = {"alpha": 0.0005, "window_size": 200, "stat_size": 60}
PH_DOWN = {"min_instances": 30, "delta": 0.2, "threshold": 30.0, "mode": "down"}
PH_UP = {**PH_DOWN, "mode": "up"}
# Signals that move with what passes the camera (the product mix, its colours), not only with
# the camera: confirmed on 150 frames, not the policy's 50 (see DetectorSpec.confirm_frames).
CONTENT_CONFIRM_FRAMES = 150

DEFAULT_DETECTORS: dict[str, DetectorSpec] = {
    "brightness": DetectorSpec(detector="adwin", params=ADWIN, min_scale=1.0),
    "contrast": DetectorSpec(detector="adwin", params=ADWIN, min_scale=1.0),
    "saturation": DetectorSpec(detector="adwin", params=ADWIN, min_scale=1.0),
    "blur": DetectorSpec(detector="kswin", params=KSWIN, min_scale=1.0),
    "confidence": DetectorSpec(detector="page_hinkley", params=PH_DOWN, min_scale=0.01),
    "part_confidence": DetectorSpec(detector="page_hinkley", params=PH_DOWN, min_scale=0.01),
    # Moves with what is in view too (a scene of small or far objects): content confirmation.
    "object_confidence": DetectorSpec(
        detector="page_hinkley",
        params=PH_DOWN,
        min_scale=0.01,
        confirm_frames=CONTENT_CONFIRM_FRAMES,
    ),
    "anomaly_score": DetectorSpec(
        detector="page_hinkley", params=PH_UP, min_scale=0.01, confirm_frames=CONTENT_CONFIRM_FRAMES
    ),
    "defect_score": DetectorSpec(
        detector="page_hinkley", params=PH_UP, min_scale=0.01, confirm_frames=CONTENT_CONFIRM_FRAMES
    ),
    "class_mix": DetectorSpec(
        detector="kswin", params=KSWIN, min_scale=0.01, confirm_frames=CONTENT_CONFIRM_FRAMES
    ),
    "embedding_distance": DetectorSpec(
        detector="adwin", params=ADWIN, min_scale=0.005, confirm_frames=CONTENT_CONFIRM_FRAMES
    ),
}


class DetectorsFile(BaseModel):
    """``signals:`` maps a signal to its detector; signals not named keep their default."""

    model_config = ConfigDict(extra="forbid")

    signals: dict[str, DetectorSpec] = Field(default_factory=dict)

    @field_validator("signals")
    @classmethod
    def _known(cls, signals: dict[str, DetectorSpec]) -> dict[str, DetectorSpec]:
        unknown = sorted(set(signals) - set(SIGNALS))
        if unknown:
            raise ValueError(f"unknown signals {unknown}; known: {list(SIGNALS)}")
        return signals


def load_detectors(path: Path | None) -> dict[str, DetectorSpec]:
    """The defaults, overridden per signal by the file (when it exists)."""
    if path is None or not path.exists():
        return dict(DEFAULT_DETECTORS)
    parsed = DetectorsFile.model_validate(yaml.safe_load(path.read_text()) or {})
    return {**DEFAULT_DETECTORS, **parsed.signals}


def seed_of(camera_id: str, signal: str) -> int:
    """KSWIN samples at random: a seed per camera and signal makes a replay decide the same."""
    return zlib.crc32(f"{camera_id}:{signal}".encode())


def build_detector(spec: DetectorSpec, seed: int = 0) -> DriftDetector:
    """A fresh River detector for the spec."""
    from river import drift

    params: dict[str, Any] = dict(spec.params)
    if spec.detector == "adwin":
        return drift.ADWIN(**params)
    if spec.detector == "kswin":
        return drift.KSWIN(**{"seed": seed, **params})
    return drift.PageHinkley(**params)
