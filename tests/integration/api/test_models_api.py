"""Models and retraining jobs through the operator API, on the session's real stack.

Promotion and rollback go through the stack's real Triton (explicit model control) on a model
of this test's own: the classifier copied into ``<repository>/apitest_<id>`` as versions 1 and 2
(model files hard-linked), loaded for the test, then unloaded and removed. The models other
tests use are never switched. The stack runs no retrain worker: a created job stays queued, and
is failed at teardown so that it holds back no other job of its model. A version's evaluation
and robustness card are read from a repository of their own (a temporary folder).
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path

import cv2
import numpy as np
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from services.api.app import create_app
from tests.integration.pipeline import TopicReader, free_port
from tests.unit.card_evaluations import classifier_evaluation, detector_evaluation
from visionline.db.models import AuditRow, ModelVersionRow
from visionline.kafka import producer
from visionline.messages import Topic
from visionline.model_registry import version_policy as policy
from visionline.model_registry.promotion import ready, triton_control, wait_until
from visionline.model_registry.store import advance_job
from visionline.models import spec
from visionline.retrain.jobs import open_job
from visionline.retrain.policy import MODELS
from visionline.settings import CommonSettings
from visionline.training.card_chart import CHART_FILE, EVALUATION_FILE, render_card
from visionline.training.dataset_cli import write_card_chart

pytestmark = pytest.mark.integration


def common_of(stack, **changes) -> CommonSettings:
    fields = dict(
        kafka_bootstrap=stack.kafka_bootstrap,
        database_url=stack.database_url,
        triton_grpc_url=stack.triton_grpc_url,
        model_repository=stack.settings.model_repository,
    )
    return CommonSettings(**(fields | changes))


@pytest.fixture(scope="module")
def client(stack, engine, api_settings):
    """The API with the stack's Triton and model repository (the shared client has neither)."""
    app = create_app(common_of(stack), api_settings, engine, producer(stack.kafka_bootstrap))
    with TestClient(app) as test_client:
        yield test_client


