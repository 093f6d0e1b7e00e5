"""Promote a model version, or roll back to the one before, through Triton's model control.

Triton runs with ``--model-control-mode=explicit`` (local stack and docker-compose). Which
versions of a model it serves is the ``version_policy`` of the model's ``config.pbtxt``; a switch
rewrites that policy to the one version wanted and asks Triton to load the model again
(model-control API ``load``, which rereads the config). ``load`` answers once the reload is done:
the new version is loaded beside the old one, and only when it has loaded does Triton swap it in
and unload the old one (versions out of the policy), after the requests it is running finish.
If the new version fails to load, Triton keeps the model as it was; the config is put back too.

Frames in flight during the switch are not lost: until the swap every request, with no version
pinned, is served by the old version, and after it by the new one; no request finds the model
absent. The workers send no version (``VISIONLINE_INFERENCE_MODEL_VERSION`` and
``VISIONLINE_INSPECT_MODEL_VERSION`` empty, the default) and read the version that answered from
each response, so predictions carry the new version from the first frame it served. Should a
request still fail (a Triton restart, a load that times out), the inference worker retries
``BackendUnavailable`` with backoff and then answers from the in-process ONNX Runtime model
(``services/inference/logic.py``), and the inspect worker retries with backoff and then exits
without committing, so its frames come back after the restart (``services/inspect/logic.py``).
A worker that pins a version stops being served once that version is retired.

Lineage goes to ``model_versions`` once Triton serves the new version: the version, the version it
replaced (``parent_version``), the retraining job and its metrics; the replaced version becomes
``retired`` (``rolled_back`` for the one a rollback leaves).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from visionline.db.models import ModelVersionRow
from visionline.model_registry import version_policy as policy
from visionline.model_registry.job_states import JobState, check_transition
from visionline.model_registry.store import (
    VersionInfo,
    VersionStatus,
    advance_job,
    get_job,
    model_lock,
    serving_row,
    set_status,
    version_row,
)
from visionline.model_registry.versions import serving_candidates
from visionline.models.spec import LABELS_FILENAME, METADATA_FILENAME

log = logging.getLogger(__name__)


class ModelControl(Protocol):
    """What is used of a Triton client (``tritonclient.grpc`` or ``.http``)."""

    def load_model(self, model_name: str) -> Any: ...

    def is_model_ready(self, model_name: str, model_version: str = "") -> bool: ...


class PromotionError(RuntimeError):
    """A promotion or rollback was refused or did not complete; the message says why."""


class VersionMissing(PromotionError):
    """The version's folder holds no model: nothing to serve."""


class PromotionRefused(PromotionError):
    """The registry's state forbids it (already serving, nothing to roll back to, another
    model's job): nothing was asked of Triton."""


# Called in the transaction that records a switch, with the version now serving: an audit
# entry written there lands together with the lineage, or not at all.
OnRecorded = Callable[[Session, VersionInfo], None]


def triton_control(grpc_url: str) -> ModelControl:
    import tritonclient.grpc

    return tritonclient.grpc.InferenceServerClient(grpc_url)


def version_dir(repository: Path, model: str, version: int) -> Path:
    folder = repository / model / str(version)
    if not folder.is_dir() or not any(folder.glob("model.*")):
        raise VersionMissing(f"no model in {folder} (expected model.onnx / model.py there)")
    return folder


def version_metrics(folder: Path) -> dict[str, Any]:
    """``metrics`` of the version's metadata.json, when it has any."""
    try:
        metadata = json.loads((folder / METADATA_FILENAME).read_text(encoding="utf-8"))
    except (FileNotFoundError, ValueError):
        return {}
    metrics = metadata.get("metrics") if isinstance(metadata, dict) else None
    return dict(metrics) if isinstance(metrics, dict) else {}


def ready(control: ModelControl, model: str, version: int) -> bool:
    try:
        return bool(control.is_model_ready(model, str(version)))
    except Exception:  # an unknown version or model answers with an error
        return False


