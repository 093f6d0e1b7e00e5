"""The retraining job's state machine, as plain data and functions.

::

    queued -> building_dataset -> training -> evaluating -> promoted
                                                       \\-> rejected
    any state but promoted, rejected and failed -> failed

Every transition is kept in the job's ``history``: from, to, when (ISO 8601, UTC) and why.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any


class JobState(StrEnum):
    QUEUED = "queued"
    BUILDING_DATASET = "building_dataset"
    TRAINING = "training"
    EVALUATING = "evaluating"
    PROMOTED = "promoted"
    REJECTED = "rejected"
    FAILED = "failed"


class Trigger(StrEnum):
    DRIFT = "drift"  # trigger_ref: the drift event id
    SCHEDULE = "schedule"
    OPERATOR = "operator"


FINAL = frozenset({JobState.PROMOTED, JobState.REJECTED, JobState.FAILED})
_FORWARD: dict[JobState, frozenset[JobState]] = {
    JobState.QUEUED: frozenset({JobState.BUILDING_DATASET}),
    JobState.BUILDING_DATASET: frozenset({JobState.TRAINING}),
    JobState.TRAINING: frozenset({JobState.EVALUATING}),
    JobState.EVALUATING: frozenset({JobState.PROMOTED, JobState.REJECTED}),
}
TRANSITIONS: dict[JobState, frozenset[JobState]] = {
    state: _FORWARD.get(state, frozenset()) | ({JobState.FAILED} if state not in FINAL else set())
    for state in JobState
}


class InvalidTransition(ValueError):
    """A job was asked to move where its state machine does not go."""


def allowed(current: JobState | str) -> frozenset[JobState]:
    return TRANSITIONS[JobState(current)]


def check_transition(current: JobState | str, target: JobState | str) -> JobState:
    """``target`` as a JobState when ``current -> target`` is allowed; else InvalidTransition
    with what is allowed from ``current``."""
    try:
        source, goal = JobState(current), JobState(target)
    except ValueError as exc:
        known = ", ".join(s.value for s in JobState)
        raise InvalidTransition(f"unknown job state ({exc}); states: {known}") from exc
    if goal in TRANSITIONS[source]:
        return goal
    if source in FINAL:
        raise InvalidTransition(f"job is {source.value}, a final state: it cannot become {goal}")
    options = " or ".join(sorted(s.value for s in TRANSITIONS[source]))
    raise InvalidTransition(f"a {source.value} job cannot become {goal.value} (only {options})")


def transition_record(
    current: JobState | str, target: JobState | str, reason: str, at: datetime | None = None
) -> dict[str, Any]:
    """The history entry of an allowed transition (raises InvalidTransition otherwise)."""
    goal = check_transition(current, target)
    when = (at or datetime.now(UTC)).astimezone(UTC).isoformat()
    return {"from": JobState(current).value, "to": goal.value, "at": when, "reason": reason}
