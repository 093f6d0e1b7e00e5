"""The inspection models' pre- and post-processing (visionline.inspection.vision)."""

import tracemalloc

import numpy as np
import pytest

from visionline.inspection.vision import (
    ANOMALY_CLASS,
    CROP,
    DEFECT_CLASSES,
    FRAME_H,
    FRAME_W,
    STRIDE,
    Crop,
    Letterbox,
    _cut_by_resize,
    _cut_inside,
    class_scores,
    crop_tensors,
    decode_crop,
    decode_parts,
    frame_tensor,
    part_detections,
    peaks,
)
from visionline.synthetic import LineGenerator


def test_frame_tensor_letterboxes_and_maps_boxes_back():
    rgb = np.full((720, 1280, 3), 200, np.uint8)
    tensor, box = frame_tensor(rgb)
    assert tensor.shape == (FRAME_H, FRAME_W, 3) and tensor.dtype == np.uint8
    scale = min(FRAME_W / 1280, FRAME_H / 720)  # 16:9 fills the width
    assert box.scale == pytest.approx(scale)
    rows = round(720 * scale)
    assert rows < FRAME_H and tensor[:rows].min() == 200 and tensor[rows:].max() == 0  # padding
    back = box.to_frame(np.array([[100.0, 100.0, 200.0, 200.0]]) * scale)
    np.testing.assert_allclose(back, [[100, 100, 200, 200]])


def test_crop_is_square_with_margin_and_maps_points_back_to_the_frame():
    crop = Crop.around((100, 200, 300, 300))
    assert crop.side == pytest.approx(230)
    centre = crop.to_frame(np.array([CROP / 2, CROP / 2]))
    np.testing.assert_allclose(centre, [200, 250])


