import base64

import pytest
from pydantic import ValidationError

from tests.factories import frame_meta, prediction, quality
from visionline.messages import (
    FrameMeta,
    MessageError,
    Prediction,
    SourceRef,
    Topic,
    alert_id,
    dead_letter,
    from_json,
    pack_envelope,
    to_json,
    unpack_envelope,
)

SOURCE = SourceRef(topic=Topic.RAW_FRAMES, partition=1, offset=42)


def meta() -> FrameMeta:
    return frame_meta("cam-1", "f-1", captured_at=1700000000.5, size=(640, 480), source=SOURCE)


def test_envelope_round_trip_keeps_metadata_and_payload():
    payload = bytes(range(256)) * 10
    frame, body = unpack_envelope(pack_envelope(meta(), payload), FrameMeta)
    assert frame == meta() and bytes(body) == payload


def test_envelope_rejects_foreign_bytes():
    with pytest.raises(MessageError):
        unpack_envelope(b"\xff\xd8\xff\xe0 a jpeg", FrameMeta)
    with pytest.raises(MessageError):
        unpack_envelope(b"VL", FrameMeta)


def test_schemas_refuse_unknown_fields_and_versions():
    with pytest.raises(ValidationError):
        FrameMeta.model_validate({**meta().model_dump(), "surprise": 1})
    with pytest.raises(ValidationError):
        FrameMeta.model_validate({**meta().model_dump(), "schema_version": 2})


def test_stamped_adds_a_stage_without_mutating():
    first = meta()
    second = first.stamped("ingested", 5.0)
    assert first.stages == {} and second.stages == {"ingested": 5.0}


def test_dead_letter_keeps_small_values_and_coordinates():
    letter = dead_letter(
        error_type="empty_payload",
        error_message="nothing",
        stage="ingest",
        source=SOURCE,
        value=b"abc",
        headers=[("frame-id", b"\xffbad")],
    )
    assert base64.b64decode(letter.value_b64) == b"abc"
    assert letter.source.offset == 42 and letter.headers["frame-id"] == "\\xffbad"
    big = dead_letter(
        error_type="x",
        error_message="y",
        stage="s",
        source=SOURCE,
        value=b"a" * 10,
        keep_value_up_to=5,
    )
    assert big.value_b64 is None and big.value_size == 10


def test_alert_id_is_deterministic_per_frame_and_rule():
    assert alert_id("c", "f", "r") == alert_id("c", "f", "r")
    assert alert_id("c", "f", "r") != alert_id("c", "f", "r2")


def test_prediction_json_round_trip():
    p = prediction("c", "f", [("tabby", 0.9)], quality=quality(1, 2, 3, 4))
    assert from_json(to_json(p), Prediction) == p


def test_malformed_messages_become_rejections():
    from visionline.imaging import FrameRejected
    from visionline.worker import decode_message

    for value, envelope in ((b"garbage", True), (b"{not json", False), (b"{}", False)):
        with pytest.raises(FrameRejected) as info:
            decode_message(value, FrameMeta, envelope=envelope)
        assert info.value.error_type == "malformed_message"
    frame, _ = decode_message(pack_envelope(meta(), b"x"), FrameMeta)
    assert frame.frame_id == "f-1"


def test_a_dead_letter_names_the_frame_a_message_is_about():
    from visionline.messages import frame_named_in, pack_envelope

    assert frame_named_in(pack_envelope(meta(), b"\xff\xd8")) == ("cam-1", "f-1")
    assert frame_named_in(b'{"camera_id": "cam-2", "frame_id": "f-2", "x": 1}') == ("cam-2", "f-2")
    assert frame_named_in(b'{"frame": {"camera_id": "c", "frame_id": "f"}}') == ("c", "f")
    for unreadable in (b"", b"\xff\xd8\xff", b"[1, 2]", b"VLE\x01", b'{"frame_id": 7}'):
        assert frame_named_in(unreadable) == (None, None)


@pytest.mark.parametrize(
    ("declared", "media_type"),
    [
        ("image/jpeg", "image/jpeg"),
        ("IMAGE/JPEG", "image/jpeg"),  # media types are case-insensitive (RFC 9110, 8.3.1)
        (" Image/PNG ; q=1", "image/png"),
        ("image/gif", None),
        ("image/jpegx", None),
        ("", None),
    ],
)
def test_one_content_type_rule_for_ingest_and_upload(declared, media_type):
    from visionline.messages import image_media_type

    assert image_media_type(declared) == media_type
