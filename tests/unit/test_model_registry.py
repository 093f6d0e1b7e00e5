"""visionline.model_registry without servers: the job state machine, the config's version
policy, and promote / rollback against a fake Triton and SQLite."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from visionline.model_registry import job_states as jobs
from visionline.model_registry import version_policy as policy
from visionline.model_registry.job_states import InvalidTransition, JobState
from visionline.model_registry.promotion import PromotionError, promote, rollback
from visionline.model_registry.store import advance_job, create_job, get_job, list_versions
from visionline.models.local import find_model_version

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = sorted((ROOT / "triton_models").glob("*/config.pbtxt"))

ALLOWED = {
    ("queued", "building_dataset"),
    ("building_dataset", "training"),
    ("training", "evaluating"),
    ("evaluating", "promoted"),
    ("evaluating", "rejected"),
    ("queued", "failed"),
    ("building_dataset", "failed"),
    ("training", "failed"),
    ("evaluating", "failed"),
}


# --- the job state machine ------------------------------------------------------------------


@pytest.mark.parametrize(("source", "target"), sorted(ALLOWED))
def test_every_allowed_transition_is_accepted(source: str, target: str) -> None:
    assert jobs.check_transition(source, target) == JobState(target)
    record = jobs.transition_record(source, target, "because")
    assert (record["from"], record["to"], record["reason"]) == (source, target, "because")
    assert record["at"].endswith("+00:00")


def test_the_table_is_exactly_the_allowed_set() -> None:
    table = {(s.value, t.value) for s, targets in jobs.TRANSITIONS.items() for t in targets}
    assert table == ALLOWED


REFUSED = sorted({(s.value, t.value) for s in JobState for t in JobState} - ALLOWED)


@pytest.mark.parametrize(("source", "target"), REFUSED)
def test_every_other_transition_is_refused(source: str, target: str) -> None:
    with pytest.raises(InvalidTransition) as info:
        jobs.check_transition(source, target)
    assert source in str(info.value) and target in str(info.value)


def test_refusals_say_what_is_allowed() -> None:
    allowed = r"a queued job cannot become training \(only building_dataset or failed\)"
    with pytest.raises(InvalidTransition, match=allowed):
        jobs.check_transition("queued", "training")
    with pytest.raises(InvalidTransition, match="promoted, a final state"):
        jobs.check_transition("promoted", "failed")
    with pytest.raises(InvalidTransition, match="unknown job state"):
        jobs.check_transition("queued", "deployed")


# --- version policy in config.pbtxt ---------------------------------------------------------


def parse(text: str) -> model_config_pb2.ModelConfig:
    return text_format.Parse(text, model_config_pb2.ModelConfig())


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: p.parent.name)
def test_policy_is_added_and_the_rest_kept(config: Path) -> None:
    text = config.read_text()
    assert policy.served_versions(text) is None
    new = policy.with_versions(text, [2])
    assert new.startswith(text)  # every byte of the original kept, the policy appended
    parsed, original = parse(new), parse(text)
    assert list(parsed.version_policy.specific.versions) == [2]
    parsed.ClearField("version_policy")
    assert parsed == original
    assert policy.served_versions(new) == [2]


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: p.parent.name)
def test_policy_rewrite_is_idempotent_and_replaces(config: Path) -> None:
    once = policy.with_versions(config.read_text(), [3])
    assert policy.with_versions(once, [3]) == once
    back = policy.with_versions(once, [1])
    assert back == once.replace("versions: [ 3 ]", "versions: [ 1 ]")
    assert back.count("version_policy") == 1 and policy.served_versions(back) == [1]


def test_an_existing_policy_of_another_kind_is_replaced_in_place() -> None:
    text = (
        'name: "m"  # version_policy: { all {} } in a comment stays\n'
        "version_policy: {\n  latest { num_versions: 2 }\n}\n"
        'parameters [ { key: "version_policy", value: { string_value: "x" } } ]\n'
    )
    assert policy.served_versions(text) is None
    new = policy.with_versions(text, [5, 4])
    assert new == text.replace(
        "version_policy: {\n  latest { num_versions: 2 }\n}",
        "version_policy: { specific: { versions: [ 4, 5 ] } }",
    )
    assert list(parse(new).version_policy.specific.versions) == [4, 5]
    assert parse(new).parameters["version_policy"].string_value == "x"


def test_bad_versions_are_refused() -> None:
    with pytest.raises(policy.PolicyError):
        policy.with_versions('name: "m"\n', [])
    with pytest.raises(policy.PolicyError):
        policy.with_versions('name: "m"\n', [0])


# --- promote and rollback against a fake Triton ------------------------------------------------


class FakeTriton:
    """Loads what the config's policy names, as Triton does on a load request."""

    def __init__(self, repository: Path, fail_versions: set[int] = frozenset()) -> None:
        self.repository, self.fail_versions = repository, fail_versions
        self.ready: dict[str, set[int]] = {}
        self.loads = 0

    def load_model(self, model_name: str) -> None:
        self.loads += 1
        text = (self.repository / model_name / "config.pbtxt").read_text()
        wanted = set(policy.served_versions(text) or [])
        if wanted & self.fail_versions:
            raise RuntimeError("failed to load")  # Triton keeps the model as it was
        self.ready[model_name] = wanted

    def is_model_ready(self, model_name: str, model_version: str = "") -> bool:
        return int(model_version) in self.ready.get(model_name, set())


