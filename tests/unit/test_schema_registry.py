"""The topic registry and the schema versions: decoding dispatches on ``schema_version``."""

from __future__ import annotations

import json
import re
from typing import Literal

import pytest
from pydantic import ValidationError

from visionline import messages
from visionline.imaging import FrameRejected
from visionline.messages import (
    SCHEMAS,
    TOPIC_SCHEMAS,
    UNKNOWN_SCHEMA_VERSION,
    Alert,
    FrameMeta,
    Schema,
    SchemaRegistry,
    SourceRef,
    Topic,
    from_json,
    pack_envelope,
    schema_version_of,
    to_json,
    unpack_envelope,
    validate_fields,
)
from visionline.services_table import SERVICES
from visionline.settings import REPO_ROOT
from visionline.worker import decode_message


class FrameMetaV2(Schema):
    """A version 2 of FrameMeta, as a test would add it: a field renamed, one added."""

    schema_version: Literal[2] = 2
    camera_id: str
    frame_id: str
    captured_at_ms: int
    source: SourceRef
    exposure_ms: float


class AlertV2(Schema):
    schema_version: Literal[2] = 2
    alert_id: str
    camera_id: str
    frame_id: str
    rule: str
    confidence: float


def frame_v1() -> FrameMeta:
    source = SourceRef(topic="t", partition=0, offset=7)
    return FrameMeta(
        camera_id="cam-1",
        frame_id="f-1",
        captured_at=1.5,
        content_type="image/jpeg",
        width=4,
        height=3,
        source=source,
    )


def frame_v2() -> FrameMetaV2:
    source = SourceRef(topic="t", partition=0, offset=8)
    return FrameMetaV2(
        camera_id="cam-2", frame_id="f-2", captured_at_ms=1500, source=source, exposure_ms=4.0
    )


@pytest.fixture
def with_version_2(monkeypatch):
    """The registry with FrameMeta and Alert version 2 beside version 1 (for this test only)."""
    registry = SCHEMAS.copy()
    registry.add(FrameMeta, FrameMetaV2)
    registry.add(Alert, AlertV2)
    monkeypatch.setattr(messages, "SCHEMAS", registry)
    return registry


def test_every_topic_has_its_schema_and_every_versioned_schema_a_topic():
    assert set(TOPIC_SCHEMAS) == set(Topic)
    families = {spec.family for spec in TOPIC_SCHEMAS.values()} - {None}
    versioned = {c for c in _subclasses(Schema) if "schema_version" in c.model_fields}
    assert versioned == families
    for family in families:
        assert SCHEMAS.versions(family) == {1: family}
    envelopes = {t for t, spec in TOPIC_SCHEMAS.items() if spec.envelope}
    assert envelopes == {
        Topic.VALID_FRAMES,
        Topic.INSPECTION_FRAMES,
        Topic.DETECTION_FRAMES,
        Topic.PREPROCESSED,
        Topic.INFERENCE,
    }


def test_every_topic_a_service_consumes_is_one_it_can_decode():
    for spec in SERVICES:
        for topic in spec.consumes:
            assert topic == Topic.RAW_FRAMES or TOPIC_SCHEMAS[topic].family is not None


def test_version_2_is_decoded_as_version_2_and_version_1_still_as_version_1(with_version_2):
    v1, v2 = frame_v1(), frame_v2()
    assert decode_message(pack_envelope(v1, b"jpeg"), FrameMeta)[0] == v1
    got, payload = decode_message(pack_envelope(v2, b"jpeg"), FrameMeta)
    assert got == v2 and isinstance(got, FrameMetaV2) and bytes(payload) == b"jpeg"
    # Any class of the family decodes the family: the message's version picks the class.
    assert unpack_envelope(pack_envelope(v1), FrameMetaV2)[0] == v1
    alert = AlertV2(alert_id="a", camera_id="c", frame_id="f", rule="r", confidence=0.5)
    assert decode_message(to_json(alert), Alert, envelope=False) == alert
    assert from_json(to_json(alert), Alert) == alert


