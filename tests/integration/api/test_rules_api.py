"""Rules through the API on the session's stack: versions, history, audit, per-camera views,
and a change that the running rules worker applies to its next frames without a restart.

The stack is shared: every rule a test adds names only its own cameras, and ``restore_rules``
puts the document in effect before the test back as a new version (the file's rules, in a
session where nothing else saves any).
"""

from __future__ import annotations

import threading
import time
import uuid

import pytest

from tests.integration.pipeline import Camera, chelsea_jpeg, new_camera, rows, wait_rows
from tests.integration.test_part_alerts import publish, verdict
from visionline import rulesets
from visionline.rulesets import RulesFile, load_rules_file
from visionline.settings import RulesSettings

pytestmark = pytest.mark.integration

RULES_FILE = RulesSettings().rules_file
CATS = ["tabby", "tiger cat", "Egyptian cat"]


@pytest.fixture
def restore_rules(api_client, as_role):
    """The document in effect before the test; put back (as a new version) after it."""
    before = api_client.get("/v1/rules", headers=as_role("viewer")).json()
    yield before
    put = put_rules(api_client, as_role, before["document"], comment="test: restore")
    assert put.status_code == 200, put.text
    restored = api_client.get("/v1/rules", headers=as_role("viewer")).json()
    assert restored["document"] == before["document"]
    if before["source"] == "file":  # no one else saved a version: the file's rules again
        assert RulesFile.model_validate(restored["document"]) == load_rules_file(RULES_FILE)


def put_rules(api_client, as_role, document: dict, comment: str = "", role: str = "admin"):
    return api_client.put(
        "/v1/rules", headers=as_role(role), json={"document": document, "comment": comment}
    )


# Reading --------------------------------------------------------------------------------------


def test_get_rules_is_the_document_in_effect(api_client, as_role, engine):
    got = api_client.get("/v1/rules", headers=as_role("viewer"))
    assert got.status_code == 200, got.text
    body = got.json()
    assert body["version"] == rulesets.latest_version(engine)
    assert body["source"] == ("file" if body["version"] == 0 else "database")
    assert RulesFile.model_validate(body["document"]) == load_rules_file(RULES_FILE)
    assert body["camera_id"] is None


def test_rules_of_one_camera(api_client, as_role, engine):
    got = api_client.get("/v1/rules", params={"camera_id": "line-2"}, headers=as_role("viewer"))
    assert got.status_code == 200, got.text
    body = got.json()
    assert body["camera_id"] == "line-2"
    assert [r["name"] for r in body["document"]["rules"]] == ["cat-detected", "spill-risk-beverage"]
    assert [c["name"] for c in body["document"]["inspection"]] == ["line-defect"]

    camera_id = new_camera(engine, prefix="test")
    got = api_client.get(f"/v1/cameras/{camera_id}/rules", headers=as_role("viewer"))
    assert got.status_code == 200, got.text
    assert [r["name"] for r in got.json()["document"]["rules"]] == ["test-cat-every-frame"]
    assert got.json()["document"]["inspection"] == []


def test_reads_refuse_bad_input_and_unknown_ids(api_client, as_role):
    viewer = as_role("viewer")
    for url, status in [
        ("/v1/rules?camera_id=bad%20id", 422),
        ("/v1/rules/versions?limit=0", 422),
        ("/v1/rules/versions?limit=100000", 422),
        ("/v1/rules/versions/0", 422),
        ("/v1/rules/versions/-3", 422),
        ("/v1/rules/versions/99999999999", 422),
        ("/v1/rules/versions/abc", 422),
        ("/v1/rules/versions/2000000000", 404),
        ("/v1/cameras/no-such-camera-x/rules", 404),
        ("/v1/cameras/bad%00id/rules", 422),
    ]:
        got = api_client.get(url, headers=viewer)
        assert got.status_code == status, (url, got.text)
        assert "detail" in got.json()


