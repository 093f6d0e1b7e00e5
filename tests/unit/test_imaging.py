import cv2
import numpy as np
import pytest

from tests.unit.images import jpeg, jpeg_claiming, photo, png
from visionline.imaging import (
    FrameRejected,
    ImageHeader,
    check_complete,
    decode,
    inspect_header,
    model_input,
    quality_measures,
    reduced_decode_flag,
)


def test_header_sizes_without_decoding():
    assert inspect_header(jpeg(321, 123)) == ImageHeader("image/jpeg", 321, 123)
    assert inspect_header(png(64, 48)) == ImageHeader("image/png", 64, 48)


def test_progressive_jpeg_size():
    ok, data = cv2.imencode(".jpg", photo(200, 100), [cv2.IMWRITE_JPEG_PROGRESSIVE, 1])
    assert ok
    assert inspect_header(data.tobytes()).width == 200


def test_huge_claimed_size_is_read_from_header():
    header = inspect_header(jpeg_claiming(50_000, 50_000))
    assert (header.width, header.height) == (50_000, 50_000)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"hello world, not an image", "unsupported_format"),
        (jpeg()[:4], "truncated_image"),
        (png()[:20], "truncated_image"),
    ],
)
def test_bad_headers(data, reason):
    with pytest.raises(FrameRejected) as info:
        inspect_header(data)
    assert info.value.error_type == reason


def test_declared_type_must_match_bytes():
    with pytest.raises(FrameRejected) as info:
        inspect_header(png(), "image/jpeg")
    assert info.value.error_type == "content_type_mismatch"


def test_truncated_images_are_caught():
    check_complete(jpeg(), "image/jpeg")
    check_complete(png(), "image/png")
    for data, kind in ((jpeg()[:-100], "image/jpeg"), (png()[:-5], "image/png")):
        with pytest.raises(FrameRejected) as info:
            check_complete(data, kind)
        assert info.value.error_type == "truncated_image"


def test_reduced_decode_keeps_short_side_above_target():
    assert reduced_decode_flag(1920, 1080, 224) == cv2.IMREAD_REDUCED_COLOR_4
    assert reduced_decode_flag(1280, 720, 224) == cv2.IMREAD_REDUCED_COLOR_2
    assert reduced_decode_flag(400, 300, 224) == cv2.IMREAD_COLOR
    data = jpeg(1280, 720)
    image = decode(data, inspect_header(data), 224)
    assert image.shape == (360, 640, 3)


def test_model_input_is_uint8_rgb_at_model_size():
    data = jpeg(1280, 720)
    tensor, quality = model_input(data, inspect_header(data), 224)
    assert tensor.shape == (224, 224, 3) and tensor.dtype == np.uint8
    assert 0 < quality.brightness < 255


def test_quality_measures_see_darkness_and_blur():
    image = photo(200, 200)
    sharp = quality_measures(image)
    dark = quality_measures((image * 0.3).astype(np.uint8))
    blurred = quality_measures(cv2.GaussianBlur(image, (15, 15), 5))
    grey = quality_measures(
        cv2.cvtColor(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR)
    )
    assert dark.brightness < sharp.brightness * 0.5
    assert blurred.blur < sharp.blur * 0.5
    assert grey.saturation < 1 < sharp.saturation


def test_decode_failure_is_a_rejection():
    data = jpeg()
    corrupt = data[:200] + b"\x00" * (len(data) - 202) + data[-2:]
    header = inspect_header(data)
    try:
        image = decode(corrupt, header, 224)
    except FrameRejected as rejected:
        assert rejected.error_type == "decode_failed"
    else:  # libjpeg may recover a damaged scan as grey; it still must be an image
        assert image.shape[2] == 3
