"""Every topic and every message schema of visionline, in one place.

Wire formats:
- Camera frames (topic ``visionline.frames.raw``): value = encoded image bytes (JPEG or PNG),
  key = camera id, metadata in Kafka headers (see ``FrameHeaders``). Plain Kafka is enough.
- Internal binary topics (valid, preprocessed, inference): an *envelope* = magic ``VLE`` + one
  version byte + 4-byte big-endian JSON length + JSON metadata + binary payload, so tensors
  travel as raw bytes and the metadata stays typed and versioned.
- Public topics (predictions, alerts, drift events, dead letters): UTF-8 JSON, one object
  per message.

Each schema carries ``schema_version``; a new version is added beside the old one until every
consumer has moved. ``TOPIC_SCHEMAS`` says which schema family each topic carries, ``SCHEMAS``
which class decodes each version of a family: ``from_json`` and ``unpack_envelope`` pick it by
the message's ``schema_version`` (docs/architecture.md, "Message versions").
"""

from __future__ import annotations

import base64
import json
import re
import struct
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Literal, TypeVar, cast

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic_core import InitErrorDetails, PydanticCustomError


class Topic(StrEnum):
    RAW_FRAMES = "visionline.frames.raw"
    VALID_FRAMES = "visionline.frames.valid"
    PREPROCESSED = "visionline.frames.preprocessed"
    INFERENCE = "visionline.inference.results"
    PREDICTIONS = "visionline.predictions"
    ALERTS = "visionline.alerts"
    # Inspection cameras (camera pipeline "inspect"): ingest routes their frames here instead.
    INSPECTION_FRAMES = "visionline.inspection.frames"
    PART_OBSERVATIONS = "visionline.inspection.observations"
    PART_DECISIONS = "visionline.inspection.decisions"
    # Detection cameras (camera pipeline "detect"): frames, the objects found in each, and the
    # events of the tracked objects against the camera's detect rules.
    DETECTION_FRAMES = "visionline.detect.frames"
    DETECTIONS = "visionline.detect.detections"
    OBJECT_EVENTS = "visionline.detect.events"
    # Confirmed drifts of a camera's inputs or model outputs (services/drift).
    DRIFT_EVENTS = "visionline.drift.events"
    # Retraining jobs to run (services/retrain), key = model: one job at a time per model.
    RETRAIN_REQUESTS = "visionline.retrain.requests"
    # True labels of frames, arriving after the frames (annotators, or the generator's ground
    # truth delayed like real labels), key = camera id (services/labels).
    LABELS_FEEDBACK = "visionline.labels.feedback"
    DEAD_LETTER = "visionline.deadletter"


# Header names of the camera wire format. Everything but the key is optional.
HEADER_FRAME_ID = "frame-id"
HEADER_CAPTURED_AT = "captured-at"  # epoch milliseconds, or ISO 8601
HEADER_CONTENT_TYPE = "content-type"  # image/jpeg or image/png

CONTENT_TYPES = ("image/jpeg", "image/png")
# What a frame id may be, over Kafka and over HTTP alike.
FRAME_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")


def image_media_type(value: str) -> str | None:
    """The supported image type (one of ``CONTENT_TYPES``) a content type names, or None.
    Media types are case-insensitive and may carry parameters (RFC 9110, 8.3.1), so
    ``IMAGE/JPEG; q=1`` is image/jpeg. The one rule of ingest and of the upload service."""
    media_type = value.split(";", 1)[0].strip().lower()
    return media_type if media_type in CONTENT_TYPES else None


_ENVELOPE_MAGIC = b"VLE"
_ENVELOPE_VERSION = 1
_ENVELOPE_HEAD = struct.Struct(">3sBI")


