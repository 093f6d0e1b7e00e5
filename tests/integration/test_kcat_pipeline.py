"""Debian's kcat (librdkafka 2.0.2), a Kafka client nobody here wrote, as the README shows it: a
real photo produced to the raw-frames topic comes out as a prediction and an alert, both read
back with `kcat -C`."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import uuid

import pytest

from tests.integration.pipeline import chelsea_jpeg, new_camera
from visionline.messages import Topic

pytestmark = pytest.mark.integration


def kcat_read(kcat: str, bootstrap: str, topic: Topic) -> list[dict]:
    """The README's read command: every message of the topic, as JSON where it is."""
    argv = [kcat, "-C", "-b", bootstrap, "-t", str(topic), "-o", "beginning", "-e", "-q"]
    done = subprocess.run(argv, check=True, timeout=60, capture_output=True, text=True)
    found = []
    for line in done.stdout.splitlines():
        try:
            value = json.loads(line)
        except ValueError:
            continue  # the API tests publish garbage on the alerts topic
        if isinstance(value, dict):
            found.append(value)
    return found


def test_kcat_sends_a_frame_and_reads_its_prediction_and_alert(stack, engine, tmp_path) -> None:
    kcat = shutil.which("kcat")
    assert kcat, "Debian's kcat is not installed: `make kcat`"
    bootstrap = stack.kafka_bootstrap
    camera = new_camera(engine)  # test-* cameras alert on every cat frame
    frame = tmp_path / "frame.jpg"
    frame.write_bytes(chelsea_jpeg(640, 360))
    frame_id = f"f-{uuid.uuid4().hex[:8]}"
    produce = [kcat, "-P", "-b", bootstrap, "-t", str(Topic.RAW_FRAMES), "-k", camera]
    produce += ["-H", f"frame-id={frame_id}", "-H", f"captured-at={int(time.time() * 1000)}"]
    subprocess.run([*produce, str(frame)], check=True, timeout=60, capture_output=True)

    deadline = time.monotonic() + 120
    while True:
        predictions = [
            p
            for p in kcat_read(kcat, bootstrap, Topic.PREDICTIONS)
            if p.get("frame_id") == frame_id
        ]
        alerts = [
            a for a in kcat_read(kcat, bootstrap, Topic.ALERTS) if a.get("frame_id") == frame_id
        ]
        if predictions and alerts:
            break
        assert time.monotonic() < deadline, f"{len(predictions)} predictions, {len(alerts)} alerts"
        time.sleep(2)
    [prediction], [alert] = predictions, alerts
    assert prediction["camera_id"] == camera
    assert prediction["top_k"][0]["label"] in {"tabby", "tiger cat", "Egyptian cat"}
    assert alert["camera_id"] == camera and alert["rule"] == "test-cat-every-frame"
