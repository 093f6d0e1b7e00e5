"""Issue 17 on the real stack: the detect pipeline, from a detector trained on photographs to
zone and line alerts, once per tracked object.

The whole pipeline (Kafka-compatible broker, Triton in explicit model control, PostgreSQL,
Redis, every worker and the API) serves a temporary model repository. A detector is trained on
scenes of scikit-image's photographs imported as a COCO dataset and promoted through
`visionline models promote` (which loads it into the running Triton). A camera is registered
through the API with ``pipeline: detect`` and that detector, the rules document gets a line
rule and a dwell zone rule through the API, and frames go in as plain Kafka: a cup crosses the
frame's middle and later crosses back, while an astronaut's face stays in the upper right.
"""

from __future__ import annotations

import re
import time
import uuid
from pathlib import Path

import cv2
import httpx
import numpy as np
import pytest

from tests.integration.pipeline import (
    Camera,
    TopicReader,
    repository_with_shipped_classifier,
    visionline_commands,
)
from tests.unit.dataset_photos import BACKGROUNDS, SUBJECTS, _bgr, detection_coco
from visionline.db import make_engine
from visionline.messages import HEADER_CAPTURED_AT, HEADER_FRAME_ID, Topic
from visionline.models import spec
from visionline.stack.api import LocalStack
from visionline.stack.config import free_port_settings
from visionline.tokens import create_token

MODEL = "photo_objects"
REFRESH_S = 1.0  # ingest's camera registry and the workers' rules refresh in this stack
SIZE = (160, 120)  # as the training scenes
CUP, FACE = (40, 36), (40, 40)  # the subjects' sizes in pixels, as trained on (30-50)
STEPS = 14  # frames per crossing
RULES = {
    "rules": [],
    "detect": [
        {
            "name": "cup-crossing",
            "kind": "line",
            "cameras": ["detect-*"],
            "classes": ["coffee"],
            "line": [[0.5, 0.0], [0.5, 1.0]],
            "min_confidence": 0.2,
        },
        {
            "name": "face-loitering",
            "kind": "dwell",
            "cameras": ["detect-*"],
            "classes": ["astronaut"],
            "zone": [[0.55, 0.0], [1.0, 0.0], [1.0, 0.55], [0.55, 0.55]],
            "seconds": 0.8,
            "min_confidence": 0.2,
            "severity": "critical",
        },
    ],
}


@pytest.fixture(scope="module")
def repository(tmp_path_factory) -> Path:
    return repository_with_shipped_classifier(tmp_path_factory.mktemp("model-repository"))


@pytest.fixture(scope="module")
def stack(tmp_path_factory, repository: Path):
    refresh = str(REFRESH_S)
    settings = free_port_settings(
        tmp_path_factory.mktemp("detect-stack"),
        model_repository=repository,
        model_name=spec.MODEL_NAME,
        inspection_models=(),
        worker_env={
            "VISIONLINE_INGEST_REGISTRY_REFRESH_S": refresh,
            "VISIONLINE_OBJECTS_REFRESH_S": refresh,
            "VISIONLINE_DETECT_MIN_SCORE": "0.2",
        },
    )
    with LocalStack(settings, attached=True) as running:
        yield running


def train_and_promote(run, scenes: Path) -> None:
    name = f"scenes-{uuid.uuid4().hex[:8]}"
    run("datasets", "import", str(scenes), "--format", "coco", "--name", name)
    options = ("--epochs", "16", "--copies", "1", "--threads", "2", "--no-card")
    trained = run("train", "detector", "--dataset", name, "--model", MODEL, *options)
    job = re.search(r"registered as job (\d+)", trained)
    assert job is not None, trained
    assert "version 1 serving" in run("models", "promote", MODEL, "1", "--job", job.group(1))


def _subject(label: str, size: tuple[int, int]) -> np.ndarray:
    loader, (x0, y0, x1, y1) = SUBJECTS[label]
    return cv2.resize(_bgr(loader())[y0:y1, x0:x1], size)


def frames() -> list[bytes]:
    """JPEG frames: the cup crosses left to right, then right to left; the face stays put."""
    width, height = SIZE
    background = _bgr(BACKGROUNDS[0]())[40 : 40 + height, 60 : 60 + width]
    cup, face = _subject("coffee", CUP), _subject("astronaut", FACE)
    span = width - CUP[0] - 8
    there = [4 + span * i // (STEPS - 1) for i in range(STEPS)]
    out = []
    for x in there + there[::-1]:
        frame = background.copy()
        frame[70 : 70 + CUP[1], x : x + CUP[0]] = cup
        frame[6 : 6 + FACE[1], 112 : 112 + FACE[0]] = face
        ok, jpeg = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, 92])
        assert ok
        out.append(jpeg.tobytes())
    return out


def push(camera_id: str, jpegs: list[bytes], bootstrap: str) -> None:
    """Plain Kafka, 10 frames per second of capture time."""
    camera, start = Camera(bootstrap), time.time() - len(jpegs) * 0.1
    for i, jpeg in enumerate(jpegs):
        captured = str(int((start + i * 0.1) * 1000)).encode()
        headers = [(HEADER_FRAME_ID, f"f{i:03d}".encode()), (HEADER_CAPTURED_AT, captured)]
        camera.send(camera_id, jpeg, headers=headers)
    camera.flush()