def wait_until(check, timeout_s: float, poll_s: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout_s
    while True:
        if check():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(poll_s)


def serving_now(control: ModelControl, repository: Path, model: str) -> int | None:
    """The version Triton serves now, when nothing is recorded yet: the highest version of the
    config's policy, else of the folders, that Triton reports ready."""
    for version in serving_candidates(repository / model):
        if ready(control, model, version):
            return version
    return None


def switch_serving(
    control: ModelControl, repository: Path, model: str, version: int, timeout_s: float = 120.0
) -> None:
    """Make Triton serve ``version`` of ``model`` alone, and wait until it is ready."""
    model_dir = repository / model
    labels_before = use_version_labels(model_dir, version)
    before = policy.write_versions(model_dir, [version])
    try:
        control.load_model(model)
        if not wait_until(lambda: ready(control, model, version), timeout_s):
            raise PromotionError(f"{model} version {version} not ready after {timeout_s:.0f} s")
    except Exception as exc:
        policy.write_text_atomic(model_dir / policy.CONFIG, before)
        if labels_before:
            policy.write_text_atomic(model_dir / LABELS_FILENAME, labels_before)
        elif labels_before is not None:  # there was none
            (model_dir / LABELS_FILENAME).unlink(missing_ok=True)
        try:
            control.load_model(model)  # Triton kept the old model; this only rereads the config
        except Exception:
            log.exception("reloading %s with its previous config failed", model)
        if isinstance(exc, PromotionError):
            raise
        raise PromotionError(f"Triton could not load {model} version {version}: {exc}") from exc


def use_version_labels(model_dir: Path, version: int) -> str | None:
    """A version trained on a dataset has class names of its own (``<version>/labels.txt``);
    Triton reads the model folder's ``labels.txt``: put the version's there. Returns the text it
    replaced (to put back if the switch fails), None when nothing changed."""
    source, target = model_dir / str(version) / LABELS_FILENAME, model_dir / LABELS_FILENAME
    if not source.is_file():
        return None
    old = target.read_text(encoding="utf-8") if target.is_file() else ""
    new = source.read_text(encoding="utf-8")
    if new == old:
        return None
    policy.write_text_atomic(target, new)
    return old


def _now() -> datetime:
    return datetime.now(UTC)


def _job_metrics(engine: Engine, job_id: int, model: str, metrics: dict | None) -> dict | None:
    """``metrics``, else the job's; refused unless the job retrained ``model`` and may be
    promoted now."""
    job = get_job(engine, job_id)
    if job.model != model:
        raise PromotionRefused(f"job {job_id} retrained {job.model}, not {model}")
    check_transition(job.state, JobState.PROMOTED)
    return metrics if metrics is not None else (dict(job.metrics or {}) or None)


def promote(
    engine: Engine,
    control: ModelControl,
    repository: Path,
    model: str,
    version: int,
    *,
    job_id: int | None = None,
    metrics: dict[str, Any] | None = None,
    promoted_by: str = "operator",
    reason: str = "",
    timeout_s: float = 120.0,
    on_recorded: OnRecorded | None = None,
) -> VersionInfo:
    """Serve ``repository/model/version`` in place of the version served now, and record it.

    Metrics: ``metrics``, else the job's when it has any, else the ``metrics`` of the version's
    metadata.json.
    With ``job_id``, the job (in state ``evaluating``, for this model) becomes ``promoted``.
    ``on_recorded`` runs in the transaction that records it (an audit entry).
    """
    folder = version_dir(repository, model, version)
    with model_lock(engine, model):
        with Session(engine) as session:
            current = serving_row(session, model)
            previous = current.version if current else serving_now(control, repository, model)
        if previous == version:
            raise PromotionRefused(f"{model} version {version} is already serving")
        if job_id is not None:
            metrics = _job_metrics(engine, job_id, model, metrics)
        metrics = metrics if metrics is not None else version_metrics(folder)
        switch_serving(control, repository, model, version, timeout_s)
        with Session(engine, expire_on_commit=False) as session, session.begin():
            if previous is not None:
                _retire(session, model, previous, VersionStatus.RETIRED)
            row = version_row(session, model, version) or ModelVersionRow(
                model=model, version=version
            )
            row.parent_version, row.job_id, row.metrics = previous, job_id, metrics
            row.promoted_at, row.promoted_by = _now(), promoted_by
            set_status(row, VersionStatus.SERVING)
            session.add(row)
            if job_id is not None:
                why = reason or f"promoted to serving as version {version}"
                done = JobState.PROMOTED
                advance_job(engine, job_id, done, why, session=session, candidate_version=version)
            session.flush()
            info = VersionInfo.of(row)
            if on_recorded is not None:
                on_recorded(session, info)
    log.info("%s version %s serving (was %s)", model, version, previous)
    return info


def _retire(session: Session, model: str, version: int, status: VersionStatus) -> None:
    """Mark ``version`` retired or rolled back, recording it first if it never was (the version
    that served before the registry existed)."""
    row = version_row(session, model, version)
    if row is None:
        row = ModelVersionRow(model=model, version=version, metrics={}, promoted_by="baseline")
        session.add(row)
    set_status(row, status)
    session.flush()  # before another row becomes serving: one serving row per model


def rollback(
    engine: Engine,
    control: ModelControl,
    repository: Path,
    model: str,
    *,
    timeout_s: float = 120.0,
    on_recorded: OnRecorded | None = None,
) -> VersionInfo:
    """Serve again the version the current one replaced; the current one becomes rolled_back.
    ``on_recorded`` runs in the transaction that records it (an audit entry)."""
    with model_lock(engine, model):
        with Session(engine) as session:
            current = serving_row(session, model)
            if current is None:
                raise PromotionRefused(f"no promotion of {model} recorded: nothing to roll back")
            version, target = current.version, current.parent_version
        if target is None:
            raise PromotionRefused(
                f"{model} version {version} replaced no version: nothing to roll back to"
            )
        version_dir(repository, model, target)
        switch_serving(control, repository, model, target, timeout_s)
        with Session(engine, expire_on_commit=False) as session, session.begin():
            _retire(session, model, version, VersionStatus.ROLLED_BACK)
            row = version_row(session, model, target)
            if row is None:
                row = ModelVersionRow(model=model, version=target, metrics={})
                session.add(row)
            set_status(row, VersionStatus.SERVING)
            session.flush()
            info = VersionInfo.of(row)
            if on_recorded is not None:
                on_recorded(session, info)
    log.info("%s rolled back from version %s to %s", model, version, target)
    return info
