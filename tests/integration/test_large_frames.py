"""Every frame size the ingest cap admits gets through every hop (issue 15).

A 5 MB JPEG under the 8 MiB cap once vanished: ingest's producer refused the envelope
(``max_request_size``), and the frame made neither a prediction nor a dead letter. Frames up to
the cap must now come out as predictions, on both paths; one over the cap is dead-lettered.
"""

from __future__ import annotations

import uuid

import cv2
import numpy as np
import pytest

from tests.integration.pipeline import Camera, TopicReader, new_camera
from visionline.camera_registry import CameraSpec, upsert_cameras
from visionline.messages import Topic
from visionline.settings import IngestSettings


def noise_jpeg(side: int) -> bytes:
    """Noise at quality 100: a JPEG of about 1.6 bytes per pixel, the hardest to compress."""
    image = np.random.default_rng(side).integers(0, 256, (side, side, 3), dtype=np.uint8)
    ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 100])
    assert ok
    return data.tobytes()


LARGE = noise_jpeg(1800)  # about 6.4 MB
CAP = IngestSettings().max_bytes


@pytest.fixture(scope="module")
def observations(stack):
    reader = TopicReader(stack.kafka_bootstrap, Topic.PART_OBSERVATIONS)
    yield reader
    reader.close()


def test_a_frame_just_under_the_cap_is_classified(stack, engine, predictions, dead_letters):
    assert 5_000_000 < len(LARGE) < CAP
    camera_id = new_camera(engine)
    tag = uuid.uuid4().hex[:6]
    camera = Camera(stack.kafka_bootstrap)
    camera.send(camera_id, LARGE, f"large-{tag}")
    camera.send(camera_id, noise_jpeg(2400) + b"\0" * 64, f"over-cap-{tag}")  # about 11 MB
    camera.send(camera_id, noise_jpeg(64), f"small-after-{tag}")
    camera.flush()

    def mine(seen):
        return {p["frame_id"] for p in seen if p["camera_id"] == camera_id}

    seen = predictions.wait_for(lambda s: {f"large-{tag}", f"small-after-{tag}"} <= mine(s), 120)
    assert mine(seen) == {f"large-{tag}", f"small-after-{tag}"}
    letters = dead_letters.wait_for(
        lambda s: any(d["frame_id"] == f"over-cap-{tag}" for d in s), timeout=60
    )
    (letter,) = [d for d in letters if d["frame_id"] == f"over-cap-{tag}"]
    assert letter["error_type"] == "payload_too_large" and letter["stage"] == "ingest"


def test_a_frame_just_under_the_cap_is_inspected(stack, engine, observations):
    camera_id = f"test-line-{uuid.uuid4().hex[:8]}"
    spec = CameraSpec(camera_id=camera_id, max_fps=200.0, pipeline="inspect")
    upsert_cameras(engine, [spec], pepper="dev")
    frame_id = f"large-{uuid.uuid4().hex[:6]}"
    camera = Camera(stack.kafka_bootstrap)
    camera.send(camera_id, LARGE, frame_id)
    camera.flush()
    seen = observations.wait_for(
        lambda s: any(m["frame"]["frame_id"] == frame_id for m in s), timeout=120
    )
    assert any(m["frame"]["camera_id"] == camera_id for m in seen)
