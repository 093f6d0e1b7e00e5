"""Plain logic of the models, drift and labels routers: no services."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from fastapi import HTTPException
from pydantic import ValidationError

from services.api.params import utc as _utc
from services.api.routers.labels import LabelIn, check_kind, feedback_of
from services.api.routers.models import (
    _switch_failed,
    available_versions,
)
from visionline.model_registry.job_states import InvalidTransition
from visionline.model_registry.promotion import PromotionError, PromotionRefused, VersionMissing
from visionline.model_registry.store import JobNotFound


def test_available_versions_are_folders_holding_a_model(tmp_path):
    for version, files in (("1", ["model.onnx"]), ("2", []), ("10", ["model.py"]), ("x", [])):
        (tmp_path / "m" / version).mkdir(parents=True)
        for file in files:
            (tmp_path / "m" / version / file).write_text("")
    assert available_versions(tmp_path, "m") == [1, 10]


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (VersionMissing("no model in x"), 404),
        (JobNotFound("no retraining job 3"), 404),
        (PromotionRefused("already serving"), 409),
        (InvalidTransition("a queued job cannot become promoted"), 409),
        (PromotionError("Triton could not load m version 2"), 502),
    ],
)
def test_switch_failures_map_to_statuses(error, status):
    failed = _switch_failed(error, "m", 2)
    assert failed.status_code == status
    if isinstance(error, VersionMissing):  # issue 15: the folder is a server path, not said
        assert failed.detail == "m has no version 2 in the model repository"
        assert "/" not in _switch_failed(error, "m").detail
    else:
        assert str(error) in failed.detail


DENT = {"defect_class": "dent", "box": [0, 0, 1, 1]}


def label(**fields) -> LabelIn:
    return LabelIn(**({"camera_id": "line-1", "frame_id": "f-1", "captured_at": 1e9} | fields))


def test_a_label_is_parts_or_a_class_not_both():
    with pytest.raises(ValidationError, match="give parts"):
        label()
    with pytest.raises(ValidationError, match="give parts"):
        label(parts=[], label="cat")
    check_kind("inspect", label(parts=[]))
    check_kind("classify", label(label="cat"))
    for pipeline, body in (("inspect", label(label="cat")), ("classify", label(parts=[]))):
        with pytest.raises(HTTPException) as refused:
            check_kind(pipeline, body)
        assert refused.value.status_code == 422


@pytest.mark.parametrize(
    "part",
    [
        {"part_id": "1", "box": [5, 0, 1, 1], "defective": False},  # inverted
        {"part_id": "1", "box": [0, 0, 1, 1], "defective": False, "defects": [DENT]},
        {"part_id": "1", "box": [0, 0, 1, float("inf")], "defective": False},
        {"part_id": "", "box": [0, 0, 1, 1], "defective": False},
        {"part_id": "1", "box": [0, 0, 1, 1], "defective": True, "visible_fraction": -0.1},
    ],
)
def test_bad_parts_are_refused(part):
    with pytest.raises(ValidationError):
        label(parts=[part])


def test_feedback_of_a_posted_label():
    body = label(
        parts=[
            {
                "part_id": "7",
                "box": [0, 0, 10, 10],
                "defective": True,
                "defects": [
                    {
                        "defect_class": "dent",
                        "box": [1, 1, 2, 2],
                        "polygon": [[1, 1], [2, 1], [2, 2]],
                    }
                ],
            }
        ]
    )
    message = feedback_of(body, labelled_at=1e9 + 5)
    assert (message.source, message.camera_id, message.frame_id) == ("operator", "line-1", "f-1")
    assert message.label_id.startswith("operator:f-1:") and message.labelled_at == 1e9 + 5
    (part,) = message.parts
    assert part.part_id == "7" and part.defects[0].polygon == [(1, 1), (2, 1), (2, 2)]
    assert feedback_of(body).label_id != message.label_id  # each post: a new labelling
    classified = feedback_of(label(label="cat"))
    assert (classified.label, classified.parts) == ("cat", [])


def test_times_without_zone_are_utc():
    assert _utc(datetime(2026, 1, 1)) == datetime(2026, 1, 1, tzinfo=UTC)
    assert _utc(None) is None
