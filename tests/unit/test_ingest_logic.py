import pytest

from services.ingest.logic import (
    Limits,
    RateLimiter,
    RawFrame,
    check_registered,
    claim_decision,
    route,
    validate_frame,
    with_model,
)
from tests.unit.images import jpeg, jpeg_claiming, png
from visionline.camera_registry import RegisteredCamera
from visionline.frame_headers import parse_captured_at
from visionline.imaging import FrameRejected
from visionline.messages import FRAME_ID, SourceRef, Topic

SOURCE = SourceRef(topic="raw", partition=2, offset=7)
LIMITS = Limits(max_bytes=1 << 20, max_pixels=4_000_000)
NOW = 1_700_000_000.0


def raw(value=None, key=b"cam-1", headers=None) -> RawFrame:
    value = jpeg() if value is None else value
    return RawFrame(key, value, headers or [], SOURCE, NOW)


def reason(frame: RawFrame) -> str:
    with pytest.raises(FrameRejected) as info:
        validate_frame(frame, LIMITS)
    return info.value.error_type


def test_good_frame_with_defaults():
    meta = validate_frame(raw(), LIMITS)
    assert meta.camera_id == "cam-1" and meta.frame_id == f"auto-2-7-{int(NOW * 1000)}"
    assert meta.captured_at == NOW and (meta.width, meta.height) == (320, 240)


def test_headers_are_used_when_present():
    headers = [("frame-id", b"f-99"), ("captured-at", str(int(NOW * 1000) - 500).encode())]
    meta = validate_frame(raw(png(), headers=headers + [("content-type", b"image/png")]), LIMITS)
    assert meta.frame_id == "f-99" and meta.captured_at == NOW - 0.5
    assert meta.content_type == "image/png"


@pytest.mark.parametrize(
    ("frame", "expected"),
    [
        (raw(b""), "empty_payload"),
        (raw(jpeg()[:-300]), "truncated_image"),
        (raw(b"GIF89a not supported"), "unsupported_format"),
        (raw(jpeg_claiming(50_000, 50_000)), "too_many_pixels"),
        (raw(key=None), "missing_camera_id"),
        (raw(key=b"bad id with spaces"), "malformed_camera_id"),
        (raw(headers=[("captured-at", b"yesterday")]), "malformed_header"),
        (raw(headers=[("frame-id", b"\xff\xfe")]), "malformed_header"),
        (raw(headers=[("frame-id", b"has space")]), "malformed_header"),
        (raw(headers=[("content-type", b"image/gif")]), "unsupported_format"),
        (raw(b"x" * (LIMITS.max_bytes + 1)), "payload_too_large"),
    ],
)
def test_rejects(frame, expected):
    assert reason(frame) == expected


def test_captured_at_formats():
    assert parse_captured_at("2023-11-14T22:13:20+00:00", NOW) == NOW
    assert parse_captured_at(None, NOW) == NOW
    with pytest.raises(FrameRejected):
        parse_captured_at("2023-11-14T22:13:20", NOW)  # no zone: ambiguous
    with pytest.raises(FrameRejected):
        parse_captured_at("1", NOW)  # 1970: a camera clock bug


def test_registry_check():
    ok = RegisteredCamera("cam-1", True, 5.0, None)
    assert check_registered("cam-1", ok) is ok
    with pytest.raises(FrameRejected, match="not registered"):
        check_registered("cam-1", None)
    with pytest.raises(FrameRejected, match="disabled"):
        check_registered("cam-1", RegisteredCamera("cam-1", False, 5.0, None))


def test_rate_limiter_allows_max_fps_after_a_one_second_burst():
    limiter = RateLimiter()
    sent = [NOW + i * 0.05 for i in range(200)]  # 20 fps for 10 s against a 5 fps limit
    allowed = sum(limiter.allow("cam", t, 5.0, f"f{i}") for i, t in enumerate(sent))
    assert 5 * 10 <= allowed <= 5 * 10 + 6
    assert RateLimiter().allow("other", NOW, 5.0, "f0")


