"""visionline.retrain without servers or training: the promotion decision, drift -> job with
its per-model debounce, run_job through fake steps, and the RetrainRequest message."""

from __future__ import annotations

import pytest
from pydantic import ValidationError
from sqlalchemy.orm import Session

from tests.factories import drift_event, window_stats
from visionline.db.models import Camera, RetrainJobRow
from visionline.messages import DriftEvent, RetrainRequest, Topic, from_json, to_json
from visionline.model_registry.store import advance_job, get_job
from visionline.retrain.jobs import (
    Evaluation,
    JobNotQueued,
    JobSteps,
    camera_pipeline,
    create_job_once,
    fail_interrupted,
    jobs_for_drift,
    outcome,
    request_for,
    run_job,
)
from visionline.retrain.policy import dataset_plan, decide_promotion, model_for_drift
from visionline.settings import RetrainSettings

METRIC = "summary.nuisance_mean.detector_auroc"
ENABLED = ("defect_detector", "part_detector")


def scored(value: float | None) -> dict:
    return {"summary": {"nuisance_mean": {"detector_auroc": value}}}


# --- decide_promotion ----------------------------------------------------------------------


def test_promoted_when_better_by_the_margin() -> None:
    promote, reason = decide_promotion(scored(0.95), scored(0.93), METRIC, 0.01)
    assert promote
    assert reason.startswith("promoted:") and "0.9500 vs serving 0.9300" in reason
    assert "+0.0200" in reason and "margin 0.0100" in reason


def test_exactly_the_margin_is_enough() -> None:
    assert decide_promotion(scored(0.935), scored(0.93), METRIC, 0.005)[0]


def test_rejected_when_better_by_less_than_the_margin() -> None:
    promote, reason = decide_promotion(scored(0.935), scored(0.93), METRIC, 0.01)
    assert not promote
    assert reason.startswith("rejected: better, but by less than the margin")
    assert "+0.0050" in reason


def test_rejected_when_worse_or_equal() -> None:
    promote, reason = decide_promotion(scored(0.90), scored(0.93), METRIC, 0.0)
    assert not promote and reason.startswith("rejected: not better") and "-0.0300" in reason
    assert not decide_promotion(scored(0.93), scored(0.93), METRIC, 0.01)[0]


def test_rejected_when_a_metric_is_missing() -> None:
    promote, reason = decide_promotion(scored(None), scored(0.9), METRIC, 0.0)
    assert not promote and "candidate has no" in reason
    promote, reason = decide_promotion(scored(0.9), {}, METRIC, 0.0)
    assert not promote and "serving version has no" in reason


def test_other_metric_paths() -> None:
    candidate = {"parts": {"f1": 0.97}}
    assert decide_promotion(candidate, {"parts": {"f1": 0.95}}, "parts.f1", 0.01)[0]
    assert not decide_promotion(candidate, {"parts": {"f1": 0.965}}, "parts.f1", 0.01)[0]


# --- drift -> job --------------------------------------------------------------------------


def drift(signal: str = "brightness", camera: str = "line-1", frame: str = "f-9") -> DriftEvent:
    before, after = window_stats(100.0), window_stats(60.0)
    return drift_event(camera, signal, frame, detected_frame_id="f-1", before=before, after=after)


@pytest.mark.parametrize(
    ("signal", "pipeline", "model"),
    [
        ("brightness", "inspect", "defect_detector"),
        ("blur", "inspect", "defect_detector"),
        ("embedding_distance", "inspect", "defect_detector"),
        ("anomaly_score", "inspect", "defect_detector"),
        ("defect_score", "inspect", "defect_detector"),
        ("part_confidence", "inspect", "part_detector"),
        ("brightness", "classify", None),
        ("confidence", "classify", None),
        ("brightness", None, None),
    ],
)
def test_which_model_a_drift_retrains(signal: str, pipeline: str | None, model: str) -> None:
    chosen, reason = model_for_drift(drift(signal), pipeline, ENABLED)
    assert chosen == model
    assert signal in reason and "line-1" in reason
    if pipeline == "classify":
        assert "not supported yet" in reason


def test_a_model_not_enabled_is_not_retrained() -> None:
    chosen, reason = model_for_drift(drift("part_confidence"), "inspect", ("defect_detector",))
    assert chosen is None and "part_detector is not among the enabled models" in reason


def test_default_settings_enable_the_defect_detector_only() -> None:
    settings = RetrainSettings()
    assert settings.enabled_models == ("defect_detector",) and settings.metric == METRIC


@pytest.fixture
def engine(engine):
    """The unit tests' database with two cameras: line-1 inspects, dock-1 classifies."""
    with Session(engine) as session, session.begin():
        session.add(Camera(camera_id="line-1", pipeline="inspect"))
        session.add(Camera(camera_id="dock-1", pipeline="classify"))
    return engine