class Schema(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SourceRef(Schema):
    """Where a message came from, so a reject can be found again."""

    topic: str
    partition: int
    offset: int


class FrameMeta(Schema):
    """What every stage knows about a frame; carried unchanged from ingest to alert."""

    schema_version: Literal[1] = 1
    camera_id: str
    frame_id: str
    captured_at: float  # epoch seconds
    content_type: str
    width: int
    height: int
    source: SourceRef
    # Wall-clock epoch seconds at which each stage finished: ingest, preprocess, inference, ...
    stages: dict[str, float] = Field(default_factory=dict)
    # The classifier the camera's registry entry names, set by ingest; None: the default one.
    # Optional with a default, so messages without it stay valid version 1.
    model: str | None = None

    def stamped(self, stage: str, at: float | None = None) -> FrameMeta:
        return self.model_copy(update={"stages": {**self.stages, stage: at or time.time()}})


class Quality(Schema):
    """Image-quality measures of a frame, computed at the model's input size."""

    brightness: float  # mean grey level, 0-255
    contrast: float  # std of grey level
    blur: float  # variance of the Laplacian: low means blurred
    saturation: float  # mean HSV saturation, 0-255
    # The frame's image descriptor for drift detection (``visionline.imaging.colour_histogram``):
    # a joint 4x4x4 histogram of (B, G, R), index b*16 + g*4 + r, fractions summing to 1.
    # None on messages from before it existed.
    histogram: tuple[float, ...] | None = None


class TensorSpec(Schema):
    shape: tuple[int, ...]
    dtype: str


class PreprocessedFrame(Schema):
    schema_version: Literal[1] = 1
    frame: FrameMeta
    quality: Quality
    tensor: TensorSpec  # payload: the uint8 HWC RGB tensor at the model's input size


class ModelRef(Schema):
    name: str
    version: str
    served_by: Literal["triton", "local-onnxruntime"]


class InferenceResult(Schema):
    schema_version: Literal[1] = 1
    frame: FrameMeta
    quality: Quality
    model: ModelRef
    batch_size: int
    tensor: TensorSpec  # payload: float32 logits


class LabelScore(Schema):
    class_id: int
    label: str
    score: float


class Prediction(Schema):
    """Public: one per frame on ``visionline.predictions``."""

    schema_version: Literal[1] = 1
    camera_id: str
    frame_id: str
    captured_at: float
    model: ModelRef
    top_k: list[LabelScore]
    label: str | None  # top-1 label when its score reaches the threshold, else None
    confidence: float
    quality: Quality
    stages: dict[str, float]


class Alert(Schema):
    """Public: one per (frame, rule) on ``visionline.alerts``; ``alert_id`` is unique."""

    schema_version: Literal[1] = 1
    alert_id: str
    camera_id: str
    frame_id: str
    rule: str
    label: str
    confidence: float
    severity: Literal["info", "warning", "critical"]
    captured_at: float
    created_at: float
    model: ModelRef
    part: PartAlertDetail | None = None  # alerts about a tracked part (inspection cameras)
    # Alerts about a tracked object (detect cameras); optional, so version 1 still reads.
    object: ObjectAlertDetail | None = None


FloatBox = tuple[float, float, float, float]  # x0, y0, x1, y1 in frame pixels


class DefectFinding(Schema):
    """A defect on a part in one frame; ``defect_class`` "anomaly" when no class explains it."""

    defect_class: str
    box: FloatBox
    score: float
    area: float  # pixels
    polygon: list[tuple[float, float]] | None = None


class ObservedPart(Schema):
    box: FloatBox
    confidence: float  # that this is a part
    defect_score: float  # that the part is defective: max of the anomaly and defect models
    anomaly_score: float
    defects: list[DefectFinding]
    # The defect detector's peak score per class, however low: evidence averaged over frames.
    class_scores: dict[str, float] = {}


class PartObservations(Schema):
    """Public: one per inspected frame on ``visionline.inspection.observations``, key = camera."""

    schema_version: Literal[1] = 1
    frame: FrameMeta
    quality: Quality
    models: list[ModelRef]  # part detector, anomaly model, defect detector
    parts: list[ObservedPart]
    snapshot: str | None = None  # annotated frame, when one was stored (see SnapshotStore)
    # The camera's frames the inspect worker shed (load shedding) since its previous frame here.
    frames_shed_before: int = Field(0, ge=0)


class LineCounts(Schema):
    """Parts that crossed a camera's exit line, as the parts workers counted them (kept in
    Redis across their restarts for ``VISIONLINE_PARTS_MEMORY_TTL_S``)."""

    crossed: int = 0
    passed: int = 0
    rejected: int = 0
    insufficient: int = 0


class PartVerdict(Schema):
    """Public: one per tracked physical part on ``visionline.inspection.decisions``.

    ``decision_id`` is ``camera:frame id of the deciding frame``: a replay after a crash
    decides the same part in the same frame, so the id repeats and writes stay idempotent.
    """

    schema_version: Literal[1] = 1
    decision_id: str
    camera_id: str
    track_id: int
    status: Literal["accepted", "rejected", "insufficient"]
    defective: bool
    defect_class: str | None  # the class most frames voted for
    score: float  # the highest defect score seen
    frames_seen: int
    defect_frames: int
    frames_shed: int = 0  # of the camera's frames while the part was in view, shed unseen
    # Per class of interest, the detector's peak score averaged over the frames seen.
    evidence: dict[str, float] = {}
    first_frame_id: str
    last_frame_id: str
    best_frame_id: str  # the frame of the box, defects and snapshot below
    captured_at: float  # of the best frame
    decided_at: float
    crossed_line: bool
    box: FloatBox
    defects: list[DefectFinding]
    snapshot: str | None
    models: list[ModelRef]
    counts: LineCounts


class PartAlertDetail(Schema):
    """What an alert about a physical part adds: where the defect is and the evidence."""

    decision_id: str
    track_id: int
    defect_class: str | None
    score: float
    box: FloatBox
    defects: list[DefectFinding]
    frames_seen: int
    defect_frames: int
    snapshot: str | None
    models: list[ModelRef]


class DetectedObject(Schema):
    """An object the camera's detector found in one frame, in frame pixels."""

    box: FloatBox
    class_name: str
    score: float


class FrameDetections(Schema):
    """Public: one per frame of a detect camera on ``visionline.detect.detections``, key =
    camera."""

    schema_version: Literal[1] = 1
    frame: FrameMeta
    quality: Quality
    model: ModelRef
    objects: list[DetectedObject]
    snapshot: str | None = None  # annotated frame, when it had objects (see SnapshotStore)


class ObjectEvent(Schema):
    """Public: a tracked object meeting a detect rule, on ``visionline.detect.events``, key =
    camera. ``event_id`` is ``camera:epoch:rule:track[:n]`` (``camera:epoch:rule:frame id``
    for count rules): a replay from the tracker's saved state gives the same id."""

    schema_version: Literal[1] = 1
    event_id: str
    camera_id: str
    frame_id: str
    captured_at: float
    rule: str
    kind: Literal["dwell", "line", "count", "seen"]
    severity: Literal["info", "warning", "critical"]
    track_id: int  # -1 for count rules (about a zone, not one object)
    class_name: str  # "" for count rules
    box: FloatBox | None
    score: float
    detail: dict[str, float | int | str]  # dwell_s; direction, count_in, count_out; count
    model: ModelRef
    snapshot: str | None = None


class ObjectAlertDetail(Schema):
    """What an alert about a tracked object (detect cameras) adds."""

    event_id: str
    kind: Literal["dwell", "line", "count", "seen"]
    track_id: int
    class_name: str
    box: FloatBox | None
    detail: dict[str, float | int | str]
    snapshot: str | None


class WindowStats(Schema):
    """A window of one signal's values: how many, their mean, spread and time span."""

    frames: int
    mean: float
    std: float
    median: float
    first_captured_at: float
    last_captured_at: float


class DriftEvent(Schema):
    """Public: one per confirmed drift on ``visionline.drift.events``, key = camera.

    ``event_id`` is ``camera:signal:frame id of the confirming frame``: a replay after a crash
    confirms the same drift in the same frame, so the id repeats and writes stay idempotent.
    ``before`` is the signal's reference window, ``after`` the frames from the detector's alarm
    (``detected_frame_id``) to the confirming frame; ``statistic`` and ``p_value`` are the
    two-sample Kolmogorov-Smirnov test between them that confirmed the drift.
    """

    schema_version: Literal[1] = 1
    event_id: str
    camera_id: str
    signal: str
    detector: str  # adwin, kswin or page_hinkley
    detector_params: dict[str, float | int | str]
    detected_frame_id: str
    detected_at: float  # capture time of the frame that raised the alarm
    frame_id: str  # the confirming frame
    captured_at: float
    before: WindowStats
    after: WindowStats
    statistic: float
    p_value: float
    created_at: float = Field(default_factory=time.time)


class RetrainRequest(Schema):
    """A retraining job to run, on ``visionline.retrain.requests``, key = model.

    The job itself is the ``retrain_jobs`` row ``job_id`` (``visionline.model_registry``); this
    message only asks a retrain worker to run it. Only a job still ``queued`` is run, so a request
    delivered twice runs its job once. ``trigger`` is ``drift`` (``trigger_ref``: the drift
    event id), ``schedule`` or ``operator``.
    """

    schema_version: Literal[1] = 1
    job_id: int
    model: str
    trigger: Literal["drift", "schedule", "operator"]
    trigger_ref: str | None = None
    camera_id: str | None = None
    created_at: float = Field(default_factory=time.time)


class LabelledDefect(Schema):
    defect_class: str
    box: FloatBox
    polygon: list[tuple[float, float]] | None = None  # outline of the defect, frame pixels


class LabelledPart(Schema):
    part_id: str  # the physical part, stable across the frames it is seen in
    box: FloatBox
    defective: bool
    defects: list[LabelledDefect] = []
    visible_fraction: float = 1.0  # of the part inside the frame


class LabelledObject(Schema):
    """A true object of a detect camera's frame: its box and class (the detector's names)."""

    object_id: str
    box: FloatBox
    class_name: str


class LabelFeedback(Schema):
    """Public: the true labels of one frame, on ``visionline.labels.feedback``, key = camera id.

    Labels arrive after the frame, often long after (an annotator, a later inspection, or in
    the demo the generator's ground truth held back by a delay). ``label_id`` is stable for
    one labelling of one frame, so a label delivered twice is stored once; a later label of the
    same frame (another ``label_id``) replaces the earlier one.
    """

    schema_version: Literal[1] = 1
    label_id: str
    camera_id: str
    frame_id: str
    captured_at: float
    source: Literal["generator", "annotation", "operator"]
    parts: list[LabelledPart]
    labelled_at: float = Field(default_factory=time.time)
    label: str | None = None  # classify cameras: the frame's true class (their parts are [])
    # Detect cameras: the frame's true objects (their parts are []); optional, so version 1.
    objects: list[LabelledObject] = []


class DeadLetter(Schema):
    """Public: a message that could not be processed, with why and where it came from."""

    schema_version: Literal[1] = 1
    error_type: str
    error_message: str
    stage: str
    source: SourceRef
    camera_id: str | None = None
    frame_id: str | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    value_size: int = 0
    value_b64: str | None = None  # the original value, when small enough to keep
    failed_at: float = Field(default_factory=time.time)


M = TypeVar("M", bound=Schema)


class MessageError(ValueError):
    """A message that does not follow its schema."""


# ================= The registry: each topic's schema, each schema's versions =================


@dataclass(frozen=True)
class TopicSchema:
    """What a topic carries: messages of one schema family, in an envelope or as JSON."""

    family: type[Schema] | None  # the family's version 1; None: camera bytes, metadata in headers
    envelope: bool = False


TOPIC_SCHEMAS: dict[Topic, TopicSchema] = {
    Topic.RAW_FRAMES: TopicSchema(None),
    Topic.VALID_FRAMES: TopicSchema(FrameMeta, envelope=True),
    Topic.PREPROCESSED: TopicSchema(PreprocessedFrame, envelope=True),
    Topic.INFERENCE: TopicSchema(InferenceResult, envelope=True),
    Topic.PREDICTIONS: TopicSchema(Prediction),
    Topic.ALERTS: TopicSchema(Alert),
    Topic.INSPECTION_FRAMES: TopicSchema(FrameMeta, envelope=True),
    Topic.PART_OBSERVATIONS: TopicSchema(PartObservations),
    Topic.PART_DECISIONS: TopicSchema(PartVerdict),
    Topic.DETECTION_FRAMES: TopicSchema(FrameMeta, envelope=True),
    Topic.DETECTIONS: TopicSchema(FrameDetections),
    Topic.OBJECT_EVENTS: TopicSchema(ObjectEvent),
    Topic.DRIFT_EVENTS: TopicSchema(DriftEvent),
    Topic.RETRAIN_REQUESTS: TopicSchema(RetrainRequest),
    Topic.LABELS_FEEDBACK: TopicSchema(LabelFeedback),
    Topic.DEAD_LETTER: TopicSchema(DeadLetter),
}

# The error type (and dead-letter reason) of a message whose schema_version no class decodes.
UNKNOWN_SCHEMA_VERSION = "unknown_schema_version"


def schema_version_of(schema: type[Schema]) -> int:
    """The version a schema class writes: its ``schema_version`` field's default."""
    field = schema.model_fields.get("schema_version")
    if field is None or type(field.default) is not int:
        raise TypeError(f"{schema.__name__} has no schema_version: Literal[n] = n field")
    return field.default


class SchemaRegistry:
    """Schema families: the first class of a family (its version 1) names it, and each version
    of it has its class. Decoding with any class of a family gives the class of the message's
    own ``schema_version``, so a consumer reads version 1 and 2 while producers move."""

    def __init__(self) -> None:
        self._versions: dict[type[Schema], dict[int, type[Schema]]] = {}
        self._family: dict[type[Schema], type[Schema]] = {}

    def add(self, family: type[Schema], schema: type[Schema] | None = None) -> None:
        """Register ``family`` (its version 1), or ``schema`` as another version of it."""
        schema = schema or family
        versions = self._versions.setdefault(family, {schema_version_of(family): family})
        self._family[family] = family
        version = schema_version_of(schema)
        if versions.setdefault(version, schema) is not schema:
            raise ValueError(f"{family.__name__} has a version {version} already")
        self._family[schema] = family

    def versions(self, schema: type[Schema]) -> dict[int, type[Schema]]:
        """Version -> class of ``schema``'s family; empty for a class of no family."""
        family = self._family.get(schema)
        return dict(self._versions[family]) if family else {}

    def copy(self) -> SchemaRegistry:
        twin = SchemaRegistry()
        twin._versions = {family: dict(v) for family, v in self._versions.items()}
        twin._family = dict(self._family)
        return twin


SCHEMAS = SchemaRegistry()
for _topic_schema in TOPIC_SCHEMAS.values():
    if _topic_schema.family is not None:
        SCHEMAS.add(_topic_schema.family)


class _Versioned(BaseModel):
    """Only a message's ``schema_version`` (1 when it has none, as version 1's default)."""

    model_config = ConfigDict(extra="ignore")
    schema_version: int = 1


def validate_json(raw: bytes | memoryview, schema: type[M]) -> M:
    """``raw`` as the class of its ``schema_version`` in ``schema``'s family (``SCHEMAS``).
    A version no class decodes is a ValidationError of type ``unknown_schema_version``, so
    every reader that steps over invalid messages steps over it too; a message whose version
    cannot be read is validated as ``schema``, which says what is wrong with it."""
    raw = bytes(raw) if isinstance(raw, memoryview) else raw  # the metadata only: small
    try:
        version: int | None = _Versioned.model_validate_json(raw).schema_version
    except ValidationError:
        version = None
    return cast(M, _version_class(schema, version).model_validate_json(raw))


def validate_fields(fields: object, schema: type[M]) -> M:
    """``validate_json`` for a message already parsed, e.g. one stored as JSON in PostgreSQL."""
    try:
        version: int | None = _Versioned.model_validate(fields).schema_version
    except ValidationError:
        version = None
    return cast(M, _version_class(schema, version).model_validate(fields))


def _version_class(schema: type[Schema], version: int | None) -> type[Schema]:
    """The class of ``version`` in ``schema``'s family; ``schema`` itself when it is of no
    family or the version could not be read."""
    versions = SCHEMAS.versions(schema)
    if not versions or version is None:
        return schema
    if version not in versions:
        raise _unknown_version(schema, version, sorted(versions))
    return versions[version]


def _unknown_version(schema: type[Schema], version: int, known: list[int]) -> ValidationError:
    why = "schema_version {version} of {schema} is unknown here (known: {known})"
    context = {"version": version, "schema": schema.__name__, "known": known}
    error = PydanticCustomError(UNKNOWN_SCHEMA_VERSION, why, context)
    details = InitErrorDetails(type=error, loc=("schema_version",), input=version)
    return ValidationError.from_exception_data(schema.__name__, [details])


def is_unknown_version(error: ValidationError) -> bool:
    """Whether ``validate_json`` refused the message for its version, not its content."""
    return any(e["type"] == UNKNOWN_SCHEMA_VERSION for e in error.errors())


def pack_envelope(meta: Schema, payload: bytes | memoryview = b"") -> bytes:
    head = meta.model_dump_json().encode()
    return _ENVELOPE_HEAD.pack(_ENVELOPE_MAGIC, _ENVELOPE_VERSION, len(head)) + head + payload


def unpack_envelope(value: bytes, schema: type[M]) -> tuple[M, memoryview]:
    if len(value) < _ENVELOPE_HEAD.size:
        raise MessageError("envelope shorter than its header")
    magic, version, head_len = _ENVELOPE_HEAD.unpack_from(value)
    if magic != _ENVELOPE_MAGIC or version != _ENVELOPE_VERSION:
        raise MessageError(f"not a visionline envelope v{_ENVELOPE_VERSION}")
    start = _ENVELOPE_HEAD.size
    meta = validate_json(value[start : start + head_len], schema)
    return meta, memoryview(value)[start + head_len :]


def frame_named_in(value: bytes | None) -> tuple[str | None, str | None]:
    """(camera id, frame id) of whatever frame an envelope or JSON message is about, best
    effort and for dead letters only: (None, None) when it says nothing readable."""
    try:
        if value and len(value) >= _ENVELOPE_HEAD.size and value[:3] == _ENVELOPE_MAGIC:
            _, _, head_len = _ENVELOPE_HEAD.unpack_from(value)
            start = _ENVELOPE_HEAD.size
            fields = json.loads(bytes(value[start : start + head_len]))
        else:
            fields = json.loads(value or b"")
    except (ValueError, struct.error):
        return None, None
    if not isinstance(fields, dict):
        return None, None
    frame = fields["frame"] if isinstance(fields.get("frame"), dict) else fields
    camera_id, frame_id = frame.get("camera_id"), frame.get("frame_id")
    return (
        camera_id if isinstance(camera_id, str) else None,
        frame_id if isinstance(frame_id, str) else None,
    )


def to_json(message: Schema) -> bytes:
    return message.model_dump_json().encode()


def keyed_by_camera(
    messages: Iterable[Alert | PartVerdict | DriftEvent | ObjectEvent],
) -> list[tuple[bytes, bytes]]:
    """Messages as Kafka records keyed by their camera: one camera's messages stay in order on
    one partition."""
    return [(m.camera_id.encode(), to_json(m)) for m in messages]


def from_json(value: bytes, schema: type[M]) -> M:
    """A JSON message of ``schema``'s family, as the class of its ``schema_version``."""
    return validate_json(value, schema)


def decode_headers(headers: Iterable[tuple[str, bytes | None]] | None) -> dict[str, str]:
    """Kafka headers as text, for dead letters and logs; undecodable bytes are escaped."""
    out: dict[str, str] = {}
    for name, raw in headers or ():
        out[name] = "" if raw is None else raw.decode("utf-8", errors="backslashreplace")
    return out


def dead_letter(
    *,
    error_type: str,
    error_message: str,
    stage: str,
    source: SourceRef,
    value: bytes | None,
    headers: Sequence[tuple[str, bytes | None]] | None = None,
    camera_id: str | None = None,
    frame_id: str | None = None,
    keep_value_up_to: int = 1 << 20,
) -> DeadLetter:
    value = value or b""
    keep = 0 < len(value) <= keep_value_up_to
    return DeadLetter(
        error_type=error_type,
        error_message=error_message,
        stage=stage,
        source=source,
        camera_id=camera_id,
        frame_id=frame_id,
        headers=decode_headers(headers),
        value_size=len(value),
        value_b64=base64.b64encode(value).decode() if keep else None,
    )


def drift_event_id(camera_id: str, signal: str, frame_id: str) -> str:
    """The unique key of a drift: the camera, the signal and the frame that confirmed it."""
    return f"{camera_id}:{signal}:{frame_id}"


def alert_id(camera_id: str, frame_id: str, rule: str) -> str:
    """The unique key of a frame's alert: the same frame and rule always give the same id."""
    return f"{camera_id}:{frame_id}:{rule}"
