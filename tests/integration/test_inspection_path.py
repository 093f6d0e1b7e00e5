"""Conveyor frames of an inspection camera come out as part observations from the real models."""

from __future__ import annotations

import uuid

import pytest

from tests.integration.pipeline import Camera, TopicReader
from visionline.camera_registry import CameraSpec, upsert_cameras
from visionline.inspection.metrics import iou
from visionline.inspection.snapshots import SnapshotStore
from visionline.messages import Topic
from visionline.stack.config import INSPECTION_MODELS
from visionline.synthetic import LineGenerator

FRAMES = 6


@pytest.fixture(scope="module")
def observations(stack):
    reader = TopicReader(stack.kafka_bootstrap, Topic.PART_OBSERVATIONS)
    yield reader
    reader.close()


def test_inspection_frames_give_parts_where_the_parts_are(stack, engine, observations):
    camera_id = f"test-line-{uuid.uuid4().hex[:8]}"
    spec = CameraSpec(camera_id=camera_id, max_fps=200.0, pipeline="inspect")
    upsert_cameras(engine, [spec], pepper="dev")
    generator = LineGenerator(seed=11)  # the same frames every run, whatever the camera id
    camera = Camera(stack.kafka_bootstrap)
    truths = {}
    for i in range(FRAMES):
        jpeg, truth = generator.encode(i)
        truths[f"f-{i:04d}"] = truth
        camera.send(camera_id, jpeg, f"f-{i:04d}")
    camera.flush()

    def mine(seen):
        return [m for m in seen if m["frame"]["camera_id"] == camera_id]

    found = observations.wait_for(lambda seen: len(mine(seen)) >= FRAMES, timeout=120)
    by_frame = {m["frame"]["frame_id"]: m for m in mine(found)}
    assert set(by_frame) == set(truths)
    matched = total = 0
    store = SnapshotStore(stack.settings.state_dir / "snapshots")
    for frame_id, truth in truths.items():
        message = by_frame[frame_id]
        assert [m["name"] for m in message["models"]] == list(INSPECTION_MODELS)
        assert all(m["served_by"] == "triton" and m["version"] for m in message["models"])
        assert {"ingested", "inspected"} <= set(message["frame"]["stages"])
        if message["snapshot"]:  # a part looked defective: its annotated frame is stored
            assert store.get(message["snapshot"]).startswith(b"\xff\xd8")
        boxes = [p["box"] for p in message["parts"]]
        for part in truth.parts:
            if part.visible_fraction < 0.8 or part.occluded_fraction > 0.2:
                continue  # half out of view: the detector may fairly miss it
            total += 1
            matched += any(iou(part.box, box) >= 0.3 for box in boxes)
    assert total > 0 and matched / total >= 0.7, f"{matched} of {total} parts found"


def _triton_count(stack, model: str) -> float:
    import httpx

    from visionline.bench.figures import parse_prometheus

    url = f"http://{stack.settings.host}:{stack.settings.triton_metrics_port}/metrics"
    text = httpx.get(url, timeout=5.0).raise_for_status().text
    return sum(
        value
        for name, labels, value in parse_prometheus(text)
        if name == "nv_inference_count" and labels.get("model") == model
    )


def test_the_crop_models_run_on_one_backbone_pass_in_triton(stack, engine, observations):
    """part_crops is built by make models and loaded by the stack: crops go to it, not to the
    anomaly model and the defect detector apart."""
    before = {m: _triton_count(stack, m) for m in ("part_crops", "part_anomaly")}
    camera_id = f"test-line-{uuid.uuid4().hex[:8]}"
    upsert_cameras(engine, [CameraSpec(camera_id=camera_id, pipeline="inspect")], pepper="dev")
    camera, generator = Camera(stack.kafka_bootstrap), LineGenerator(seed=11)
    for i in range(3):
        camera.send(camera_id, generator.encode(i)[0], f"f-{i:04d}")
    camera.flush()
    observations.wait_for(
        lambda seen: sum(m["frame"]["camera_id"] == camera_id for m in seen) >= 3, timeout=120
    )
    assert _triton_count(stack, "part_crops") > before["part_crops"]
    assert _triton_count(stack, "part_anomaly") == before["part_anomaly"]