def test_a_drift_creates_a_queued_job_with_its_window(engine) -> None:
    assert camera_pipeline(engine, "line-1") == "inspect"
    assert camera_pipeline(engine, "nope") is None
    created = jobs_for_drift(engine, drift(), camera_pipeline(engine, "line-1"), ENABLED)
    assert created.model == "defect_detector" and created.job_id is not None
    job = get_job(engine, created.job_id)
    assert (job.state, job.trigger, job.trigger_ref) == ("queued", "drift", "line-1:brightness:f-9")
    assert job.dataset["drift"]["signal"] == "brightness"
    assert job.dataset["drift"]["window"]["mean"] == 60.0
    request = request_for(job)
    assert (request.job_id, request.model, request.trigger) == (job.id, "defect_detector", "drift")
    assert request.camera_id == "line-1"


def test_a_classify_camera_creates_no_job(engine) -> None:
    created = jobs_for_drift(engine, drift(camera="dock-1"), "classify", ENABLED)
    assert created.job_id is None and created.model is None and "classify" in created.reason


def test_debounce_while_a_job_of_the_model_is_open(engine) -> None:
    first = jobs_for_drift(engine, drift(frame="f-1"), "inspect", ENABLED)
    second = jobs_for_drift(engine, drift("blur", frame="f-2"), "inspect", ENABLED)
    assert second.job_id is None and second.open_job_id == first.job_id
    assert f"job {first.job_id} for defect_detector is already queued" in second.reason
    # another model is not held back
    other = jobs_for_drift(engine, drift("part_confidence", frame="f-3"), "inspect", ENABLED)
    assert other.job_id is not None and other.model == "part_detector"
    # still debounced while running; a new job once the open one is final
    advance_job(engine, first.job_id, "building_dataset", "x")
    assert jobs_for_drift(engine, drift(frame="f-4"), "inspect", ENABLED).job_id is None
    advance_job(engine, first.job_id, "failed", "x")
    again = jobs_for_drift(engine, drift(frame="f-5"), "inspect", ENABLED)
    assert again.job_id is not None and again.job_id != first.job_id


def test_the_same_drift_event_again_gives_its_job(engine) -> None:
    first = jobs_for_drift(engine, drift(), "inspect", ENABLED)
    repeat = jobs_for_drift(engine, drift(), "inspect", ENABLED)
    assert repeat.job_id == first.job_id and repeat.publish  # still queued: publish again
    advance_job(engine, first.job_id, "building_dataset", "x")
    advance_job(engine, first.job_id, "failed", "x")
    later = jobs_for_drift(engine, drift(), "inspect", ENABLED)
    assert later.job_id == first.job_id and not later.publish


def test_an_operator_job_is_debounced_too(engine) -> None:
    created = create_job_once(engine, "defect_detector", "operator", reason="new lamps")
    refused = create_job_once(engine, "defect_detector", "operator", reason="again")
    assert created.job_id is not None and refused.job_id is None
    assert refused.open_job_id == created.job_id


def test_interrupted_jobs_fail_at_start(engine) -> None:
    running = create_job_once(engine, "defect_detector", "operator").job_id
    queued = create_job_once(engine, "part_detector", "operator").job_id
    advance_job(engine, running, "building_dataset", "x")
    advance_job(engine, running, "training", "x")
    assert fail_interrupted(engine) == [running]
    job = get_job(engine, running)
    assert job.state == "failed" and "while the job was training" in job.reason
    assert get_job(engine, queued).state == "queued"


def test_dataset_plan_adds_the_drift_nuisances() -> None:
    plan = dataset_plan(101, 16, 10, 6, "blur")
    names = [name for name, _ in plan["conditions"]]
    assert names[0] == "clean" and len(names) == 22 and plan["frames"] == 220
    drifted = plan["conditions"][16:]
    assert {n for n, _ in drifted} == {"drift:lens_blur", "drift:motion_blur", "drift:resolution"}
    assert all(0.3 <= s <= 0.8 for _, f in drifted for s in f.values())
    assert plan == dataset_plan(101, 16, 10, 6, "blur")  # seeded
    unknown = dataset_plan(101, 16, 10, 2, "defect_score")
    assert [n for n, _ in unknown["conditions"][16:]] == ["drift:mixed", "drift:mixed"]


# --- run_job with fake steps ----------------------------------------------------------------


class FakeSteps:
    def __init__(self, engine, candidate: float = 0.95, serving: float = 0.90, fail: str = ""):
        self.engine, self.candidate, self.serving, self.fail = engine, candidate, serving, fail
        self.calls: list[str] = []
        self.promoted: list[tuple[int, int, str]] = []

    def _step(self, name: str) -> None:
        self.calls.append(name)
        if name == self.fail:
            raise RuntimeError(f"{name} broke")

    def build_dataset(self, job):
        self._step("build_dataset")
        assert get_job(self.engine, job.id).state == "building_dataset"
        return {"seed": 7, "frames": 120, "conditions": [["clean", {}]]}, 3

    def train(self, job):
        self._step("train")
        assert job.parent_version == 3 and job.dataset["frames"] == 120
        assert get_job(self.engine, job.id).state == "training"
        return 4

    def evaluate(self, job, candidate):
        self._step("evaluate")
        assert get_job(self.engine, job.id).state == "evaluating"
        return Evaluation(scored(self.candidate), scored(self.serving), job.parent_version)

    def decide(self, candidate, serving):
        return decide_promotion(candidate, serving, METRIC, 0.01)

    def promote(self, job, candidate, metrics, reason):
        self._step("promote")
        self.promoted.append((job.id, candidate, reason))

    def steps(self) -> JobSteps:
        return JobSteps(self.build_dataset, self.train, self.evaluate, self.decide, self.promote)