def _link(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


@pytest.fixture(scope="module")
def test_model(stack, engine):
    """``apitest_<id>``: the classifier as versions 1 (serving) and 2, loaded on Triton."""
    repository = stack.settings.model_repository
    source = repository / spec.MODEL_NAME
    name = f"apitest_{uuid.uuid4().hex[:8]}"
    folder = repository / name
    control = triton_control(stack.triton_grpc_url)
    try:
        folder.mkdir()
        config = (source / policy.CONFIG).read_text()
        (folder / policy.CONFIG).write_text(config.replace(f'"{spec.MODEL_NAME}"', f'"{name}"'))
        _link(source / spec.LABELS_FILENAME, folder / spec.LABELS_FILENAME)
        for version in (1, 2):
            (folder / str(version)).mkdir()
            for file in (spec.MODEL_FILENAME, "model.py"):
                _link(source / "1" / file, folder / str(version) / file)
            metrics = {"metrics": {"top1": 0.5 + version / 10}}
            (folder / str(version) / "metadata.json").write_text(json.dumps(metrics))
        policy.write_versions(folder, [1])
        control.load_model(name)
        assert wait_until(lambda: ready(control, name, 1), 120)
        yield name
    finally:
        try:
            control.unload_model(name)
        except Exception:  # noqa: BLE001 - never loaded
            pass
        control.close()
        with Session(engine) as session, session.begin():
            session.execute(delete(ModelVersionRow).where(ModelVersionRow.model == name))
        shutil.rmtree(folder, ignore_errors=True)


def audits(engine, target: str) -> list[AuditRow]:
    with Session(engine) as session:
        return list(session.scalars(select(AuditRow).where(AuditRow.target == target)))


# --- models ------------------------------------------------------------------------------------


def test_models_need_a_token_and_the_admin_role(client, as_role, test_model):
    assert client.get("/v1/models").status_code == 401
    bad = {"Authorization": "Bearer vl_not-a-token"}
    assert client.get(f"/v1/models/{test_model}/versions", headers=bad).status_code == 401
    for role in ("viewer", "operator"):
        promote = client.post(
            f"/v1/models/{test_model}/promote", json={"version": 2}, headers=as_role(role)
        )
        assert promote.status_code == 403, promote.text
        rollback = client.post(f"/v1/models/{test_model}/rollback", headers=as_role(role))
        assert rollback.status_code == 403
    assert client.post(f"/v1/models/{test_model}/promote", json={"version": 2}).status_code == 401


def test_models_list_what_serves(client, as_role, test_model):
    response = client.get("/v1/models", headers=as_role("viewer"))
    assert response.status_code == 200, response.text
    models = {m["model"]: m for m in response.json()}
    assert spec.MODEL_NAME in models and models[spec.MODEL_NAME]["retrainable"] is False
    mine = models[test_model]
    # Nothing recorded yet: Triton's answer, and the serving version's metadata.json.
    assert (mine["serving_version"], mine["recorded"]) == (1, False)
    assert mine["available_versions"] == [1, 2] and mine["metrics"] == {"top1": 0.6}
    versions = client.get(f"/v1/models/{test_model}/versions", headers=as_role("viewer")).json()
    assert versions == {
        "model": test_model,
        "serving_version": None,
        "available_versions": [1, 2],
        "versions": [],
    }


def test_unknown_models_and_bad_input(client, as_role, test_model):
    admin = as_role("admin")
    assert client.get("/v1/models/no_such_model/versions", headers=admin).status_code == 404
    assert client.get("/v1/models/..%2Fetc/versions", headers=admin).status_code in (404, 422)
    unknown = client.post("/v1/models/no_such_model/promote", json={"version": 1}, headers=admin)
    assert unknown.status_code == 404 and "no_such_model" in unknown.json()["detail"]
    assert client.post("/v1/models/no_such_model/rollback", headers=admin).status_code == 404
    missing = client.post(f"/v1/models/{test_model}/promote", json={"version": 9}, headers=admin)
    assert missing.status_code == 404, missing.text
    # Issue 15: the answer named the version's folder, a path on the server.
    assert missing.json()["detail"] == f"{test_model} has no version 9 in the model repository"
    for body in (
        {},
        {"version": 0},
        {"version": "two"},
        {"version": 2, "extra": 1},
        {"version": 2**40},
        {"version": 2, "job_id": 0},
    ):
        bad = client.post(f"/v1/models/{test_model}/promote", json=body, headers=admin)
        assert bad.status_code == 422, (body, bad.text)
    job = client.post(
        f"/v1/models/{test_model}/promote", json={"version": 2, "job_id": 2**31 - 1}, headers=admin
    )
    assert job.status_code == 404 and "no retraining job" in job.json()["detail"]
    serving = client.post(f"/v1/models/{test_model}/promote", json={"version": 1}, headers=admin)
    assert serving.status_code == 409 and "already serving" in serving.json()["detail"]
    nothing = client.post(f"/v1/models/{test_model}/rollback", headers=admin)
    assert nothing.status_code == 409 and "nothing to roll back" in nothing.json()["detail"]


def test_promote_and_rollback_through_triton(client, as_role, engine, stack, test_model):
    admin, control = as_role("admin"), triton_control(stack.triton_grpc_url)
    config = stack.settings.model_repository / test_model / policy.CONFIG

    promoted = client.post(
        f"/v1/models/{test_model}/promote", json={"version": 2, "reason": "better"}, headers=admin
    )
    assert promoted.status_code == 200, promoted.text
    body = promoted.json()
    assert (body["version"], body["status"], body["parent_version"]) == (2, "serving", 1)
    assert body["promoted_by"] == "test-admin" and body["metrics"] == {"top1": 0.7}
    assert ready(control, test_model, 2)
    assert wait_until(lambda: not ready(control, test_model, 1), 30)
    assert policy.served_versions(config.read_text()) == [2]

    versions = client.get(f"/v1/models/{test_model}/versions", headers=as_role("viewer")).json()
    assert versions["serving_version"] == 2
    listed_versions = [(v["version"], v["status"]) for v in versions["versions"]]
    assert listed_versions == [(2, "serving"), (1, "retired")]
    listed = {m["model"]: m for m in client.get("/v1/models", headers=admin).json()}
    assert (listed[test_model]["serving_version"], listed[test_model]["recorded"]) == (2, True)
    (entry,) = [a for a in audits(engine, f"model:{test_model}") if a.action == "model.promote"]
    assert entry.actor == "test-admin" and entry.detail["version"] == 2

    back = client.post(f"/v1/models/{test_model}/rollback", headers=admin)
    assert back.status_code == 200, back.text
    assert (back.json()["version"], back.json()["status"]) == (1, "serving")
    assert ready(control, test_model, 1)
    assert policy.served_versions(config.read_text()) == [1]
    statuses = {
        v["version"]: v["status"]
        for v in client.get(f"/v1/models/{test_model}/versions", headers=admin).json()["versions"]
    }
    assert statuses == {1: "serving", 2: "rolled_back"}
    assert any(a.action == "model.rollback" for a in audits(engine, f"model:{test_model}"))
    again = client.post(f"/v1/models/{test_model}/rollback", headers=admin)
    assert again.status_code == 409 and "nothing to roll back to" in again.json()["detail"]
    control.close()


def test_a_version_triton_cannot_load_is_a_502(client, as_role, stack, test_model):
    """A broken model file: Triton fails the load and keeps serving what it served."""
    admin, control = as_role("admin"), triton_control(stack.triton_grpc_url)
    folder = stack.settings.model_repository / test_model
    config = (folder / policy.CONFIG).read_text()
    broken = folder / "3"
    broken.mkdir()
    (broken / spec.MODEL_FILENAME).write_bytes(b"not an onnx model")
    _link(folder / "1" / "model.py", broken / "model.py")
    try:
        failed = client.post(f"/v1/models/{test_model}/promote", json={"version": 3}, headers=admin)
        assert failed.status_code == 502, failed.text
        assert "Triton" in failed.json()["detail"]
        assert (folder / policy.CONFIG).read_text() == config  # put back
        assert ready(control, test_model, 1) and not ready(control, test_model, 3)
    finally:
        shutil.rmtree(broken)
        control.close()


def test_triton_unreachable_is_a_502_not_a_500(stack, engine, api_settings, as_role, test_model):
    common = common_of(stack, triton_grpc_url=f"127.0.0.1:{free_port()}")
    with TestClient(create_app(common, api_settings, engine)) as down:
        response = down.post(
            f"/v1/models/{test_model}/promote", json={"version": 2}, headers=as_role("admin")
        )
        assert response.status_code == 502, response.text
        listed = down.get("/v1/models", headers=as_role("viewer"))
        assert listed.status_code == 200
        mine = {m["model"]: m for m in listed.json()}[test_model]
        assert mine["serving_version"] in (None, 1)  # recorded by the rollback, if it ran


# --- evaluations and robustness cards -----------------------------------------------------------


@pytest.fixture(scope="module")
def card_client(stack, engine, api_settings, tmp_path_factory):
    """The API on a repository of its own: ``carded`` with version 1 (evaluation.json with a
    classifier's card), 2 (trained with --no-card), 3 (a detector's card and its
    robustness.png, as training writes them) and 4 (no evaluation)."""
    repository = tmp_path_factory.mktemp("card-repository")
    folder = repository / "carded"
    (folder / "4").mkdir(parents=True)
    (folder / policy.CONFIG).write_text('name: "carded"\nbackend: "onnxruntime"\n')
    no_card = {k: v for k, v in classifier_evaluation().items() if k != "robustness"}
    for version, evaluation in ((1, classifier_evaluation()), (2, no_card)):
        (folder / str(version)).mkdir()
        (folder / str(version) / EVALUATION_FILE).write_text(json.dumps(evaluation))
    (folder / "3").mkdir()
    write_card_chart(folder / "3", detector_evaluation(), "scenes@" + "ab" * 32)
    app = create_app(common_of(stack, model_repository=repository), api_settings, engine)
    with TestClient(app) as test_client:
        yield test_client, folder


def _png(response) -> np.ndarray:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/png"
    image = cv2.imdecode(np.frombuffer(response.content, np.uint8), cv2.IMREAD_COLOR)
    assert image is not None and image.shape == (600, 900, 3)
    return image


def test_a_viewer_reads_a_versions_robustness_card_as_a_png(card_client, as_role):
    client, folder = card_client
    viewer = as_role("viewer")
    assert client.get("/v1/models/carded/versions/1/robustness").status_code == 401
    drawn = client.get("/v1/models/carded/versions/1/robustness", headers=viewer)
    assert _png(drawn).std() > 30  # drawn from evaluation.json: bars and text on white
    assert drawn.content == render_card({"model": "carded", "version": 1} | classifier_evaluation())
    assert not (folder / "1" / CHART_FILE).exists()  # the API writes nothing
    stored = client.get("/v1/models/carded/versions/3/robustness", headers=viewer)
    _png(stored)
    assert stored.content == (folder / "3" / CHART_FILE).read_bytes()
    assert stored.content != drawn.content


def test_a_versions_evaluation_is_its_json(card_client, as_role):
    client, folder = card_client
    viewer = as_role("viewer")
    assert client.get("/v1/models/carded/versions/1/evaluation").status_code == 401
    response = client.get("/v1/models/carded/versions/1/evaluation", headers=viewer)
    assert response.status_code == 200, response.text
    assert response.json() == json.loads((folder / "1" / EVALUATION_FILE).read_text())
    assert response.json()["worst_factor"] == classifier_evaluation()["worst_factor"]
    missing = client.get("/v1/models/carded/versions/4/evaluation", headers=viewer)
    assert missing.status_code == 404 and "has no evaluation" in missing.json()["detail"]


def test_no_card_no_version_and_paths_are_404_or_422(card_client, as_role):
    client, _ = card_client
    viewer = as_role("viewer")
    for version, says in ((2, "no robustness card"), (4, "has no evaluation.json"), (9, "no ver")):
        response = client.get(f"/v1/models/carded/versions/{version}/robustness", headers=viewer)
        assert response.status_code == 404 and says in response.json()["detail"], response.text
    unknown = client.get("/v1/models/no_such_model/versions/1/robustness", headers=viewer)
    assert unknown.status_code == 404 and "no model" in unknown.json()["detail"]
    for path in (
        "/v1/models/..%2Fcarded/versions/1/robustness",
        "/v1/models/carded%2F1/versions/1/evaluation",
        "/v1/models/../carded/versions/1/robustness",
        "/v1/models/carded/versions/..%2F1/robustness",
        "/v1/models/carded/versions/1%2F..%2F..%2F3/robustness",
        "/v1/models/carded/versions/0/robustness",
        "/v1/models/carded/versions/-1/evaluation",
        "/v1/models/carded/versions/1.0/robustness",
        f"/v1/models/carded/versions/{2**40}/robustness",
    ):
        response = client.get(path, headers=viewer)
        assert response.status_code in (404, 422), (path, response.status_code)
        assert response.headers["content-type"] == "application/json", path


# --- retraining jobs ---------------------------------------------------------------------------


@pytest.fixture
def free_model(engine):
    """A retrainable model with no open job; any job the test leaves open is failed after."""
    model = next((m for m in MODELS if open_job(engine, m) is None), None)
    assert model is not None, "every retrainable model has an open job"
    yield model
    while (job := open_job(engine, model)) is not None:
        advance_job(engine, job.id, "failed", "test cleanup: the session stack has no worker")


def test_jobs_need_a_token_and_the_operator_role(client, as_role, free_model):
    assert client.post("/v1/jobs", json={"model": free_model}).status_code == 401
    refused = client.post("/v1/jobs", json={"model": free_model}, headers=as_role("viewer"))
    assert refused.status_code == 403
    assert client.get("/v1/jobs").status_code == 401
    assert client.get("/v1/jobs/1").status_code == 401


def test_create_list_and_read_a_job(client, as_role, engine, stack, free_model):
    requests = TopicReader(stack.kafka_bootstrap, Topic.RETRAIN_REQUESTS)
    try:
        created = client.post(
            "/v1/jobs",
            json={"model": free_model, "reason": "api test"},
            headers=as_role("operator"),
        )
        assert created.status_code == 201, created.text
        job = created.json()
        assert (job["model"], job["state"], job["trigger"]) == (free_model, "queued", "operator")
        assert job["reason"] == "api test" and job["published"] is True
        assert [h["to"] for h in job["history"]] == ["queued"]
        seen = requests.wait_for(lambda s: any(m.get("job_id") == job["id"] for m in s), 30)
        (request,) = [m for m in seen if m.get("job_id") == job["id"]]
        assert (request["model"], request["trigger"]) == (free_model, "operator")
    finally:
        requests.close()
    (entry,) = audits(engine, f"job:{job['id']}")
    assert (entry.actor, entry.action) == ("test-operator", "job.create")

    again = client.post("/v1/jobs", json={"model": free_model}, headers=as_role("admin"))
    assert again.status_code == 409 and f"job {job['id']}" in again.json()["detail"]

    viewer = as_role("viewer")
    one = client.get(f"/v1/jobs/{job['id']}", headers=viewer)
    assert one.status_code == 200 and one.json()["state"] == "queued"
    assert one.json()["dataset"] == {} and one.json()["metrics"] == {}
    listed = client.get(
        "/v1/jobs", params={"model": free_model, "state": "queued"}, headers=viewer
    ).json()["items"]
    assert [j["id"] for j in listed] == [job["id"]]
    promoted = client.get("/v1/jobs", params={"state": "promoted", "limit": 5}, headers=viewer)
    assert all(j["state"] == "promoted" for j in promoted.json()["items"])
    newest = client.get("/v1/jobs", params={"limit": 1}, headers=viewer).json()["items"]
    assert len(newest) == 1 and newest[0]["id"] >= job["id"]


def test_job_bad_input_and_unknown_ids(client, as_role):
    operator, viewer = as_role("operator"), as_role("viewer")
    for body in (
        {},
        {"model": "no_such_model"},
        {"model": MODELS[0], "extra": 1},
        {"model": MODELS[0], "reason": "x" * 5000},
        {"model": MODELS[0], "reason": "a\x00b"},
    ):
        response = client.post("/v1/jobs", json=body, headers=operator)
        assert response.status_code == 422, (body, response.text)
    assert client.get("/v1/jobs/2147483647", headers=viewer).status_code == 404
    for bad in ("0", "abc", str(2**40)):
        assert client.get(f"/v1/jobs/{bad}", headers=viewer).status_code == 422
    for params in ({"state": "bogus"}, {"limit": 0}, {"limit": 10**6}, {"model": "a\x00"}):
        response = client.get("/v1/jobs", params=params, headers=viewer)
        assert response.status_code == 422, (params, response.text)