def test_every_endpoint_needs_a_token_and_writes_need_admin(api_client, as_role, engine):
    document = rulesets.current(engine, RULES_FILE).rules.model_dump(mode="json")
    for url in ["/v1/rules", "/v1/rules/versions", "/v1/rules/versions/1", "/v1/cameras/any/rules"]:
        assert api_client.get(url).status_code == 401, url
    bad = {"Authorization": "Bearer vl_not-a-token"}
    assert api_client.get("/v1/rules", headers=bad).status_code == 401
    assert api_client.put("/v1/rules", json={"document": document}).status_code == 401
    before = rulesets.latest_version(engine)
    for role in ("viewer", "operator"):
        assert put_rules(api_client, as_role, document, role=role).status_code == 403, role
    assert rulesets.latest_version(engine) == before


# Writing --------------------------------------------------------------------------------------


def test_invalid_documents_are_refused_with_what_is_wrong(api_client, as_role, engine):
    file = load_rules_file(RULES_FILE).model_dump(mode="json")
    before = rulesets.latest_version(engine)
    no_labels = {**file, "rules": [{"name": "x", "labels": []}]}
    twice = {**file, "rules": file["rules"] + file["rules"][:1]}
    bad_inspection = {**file, "inspection": [{"name": "y", "cameras": ["z-*"]}]}  # no belt speed
    cases = [
        (no_labels, ["body", "document", "rules", 0, "labels"]),
        (twice, ["body", "document", "rules"]),
        (bad_inspection, ["body", "document", "inspection", 0]),
        ({**file, "extra": 1}, ["body", "document", "extra"]),
        ({"inspection": []}, ["body", "document", "rules"]),
    ]
    for document, loc in cases:
        got = put_rules(api_client, as_role, document)
        assert got.status_code == 422, got.text
        assert any(e["loc"] == loc for e in got.json()["detail"]), (loc, got.json())
    assert "duplicate rule names: cat-detected" in put_rules(api_client, as_role, twice).text
    for body in [
        {"comment": "no document"},
        {"document": file, "comment": "x" * 2001},
        {"document": file, "unknown": True},
        [],
        {"document": file, "comment": "a\0"},
        {"document": {"rules": [{"name": "nul", "labels": ["a\0"]}]}},
    ]:
        got = api_client.put("/v1/rules", headers=as_role("admin"), json=body)
        assert got.status_code == 422, (body, got.text)
    infinite = '{"document": {"rules": [{"name": "inf", "labels": ["x"], "cooldown_s": 1e999}]}}'
    got = api_client.put(
        "/v1/rules",
        headers={**as_role("admin"), "Content-Type": "application/json"},
        content=infinite,
    )
    assert got.status_code == 422 and "finite" in got.text, got.text
    assert rulesets.latest_version(engine) == before


def test_a_change_is_a_new_version_with_history_and_audit(
    api_client, as_role, engine, restore_rules
):
    document = restore_rules["document"]
    name = f"api-test-{uuid.uuid4().hex[:8]}"
    changed = {
        **document,
        "rules": [
            *document["rules"],
            {"name": name, "cameras": [f"{name}-cam"], "labels": ["tabby"]},
        ],
    }
    before = rulesets.latest_version(engine)
    put = put_rules(api_client, as_role, changed, comment="more cats")
    assert put.status_code == 200, put.text
    saved = put.json()
    assert saved["version"] == before + 1 and saved["source"] == "database"
    assert (saved["changed_by"], saved["comment"]) == ("test-admin", "more cats")
    assert saved["document"]["rules"][-1]["severity"] == "warning"  # defaults filled in

    now = api_client.get("/v1/rules", headers=as_role("viewer")).json()
    assert now["version"] == saved["version"] and now["document"] == saved["document"]
    mine = api_client.get(
        "/v1/rules", params={"camera_id": f"{name}-cam"}, headers=as_role("viewer")
    ).json()
    assert [r["name"] for r in mine["document"]["rules"]] == [name]

    history = api_client.get("/v1/rules/versions", headers=as_role("viewer")).json()
    versions = [h["version"] for h in history]
    assert versions[0] == saved["version"] and versions == sorted(versions, reverse=True)
    assert history[0]["comment"] == "more cats" and "document" not in history[0]
    assert len(api_client.get("/v1/rules/versions?limit=1", headers=as_role("viewer")).json()) == 1
    one = api_client.get(f"/v1/rules/versions/{saved['version']}", headers=as_role("viewer"))
    assert one.status_code == 200 and one.json()["document"] == saved["document"]

    (entry,) = rows(
        engine,
        "SELECT * FROM audit_log WHERE action = 'rules.update' AND (detail->>'version')::int = :v",
        v=saved["version"],
    )
    assert (entry["actor"], entry["target"]) == ("test-admin", "rules")
    assert entry["detail"] == {"version": saved["version"], "comment": "more cats"}


