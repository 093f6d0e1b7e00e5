"""Labels: an operator's correct labels of a frame, and the accuracy they measure.

A posted label becomes a ``LabelFeedback`` (source ``operator``) on ``visionline.labels.feedback``,
keyed by camera, as every other label; the labels worker stores it (``frame_labels``) and joins it
to the frame's predictions, replacing an older labelling of the frame. It is published, not
written here, so the worker stays the one writer of labels and outcomes.
"""

from __future__ import annotations

import logging
import time
import uuid
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator
from sqlalchemy.orm import Session

from services.api.auth import Operator, Viewer
from services.api.deps import Engine, PageSize, Producer
from services.api.params import NO_NUL, ModelFilter, ShortFilter, publish, utc
from visionline import audit
from visionline.db.models import Camera
from visionline.labels.join import label_problem
from visionline.labels.store import accuracy
from visionline.messages import LabelFeedback, LabelledDefect, LabelledPart, Topic

log = logging.getLogger(__name__)
router = APIRouter(prefix="/v1/labels", tags=["labels"])

LATEST = 253402300799.0  # 9999-12-31T23:59:59Z: later times have no datetime
Finite = Annotated[float, Field(allow_inf_nan=False)]
Box = tuple[Finite, Finite, Finite, Finite]


def Text(most: int):  # noqa: N802 - a type factory
    return Annotated[str, StringConstraints(min_length=1, max_length=most, pattern=NO_NUL)]


def _check_box(box: Box) -> Box:
    if box[0] > box[2] or box[1] > box[3]:
        raise ValueError(f"box {box}: x0 <= x1 and y0 <= y1 (x0, y0, x1, y1 in frame pixels)")
    return box


class DefectIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    defect_class: Text(64)
    box: Box
    polygon: list[tuple[Finite, Finite]] | None = Field(None, min_length=3, max_length=2000)

    @model_validator(mode="after")
    def _box(self) -> DefectIn:
        _check_box(self.box)
        return self


class PartIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    part_id: Text(128)
    box: Box
    defective: bool
    defects: list[DefectIn] = Field(default_factory=list, max_length=100)
    visible_fraction: float = Field(1.0, ge=0.0, le=1.0)

    @model_validator(mode="after")
    def _consistent(self) -> PartIn:
        _check_box(self.box)
        if self.defects and not self.defective:
            raise ValueError("a part with defects is defective")
        return self


class LabelIn(BaseModel):
    """Inspection cameras: ``parts`` (every part in the frame; [] for none). Classify cameras:
    ``label``, the frame's true class."""

    model_config = ConfigDict(extra="forbid")

    camera_id: Text(64)
    frame_id: Text(128)
    captured_at: float = Field(gt=0, le=LATEST, allow_inf_nan=False, description="Epoch seconds")
    parts: list[PartIn] | None = Field(None, max_length=500)
    label: Text(200) | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> LabelIn:
        if (self.parts is None) == (self.label is None):
            raise ValueError("give parts (inspection cameras) or label (classify cameras)")
        return self


class LabelPosted(BaseModel):
    label_id: str
    camera_id: str
    frame_id: str
    source: str
    labelled_at: float
    topic: str


class AccuracyOut(BaseModel):
    camera_id: str
    model: str
    version: str
    kind: str = Field(description="frame_part (each frame's parts) or tracked_part (verdicts)")
    tp: int
    fp: int
    fn: int
    tn: int
    precision: float | None
    recall: float | None
    f1: float | None


class AccuracyList(BaseModel):
    accuracy: list[AccuracyOut]


def feedback_of(body: LabelIn, labelled_at: float | None = None) -> LabelFeedback:
    """The message of a posted label; each post is a new labelling (its own label_id)."""
    parts = [
        LabelledPart(
            part_id=p.part_id,
            box=p.box,
            defective=p.defective,
            visible_fraction=p.visible_fraction,
            defects=[
                LabelledDefect(defect_class=d.defect_class, box=d.box, polygon=d.polygon)
                for d in p.defects
            ],
        )
        for p in body.parts or ()
    ]
    return LabelFeedback(
        label_id=f"operator:{body.frame_id}:{uuid.uuid4().hex}",
        camera_id=body.camera_id,
        frame_id=body.frame_id,
        captured_at=body.captured_at,
        source="operator",
        parts=parts,
        labelled_at=labelled_at if labelled_at is not None else time.time(),
        label=body.label,
    )


def check_kind(pipeline: str, body: LabelIn) -> None:
    """Parts for an inspection camera, a label for a classify one (422 otherwise)."""
    if pipeline == "inspect" and body.parts is None:
        raise HTTPException(422, f"camera {body.camera_id} inspects parts: give parts, not label")
    if pipeline != "inspect" and body.label is None:
        raise HTTPException(422, f"camera {body.camera_id} classifies frames: give label")


@router.post("", response_model=LabelPosted, status_code=202)
def post_label(
    engine: Engine, producer: Producer, body: LabelIn, principal: Operator
) -> LabelPosted:
    """The correct labels of a frame. Accepted (202) once the broker has it; the labels worker
    stores it within seconds. 404 unknown camera; 503 broker did not ack (post again)."""
    with Session(engine) as session:
        camera = session.get(Camera, body.camera_id)
    if camera is None:
        raise HTTPException(404, f"no camera {body.camera_id!r}")
    check_kind(camera.pipeline or "classify", body)
    message = feedback_of(body)
    problem = label_problem(message)  # what the labels worker would dead-letter
    if problem is not None:
        raise HTTPException(422, problem)
    if not publish(producer, Topic.LABELS_FEEDBACK, message.camera_id, message):
        raise HTTPException(503, "the broker did not acknowledge the label; post it again")
    with Session(engine) as session, session.begin():
        audit.record(
            session,
            principal.name,
            "label.post",
            f"frame:{body.camera_id}/{body.frame_id}",
            label_id=message.label_id,
        )
    fields = message.model_dump(
        include={"label_id", "camera_id", "frame_id", "source", "labelled_at"}
    )
    return LabelPosted(**fields, topic=str(Topic.LABELS_FEEDBACK))


@router.get("/accuracy", response_model=AccuracyList)
def label_accuracy(
    engine: Engine,
    _: Viewer,
    limit: PageSize,
    camera_id: ShortFilter = None,
    model: ModelFilter = None,
    since: Annotated[datetime | None, Query(description="Frames captured from then on")] = None,
) -> AccuracyList:
    """Counts (tp, fp, fn, tn) and precision, recall and F1 of labelled parts, per camera,
    model, version and kind (``visionline.labels.store.accuracy``)."""
    since = utc(since)
    rows = accuracy(engine, camera_id, model, since)[:limit]
    return AccuracyList(accuracy=[AccuracyOut(**r.as_dict()) for r in rows])
