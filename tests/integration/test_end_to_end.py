"""A real photo pushed as a camera frame comes out as a prediction and an alert."""

from __future__ import annotations

import uuid

from tests.integration.pipeline import (
    Camera,
    TopicReader,
    chelsea_jpeg,
    new_camera,
    rows,
    wait_rows,
)
from visionline.messages import Topic

CATS = {"tabby", "tiger cat", "Egyptian cat"}


def test_chelsea_gives_a_cat_prediction_and_an_alert(stack, engine, predictions, alerts):
    camera_id = new_camera(engine)
    frame_id = f"chelsea-{uuid.uuid4().hex[:6]}"
    camera = Camera(stack.kafka_bootstrap)
    camera.send(camera_id, chelsea_jpeg(), frame_id)
    camera.flush()

    def mine(seen):
        return [m for m in seen if m["camera_id"] == camera_id and m["frame_id"] == frame_id]

    prediction = mine(predictions.wait_for(mine, timeout=60))[0]
    assert prediction["top_k"][0]["label"] in CATS, prediction["top_k"]
    assert prediction["model"]["name"] == "efficientnet_lite0"
    assert prediction["model"]["version"] == "1"
    assert {"ingested", "preprocessed", "inferred", "postprocessed"} <= set(prediction["stages"])

    alert = mine(alerts.wait_for(mine, timeout=30))[0]
    assert alert["rule"] == "test-cat-every-frame" and alert["label"] in CATS
    stored = wait_rows(
        engine, "SELECT * FROM alerts WHERE camera_id = :c", bool, timeout=30, c=camera_id
    )
    assert [r["alert_id"] for r in stored] == [alert["alert_id"]]
    assert rows(engine, "SELECT label FROM predictions WHERE camera_id = :c", c=camera_id)


def test_frame_without_headers_gets_defaults(stack, engine, predictions):
    camera_id = new_camera(engine)
    camera = Camera(stack.kafka_bootstrap)
    camera.send(camera_id, chelsea_jpeg(640, 480))  # key and bytes only, as kcat would send
    camera.flush()

    def mine(seen):
        return [m for m in seen if m["camera_id"] == camera_id]

    prediction = mine(predictions.wait_for(mine, timeout=60))[0]
    assert prediction["frame_id"].startswith("auto-")
    assert prediction["captured_at"] > 0


def test_topic_reader_sees_only_json(stack):
    reader = TopicReader(stack.kafka_bootstrap, Topic.PREDICTIONS)
    reader.close()
