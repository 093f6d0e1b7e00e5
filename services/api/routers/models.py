"""Served models and their versions; promotion and rollback through Triton's model control;
retraining jobs (``visionline.model_registry``, ``visionline.retrain.jobs``).

A model is a folder of the Triton repository (``common.model_repository``) with a
``config.pbtxt``: the classifier and the inspection models. Promote and rollback do what
``visionline models promote|rollback`` do (``visionline.model_registry.promotion``), recording the
caller as ``promoted_by`` and in the audit log, in the transaction that records the lineage.
"""

from __future__ import annotations

import logging
from datetime import datetime
from pathlib import Path as FsPath
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Path, Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.orm import Session

from services.api.auth import Admin, Operator, Viewer
from services.api.deps import Common, Engine, PageSize, Producer
from services.api.params import ModelFilter, publish
from visionline import audit
from visionline.db.models import RetrainJobRow
from visionline.messages import Topic
from visionline.model_registry import version_policy as policy
from visionline.model_registry.job_states import InvalidTransition, JobState, Trigger
from visionline.model_registry.promotion import (
    PromotionError,
    PromotionRefused,
    VersionInfo,
    VersionMissing,
    promote,
    rollback,
    serving_now,
    triton_control,
    version_metrics,
)
from visionline.model_registry.store import JobNotFound, get_job, list_versions
from visionline.model_registry.versions import recorded_serving, repository_models, version_folders
from visionline.retrain.jobs import create_job_once, request_for
from visionline.retrain.jobs import list_jobs as query_jobs
from visionline.retrain.policy import MODELS as RETRAINABLE
from visionline.training.card_chart import read_evaluation, version_chart

log = logging.getLogger(__name__)
router = APIRouter(prefix="/v1", tags=["models"])