def test_stored_messages_dispatch_on_their_version_too(with_version_2):
    v1, v2 = frame_v1(), frame_v2()
    assert validate_fields(json.loads(to_json(v1)), FrameMeta) == v1
    assert validate_fields(json.loads(to_json(v2)), FrameMeta) == v2
    with pytest.raises(ValidationError) as info:
        validate_fields({"schema_version": 5}, FrameMeta)
    assert messages.is_unknown_version(info.value)


def test_an_unknown_version_is_rejected_with_its_reason(with_version_2):
    fields = {**json.loads(to_json(frame_v2())), "schema_version": 3}
    with pytest.raises(FrameRejected) as info:
        decode_message(pack_envelope(_Raw(fields)), FrameMeta)
    assert info.value.error_type == UNKNOWN_SCHEMA_VERSION
    assert "schema_version 3 of FrameMeta is unknown here (known: [1, 2])" in info.value.message
    assert info.value.frame_id == "f-2"  # its dead letter names the frame
    with pytest.raises(FrameRejected) as info:
        decode_message(b'{"schema_version": 9, "alert_id": "a"}', Alert, envelope=False)
    assert info.value.error_type == UNKNOWN_SCHEMA_VERSION


def test_without_a_version_2_a_version_2_message_is_an_unknown_version():
    fields = {**json.loads(to_json(frame_v1())), "schema_version": 2}
    with pytest.raises(FrameRejected) as info:
        decode_message(pack_envelope(_Raw(fields)), FrameMeta)
    assert info.value.error_type == UNKNOWN_SCHEMA_VERSION


def test_readers_that_skip_invalid_messages_skip_an_unknown_version():
    from visionline.alerts import _alert_or_none

    with pytest.raises(ValidationError) as info:
        from_json(b'{"schema_version": 2}', Alert)
    assert messages.is_unknown_version(info.value)
    assert _alert_or_none(b'{"schema_version": 2}') is None


def test_a_message_without_a_version_is_version_1_and_a_malformed_one_stays_malformed():
    fields = json.loads(to_json(frame_v1()))
    del fields["schema_version"]
    assert unpack_envelope(pack_envelope(_Raw(fields)), FrameMeta)[0] == frame_v1()
    for value in (b"[1, 2]", b'{"schema_version": "two"}', b'{"schema_version": 1}', b"{"):
        with pytest.raises(FrameRejected) as info:
            decode_message(value, FrameMeta, envelope=False)
        assert info.value.error_type == "malformed_message", value


def test_the_registry_refuses_a_second_class_for_a_version_or_a_class_without_one():
    registry = SchemaRegistry()
    registry.add(FrameMeta, FrameMetaV2)
    assert registry.versions(FrameMetaV2) == {1: FrameMeta, 2: FrameMetaV2}
    with pytest.raises(ValueError, match="version 2 already"):
        registry.add(FrameMeta, AlertV2)
    with pytest.raises(TypeError):
        schema_version_of(SourceRef)
    assert registry.versions(SourceRef) == {}
    assert SCHEMAS.versions(FrameMetaV2) == {}  # the copy in the fixture left SCHEMAS alone


class _Raw(Schema):
    """Any JSON object as an envelope's metadata, to write what no schema would."""

    model_config = {"extra": "allow"}

    def __init__(self, fields: dict) -> None:
        super().__init__(**fields)


def _subclasses(cls: type) -> set[type]:
    found = set()
    for sub in cls.__subclasses__():
        if sub.__module__ == messages.__name__:
            found.add(sub)
        found |= _subclasses(sub)
    return found


def test_the_topic_table_of_the_operations_doc_follows_the_registry():
    rows = {}
    for line in (REPO_ROOT / "docs" / "operations.md").read_text().splitlines():
        if match := re.fullmatch(r"\| `(visionline\.[a-z.]+)` \| (.+) \| (.+) \|", line):
            rows[Topic(match[1])] = (match[2], match[3])
    assert set(rows) == set(Topic)
    for topic, spec in TOPIC_SCHEMAS.items():
        value, producers = rows[topic]
        if spec.family is not None:
            kind = "envelope:" if spec.envelope else "JSON"
            assert value.startswith(f"{kind} `{spec.family.__name__}`"), topic
        for service in SERVICES:
            if topic in service.produces:
                assert re.search(rf"\b{service.name}\b", producers, re.I), (topic, service.name)
