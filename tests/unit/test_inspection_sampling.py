"""Frame selection for labelling: reasons, and the per-camera rate limit."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from visionline.inspection.sampling import (
    LabelSampler,
    LabelSampling,
    RateLimiter,
    reasons_to_label,
)

CONFIG = LabelSampling()


class FakeClock:
    def __init__(self, t: float = 1000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def test_defaults() -> None:
    assert (CONFIG.uncertain_low, CONFIG.uncertain_high, CONFIG.disagreement) == (0.35, 0.65, 0.5)
    assert CONFIG.rejected is True
    assert CONFIG.max_per_camera_per_minute == 30


@pytest.mark.parametrize(
    ("anomaly", "defect", "rejected", "expected"),
    [
        (0.05, 0.1, False, []),  # confident and agreeing
        (0.95, 0.9, False, []),
        (0.5, 0.1, False, ["uncertain"]),
        (0.1, 0.35, False, ["uncertain"]),  # band edges are inclusive
        (0.65, 0.9, False, ["uncertain"]),
        (0.66, 0.9, False, []),
        (0.9, 0.4, False, ["uncertain", "disagreement"]),  # exactly 0.5 apart
        (0.95, 0.1, False, ["disagreement"]),
        (0.9, 0.45, False, ["uncertain"]),  # 0.45 apart: below the threshold
        (0.95, 0.9, True, ["rejected"]),
        (1.0, 0.0, True, ["disagreement", "rejected"]),
        (0.5, 0.0, True, ["uncertain", "disagreement", "rejected"]),
    ],
)
def test_reasons(anomaly: float, defect: float, rejected: bool, expected: list[str]) -> None:
    assert reasons_to_label(anomaly, defect, rejected, CONFIG) == expected


def test_reasons_follow_the_config() -> None:
    config = LabelSampling(uncertain_low=0.2, uncertain_high=0.3, disagreement=0.9, rejected=False)
    assert reasons_to_label(0.5, 0.5, True, config) == []
    assert reasons_to_label(0.25, 0.9, True, config) == ["uncertain"]
    assert reasons_to_label(0.0, 0.95, False, config) == ["disagreement"]


@pytest.mark.parametrize("bad", [float("nan"), -0.1, 1.5, float("inf")])
def test_scores_must_be_in_unit_interval(bad: float) -> None:
    with pytest.raises(ValueError):
        reasons_to_label(bad, 0.5, False, CONFIG)
    with pytest.raises(ValueError):
        reasons_to_label(0.5, bad, False, CONFIG)


def test_config_validation() -> None:
    with pytest.raises(ValidationError):
        LabelSampling(uncertain_low=0.7, uncertain_high=0.6)
    with pytest.raises(ValidationError):
        LabelSampling(disagreement=0)
    with pytest.raises(ValidationError):
        LabelSampling(max_per_camera_per_minute=-1)
    with pytest.raises(ValidationError):
        LabelSampling(unknown=1)


def test_rate_limiter_caps_each_camera_separately() -> None:
    limiter = RateLimiter(3, window_s=60)
    assert [limiter.allow("a", now=0.0) for _ in range(5)] == [True, True, True, False, False]
    assert limiter.allow("b", now=0.0)  # another camera has its own budget
    assert not limiter.allow("a", now=59.9)
    assert limiter.allow("a", now=60.0)  # the first three left the window
    assert limiter.allow("a", now=60.0)
    assert limiter.allow("a", now=60.0)
    assert not limiter.allow("a", now=60.0)


def test_rate_limiter_window_slides_rather_than_resets() -> None:
    limiter = RateLimiter(2, window_s=60)
    assert limiter.allow("a", now=0.0)
    assert limiter.allow("a", now=50.0)
    assert not limiter.allow("a", now=59.0)
    assert limiter.allow("a", now=61.0)  # only the one from t=0 expired
    assert not limiter.allow("a", now=100.0)  # t=50 and t=61 still inside
    assert limiter.allow("a", now=110.0)


def test_rejected_attempts_do_not_use_budget() -> None:
    limiter = RateLimiter(1, window_s=10)
    assert limiter.allow("a", now=0.0)
    for t in range(1, 10):
        assert not limiter.allow("a", now=float(t))
    assert limiter.allow("a", now=10.0)  # the refused attempts did not extend the wait


def test_rate_limiter_uses_injected_clock_and_zero_blocks_all() -> None:
    clock = FakeClock()
    limiter = RateLimiter(1, window_s=60, clock=clock)
    assert limiter.allow("a")
    assert not limiter.allow("a")
    clock.t += 60
    assert limiter.allow("a")
    assert not RateLimiter(0).allow("a", now=0.0)
    with pytest.raises(ValueError):
        RateLimiter(1, window_s=0)


def test_a_noisy_camera_cannot_flood_storage() -> None:
    clock = FakeClock()
    sampler = LabelSampler(LabelSampling(max_per_camera_per_minute=30), clock=clock)
    kept = 0
    for _ in range(10 * 60 * 10):  # 10 fps for 10 minutes, every frame uncertain
        clock.t += 0.1
        kept += bool(sampler.select("noisy", 0.5, 0.5, rejected=False))
    assert kept == 30 * 10
    assert sampler.select("quiet", 0.5, 0.5, rejected=False) == ["uncertain"]


def test_sampler_spends_budget_only_on_interesting_frames() -> None:
    clock = FakeClock()
    sampler = LabelSampler(LabelSampling(max_per_camera_per_minute=1), clock=clock)
    for _ in range(100):
        assert sampler.select("a", 0.05, 0.05, rejected=False) == []
    assert sampler.select("a", 0.05, 0.05, rejected=True) == ["rejected"]
    assert sampler.select("a", 0.05, 0.05, rejected=True) == []  # over budget
