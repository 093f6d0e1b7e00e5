import pytest
from pydantic import ValidationError

from services.rules.logic import (
    Rule,
    RulesFile,
    candidate_alerts,
    cooldown_allows,
    load_rules,
    match,
)
from visionline.messages import Prediction
from visionline.settings import REPO_ROOT


def prediction(camera="dock-1", frame="f1", top=(("tabby", 0.6), ("tiger cat", 0.3))):
    return Prediction(
        camera_id=camera,
        frame_id=frame,
        captured_at=1.0,
        model={"name": "m", "version": "1", "served_by": "triton"},
        top_k=[{"class_id": i, "label": lab, "score": s} for i, (lab, s) in enumerate(top)],
        label=top[0][0],
        confidence=top[0][1],
        quality={"brightness": 1, "contrast": 2, "blur": 3, "saturation": 4},
        stages={},
    )


def test_match_takes_best_watched_label_above_confidence():
    rule = Rule(name="cats", labels=["Tiger Cat"], min_confidence=0.2)
    assert match(rule, prediction()) == ("tiger cat", 0.3)
    assert match(rule.model_copy(update={"min_confidence": 0.5}), prediction()) is None


def test_camera_patterns():
    rule = Rule(name="dock", cameras=["dock-*", "yard-2"], labels=["tabby"], min_confidence=0.1)
    assert match(rule, prediction("dock-7"))
    assert match(rule, prediction("yard-2"))
    assert match(rule, prediction("line-1")) is None


def test_candidate_alerts_carry_rule_and_unique_id():
    rules = [
        Rule(name="a", labels=["tabby"], severity="critical", min_confidence=0.1),
        Rule(name="b", labels=["tabby"], min_confidence=0.1),
        Rule(name="c", labels=["espresso"], min_confidence=0.1),
    ]
    alerts = candidate_alerts(rules, prediction())
    assert [(r.name, a.severity) for r, a in alerts] == [("a", "critical"), ("b", "warning")]
    assert len({a.alert_id for _, a in alerts}) == 2


def test_cooldown_lets_the_holder_through_again():
    assert cooldown_allows(True, None, "x")
    assert cooldown_allows(False, "x", "x")
    assert not cooldown_allows(False, "y", "x")


def test_rules_file_validation():
    with pytest.raises(ValidationError, match="duplicate"):
        RulesFile.model_validate({"rules": [{"name": "a", "labels": ["x"]}] * 2})
    with pytest.raises(ValidationError):
        RulesFile.model_validate({"rules": [{"name": "a", "labels": ["x"], "typo": 1}]})
    with pytest.raises(ValidationError):
        Rule(name="Bad Name", labels=["x"])


def test_shipped_rules_file_loads():
    rules = load_rules(REPO_ROOT / "infra" / "rules.yaml")
    assert {r.name for r in rules} >= {"cat-detected", "test-cat-every-frame"}


def test_shipped_rules_watch_only_labels_the_model_knows():
    labels = set(
        (REPO_ROOT / "triton_models" / "efficientnet_lite0" / "labels.txt").read_text().splitlines()
    )
    for rule in load_rules(REPO_ROOT / "infra" / "rules.yaml"):
        assert set(rule.labels) <= labels, rule.name
