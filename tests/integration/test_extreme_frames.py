"""Frames of extreme shape are decided on, on both paths, and stop no worker (issue 15).

A 1 x 4000 PNG or a 20000 x 1 JPEG on an inspection camera once crashed the inspect worker on
every redelivery: a poison pill that stopped the line. Each such frame must now come out as a
prediction (classify cameras) or a part observation (inspection cameras), the good frame sent
after them must pass, and no worker may have restarted.
"""

from __future__ import annotations

import uuid

import cv2
import numpy as np
import pytest

from tests.integration.pipeline import Camera, TopicReader, chelsea_jpeg, new_camera
from visionline.camera_registry import CameraSpec, upsert_cameras
from visionline.messages import Topic
from visionline.synthetic import LineGenerator

WORKERS = ("ingest", "preprocess", "inference", "postprocess", "inspect", "parts")


def encoded(shape: tuple[int, int], ext: str) -> bytes:
    rng = np.random.default_rng(sum(shape))
    ok, data = cv2.imencode(ext, rng.integers(0, 256, (*shape, 3), dtype=np.uint8))
    assert ok
    return data.tobytes()


EXTREME = {
    "thin-png": (encoded((1, 4000), ".png"), "image/png"),
    "tall-jpeg": (encoded((20000, 1), ".jpg"), "image/jpeg"),
    "pixel-png": (encoded((1, 1), ".png"), "image/png"),
    "strip-jpeg": (encoded((8, 2000), ".jpg"), "image/jpeg"),
}


@pytest.fixture(scope="module")
def observations(stack):
    reader = TopicReader(stack.kafka_bootstrap, Topic.PART_OBSERVATIONS)
    yield reader
    reader.close()


def send_extremes_then(camera: Camera, camera_id: str, good: bytes, tag: str) -> list[str]:
    ids = []
    for name, (data, content_type) in EXTREME.items():
        ids.append(f"{name}-{tag}")
        camera.send(camera_id, data, ids[-1], headers=[("content-type", content_type.encode())])
    ids.append(f"good-after-{tag}")
    camera.send(camera_id, good, ids[-1])
    camera.flush()
    return ids


def pids(stack) -> dict[str, list[int]]:
    return {name: sorted(stack.pids(name)) for name in WORKERS}


def test_extreme_frames_on_an_inspection_camera_are_inspected(stack, engine, observations):
    before = pids(stack)
    camera_id = f"test-line-{uuid.uuid4().hex[:8]}"
    spec = CameraSpec(camera_id=camera_id, max_fps=200.0, pipeline="inspect")
    upsert_cameras(engine, [spec], pepper="dev")
    good, _ = LineGenerator(seed=3).encode(0)
    ids = send_extremes_then(Camera(stack.kafka_bootstrap), camera_id, good, uuid.uuid4().hex[:6])

    def mine(seen):
        return {m["frame"]["frame_id"] for m in seen if m["frame"]["camera_id"] == camera_id}

    seen = observations.wait_for(lambda seen: mine(seen) >= set(ids), timeout=120)
    assert mine(seen) == set(ids)
    assert pids(stack) == before  # nothing crashed, nothing restarted


def test_extreme_frames_on_a_classify_camera_are_classified(stack, engine, predictions):
    before = pids(stack)
    camera_id = new_camera(engine)
    tag = uuid.uuid4().hex[:6]
    ids = send_extremes_then(Camera(stack.kafka_bootstrap), camera_id, chelsea_jpeg(), tag)

    def mine(seen):
        return {p["frame_id"] for p in seen if p["camera_id"] == camera_id}

    seen = predictions.wait_for(lambda seen: mine(seen) >= set(ids), timeout=120)
    assert mine(seen) == set(ids)
    assert pids(stack) == before