def switch_to_detect(api: httpx.Client) -> str:
    """A classify camera registered through the API, then switched to the detector."""
    camera_id = f"detect-{uuid.uuid4().hex[:8]}"
    body = {"camera_id": camera_id, "max_fps": 100}
    refused = api.post("/v1/cameras", json=body | {"pipeline": "detect"})
    assert refused.status_code == 422 and "detector" in refused.text  # it needs one
    refused = api.post("/v1/cameras", json=body | {"pipeline": "detect", "model": spec.MODEL_NAME})
    assert refused.status_code == 422  # a classifier is not a detector
    assert api.post("/v1/cameras", json=body).status_code == 201
    switch = {"pipeline": "detect", "model": MODEL}
    refused = api.patch(f"/v1/cameras/{camera_id}", json={"model": MODEL})
    assert refused.status_code == 422  # a detector is not a classify camera's classifier
    switched = api.patch(f"/v1/cameras/{camera_id}", json=switch)
    assert switched.status_code == 200 and switched.json()["pipeline"] == "detect", switched.text
    return camera_id


@pytest.fixture(scope="module")
def run(stack: LocalStack, repository: Path, tmp_path_factory) -> dict:
    """Train, promote, switch a camera, set the rules, push the frames; what came out."""
    folder = tmp_path_factory.mktemp("detect-run")
    commands = visionline_commands(stack, repository, folder / "store")
    train_and_promote(commands, detection_coco(folder / "scenes", frames=32))
    engine = make_engine(stack.database_url)
    token = create_token(engine, "detect-test", "admin")
    api = httpx.Client(
        base_url=stack.api_url, headers={"Authorization": f"Bearer {token}"}, timeout=30
    )
    camera_id = switch_to_detect(api)
    saved = api.put("/v1/rules", json={"document": RULES, "comment": "detect test"})
    assert saved.status_code == 200, saved.text
    time.sleep(3 * REFRESH_S)  # ingest's registry and the objects worker's rules refresh

    alerts = TopicReader(stack.kafka_bootstrap, Topic.ALERTS)
    detections = TopicReader(stack.kafka_bootstrap, Topic.DETECTIONS)
    jpegs = frames()
    push(camera_id, jpegs, stack.kafka_bootstrap)
    try:
        detections.wait_for(lambda seen: len(_detections_of(seen, camera_id)) >= len(jpegs), 180)
        alerts.wait_for(lambda seen: len(_alerts_of(seen, camera_id)) >= 3, timeout=60)
        with pytest.raises(AssertionError, match="timed out"):  # a fourth would be a duplicate
            alerts.wait_for(lambda seen: len(_alerts_of(seen, camera_id)) > 3, timeout=8)
    finally:
        alerts.close()
        detections.close()
    yield {
        "api": api,
        "frames": len(jpegs),
        "detections": _detections_of(detections.seen, camera_id),
        "alerts": _alerts_of(alerts.seen, camera_id),
        "camera_id": camera_id,
    }
    api.close()
    engine.dispose()


def test_the_switched_camera_is_served_by_the_promoted_detector(run: dict) -> None:
    ours = run["detections"]
    assert {d["model"]["name"] for d in ours} == {MODEL}
    assert {d["model"]["version"] for d in ours} == {"1"}
    cups = sum(any(o["class_name"] == "coffee" for o in d["objects"]) for d in ours)
    assert cups >= 0.8 * run["frames"], [d["objects"] for d in ours]


def test_a_line_crossing_alerts_once_per_crossing_with_its_direction(run: dict) -> None:
    crossings = [a for a in run["alerts"] if a["rule"] == "cup-crossing"]
    assert len(crossings) == 2, run["alerts"]  # there and back
    there, back = sorted(crossings, key=lambda a: a["frame_id"])
    assert there["frame_id"] < f"f{STEPS:03d}" <= back["frame_id"]
    assert there["object"]["detail"]["direction"] != back["object"]["detail"]["direction"]
    assert back["object"]["detail"]["count_in"] == back["object"]["detail"]["count_out"] == 1
    assert there["object"]["track_id"] == back["object"]["track_id"]  # one object, tracked


def test_a_dwell_in_the_zone_alerts_once_per_object(run: dict) -> None:
    dwells = [a for a in run["alerts"] if a["rule"] == "face-loitering"]
    assert len(dwells) == 1, run["alerts"]  # one object standing: one alert
    dwell = dwells[0]
    assert dwell["label"] == "astronaut" and dwell["severity"] == "critical"
    assert dwell["object"]["detail"]["dwell_s"] >= 0.8  # more than 0.8 s, rounded to ms
    assert len(run["alerts"]) == 3 and len({a["alert_id"] for a in run["alerts"]}) == 3


def test_the_alerts_are_stored_once_with_their_snapshots(run: dict) -> None:
    api = run["api"]
    stored = api.get("/v1/alerts", params={"camera_id": run["camera_id"]}).json()["items"]
    assert sorted(a["alert_id"] for a in stored) == sorted(a["alert_id"] for a in run["alerts"])
    for alert in stored:
        snapshot = api.get(alert["snapshot_url"])
        assert snapshot.status_code == 200 and snapshot.content[:2] == b"\xff\xd8"


def _detections_of(seen: list[dict], camera_id: str) -> list[dict]:
    return [d for d in seen if d.get("frame", {}).get("camera_id") == camera_id]


def _alerts_of(seen: list[dict], camera_id: str) -> list[dict]:
    return [a for a in seen if a.get("camera_id") == camera_id]