def test_rate_limiter_is_per_camera():
    limiter = RateLimiter()
    assert limiter.allow("a", NOW, 1.0, "f1")
    assert not limiter.allow("a", NOW, 1.0, "f2")
    assert limiter.allow("b", NOW, 1.0, "f1")


def test_rate_limiter_answers_a_retried_frame_as_before_without_a_token():
    limiter = RateLimiter()
    assert limiter.allow("a", NOW, 1.0, "f1")
    assert limiter.allow("a", NOW, 1.0, "f1")  # the worker retrying it: Redis was down
    assert not limiter.allow("a", NOW, 1.0, "f2")  # one token in the burst, and f1 took it
    assert not limiter.allow("a", NOW, 1.0, "f2")
    assert limiter.allow("a", NOW + 1.0, 1.0, "f3")


def test_claim_decision_tells_redelivery_from_duplicate():
    assert claim_decision(True, None, "raw/0/1")
    assert claim_decision(False, "raw/0/1", "raw/0/1")  # same record again after a crash
    assert not claim_decision(False, "raw/0/5", "raw/0/1")  # another record, same frame id


def test_each_pipeline_routes_to_its_own_path():
    classify = RegisteredCamera("cam-1", True, 15.0, None)
    inspect = RegisteredCamera("line-1", True, 15.0, None, pipeline="inspect")
    detect = RegisteredCamera("dock-1", True, 15.0, None, pipeline="detect", model="objects")
    assert route(classify) == Topic.VALID_FRAMES
    assert route(inspect) == Topic.INSPECTION_FRAMES
    assert route(detect) == Topic.DETECTION_FRAMES


def test_a_frame_carries_the_classifier_its_camera_chose():
    meta = validate_frame(raw(), LIMITS)
    assert meta.model is None
    mine = RegisteredCamera("cam-1", True, 15.0, None, model="photo_classes")
    assert with_model(meta, mine).model == "photo_classes"
    assert with_model(meta, RegisteredCamera("cam-1", True, 15.0, None)).model is None
    # An older message, without the field, is still a valid version 1 and means the default.
    old = {k: v for k, v in meta.model_dump().items() if k != "model"}
    assert type(meta).model_validate(old).model is None


def test_frame_ids_made_for_frames_without_one_never_repeat_on_a_new_broker():
    """A restarted broker counts offsets from 0 again: the same position, another record
    (issue 15). The id keeps the record's timestamp, so it is new, and stable on replay."""
    first = validate_frame(raw(), LIMITS).frame_id
    assert validate_frame(raw(), LIMITS).frame_id == first  # the same record, replayed
    later = RawFrame(b"cam-1", jpeg(), [], SOURCE, NOW + 3600.0)  # same offset, new broker
    assert validate_frame(later, LIMITS).frame_id != first
    assert FRAME_ID.match(first)


def test_a_rejected_frame_is_named_by_its_id_when_the_headers_give_it():
    """Issue 15: header-caused dead letters said frame_id null though the id was there."""
    headers = [("frame-id", b"f-7"), ("captured-at", b"yesterday")]
    with pytest.raises(FrameRejected) as info:
        validate_frame(raw(headers=headers), LIMITS)
    assert (info.value.error_type, info.value.frame_id) == ("malformed_header", "f-7")
    with pytest.raises(FrameRejected) as info:
        validate_frame(raw(b"x" * (LIMITS.max_bytes + 1), headers=headers[:1]), LIMITS)
    assert (info.value.error_type, info.value.frame_id) == ("payload_too_large", "f-7")
    with pytest.raises(FrameRejected) as info:  # no key: still named
        validate_frame(raw(key=None, headers=headers[:1]), LIMITS)
    assert (info.value.error_type, info.value.frame_id) == ("missing_camera_id", "f-7")


def test_a_declared_content_type_is_read_as_the_upload_service_reads_it():
    """Issue 15: the upload service took IMAGE/JPEG, ingest refused it. One rule now."""
    for declared in (b"IMAGE/JPEG", b"image/jpeg; charset=binary"):
        meta = validate_frame(raw(headers=[("content-type", declared)]), LIMITS)
        assert meta.content_type == "image/jpeg"
    assert reason(raw(headers=[("content-type", b"IMAGE/PNG")])) == "content_type_mismatch"