INT32 = 2**31 - 1  # the database's integer columns
PROMOTE_TIMEOUT_S = 120.0  # as the CLI: a version not ready by then is not promoted
ModelName = Annotated[str, Path(max_length=100, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")]
# A version folder's name: digits only (an int parameter would take "1.0" for version 1).
VersionNumber = Annotated[str, Path(pattern=r"^[1-9][0-9]{0,9}$", description="A version number")]


# --- bodies ------------------------------------------------------------------------------------


class VersionOut(BaseModel):
    model: str
    version: int
    status: str  # serving | retired | rolled_back
    parent_version: int | None
    job_id: int | None
    metrics: dict[str, Any]
    promoted_at: datetime | None
    promoted_by: str
    updated_at: datetime | None

    @classmethod
    def of(cls, info: VersionInfo) -> VersionOut:
        return cls(
            model=info.model,
            version=info.version,
            status=info.status,
            parent_version=info.parent_version,
            job_id=info.job_id,
            metrics=info.metrics,
            promoted_at=info.promoted_at,
            promoted_by=info.promoted_by,
            updated_at=info.updated_at,
        )


class ModelOut(BaseModel):
    model: str
    serving_version: int | None = Field(
        description="Recorded by the registry, else asked of Triton (its highest ready version)"
    )
    recorded: bool = Field(description="Whether the registry recorded the serving version")
    metrics: dict[str, Any] = Field(
        description="Of the serving version: recorded at its promotion, else its metadata.json"
    )
    available_versions: list[int] = Field(description="Version folders in the repository")
    retrainable: bool


class VersionsOut(BaseModel):
    model: str
    serving_version: int | None
    available_versions: list[int]
    versions: list[VersionOut] = Field(description="Recorded versions, newest number first")


class PromoteIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: int = Field(ge=1, le=INT32)
    job_id: int | None = Field(
        None,
        ge=1,
        le=INT32,
        description="The job that trained it: it must be evaluating, and becomes promoted",
    )
    reason: str = Field("", max_length=500, pattern=r"^[^\x00]*$")


class JobIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: Literal[RETRAINABLE]  # type: ignore[valid-type]
    reason: str = Field("", max_length=1000, pattern=r"^[^\x00]*$")


class JobOut(BaseModel):
    id: int
    model: str
    state: str
    trigger: str
    trigger_ref: str | None
    reason: str
    history: list[dict[str, Any]]
    parent_version: int | None
    candidate_version: int | None
    metrics: dict[str, Any]
    dataset: dict[str, Any]
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, row: RetrainJobRow) -> JobOut:
        return cls(
            id=row.id,
            model=row.model,
            state=row.state,
            trigger=row.trigger,
            trigger_ref=row.trigger_ref,
            reason=row.reason,
            history=list(row.history),
            parent_version=row.parent_version,
            candidate_version=row.candidate_version,
            metrics=dict(row.metrics or {}),
            dataset=dict(row.dataset or {}),
            created_at=row.created_at,
            updated_at=row.updated_at,
        )


class JobCreated(JobOut):
    published: bool = Field(
        description="Whether the broker took the request; if not, the job "
        "stays queued until the retrain worker starts (it runs queued jobs "
        "then)"
    )


class JobsOut(BaseModel):
    items: list[JobOut]


# --- plain functions ---------------------------------------------------------------------------


def available_versions(repository: FsPath, model: str) -> list[int]:
    """Version folders holding a model (model.onnx, or a Python backend's model.py)."""
    return version_folders(repository / model, holding="model.*")


def model_summary(engine, control, repository: FsPath, model: str) -> ModelOut:
    """What serves now: the registry's record, else what Triton reports ready."""
    row = recorded_serving(engine, model)
    if row is not None:
        version, metrics = row.version, dict(row.metrics or {})
    else:
        version = _ask_triton(control, repository, model)
        metrics = version_metrics(repository / model / str(version)) if version else {}
    return ModelOut(
        model=model,
        serving_version=version,
        recorded=row is not None,
        metrics=metrics,
        available_versions=available_versions(repository, model),
        retrainable=model in RETRAINABLE,
    )


def _ask_triton(control, repository: FsPath, model: str) -> int | None:
    try:
        return serving_now(control, repository, model)
    except (OSError, ValueError) as exc:  # an unreadable config: say nothing serves
        log.warning("serving version of %s unknown: %s", model, exc)
        return None


def _known(common: Common, model: str) -> FsPath:
    repository = common.model_repository
    if model not in repository_models(repository):
        raise HTTPException(404, f"no model {model!r} in the model repository")
    return repository


class _Control:
    """A Triton client for one request, closed after it."""

    def __init__(self, url: str) -> None:
        self.url = url

    def __enter__(self):
        try:
            self.client = triton_control(self.url)
        except Exception as exc:  # noqa: BLE001 - a bad URL or no client: Triton unavailable
            raise HTTPException(503, f"Triton at {self.url} unavailable: {exc}") from exc
        return self.client

    def __exit__(self, *exc) -> None:
        close = getattr(self.client, "close", None)
        if close is not None:
            close()


def _switch_failed(exc: Exception, model: str, version: int | None = None) -> HTTPException:
    """Refusals are the caller's (404, 409); anything else failed in Triton (502)."""
    if isinstance(exc, VersionMissing):  # its message names the folder: a server path
        if version is None:
            detail = f"the {model} version to roll back to is not in the model repository"
        else:
            detail = f"{model} has no version {version} in the model repository"
        return HTTPException(404, detail)
    if isinstance(exc, PromotionRefused | InvalidTransition):
        return HTTPException(409, str(exc))
    if isinstance(exc, JobNotFound):
        return HTTPException(404, str(exc))
    return HTTPException(502, f"Triton did not switch: {exc}")


# --- models --------------------------------------------------------------------------------------


@router.get("/models", response_model=list[ModelOut])
def list_models(engine: Engine, common: Common, _: Viewer) -> list[ModelOut]:
    """Each model of the repository with the version in service and its metrics."""
    repository = common.model_repository
    with _Control(common.triton_grpc_url) as control:
        return [
            model_summary(engine, control, repository, m) for m in repository_models(repository)
        ]


@router.get("/models/{model}/versions", response_model=VersionsOut)
def model_versions(engine: Engine, common: Common, model: ModelName, _: Viewer) -> VersionsOut:
    """Recorded versions (status, parent, job, metrics, promoted at/by) and version folders."""
    repository = _known(common, model)
    row = recorded_serving(engine, model)
    versions = list_versions(engine, model)
    return VersionsOut(
        model=model,
        serving_version=row.version if row else None,
        available_versions=available_versions(repository, model),
        versions=[VersionOut.of(v) for v in versions],
    )


def _version_folder(common: Common, model: str, version: str) -> FsPath:
    """The folder of a model's version; 404 when the repository has no such model or version
    (the name matched ``ModelName`` and is a folder of the repository: no path escapes it)."""
    folder = _known(common, model) / model / str(version)
    if not folder.is_dir():
        raise HTTPException(404, f"{model} has no version {version} in the model repository")
    return folder


@router.get(
    "/models/{model}/versions/{version}/evaluation",
    response_model=dict[str, Any],
    responses={404: {"description": "No such model or version, or it has no evaluation"}},
)
def version_evaluation(
    common: Common, model: ModelName, version: VersionNumber, _: Viewer
) -> dict[str, Any]:
    """The version's ``evaluation.json`` as training or ``visionline eval`` wrote it: held-out
    figures and, unless trained with ``--no-card``, its robustness card."""
    try:
        evaluation = read_evaluation(_version_folder(common, model, version))
    except ValueError as exc:
        raise HTTPException(404, f"{model} version {version}: unreadable evaluation") from exc
    if evaluation is None:
        raise HTTPException(404, f"{model} version {version} has no evaluation")
    return evaluation


@router.get(
    "/models/{model}/versions/{version}/robustness",
    response_class=Response,
    responses={
        200: {"content": {"image/png": {}}, "description": "The robustness card as a chart"},
        404: {"description": "No such model or version, or it has no robustness card"},
    },
)
def version_robustness(
    common: Common, model: ModelName, version: VersionNumber, _: Viewer
) -> Response:
    """The robustness card as a PNG (900 x 600): per nuisance factor the accuracy (classifiers)
    or mAP@0.5 (detectors) at three strengths, the clean figure, the worst factor. The
    version's ``robustness.png``, else drawn from its ``evaluation.json``."""
    folder = _version_folder(common, model, version)
    try:
        content = version_chart(folder, model, int(version))
    except ValueError as exc:
        raise HTTPException(404, f"no robustness card: {exc}") from exc
    return Response(content, media_type="image/png", headers={"Cache-Control": "private"})


def _audit(actor: str, action: str, detail: dict[str, Any]):
    def record(session: Session, info: VersionInfo) -> None:
        audit.record(
            session,
            actor,
            action,
            f"model:{info.model}",
            version=info.version,
            parent_version=info.parent_version,
            **detail,
        )

    return record


@router.post("/models/{model}/promote", response_model=VersionOut)
def promote_version(
    engine: Engine, common: Common, model: ModelName, body: PromoteIn, principal: Admin
) -> VersionOut:
    """Serve ``version`` in place of the current one (Triton model control), and record it.
    404 unknown model or version; 409 already serving or a job not evaluating; 502 Triton
    failed to load it (Triton keeps serving the previous version)."""
    repository = _known(common, model)
    with _Control(common.triton_grpc_url) as control:
        try:
            info = promote(
                engine,
                control,
                repository,
                model,
                body.version,
                job_id=body.job_id,
                promoted_by=principal.name,
                reason=body.reason,
                timeout_s=PROMOTE_TIMEOUT_S,
                on_recorded=_audit(
                    principal.name, "model.promote", {"job_id": body.job_id, "reason": body.reason}
                ),
            )
        except (PromotionError, InvalidTransition, JobNotFound, policy.PolicyError) as exc:
            raise _switch_failed(exc, model, body.version) from exc
    return VersionOut.of(info)


@router.post("/models/{model}/rollback", response_model=VersionOut)
def rollback_version(
    engine: Engine, common: Common, model: ModelName, principal: Admin
) -> VersionOut:
    """Serve again the version the current one replaced (that one becomes rolled_back).
    404 unknown model; 409 nothing to roll back to; 502 Triton failed to load it."""
    repository = _known(common, model)
    with _Control(common.triton_grpc_url) as control:
        try:
            info = rollback(
                engine,
                control,
                repository,
                model,
                timeout_s=PROMOTE_TIMEOUT_S,
                on_recorded=_audit(principal.name, "model.rollback", {}),
            )
        except (PromotionError, policy.PolicyError) as exc:
            raise _switch_failed(exc, model) from exc
    return VersionOut.of(info)


# --- retraining jobs ----------------------------------------------------------------------------


@router.post("/jobs", response_model=JobCreated, status_code=201)
def create_job(engine: Engine, producer: Producer, body: JobIn, principal: Operator) -> JobCreated:
    """Queue a retraining job (trigger ``operator``) and publish its request, as
    ``visionline retrain create``. 409 while the model has a queued or running job."""
    reason = body.reason or f"requested by {principal.name}"

    def record(session: Session, job_id: int) -> None:
        audit.record(
            session, principal.name, "job.create", f"job:{job_id}", model=body.model, reason=reason
        )

    created = create_job_once(engine, body.model, Trigger.OPERATOR, None, reason, on_created=record)
    if created.job_id is None:
        raise HTTPException(409, created.reason)
    job = get_job(engine, created.job_id)
    published = publish(producer, Topic.RETRAIN_REQUESTS, job.model, request_for(job))
    if not published:
        log.warning("retrain request of job %s not acked; it stays queued", job.id)
    return JobCreated(**JobOut.of(job).model_dump(), published=published)


@router.get("/jobs", response_model=JobsOut)
def list_jobs(
    engine: Engine,
    _: Viewer,
    limit: PageSize,
    model: ModelFilter = None,
    state: JobState | None = None,
) -> JobsOut:
    """Retraining jobs, newest first."""
    rows = query_jobs(engine, model, limit, state.value if state else None)
    return JobsOut(items=[JobOut.of(r) for r in rows])


@router.get("/jobs/{job_id}", response_model=JobOut)
def job_detail(engine: Engine, job_id: Annotated[int, Path(ge=1, le=INT32)], _: Viewer) -> JobOut:
    """A job: state, history of transitions, metrics, dataset."""
    try:
        return JobOut.of(get_job(engine, job_id))
    except JobNotFound as exc:
        raise HTTPException(404, str(exc)) from exc
