import asyncio

import cv2
import numpy as np
import pytest

from services.inspect.logic import (
    decode_frame,
    observations,
    snapshot_boxes,
    snapshot_key,
    store_snapshot,
    wants_snapshot,
)
from tests.factories import frame_meta
from visionline.imaging import FrameRejected, quality_measures
from visionline.inspection.inspector import Inspector
from visionline.inspection.snapshots import SnapshotStore
from visionline.inspection.tracking import DefectDetection, PartDetection
from visionline.inspection.vision import CROP, FRAME_H, FRAME_W, STRIDE, frame_tensor, scaled_frame
from visionline.messages import FrameMeta, PartObservations, Quality
from visionline.resilience import BackendUnavailable, RetryPolicy

GRID_H, GRID_W, CROP_GRID = FRAME_H // STRIDE, FRAME_W // STRIDE, CROP // STRIDE
VERSIONS = {"part_detector": "3", "part_anomaly": "2", "defect_detector": "1"}
QUALITY = Quality(brightness=100, contrast=20, blur=50, saturation=10)


def meta(frame_id="f-1", width=FRAME_W, height=FRAME_H) -> FrameMeta:
    return frame_meta("line-1", frame_id, captured_at=1.0, size=(width, height))


class FakeTriton:
    """Part peaks at the given cells (64 px boxes); every crop anomalous at ``anomaly``, with
    one class-0 defect of 16 px at the crop's centre."""

    def __init__(self, cells=((16, 20),), anomaly=0.8, failures=0, crops_from=None) -> None:
        self.cells, self.anomaly, self.failures = cells, anomaly, failures
        self.crops_from = crops_from  # the pair part_crops was built from; None: not loaded
        self.calls: list[tuple[str, tuple]] = []

    async def infer(self, model, input_name, batch, outputs):
        self.calls.append((model, batch.shape))
        if self.failures:
            self.failures -= 1
            raise BackendUnavailable("down")
        if model == "part_crops":
            if self.crops_from is None:
                raise BackendUnavailable("part_crops: not loaded")
            found = {}
            for one in ("part_anomaly", "defect_detector"):
                found |= (await self.infer(one, input_name, batch, None))[0]
                self.calls.pop()
            sources = np.tile(np.array(self.crops_from, np.int64), (len(batch), 1))
            found["source_versions"] = sources
            assert set(found) == set(outputs)
            return found, "1"
        n = len(batch)
        if model == "part_detector":
            assert input_name == "frame" and batch.shape == (1, FRAME_H, FRAME_W, 3)
            heat = np.zeros((n, 1, GRID_H, GRID_W), np.float32)
            for y, x in self.cells:
                heat[:, 0, y, x] = 0.9
            size = np.full((n, 2, GRID_H, GRID_W), np.log(64 / STRIDE), np.float32)
            offset = np.full((n, 2, GRID_H, GRID_W), 0.5, np.float32)
            found = {"part_heatmap": heat, "part_size": size, "part_offset": offset}
        elif model == "part_anomaly":
            assert input_name == "crop" and batch.shape[1:] == (CROP, CROP, 3)
            found = {
                "anomaly_map": np.zeros((n, CROP_GRID, CROP_GRID), np.float32),
                "anomaly_score": np.full((n,), self.anomaly, np.float32),
            }
        else:
            heat = np.zeros((n, 5, CROP_GRID, CROP_GRID), np.float32)
            heat[:, 0, CROP_GRID // 2, CROP_GRID // 2] = 0.7
            found = {
                "defect_heatmap": heat,
                "defect_size": np.full((n, 2, CROP_GRID, CROP_GRID), np.log(2), np.float32),
                "defect_mask": np.zeros((n, CROP_GRID, CROP_GRID), np.float32),
            }
        assert outputs is None or set(found) == set(outputs)
        return found, VERSIONS[model]

    async def served_version(self, model):
        self.calls.append((model, "version"))
        return VERSIONS[model]


def inspector(triton: FakeTriton, **options) -> tuple[Inspector, list[float]]:
    slept: list[float] = []

    async def sleep(s):
        slept.append(s)

    return Inspector(triton.infer, triton.served_version, sleep=sleep, **options), slept


def run(coro):
    return asyncio.run(coro)


RGB = np.full((FRAME_H, FRAME_W, 3), 90, np.uint8)


def test_parts_are_found_and_scored_by_all_three_models():
    triton = FakeTriton()
    parts, models = run(inspector(triton)[0].inspect(RGB))
    assert [c[0] for c in triton.calls][0] == "part_detector"
    # part_crops is not loaded here: the two crop models answer
    assert {c[0] for c in triton.calls[1:]} == {"part_crops", "part_anomaly", "defect_detector"}
    assert len(parts) == 1
    x0, y0, x1, y1 = parts[0].box
    assert (x0, y0, x1, y1) == pytest.approx((20.5 * 8 - 32, 16.5 * 8 - 32, 196, 164))
    assert parts[0].defect_score == pytest.approx(0.8)
    assert parts[0].anomaly_score == pytest.approx(0.8)
    assert [d.defect_class for d in parts[0].defects] == ["scratch"]
    assert [(m.name, m.version, m.served_by) for m in models] == [
        ("part_detector", "3", "triton"),
        ("part_anomaly", "2", "triton"),
        ("defect_detector", "1", "triton"),
    ]


def test_one_backbone_pass_when_part_crops_was_built_from_the_served_pair():
    triton = FakeTriton(crops_from=(2, 1))
    parts, models = run(inspector(triton)[0].inspect(RGB))
    inferred = [c[0] for c in triton.calls if c[1] != "version"]
    assert inferred == ["part_detector", "part_crops"]
    assert parts[0].defect_score == pytest.approx(0.8)
    assert [d.defect_class for d in parts[0].defects] == ["scratch"]
    assert [m.version for m in models] == ["3", "2", "1"]  # the pair it was built from


def test_part_crops_of_other_versions_is_left_alone_until_the_recheck():
    """A promotion made another pair serve and part_crops was not rebuilt yet: the two
    models answer, and part_crops is asked again only ``recheck_s`` later."""
    now = [0.0]
    triton = FakeTriton(crops_from=(1, 1))  # part_anomaly 2 is served
    model, _ = inspector(triton, recheck_s=30.0, clock=lambda: now[0])
    for at in (0.0, 10.0, 31.0):
        now[0] = at
        run(model.inspect(RGB))
    asked = [c[0] for c in triton.calls if c[1] != "version"]
    assert asked.count("part_crops") == 2  # at 0 s and at 31 s
    assert asked.count("part_anomaly") == 3 and asked.count("defect_detector") == 3
    triton.crops_from = (2, 1)  # rebuilt
    now[0] = 62.0
    run(model.inspect(RGB))
    asked = [c[0] for c in triton.calls if c[1] != "version"]
    assert asked[-2:] == ["part_detector", "part_crops"]


def test_no_part_crops_means_the_two_models_as_before():
    triton = FakeTriton(crops_from=None)
    parts, models = run(inspector(triton)[0].inspect(RGB))
    asked = [c[0] for c in triton.calls if c[1] != "version"]
    assert set(asked) == {"part_detector", "part_crops", "part_anomaly", "defect_detector"}
    assert len(parts) == 1 and [m.version for m in models] == ["3", "2", "1"]
    off = FakeTriton(crops_from=(2, 1))
    run(inspector(off, crop_model=None)[0].inspect(RGB))
    assert "part_crops" not in [c[0] for c in off.calls]


def test_no_parts_skips_the_crop_models_but_still_names_their_versions():
    triton = FakeTriton(cells=())
    parts, models = run(inspector(triton)[0].inspect(RGB))
    assert parts == []
    assert [c for c in triton.calls if c[1] != "version"] == [
        ("part_detector", (1, FRAME_H, FRAME_W, 3))
    ]
    assert [m.version for m in models] == ["3", "2", "1"]


def test_crops_go_in_batches_of_at_most_max_crop_batch():
    triton = FakeTriton(cells=((6, 8), (12, 20), (18, 32)))
    parts, _ = run(inspector(triton, max_crop_batch=2)[0].inspect(RGB))
    assert len(parts) == 3
    anomaly = [shape for model, shape in triton.calls if model == "part_anomaly"]
    assert [s[0] for s in anomaly] == [2, 1]


def test_triton_errors_are_retried_with_backoff():
    triton = FakeTriton(failures=2)
    model, slept = inspector(triton, policy=RetryPolicy(attempts=3, backoff_s=0.1))
    parts, _ = run(model.inspect(RGB))
    assert len(parts) == 1 and slept == pytest.approx([0.1, 0.2])


def test_triton_down_for_good_raises_so_the_worker_crashes():
    triton = FakeTriton(failures=100)
    model, slept = inspector(triton, policy=RetryPolicy(attempts=2, backoff_s=0.1))
    with pytest.raises(BackendUnavailable):
        run(model.inspect(RGB))
    assert len(triton.calls) == 3 and slept == pytest.approx([0.1, 0.2])


def test_low_scoring_parts_are_ignored():
    triton = FakeTriton()
    parts, _ = run(inspector(triton, min_part_score=0.95)[0].inspect(RGB))
    assert parts == []


def part(score: float, polygon=None) -> PartDetection:
    defect = DefectDetection(
        defect_class="scratch", box=(20, 20, 30, 30), score=0.7, area=50, polygon=polygon
    )
    return PartDetection(
        box=(10, 10, 60, 60),
        confidence=0.9,
        defect_score=score,
        anomaly_score=0.4,
        defects=[defect],
    )


def test_observations_carry_parts_defects_and_models():
    polygon = [(20.0, 20.0), (30.0, 20.0), (25.0, 30.0)]
    models = run(inspector(FakeTriton(cells=()))[0].inspect(RGB))[1]
    out = observations(meta(), QUALITY, [part(0.8, polygon)], models, "snapshot://x.jpg")
    again = PartObservations.model_validate_json(out.model_dump_json())
    assert again == out and "inspected" in out.frame.stages
    assert out.parts[0].box == (10, 10, 60, 60) and out.parts[0].defect_score == 0.8
    assert out.parts[0].defects[0].polygon == polygon
    assert out.snapshot == "snapshot://x.jpg" and len(out.models) == 3


def test_snapshot_only_when_a_part_reaches_the_threshold(tmp_path):
    store = SnapshotStore(tmp_path)
    bgr = np.full((FRAME_H, FRAME_W, 3), 90, np.uint8)
    assert store_snapshot(store, meta(), bgr, [part(0.3)], 0.5) is None
    assert not wants_snapshot([], 0.5)
    polygon = [(20.0, 20.0), (30.0, 20.0), (25.0, 30.0)]
    ref = store_snapshot(store, meta("f:7"), bgr, [part(0.3), part(0.6, polygon)], 0.5)
    assert ref == "snapshot://line-1/f_7.jpg"
    image = cv2.imdecode(np.frombuffer(store.get(ref), np.uint8), cv2.IMREAD_COLOR)
    assert image.shape == bgr.shape and not np.array_equal(image, bgr)  # boxes drawn
    # A JPEG frame is kept as the camera sent it, its boxes drawn when it is asked for.
    jpeg = cv2.imencode(".jpg", bgr)[1].tobytes()
    sent = meta("f:8")
    assert sent.content_type == "image/jpeg"
    ref = store_snapshot(store, sent, bgr, [part(0.6, polygon)], 0.5, image=jpeg)
    assert store.get(ref) == jpeg
    drawn = cv2.imdecode(np.frombuffer(store.render(ref), np.uint8), cv2.IMREAD_COLOR)
    plain = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert drawn.shape == bgr.shape and not np.array_equal(drawn, plain)


def test_snapshot_draws_parts_and_their_defects():
    boxes = snapshot_boxes([part(0.3), part(0.9, [(20.0, 20.0), (30.0, 20.0), (25.0, 30.0)])], 0.5)
    labels = [b.label for b in boxes]
    assert labels == ["ok 0.30", "scratch 0.70", "defect 0.90", "scratch 0.70"]
    assert len(boxes[3].polygons) == 1 and boxes[1].polygons == []


def test_snapshot_keys_are_safe_for_the_store():
    assert snapshot_key(meta("f-000123")) == "line-1/f-000123"
    assert snapshot_key(meta("a:b..c")) == "line-1/a_b__c"


def test_frames_decode_at_full_size_with_their_quality():
    rgb = np.random.default_rng(0).integers(0, 255, (360, 640, 3), np.uint8)
    ok, jpeg = cv2.imencode(".jpg", rgb)
    bgr, scaled_rgb, quality = decode_frame(meta(width=640, height=360), jpeg.tobytes())
    assert bgr.shape == (360, 640, 3) and quality.contrast > 10
    # Scaled once, for the quality and the part detector: the detector's input is the same
    # to the bit as when it scales the RGB frame itself.
    rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    np.testing.assert_array_equal(frame_tensor(rgb, scaled_rgb)[0], frame_tensor(rgb)[0])
    assert quality == quality_measures(scaled_frame(bgr))
    with pytest.raises(ValueError, match="letterbox needs"):
        frame_tensor(rgb, scaled_rgb[:-1])


def test_a_frame_that_will_not_decode_is_rejected():
    with pytest.raises(FrameRejected) as info:
        decode_frame(meta(), b"\xff\xd8\xff" + b"\x00" * 100 + b"\xff\xd9")
    assert info.value.error_type == "decode_failed"


@pytest.mark.parametrize("shape", [(1, 4000), (20000, 1), (1, 1), (3, 2), (4000, 3)])
def test_frames_of_any_aspect_ratio_are_inspected_not_crashed_on(shape):
    """A 1 x 4000 PNG crashed the inspect worker in a loop (issue 15): a poison pill."""
    rgb = np.full((*shape, 3), 120, np.uint8)
    parts, models = run(inspector(FakeTriton())[0].inspect(rgb))
    assert len(models) == 3
    for part in parts:  # boxes stay inside the frame, however thin
        x0, y0, x1, y1 = part.box
        assert 0 <= x0 <= x1 <= shape[1] and 0 <= y0 <= y1 <= shape[0]
    ok, png = cv2.imencode(".png", rgb)
    bgr, _, quality = decode_frame(meta(width=shape[1], height=shape[0]), png.tobytes())
    assert bgr.shape[:2] == shape and quality.brightness == pytest.approx(120, abs=1)
