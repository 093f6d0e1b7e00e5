import pytest
from pydantic import ValidationError

from services.rules.logic import (
    candidate_alerts,
    cooldown_allows,
    defect_model,
    match,
    part_alert,
)
from services.rules.store import alert_row, part_decision_row
from tests.factories import model_ref, part_verdict
from tests.factories import prediction as make_prediction
from visionline.inspection.config import InspectionConfig
from visionline.messages import (
    DefectFinding,
    LineCounts,
    PartAlertDetail,
    PartVerdict,
)
from visionline.rulesets import Rule, RulesFile, load_rules, load_rules_file
from visionline.settings import REPO_ROOT


def prediction(camera="dock-1", frame="f1", top=(("tabby", 0.6), ("tiger cat", 0.3))):
    return make_prediction(camera, frame, top)


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


# Inspection cameras: alerts from part verdicts ------------------------------------------------

MODELS = [
    model_ref("part_detector", "1"),
    model_ref("defect_detector", "3", "local-onnxruntime"),
    model_ref("part_anomaly", "1"),
]
INSPECTION = [
    InspectionConfig(name="quiet", cameras=["line-9"], belt_px_per_s=1, alert=False),
    InspectionConfig(name="line-defect", cameras=["line-*"], belt_px_per_s=1, severity="critical"),
]


def verdict(status="rejected", camera="line-1", defect_class="crack", **update) -> PartVerdict:
    found = DefectFinding(defect_class="crack", box=(1, 2, 3, 4), score=0.8, area=4.0)
    values = dict(
        track_id=3,
        defect_class=defect_class,
        score=0.8,
        frames_seen=5,
        defect_frames=2,
        best_frame_id="f5",
        captured_at=10.5,
        box=(0, 0, 10, 10),
        defects=[found],
        snapshot="snapshot://line-1/5",
        models=MODELS,
        counts=LineCounts(crossed=4, passed=3, rejected=1),
    )
    return part_verdict(camera, f"{camera}:f7", status, **(values | update))


def test_rejected_part_gives_one_alert_with_its_evidence():
    alert = part_alert(INSPECTION, verdict(), now=12.0)
    assert alert.alert_id == "line-1:f7:line-defect" and alert.rule == "line-defect"
    assert (alert.label, alert.confidence, alert.severity) == ("crack", 0.8, "critical")
    assert (alert.frame_id, alert.captured_at, alert.created_at) == ("f5", 10.5, 12.0)
    assert alert.model == MODELS[1]  # the defect detector
    assert alert.part == PartAlertDetail(
        decision_id="line-1:f7",
        track_id=3,
        defect_class="crack",
        score=0.8,
        box=(0, 0, 10, 10),
        defects=verdict().defects,
        frames_seen=5,
        defect_frames=2,
        snapshot="snapshot://line-1/5",
        models=MODELS,
    )
    assert part_alert(INSPECTION, verdict(defect_class=None)).label == "defect"


def test_no_alert_for_accepted_insufficient_unconfigured_or_quiet_cameras():
    assert part_alert(INSPECTION, verdict("accepted")) is None
    assert part_alert(INSPECTION, verdict("insufficient")) is None
    assert part_alert(INSPECTION, verdict(camera="dock-1")) is None
    assert part_alert(INSPECTION, verdict(camera="line-9")) is None  # first match: alert off


def test_defect_model_by_name_else_the_last():
    assert defect_model(MODELS) == MODELS[1]
    assert defect_model(MODELS[::2]) == MODELS[2]
    assert defect_model([]).name == "unknown"


def test_part_rows_are_json_ready():
    row = part_decision_row(verdict())
    assert row["decision_id"] == "line-1:f7" and row["box"] == [0, 0, 10, 10]
    assert row["defects"][0]["defect_class"] == "crack" and row["counts"]["rejected"] == 1
    assert row["models"][1]["served_by"] == "local-onnxruntime"
    assert alert_row(part_alert(INSPECTION, verdict()))["part"]["decision_id"] == "line-1:f7"


def test_rules_file_with_inspection_section():
    loaded = load_rules_file(REPO_ROOT / "infra" / "rules.yaml")
    assert {c.name for c in loaded.inspection} >= {"line-defect", "test-line-defect"}
    entry = {"name": "a", "cameras": ["x"], "belt_px_per_s": 1}
    with pytest.raises(ValidationError, match="duplicate"):
        RulesFile.model_validate({"rules": [], "inspection": [entry, entry]})
    with pytest.raises(ValidationError):
        RulesFile.model_validate({"rules": [], "inspection": [{**entry, "typo": 1}]})


def test_repeats_are_the_predictions_of_ids_stored_before_or_earlier_in_the_batch():
    from types import SimpleNamespace

    from services.rules.store import repeats

    a, b, a_again = (SimpleNamespace(camera_id="c", frame_id=f) for f in ("a", "b", "a"))
    assert repeats([a, b, a_again], inserted={("c", "a"), ("c", "b")}) == [a_again]
    assert repeats([a, b], inserted={("c", "b")}) == [a]
    assert repeats([], inserted=set()) == []
