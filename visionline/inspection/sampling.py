"""Which frames are worth a human label (active learning), without flooding storage.

A frame is interesting when the model is unsure (a score near the decision boundary), when the
anomaly model and the defect classifier disagree, or when its part was rejected (to audit false
rejects). ``reasons_to_label`` says why, as a pure function; ``RateLimiter`` caps how many frames
one camera may keep per minute, so a camera with a dirty lens cannot fill the disk on its own;
``LabelSampler`` combines both.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Reason = Literal["uncertain", "disagreement", "rejected"]
_EPS = 1e-9  # so that 0.9 - 0.4 counts as a 0.5 disagreement despite rounding


class LabelSampling(BaseModel):
    """When to keep a frame for labelling. Scores are in [0, 1]."""

    model_config = ConfigDict(extra="forbid")
    uncertain_low: float = Field(default=0.35, ge=0, le=1)  # a score in [low, high] is uncertain
    uncertain_high: float = Field(default=0.65, ge=0, le=1)
    disagreement: float = Field(default=0.5, gt=0, le=1)  # |anomaly - defect| at or above
    rejected: bool = True  # keep frames of rejected parts
    max_per_camera_per_minute: int = Field(default=30, ge=0)  # 0 keeps none

    @model_validator(mode="after")
    def _band_is_ordered(self) -> LabelSampling:
        if self.uncertain_low > self.uncertain_high:
            raise ValueError("uncertain_low must not exceed uncertain_high")
        return self


def _check_score(name: str, value: float) -> None:
    if not (math.isfinite(value) and 0.0 <= value <= 1.0):
        raise ValueError(f"{name} must be a finite score in [0, 1], got {value!r}")


def reasons_to_label(
    anomaly_score: float, defect_score: float, rejected: bool, config: LabelSampling
) -> list[Reason]:
    """Why a frame deserves a label, in the order uncertain, disagreement, rejected; empty
    when it does not. "uncertain" means either score lies in the inclusive uncertain band."""
    _check_score("anomaly_score", anomaly_score)
    _check_score("defect_score", defect_score)
    reasons: list[Reason] = []
    low, high = config.uncertain_low, config.uncertain_high
    if any(low <= s <= high for s in (anomaly_score, defect_score)):
        reasons.append("uncertain")
    if abs(anomaly_score - defect_score) >= config.disagreement - _EPS:
        reasons.append("disagreement")
    if rejected and config.rejected:
        reasons.append("rejected")
    return reasons


class RateLimiter:
    """At most ``limit`` accepted events per camera in any sliding ``window_s`` seconds.

    A sliding window (not a token bucket) so the cap is exact: a burst after a quiet spell
    cannot exceed it. Memory is O(limit) per camera. ``clock`` gives the time when ``allow`` is
    called without ``now``; it must not go backwards (the default is monotonic).
    """

    def __init__(
        self, limit: int, window_s: float = 60.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if limit < 0:
            raise ValueError("limit must be >= 0")
        if window_s <= 0:
            raise ValueError("window_s must be > 0")
        self.limit = limit
        self.window_s = window_s
        self.clock = clock
        self._accepted: dict[str, deque[float]] = {}

    @classmethod
    def from_config(
        cls, config: LabelSampling, clock: Callable[[], float] = time.monotonic
    ) -> RateLimiter:
        return cls(config.max_per_camera_per_minute, 60.0, clock)

    def allow(self, camera: str, now: float | None = None) -> bool:
        """Whether ``camera`` may keep one more frame now; a True counts against its budget."""
        now = self.clock() if now is None else now
        if self.limit == 0:
            return False
        accepted = self._accepted.setdefault(camera, deque())
        while accepted and now - accepted[0] >= self.window_s:
            accepted.popleft()
        if len(accepted) >= self.limit:
            return False
        accepted.append(now)
        return True


class LabelSampler:
    """``reasons_to_label`` behind a per-camera ``RateLimiter``: the frames a worker stores."""

    def __init__(self, config: LabelSampling, clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self.limiter = RateLimiter.from_config(config, clock)

    def select(
        self,
        camera: str,
        anomaly_score: float,
        defect_score: float,
        rejected: bool,
        now: float | None = None,
    ) -> list[Reason]:
        """The reasons to keep this frame, or [] to drop it (uninteresting, or over the camera's
        budget). Only interesting frames use up budget."""
        reasons = reasons_to_label(anomaly_score, defect_score, rejected, self.config)
        if reasons and self.limiter.allow(camera, now):
            return reasons
        return []