def test_concurrent_saves_take_distinct_versions(engine, restore_rules):
    document = restore_rules["document"]
    saved, errors = [], []

    def save() -> None:
        try:
            saved.append(rulesets.save(engine, document, "test-concurrent", "race").version)
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    before = rulesets.latest_version(engine)
    threads = [threading.Thread(target=save) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sorted(saved) == list(range(before + 1, before + 7))


# The acceptance test -----------------------------------------------------------------------


def alert_rows(engine, camera_id: str, frame_id: str, timeout: float) -> list[dict]:
    return wait_rows(
        engine,
        "SELECT * FROM alerts WHERE camera_id = :c AND frame_id = :f",
        bool,
        timeout=timeout,
        c=camera_id,
        f=frame_id,
    )


def test_rule_change_through_the_api_takes_effect_on_the_next_frames_without_restarting_any_worker(
    stack, api_client, as_role, engine, restore_rules
):
    """A camera no rule watches, and an inspection camera alerting at ``warning``: after one
    PUT, the same kind of frame raises a ``critical`` alert from the new rule, and the part
    alert follows the new inspection entry, from the same worker processes."""
    pids = {name: stack.pids(name) for name in ("rules", "parts")}
    tag = uuid.uuid4().hex[:8]
    camera_id = new_camera(engine, prefix="rulesapi")  # no rule names rulesapi-*
    line_camera = f"test-line-{tag}"  # test-line-defect: severity warning
    camera = Camera(stack.kafka_bootstrap)

    camera.send(camera_id, chelsea_jpeg(), "before")
    camera.flush()
    publish(stack.kafka_bootstrap, [verdict(line_camera, 10, "rejected")])
    wait_rows(
        engine,
        "SELECT 1 FROM predictions WHERE camera_id = :c AND frame_id = 'before'",
        bool,
        timeout=90,
        c=camera_id,
    )
    # Predictions and their alerts are written in one transaction: none means none.
    assert rows(engine, "SELECT 1 FROM alerts WHERE camera_id = :c", c=camera_id) == []
    (old_part,) = alert_rows(engine, line_camera, "f0008", timeout=60)
    assert (old_part["rule"], old_part["severity"]) == ("test-line-defect", "warning")

    document = restore_rules["document"]
    rule = {
        "name": f"api-cat-{tag}",
        "cameras": [camera_id],
        "labels": CATS,
        "min_confidence": 0.05,
        "cooldown_s": 0,
        "severity": "critical",
    }
    test_line = next(c for c in document["inspection"] if c["name"] == "test-line-defect")
    entry = {
        **test_line,
        "name": f"api-line-{tag}",
        "cameras": [line_camera],
        "severity": "critical",
    }
    changed = {"rules": [*document["rules"], rule], "inspection": [entry, *document["inspection"]]}
    put = put_rules(api_client, as_role, changed, comment=f"acceptance {tag}")
    assert put.status_code == 200, put.text
    time.sleep(RulesSettings().refresh_s + 1)  # the workers look again at most this late

    camera.send(camera_id, chelsea_jpeg(shift=40), "after")
    camera.flush()
    publish(stack.kafka_bootstrap, [verdict(line_camera, 20, "rejected")])
    (new,) = alert_rows(engine, camera_id, "after", timeout=90)
    assert (new["rule"], new["severity"]) == (f"api-cat-{tag}", "critical")
    assert new["label"] in CATS
    (new_part,) = alert_rows(engine, line_camera, "f0018", timeout=60)
    assert (new_part["rule"], new_part["severity"]) == (f"api-line-{tag}", "critical")
    assert new_part["alert_id"] == f"{line_camera}:f0020:api-line-{tag}"
    assert {name: stack.pids(name) for name in ("rules", "parts")} == pids
