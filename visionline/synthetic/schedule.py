"""Nuisance strengths over time: constant, linear ramp and step curves, per camera.

``Schedule({"brightness": Ramp(0, 0.8, 0, 600)}, cameras={"cam-2": {...}})`` : the per-camera
entries override the line-wide ones; a factor with no curve has strength 0.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

NUISANCES = (
    "brightness",
    "colour_temperature",
    "gradient",
    "shadow",
    "flicker",
    "resolution",
    "lens_blur",
    "sensor_noise",
    "white_balance",
    "jpeg",
    "perspective",
    "occlusion",
    "motion_blur",
)
# Factors only a drift brings. Training and ``visionline eval`` draw from NUISANCES alone, so
# the models never saw these: veiling glare (stray light of a new lamp, sunlight through a
# skylight) washes out faint defects, the drift scenario's lighting change.
DRIFT_ONLY = ("glare",)
FACTORS = NUISANCES + DRIFT_ONLY


class Curve(Protocol):
    def at(self, t: float) -> float: ...


@dataclass(frozen=True)
class Constant:
    value: float

    def at(self, t: float) -> float:
        return self.value


@dataclass(frozen=True)
class Ramp:
    """``start`` until ``t0_s``, linear to ``end`` at ``t1_s``, ``end`` after."""

    start: float
    end: float
    t0_s: float
    t1_s: float

    def at(self, t: float) -> float:
        if t <= self.t0_s or self.t1_s <= self.t0_s:
            return self.start if t <= self.t0_s else self.end
        frac = min(1.0, (t - self.t0_s) / (self.t1_s - self.t0_s))
        return self.start + (self.end - self.start) * frac


@dataclass(frozen=True)
class Step:
    before: float
    after: float
    at_s: float

    def at(self, t: float) -> float:
        return self.after if t >= self.at_s else self.before


CurveSpec = Curve | float


def _curve(spec: CurveSpec) -> Curve:
    return Constant(float(spec)) if isinstance(spec, int | float) else spec


def _check(factors: Mapping[str, CurveSpec]) -> dict[str, Curve]:
    unknown = set(factors) - set(FACTORS)
    if unknown:
        raise ValueError(f"unknown nuisance factors {sorted(unknown)}; known: {FACTORS}")
    return {name: _curve(spec) for name, spec in factors.items()}


@dataclass
class Schedule:
    factors: Mapping[str, CurveSpec] = field(default_factory=dict)
    cameras: Mapping[str, Mapping[str, CurveSpec]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._line = _check(self.factors)
        self._cameras = {cam: _check(f) for cam, f in self.cameras.items()}

    def strengths_at(self, t: float, camera: str | None = None) -> dict[str, float]:
        """Every factor's strength at ``t`` seconds, clipped to [0, 1]."""
        curves = {**self._line, **self._cameras.get(camera or "", {})}
        return {
            name: min(1.0, max(0.0, curves[name].at(t))) if name in curves else 0.0
            for name in FACTORS
        }


# Three lines, three different worlds: every nuisance factor is on somewhere.
CAMERA_MIXES: dict[str, dict[str, float]] = {
    "line-1": {"brightness": 0.4, "sensor_noise": 0.4, "occlusion": 0.3, "jpeg": 0.4},
    "line-2": {"colour_temperature": 0.5, "lens_blur": 0.4, "shadow": 0.5, "resolution": 0.3},
    "line-3": {
        "gradient": 0.4,
        "flicker": 0.4,
        "motion_blur": 0.4,
        "perspective": 0.4,
        "white_balance": 0.4,
    },
}