@pytest.fixture
def repository(tmp_path: Path) -> Path:
    model = tmp_path / "repo" / "m"
    for version in (1, 2, 3):
        (model / str(version)).mkdir(parents=True)
        (model / str(version) / "model.onnx").write_bytes(b"onnx")
        metrics = {"metrics": {"auroc": 0.9 + version / 100}}
        (model / str(version) / "metadata.json").write_text(json.dumps(metrics))
    (model / "config.pbtxt").write_text('name: "m"\nmax_batch_size: 4\n')
    return tmp_path / "repo"


def statuses(engine) -> dict[int, tuple[str, int | None]]:
    return {v.version: (v.status, v.parent_version) for v in list_versions(engine, "m")}


def test_promote_then_rollback_records_lineage(engine, repository: Path) -> None:
    triton = FakeTriton(repository)
    triton.ready["m"] = {1}  # served before the registry knew the model
    job = create_job(engine, "m", "drift", trigger_ref="cam-1:brightness:f-9", parent_version=1)
    for state in ("building_dataset", "training", "evaluating"):
        advance_job(engine, job, state, f"now {state}")
    with pytest.raises(InvalidTransition):
        advance_job(engine, job, "queued", "back")

    info = promote(engine, triton, repository, "m", 2, job_id=job, promoted_by="alice")
    assert (info.version, info.parent_version, info.job_id) == (2, 1, job)
    assert info.metrics == {"auroc": pytest.approx(0.92)}  # from 2/metadata.json
    assert triton.ready["m"] == {2}
    assert policy.served_versions((repository / "m" / "config.pbtxt").read_text()) == [2]
    assert statuses(engine) == {1: ("retired", None), 2: ("serving", 1)}
    done = get_job(engine, job)
    assert (done.state, done.candidate_version) == ("promoted", 2)
    states = [h["to"] for h in done.history]
    assert states == ["queued", "building_dataset", "training", "evaluating", "promoted"]
    # The in-process fallback follows the policy, not the highest folder.
    assert find_model_version(repository / "m")[0] == 2

    with pytest.raises(PromotionError, match="already serving"):
        promote(engine, triton, repository, "m", 2)
    with pytest.raises(InvalidTransition):  # the job is final now
        promote(engine, triton, repository, "m", 3, job_id=job)
    assert triton.ready["m"] == {2}

    back = rollback(engine, triton, repository, "m")
    assert back.version == 1 and triton.ready["m"] == {1}
    assert statuses(engine) == {1: ("serving", None), 2: ("rolled_back", 1)}
    assert find_model_version(repository / "m")[0] == 1
    with pytest.raises(PromotionError, match="nothing to roll back to"):
        rollback(engine, triton, repository, "m")


def test_a_version_that_fails_to_load_changes_nothing(engine, repository: Path) -> None:
    triton = FakeTriton(repository, fail_versions={3})
    triton.ready["m"] = {1}
    promote(engine, triton, repository, "m", 2)
    config = (repository / "m" / "config.pbtxt").read_text()
    with pytest.raises(PromotionError, match="could not load m version 3"):
        promote(engine, triton, repository, "m", 3)
    assert (repository / "m" / "config.pbtxt").read_text() == config
    assert triton.ready["m"] == {2}
    assert statuses(engine) == {1: ("retired", None), 2: ("serving", 1)}
    with pytest.raises(PromotionError, match="no model in"):
        promote(engine, triton, repository, "m", 7)


def test_migration_0004_creates_the_tables_the_models_map() -> None:
    import re

    from visionline.db.models import ModelVersionRow, RetrainJobRow

    text = (ROOT / "visionline/db/migrations/versions/0004_model_registry.py").read_text()
    assert 'down_revision = "0003"' in text and 'revision = "0004"' in text
    tables = dict(re.findall(r'op.create_table\(\s*"(\w+)",(.*?)\n    \)', text, re.S))
    for model in (RetrainJobRow, ModelVersionRow):
        columns = re.findall(r'sa.Column\("(\w+)"', tables[model.__tablename__])
        assert sorted(columns) == sorted(model.__table__.columns.keys())
    states = ", ".join(f"'{s.value}'" for s in JobState)
    assert states.replace(" ", "") in re.sub(r'"\s*"|\s', "", tables["retrain_jobs"])
