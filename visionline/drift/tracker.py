"""One signal of one camera: reference window, River detector, confirmation and cooldown.

The life of a signal, frame by frame:

1. **Reference**: its first ``reference_frames`` values are the reference window (mean, spread
   and the values themselves). No detector runs yet: nothing is raised in a signal's first
   ``reference_frames`` frames.
2. **Watching**: each value, standardised against the reference, goes to the River detector.
3. **Suspected** (state 1): the detector raised an alarm. The next ``confirm_frames`` values
   are collected (the *after* window) while further alarms are ignored.
4. Then a two-sample Kolmogorov-Smirnov test of the reference against the after window decides:
   the drift is **confirmed** (state 2, a ``DriftEvent``) when the statistic reaches ``min_ks``
   and its p-value is at most ``max_p_value``; else the alarm is dismissed (a spike shorter
   than about ``min_ks`` of the window, or noise) and the signal goes back to watching.
5. After a confirmed drift the after window starts the new reference (the new normal), a fresh
   detector starts once it is full, and no new event comes for ``cooldown_frames`` frames.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from scipy.stats import ks_2samp

from visionline.drift.detectors import DetectorSpec, build_detector
from visionline.drift.signals import FrameRef
from visionline.messages import DriftEvent, WindowStats, drift_event_id

if TYPE_CHECKING:
    from river.base import DriftDetector

STABLE, SUSPECTED, CONFIRMED = 0, 1, 2  # the values of visionline_drift_state


@dataclass(frozen=True)
class Policy:
    reference_frames: int = 100
    confirm_frames: int = 50
    min_ks: float = 0.4
    max_p_value: float = 1e-3
    cooldown_frames: int = 200

    @classmethod
    def of(cls, settings) -> Policy:
        """From ``DriftSettings`` (or anything with the same fields)."""
        return cls(**{name: getattr(settings, name) for name in cls.__dataclass_fields__})


@dataclass
class Window:
    """Values of one signal with the capture times of the first and last."""

    values: list[float] = field(default_factory=list)
    first_at: float = 0.0
    last_at: float = 0.0

    def add(self, value: float, frame: FrameRef) -> None:
        if not self.values:
            self.first_at = frame.captured_at
        self.values.append(value)
        self.last_at = frame.captured_at

    def stats(self) -> WindowStats:
        v = self.values
        return WindowStats(
            frames=len(v),
            mean=statistics.fmean(v),
            std=statistics.pstdev(v),
            median=statistics.median(v),
            first_captured_at=self.first_at,
            last_captured_at=self.last_at,
        )


@dataclass
class Suspicion:
    detected: FrameRef
    after: Window = field(default_factory=Window)


@dataclass
class SignalTracker:
    """A signal's detector and its confirmation policy; ``update`` returns a confirmed drift."""

    camera_id: str
    signal: str
    spec: DetectorSpec
    policy: Policy
    seed: int = 0
    seen: int = 0
    reference: Window = field(default_factory=Window)
    mean: float = 0.0
    scale: float = 1.0
    detector: DriftDetector | None = None  # once the reference is full
    suspicion: Suspicion | None = None
    cooldown_left: int = 0

    @property
    def state(self) -> int:
        if self.suspicion is not None:
            return SUSPECTED
        return CONFIRMED if self.cooldown_left > 0 else STABLE

    def update(self, value: float, frame: FrameRef) -> DriftEvent | None:
        self.seen += 1
        self.cooldown_left = max(0, self.cooldown_left - 1)
        if self.detector is None:
            self._add_reference(value, frame)
            return None
        self.detector.update((value - self.mean) / self.scale)
        if self.suspicion is not None:
            self.suspicion.after.add(value, frame)
            needed = self.spec.confirm_frames or self.policy.confirm_frames
            if len(self.suspicion.after.values) >= needed:
                return self._decide(frame)
        elif self.detector.drift_detected and self.cooldown_left == 0:
            self.suspicion = Suspicion(detected=frame)
            self.suspicion.after.add(value, frame)
        return None

    def _add_reference(self, value: float, frame: FrameRef) -> None:
        self.reference.add(value, frame)
        self._start_when_full()

    def _start_when_full(self) -> None:
        if len(self.reference.values) >= self.policy.reference_frames:
            values = self.reference.values
            self.mean = statistics.fmean(values)
            self.scale = max(statistics.pstdev(values), self.spec.min_scale)
            self.detector = build_detector(self.spec, self.seed)

    def _decide(self, frame: FrameRef) -> DriftEvent | None:
        suspicion, self.suspicion = self.suspicion, None
        assert suspicion is not None  # decided only while suspected
        test = ks_2samp(self.reference.values, suspicion.after.values)
        statistic, p_value = float(test.statistic), float(test.pvalue)
        if statistic < self.policy.min_ks or p_value > self.policy.max_p_value:
            return None
        event = DriftEvent(
            event_id=drift_event_id(self.camera_id, self.signal, frame.frame_id),
            camera_id=self.camera_id,
            signal=self.signal,
            detector=self.spec.detector,
            detector_params=self.spec.params,
            detected_frame_id=suspicion.detected.frame_id,
            detected_at=suspicion.detected.captured_at,
            frame_id=frame.frame_id,
            captured_at=frame.captured_at,
            before=self.reference.stats(),
            after=suspicion.after.stats(),
            statistic=statistic,
            p_value=p_value,
        )
        self.rebase(suspicion.after)
        return event

    def rebase(self, start: Window | None = None) -> None:
        """A new reference (starting with ``start``), a detector once it is full, a cooldown."""
        self.reference = start or Window()
        self.detector = None
        self.cooldown_left = self.policy.cooldown_frames
        self._start_when_full()
