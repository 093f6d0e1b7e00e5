"""Versioned rules without a database: the watcher's refresh, per-camera views, and what the
parts worker does with new inspection configs (``Lines.reconfigure``)."""

from __future__ import annotations

import logging

import pytest

from tests.unit.test_parts_logic import feed, lane_lines, observed
from visionline.inspection.config import InspectionConfig
from visionline.rulesets import (
    FILE_VERSION,
    Rule,
    RuleSet,
    RulesFile,
    RulesWatcher,
    document_of,
    for_camera,
    from_file,
    load_rules_file,
    storable_text,
)
from visionline.settings import REPO_ROOT

RULES_FILE = REPO_ROOT / "infra" / "rules.yaml"


def rules(*names: str, cameras=("*",)) -> RulesFile:
    return RulesFile(rules=[Rule(name=n, cameras=list(cameras), labels=["tabby"]) for n in names])


class Store:
    """What the watcher reads: a version number and its rules, changed by the test."""

    def __init__(self) -> None:
        self.ruleset = RuleSet(version=FILE_VERSION, rules=rules("from-file"))
        self.version_calls = self.loads = 0
        self.down = False

    def version(self) -> int:
        self.version_calls += 1
        if self.down:
            raise ConnectionError("database unreachable")
        return self.ruleset.version

    def load(self) -> RuleSet:
        self.loads += 1
        return self.ruleset


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def watcher(store: Store, clock: Clock, refresh_s: float = 2.0) -> RulesWatcher:
    return RulesWatcher(store.version, store.load, refresh_s, clock)


def test_watcher_asks_at_most_every_refresh_and_loads_only_a_new_version() -> None:
    store, clock = Store(), Clock()
    w = watcher(store, clock)
    assert w.current.version == FILE_VERSION and store.loads == 1
    store.ruleset = RuleSet(version=1, rules=rules("saved"), changed_by="alice")
    clock.now += 1.9
    assert w.poll() is None and store.version_calls == 0  # too soon: not even asked
    clock.now += 0.2
    fresh = w.poll()
    assert fresh is not None and fresh.version == 1 and w.current is fresh
    assert [r.name for r in w.current.rules.rules] == ["saved"] and store.loads == 2
    clock.now += 5
    assert w.poll() is None and store.version_calls == 2 and store.loads == 2  # same version


def test_watcher_follows_a_lower_version_too() -> None:
    """Any change counts (a version removed by hand brings the file back)."""
    store, clock = Store(), Clock()
    store.ruleset = RuleSet(version=3, rules=rules("three"))
    w = watcher(store, clock)
    store.ruleset = RuleSet(version=FILE_VERSION, rules=rules("from-file"))
    clock.now += 3
    assert w.poll().source == "file" and w.current.version == FILE_VERSION


def test_watcher_keeps_its_rules_when_the_database_fails(caplog) -> None:
    store, clock = Store(), Clock()
    w = watcher(store, clock)
    before = w.current
    store.ruleset, store.down = RuleSet(version=1, rules=rules("saved")), True
    clock.now += 3
    with caplog.at_level(logging.WARNING, logger="visionline.rulesets"):
        assert w.poll() is None
    assert w.current is before and "database unreachable" in caplog.text
    store.down = False
    clock.now += 1
    assert w.poll() is None  # the failed look counts: the next one waits refresh_s
    clock.now += 1
    assert w.poll().version == 1


def test_the_rules_file_is_version_zero_and_round_trips_as_a_document() -> None:
    ruleset = from_file(RULES_FILE)
    assert ruleset.version == 0 and ruleset.source == "file" and ruleset.changed_by is None
    document = document_of(ruleset.rules)
    assert RulesFile.model_validate(document) == load_rules_file(RULES_FILE)
    assert document["inspection"][0]["name"] == "line-defect"


def test_documents_postgresql_cannot_hold_are_refused() -> None:
    infinite = RulesFile(rules=[Rule(name="a", labels=["x"], cooldown_s=float("inf"))])
    with pytest.raises(ValueError, match="finite"):
        document_of(infinite)
    for text in ("nul\x00", "lone \ud800"):
        with pytest.raises(ValueError, match="NUL"):
            document_of(RulesFile(rules=[Rule(name="a", labels=[text])]))
    assert storable_text("é ✓ \\u0000 as text") and not storable_text("\x00")


def test_for_camera_keeps_its_rules_and_first_inspection_entry() -> None:
    file = load_rules_file(RULES_FILE)
    dock = for_camera(file, "dock-7")
    assert [r.name for r in dock.rules] == ["cat-detected", "person-in-restricted-area"]
    assert dock.inspection == []
    line = for_camera(file, "line-2")
    assert [r.name for r in line.rules] == ["cat-detected", "spill-risk-beverage"]
    assert [c.name for c in line.inspection] == ["line-defect"]
    assert for_camera(file, "nobody") == RulesFile(rules=[], inspection=[])


# The parts worker --------------------------------------------------------------------------


def config(**overrides) -> InspectionConfig:
    return InspectionConfig(cameras=["*"], belt_px_per_s=0.0, **overrides)


def test_new_thresholds_apply_to_open_tracks_without_a_restart() -> None:
    lines = lane_lines()
    # (x 5, not 0: a part at the frame's edge is seen there but not judged)
    feed(lines, [[observed(5, 0, "scratch")], [observed(50, 0, "scratch")]])
    tracker = lines.cameras["c"].tracker
    assert lines.reconfigure([config(min_score=0.95)], wall=0) == ([], [])
    assert lines.cameras["c"].tracker is tracker and tracker.rules.min_score == 0.95
    # The defects of the remaining frames (score 0.9) no longer count, the first two do.
    verdicts, _ = feed(lines, [[observed(x, 0, "scratch")] for x in (100, 150, 200, 240)], start=2)
    (verdict,) = verdicts
    assert verdict.frames_seen == 6 and verdict.defect_frames == 2


def test_unchanged_configs_change_nothing() -> None:
    lines = lane_lines()
    feed(lines, [[observed(0)]])
    line = lines.cameras["c"]
    assert lines.reconfigure([config()], wall=0) == ([], []) and lines.cameras["c"] is line


def test_new_tracking_decides_open_tracks_and_restarts_the_camera() -> None:
    lines = lane_lines()
    feed(lines, [[observed(0, 0, "scratch")], [observed(50, 0, "scratch")], [observed(100, 0)]])
    verdicts, events = lines.reconfigure([config(line_x=0.6)], wall=0)
    (verdict,) = verdicts
    assert verdict.status == "rejected" and events == ["e0", "e1", "e2"]
    assert "c" not in lines.cameras and lines.configs[0].line_x == 0.6