def moves(job) -> list[tuple[str | None, str]]:
    return [(h["from"], h["to"]) for h in job.history]


def test_happy_path_ends_promoted_with_every_transition(engine) -> None:
    job_id = create_job_once(engine, "defect_detector", "operator", reason="test").job_id
    fake = FakeSteps(engine)
    job = run_job(engine, job_id, fake.steps())
    assert job.state == "promoted"
    assert moves(job) == [
        (None, "queued"),
        ("queued", "building_dataset"),
        ("building_dataset", "training"),
        ("training", "evaluating"),
        ("evaluating", "promoted"),
    ]
    assert fake.calls == ["build_dataset", "train", "evaluate", "promote"]
    assert (job.parent_version, job.candidate_version) == (3, 4)
    assert job.dataset["seed"] == 7 and job.dataset["frames"] == 120
    assert job.reason.startswith("promoted:") and job.metrics["decision"] == job.reason
    assert job.metrics["candidate"] == scored(0.95) and job.metrics["serving_version"] == 3
    assert fake.promoted == [(job_id, 4, job.reason)]


def test_a_candidate_not_better_by_the_margin_is_rejected(engine) -> None:
    job_id = create_job_once(engine, "defect_detector", "operator").job_id
    fake = FakeSteps(engine, candidate=0.905, serving=0.90)
    job = run_job(engine, job_id, fake.steps())
    assert job.state == "rejected" and moves(job)[-1] == ("evaluating", "rejected")
    assert job.reason.startswith("rejected: better, but by less than the margin")
    assert job.metrics["serving"] == scored(0.90) and job.candidate_version == 4
    assert "promote" not in fake.calls and fake.promoted == []


@pytest.mark.parametrize(
    ("step", "state_before"),
    [
        ("build_dataset", "building_dataset"),
        ("train", "training"),
        ("evaluate", "evaluating"),
        ("promote", "evaluating"),
    ],
)
def test_a_step_raising_fails_the_job_with_the_error(engine, step: str, state_before) -> None:
    job_id = create_job_once(engine, "defect_detector", "operator").job_id
    job = run_job(engine, job_id, FakeSteps(engine, fail=step).steps())
    assert job.state == "failed" and moves(job)[-1] == (state_before, "failed")
    assert job.reason == f"RuntimeError: {step} broke"
    # the model is free again: a new job can be created
    assert create_job_once(engine, "defect_detector", "operator").job_id is not None


def test_a_job_not_queued_is_not_run_again(engine) -> None:
    job_id = create_job_once(engine, "defect_detector", "operator").job_id
    run_job(engine, job_id, FakeSteps(engine).steps())
    fake = FakeSteps(engine)
    with pytest.raises(JobNotQueued):
        run_job(engine, job_id, fake.steps())
    assert fake.calls == [] and get_job(engine, job_id).state == "promoted"


# --- the message ----------------------------------------------------------------------------


def test_retrain_request_round_trip_and_version() -> None:
    assert Topic.RETRAIN_REQUESTS == "visionline.retrain.requests"
    request = RetrainRequest(
        job_id=12,
        model="defect_detector",
        trigger="drift",
        trigger_ref="line-1:brightness:f-9",
        camera_id="line-1",
        created_at=1700000000.5,
    )
    assert from_json(to_json(request), RetrainRequest) == request
    assert request.schema_version == 1
    operator = RetrainRequest(job_id=1, model="part_detector", trigger="operator")
    assert operator.camera_id is None and operator.trigger_ref is None
    with pytest.raises(ValidationError):
        RetrainRequest.model_validate({**request.model_dump(), "schema_version": 2})
    with pytest.raises(ValidationError):
        RetrainRequest.model_validate({**request.model_dump(), "trigger": "whim"})
    with pytest.raises(ValidationError):
        RetrainRequest.model_validate({**request.model_dump(), "surprise": 1})


@pytest.mark.parametrize(
    ("state", "reason", "said"),
    [
        ("promoted", "promoted: shadow.f1 1.0 vs 0.6", "promoted: shadow.f1 1.0 vs 0.6"),
        ("failed", "RuntimeError: no frames", "failed: RuntimeError: no frames"),
        ("failed", None, "failed: "),
    ],
)
def test_a_jobs_outcome_names_its_state_once(state: str, reason: str | None, said: str) -> None:
    assert outcome(RetrainJobRow(model="defect_detector", state=state, reason=reason)) == said