def test_crop_cut_shows_the_part_and_pads_outside_the_frame_with_black():
    rgb = np.zeros((100, 100, 3), np.uint8)
    rgb[40:60, 40:60] = 255
    inside = Crop.around((40, 40, 60, 60)).cut(rgb)  # enlarged: linear interpolation
    assert inside.shape == (CROP, CROP, 3) and inside[CROP // 2, CROP // 2].min() == 255
    edge = Crop.around((-150, 0, 50, 200)).cut(rgb)  # shrunk, mostly outside the frame
    assert edge[:, : CROP // 2].max() == 0


def test_crop_tensors_of_no_boxes_is_an_empty_batch():
    images, crops = crop_tensors(np.zeros((10, 10, 3), np.uint8), [])
    assert images.shape == (0, CROP, CROP, 3) and crops == []


def _heatmap_with(points, classes=1, grid=(4, 6)):
    heat = np.zeros((classes, *grid), np.float32)
    for cls, y, x, score in points:
        heat[cls, y, x] = score
    return heat


def test_peaks_keeps_local_maxima_above_the_threshold_best_first():
    heat = _heatmap_with([(0, 1, 1, 0.9), (0, 1, 2, 0.5), (0, 3, 5, 0.7), (0, 0, 5, 0.1)])
    assert peaks(heat, 0.3, 10) == [(0, 1, 1, pytest.approx(0.9)), (0, 3, 5, pytest.approx(0.7))]
    assert len(peaks(heat, 0.3, 1)) == 1


def test_decode_parts_gives_frame_boxes_from_centre_size_and_offset():
    grid = (FRAME_H // STRIDE, FRAME_W // STRIDE)
    heat = _heatmap_with([(0, 10, 20, 0.8)], grid=grid)
    size = np.zeros((2, *grid), np.float32)
    size[:, 10, 20] = np.log(64 / STRIDE), np.log(32 / STRIDE)
    offset = np.zeros((2, *grid), np.float32)
    offset[:, 10, 20] = 0.25, 0.75
    letterbox = Letterbox.of(1280, 720)
    (box, score), *rest = decode_parts(
        {"part_heatmap": heat, "part_size": size, "part_offset": offset}, letterbox
    )
    assert not rest and score == pytest.approx(0.8)
    k = letterbox.scale
    cx, cy = (20.25 * STRIDE) / k, (10.75 * STRIDE) / k
    np.testing.assert_allclose(box, [cx - 32 / k, cy - 16 / k, cx + 32 / k, cy + 16 / k])


def _crop_outputs(classes=5):
    grid = (CROP // STRIDE, CROP // STRIDE)
    return (
        np.zeros(grid, np.float32),
        np.zeros((classes, *grid), np.float32),
        np.zeros((2, *grid), np.float32),
        np.zeros(grid, np.float32),
    )


def test_decode_crop_reports_classed_defects_in_frame_pixels_with_their_mask_area():
    anomaly_map, heat, size, mask = _crop_outputs()
    heat[2, 5, 7] = 0.9  # a stain at cell (5, 7)
    size[:, 5, 7] = np.log(2), np.log(2)  # 16 x 16 crop pixels
    mask[5, 7] = 1.0
    crop = Crop(1000.0, 500.0, CROP * 2.0)  # crop pixels are 2 frame pixels
    defects, score = decode_crop(crop, anomaly_map, 0.1, heat, size, mask)
    assert [d.defect_class for d in defects] == ["stain"] and score == pytest.approx(0.9)
    x0, y0, x1, y1 = defects[0].box
    assert (x0, y0) == pytest.approx((1000 + 2 * 52, 500 + 2 * 36))
    assert x1 - x0 == pytest.approx(32) and y1 - y0 == pytest.approx(32)
    assert defects[0].area > 0 and defects[0].polygon


def test_decode_crop_turns_unexplained_anomalous_regions_into_anomaly_defects():
    anomaly_map, heat, size, mask = _crop_outputs()
    top = CROP // STRIDE - 8  # a region low on the crop
    anomaly_map[top : top + 3, 3:6] = 0.95
    defects, score = decode_crop(Crop(0.0, 0.0, float(CROP)), anomaly_map, 0.8, heat, size, mask)
    assert [d.defect_class for d in defects] == [ANOMALY_CLASS]
    assert defects[0].score == pytest.approx(0.95, abs=0.01)
    assert score == pytest.approx(0.8)  # the image score, not the unclassed region's
    x0, y0, x1, y1 = defects[0].box
    assert 16 < x0 < 40 and top * STRIDE - 10 < y0 < top * STRIDE + 10


def test_part_detections_carry_both_scores():
    anomaly_map, heat, size, mask = _crop_outputs()
    parts = [((10.0, 10.0, 110.0, 110.0), 0.9)]
    crops = [Crop.around(parts[0][0])]
    out = part_detections(
        parts,
        crops,
        {"anomaly_map": anomaly_map[None], "anomaly_score": np.array([0.3])},
        {"defect_heatmap": heat[None], "defect_size": size[None], "defect_mask": mask[None]},
    )
    assert out[0].anomaly_score == pytest.approx(0.3) and out[0].defect_score == pytest.approx(0.3)
    assert out[0].defects == [] and out[0].confidence == pytest.approx(0.9)
    assert out[0].class_scores == dict.fromkeys(DEFECT_CLASSES, 0.0)


def test_class_scores_are_each_class_peak_however_low():
    _, heat, _, _ = _crop_outputs()
    heat[3, 10, 4], heat[3, 2, 2], heat[0, 1, 1] = 0.12, 0.05, 0.2  # below any defect threshold
    scores = class_scores(heat, DEFECT_CLASSES)
    assert scores == {
        "scratch": 0.2,
        "crack": 0.0,
        "stain": 0.0,
        "missing_hole": 0.12,
        "deformation": 0.0,
    }


def test_a_generator_frame_crops_each_true_part():
    bgr, truth = LineGenerator(seed=2).frame(12)
    images, crops = crop_tensors(bgr[..., ::-1], [p.box for p in truth.parts])
    assert len(images) == len(truth.parts) >= 1
    for image, part in zip(images, truth.parts, strict=True):
        belt = image[:4, :4].mean()  # the margin around a part is belt (or black padding)
        assert image[CROP // 2 - 8 : CROP // 2 + 8].mean() != pytest.approx(belt, abs=1)
        assert crops[0].side > 0 and part.box


def test_a_crop_across_a_long_thin_frame_builds_no_window():
    """Found by the decoder fuzzing: the crop of a box across a 65535 x 30 frame built a
    75,000-pixel-square window (17 GB) to resize it to 224 x 224."""
    rgb = np.full((30, 65535, 3), 90, np.uint8)
    tracemalloc.start()
    try:
        images, _ = crop_tensors(rgb, [(0.0, 0.0, 65535.0, 30.0)])
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert images.shape == (1, CROP, CROP, 3) and peak < 4 << 20
    band = images[0][:, :, 0].max(axis=1)  # the frame: a grey band across the middle
    assert band[CROP // 2] == 90 and band[0] == band[-1] == 0


def test_a_window_cut_inside_matches_the_built_window():
    """Cut either way, the same part lands in the same place (within rounding)."""
    rgb = LineGenerator(seed=1).frame(0)[0]
    x0, y0, side = -100, 20, 600
    built = _cut_by_resize(rgb, Crop(x0, y0, side))
    inside = _cut_inside(rgb, x0, y0, side)
    assert np.abs(built.astype(int) - inside.astype(int)).mean() < 8
    assert (inside[:, : round(100 * CROP / side) - 1] == 0).all()
