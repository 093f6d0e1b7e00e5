import struct
import time
import tracemalloc

import cv2
import numpy as np
import pytest

from tests.fuzz import seeds
from tests.unit.images import jpeg, jpeg_claiming, photo, png
from visionline.imaging import (
    MAX_JPEG_HEADER_SEGMENTS,
    MAX_JPEG_SCANS,
    FrameRejected,
    ImageHeader,
    centre_window,
    check_complete,
    decode,
    inspect_header,
    model_input,
    quality_measures,
    reduced_decode_flag,
)
from visionline.models.preprocessing import resize_center_crop


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


# Found by the decoder fuzzing (docs/fuzzing.md) -----------------------------------------------


def _arrays_peak(call) -> int:
    """Bytes of numpy and OpenCV arrays ``call`` holds at its peak."""
    tracemalloc.start()
    try:
        call()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize(
    "data",
    [seeds.noise_image(".png", 4000, 1), seeds.noise_image(".jpg", 1, 20000)]
    + [seeds.flat_png(200_000, 1), seeds.flat_png(3, 9000)],
    ids=["png-4000x1", "jpeg-1x20000", "png-200000x1", "png-3x9000"],
)
def test_an_elongated_frame_is_cut_to_its_middle_before_it_is_resized(data):
    """Resizing a 1 x 20000 frame whole to a short side of 224 made 3 GB of pixels (29 s) to
    keep 224 x 224 of them; 200000 x 1 asked OpenCV for 30 GB and crashed the worker."""
    header = inspect_header(data)
    tensor, quality = model_input(data, header, 224)
    assert tensor.shape == (224, 224, 3) and 0 <= quality.brightness <= 255
    assert _arrays_peak(lambda: model_input(data, header, 224)) < 8 << 20


def test_centre_window_keeps_what_the_centre_crop_keeps():
    image = np.arange(2 * 100).reshape(2, 100)
    window = centre_window(image)
    assert window.shape == (2, 8) and (window == image[:, 46:54]).all()
    assert centre_window(image.T).shape == (8, 2)
    ordinary = np.zeros((720, 1280, 3), np.uint8)
    assert centre_window(ordinary) is ordinary  # frames of usual shape are left alone
    photo_jpeg = jpeg(1280, 720)
    tensor, _ = model_input(photo_jpeg, inspect_header(photo_jpeg), 224)
    bgr = decode(photo_jpeg, inspect_header(photo_jpeg), 224)
    expected = cv2.cvtColor(resize_center_crop(bgr, 224), cv2.COLOR_BGR2RGB)
    assert (tensor == expected).all()  # unchanged for them, pixel for pixel


def test_exif_orientation_is_not_applied_so_pixels_match_the_header():
    """OpenCV rotated a frame with EXIF orientation 6: 160 x 120 in the message, 120 x 160
    pixels, and the part boxes drawn in the latter."""
    data = seeds.exif_rotated_jpeg("chelsea", 160, 120)
    header = inspect_header(data)
    assert (header.width, header.height) == (160, 120)
    assert decode(data, header, 0, reduced=False).shape == (120, 160, 3)
    assert decode(data, header, 32).shape == (60, 80, 3)  # reduced decode too


def test_a_jpeg_of_more_scans_than_any_encoder_writes_is_refused_before_decoding():
    """Each scan costs a pass over every block: 500,000 empty scans (7 MB) took 50 s."""
    check_complete(seeds.progressive_jpeg(), "image/jpeg")
    check_complete(seeds.scan_bomb(MAX_JPEG_SCANS - 20), "image/jpeg")
    with pytest.raises(FrameRejected) as info:
        check_complete(seeds.scan_bomb(MAX_JPEG_SCANS), "image/jpeg")
    assert info.value.error_type == "too_many_scans"


def test_a_png_chunk_that_claims_more_bytes_than_the_frame_holds_is_refused():
    """OpenCV allocated what IDAT's length claimed: 4 GiB and 3 s for a 900-byte frame."""
    data = seeds.png()
    idat = data.index(b"IDAT") - 4
    for length in (0xFFFFFFFF, len(data)):
        bad = data[:idat] + struct.pack(">I", length) + data[idat + 4 :]
        with pytest.raises(FrameRejected) as info:
            check_complete(bad, "image/png")
        assert info.value.error_type == "corrupt_image" and "IDAT" in info.value.message
    with pytest.raises(FrameRejected) as info:
        check_complete(data[:-12] + b"\x00\x00" + data[-12:], "image/png")  # stray bytes
    assert info.value.error_type == "corrupt_image"
    for seed in seeds.seed_bytes():
        if seed.startswith(b"\x89PNG"):
            check_complete(seed, "image/png")


def test_a_jpeg_header_walk_is_quick_and_bounded():
    """8 MiB of fill bytes before a marker took ingest's walk a second; 2 million empty
    segments half a second. Fill runs are skipped at C speed, segments are counted."""
    data = jpeg(96, 64)
    filled = data[:2] + b"\xff" * (8 << 20) + data[2:]
    started = time.perf_counter()
    assert inspect_header(filled) == ImageHeader("image/jpeg", 96, 64)
    assert time.perf_counter() - started < 0.5
    many = data[:2] + b"\xff\xe0\x00\x02" * (MAX_JPEG_HEADER_SEGMENTS + 1) + data[2:]
    with pytest.raises(FrameRejected) as info:
        inspect_header(many)
    assert info.value.error_type == "corrupt_image"
    assert inspect_header(data[:2] + b"\xff\xe0\x00\x02" * 50 + data[2:]).width == 96
    for cut in (b"\xff\xd8\xff", b"\xff\xd8\xff\xff\xff", b"\xff\xd8\xff\xe0\x00"):
        with pytest.raises(FrameRejected) as info:
            inspect_header(cut)
        assert info.value.error_type == "truncated_image"
