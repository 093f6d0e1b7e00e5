"""Issue 17 on the real stack: a camera switched through the API to a newly promoted classifier.

The whole pipeline (Kafka-compatible broker, Triton in explicit model control, PostgreSQL,
Redis, every worker and the API) serves a temporary model repository holding the shipped
ImageNet classifier. A classifier is trained on photographs imported as a dataset, promoted
through `visionline models promote` (which loads it into the running Triton), and one camera is
switched to it with ``PATCH /v1/cameras/{id}``; frames go in as plain Kafka. That camera's
predictions come from the new model with its classes; another camera keeps ImageNet's labels.
An anomaly model trained on good items only (`visionline train anomaly`) is served the same way:
its frames are labelled ``good`` or ``anomaly`` and a rule on ``anomaly`` alerts.
"""

from __future__ import annotations

import json
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
    new_camera,
    repository_with_shipped_classifier,
    visionline_commands,
)
from tests.unit.dataset_photos import CLASSES, anomaly_folders, classification_folders
from visionline.db import make_engine
from visionline.messages import Topic
from visionline.models import spec
from visionline.stack.api import LocalStack
from visionline.stack.config import free_port_settings
from visionline.tokens import create_token

MODEL = "camera_classes"
ANOMALY_MODEL = "brick_anomaly"
ANOMALY_RULES = {  # the whole rules document while this module's stack runs
    "rules": [
        {
            "name": "brick-anomaly",
            "cameras": ["anomaly-*"],
            "labels": ["anomaly"],
            "min_confidence": 0.5,  # the model's own threshold
            "cooldown_s": 0,
            "severity": "critical",
        }
    ]
}
REFRESH_S = 1.0  # ingest's camera registry refresh in this stack


@pytest.fixture(scope="module")
def repository(tmp_path_factory) -> Path:
    return repository_with_shipped_classifier(tmp_path_factory.mktemp("model-repository"))


@pytest.fixture(scope="module")
def stack(tmp_path_factory, repository: Path):
    settings = free_port_settings(
        tmp_path_factory.mktemp("switch-stack"),
        model_repository=repository,
        model_name=spec.MODEL_NAME,
        inspection_models=(),
        worker_env={"VISIONLINE_INGEST_REGISTRY_REFRESH_S": str(REFRESH_S)},
    )
    with LocalStack(settings, attached=True) as running:
        yield running


def _train_and_promote(run, photos: Path, train: tuple[str, ...], model: str = MODEL) -> None:
    name = f"photos-{uuid.uuid4().hex[:8]}"
    run("datasets", "import", str(photos), "--format", "folders", "--name", name)
    trained = run("train", *train, "--dataset", name, "--model", model, "--no-card")
    job = re.search(r"registered as job (\d+)", trained)
    assert job is not None, trained
    assert "version 1 serving" in run("models", "promote", model, "1", "--job", job.group(1))


def _jpegs() -> dict[str, bytes]:
    """Each class's whole photograph as a camera frame (JPEG)."""
    from skimage import data

    frames = {}
    for name in CLASSES:
        rgb = np.ascontiguousarray(getattr(data, name)()[..., :3])
        ok, encoded = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        assert ok
        frames[name] = encoded.tobytes()
    return frames


def _predictions(reader: TopicReader, cameras: set[str], count: int) -> list[dict]:
    def done(seen: list[dict]) -> bool:
        return all(sum(p.get("camera_id") == c for p in seen) >= count for c in cameras)

    seen = reader.wait_for(done, timeout=120)
    return [p for p in seen if p.get("camera_id") in cameras]


def test_a_camera_switched_to_a_promoted_classifier_gets_its_labels(
    stack: LocalStack, repository: Path, tmp_path: Path
) -> None:
    run = visionline_commands(stack, repository, tmp_path / "store")
    classifier = ("classifier", "--epochs", "25", "--copies", "1")
    _train_and_promote(run, classification_folders(tmp_path / "photos"), classifier)
    engine = make_engine(stack.database_url)
    mine, other = new_camera(engine, "switch"), new_camera(engine, "keep")
    api = httpx.Client(
        base_url=stack.api_url,
        headers={"Authorization": f"Bearer {create_token(engine, 'switch-test', 'admin')}"},
        timeout=30,
    )
    refused = api.patch(f"/v1/cameras/{mine}", json={"model": "no_such_model"})
    assert refused.status_code == 422 and "no_such_model" in refused.text
    refused = api.patch(f"/v1/cameras/{mine}", json={"model": "../" + MODEL})
    assert refused.status_code == 422
    switched = api.patch(f"/v1/cameras/{mine}", json={"model": MODEL})
    assert switched.status_code == 200, switched.text
    assert switched.json()["model"] == MODEL
    assert api.get(f"/v1/cameras/{other}").json()["model"] is None

    time.sleep(3 * REFRESH_S)  # ingest's registry sees the change within its refresh
    reader = TopicReader(stack.kafka_bootstrap, Topic.PREDICTIONS)
    camera = Camera(stack.kafka_bootstrap)
    frames = _jpegs()
    for i, (name, jpeg) in enumerate(frames.items()):
        camera.send(mine, jpeg, frame_id=f"{name}-{i}")
        camera.send(other, jpeg, frame_id=f"{name}-{i}")
    camera.flush()
    try:
        found = _predictions(reader, {mine, other}, len(frames))
    finally:
        reader.close()

    ours = {p["frame_id"]: p for p in found if p["camera_id"] == mine}
    assert {p["model"]["name"] for p in ours.values()} == {MODEL}
    assert {p["model"]["version"] for p in ours.values()} == {"1"}
    for p in ours.values():
        assert {s["label"] for s in p["top_k"]} <= set(CLASSES)
    right = sum(p["top_k"][0]["label"] == frame_id.split("-")[0] for frame_id, p in ours.items())
    assert right >= len(CLASSES) - 1, ours  # trained on these photographs

    imagenet = (repository / spec.MODEL_NAME / spec.LABELS_FILENAME).read_text().splitlines()
    theirs = [p for p in found if p["camera_id"] == other]
    assert {p["model"]["name"] for p in theirs} == {spec.MODEL_NAME}
    assert all(s["label"] in imagenet for p in theirs for s in p["top_k"])
    assert not any(s["label"] in CLASSES for p in theirs for s in p["top_k"])

    back = api.patch(f"/v1/cameras/{mine}", json={"model": ""})
    assert back.status_code == 200 and back.json()["model"] is None
    api.close()
    engine.dispose()


def _anomaly_frames(folder: Path, model_folder: Path) -> dict[str, tuple[bytes, bool]]:
    """The images training did not see (held-out good bricks, bricks with the cup pasted in):
    frame id -> (JPEG, anomalous)."""
    import hashlib

    heldout = set(json.loads((model_folder / "split.json").read_text())["heldout"])
    frames = {}
    for path in sorted(folder.glob("*/*.jpg")):
        jpeg = path.read_bytes()
        if hashlib.sha256(jpeg).hexdigest() in heldout:
            frames[path.stem] = (jpeg, path.parent.name == "defect")
    return frames


def test_a_camera_switched_to_a_promoted_anomaly_model_alerts_on_anomalies(
    stack: LocalStack, repository: Path, tmp_path: Path
) -> None:
    run = visionline_commands(stack, repository, tmp_path / "store")
    anomaly_folders(tmp_path / "bricks")
    train = ("anomaly", "--good", "good", "--bank-size", "400", "--threads", "1")
    _train_and_promote(run, tmp_path / "bricks", train, ANOMALY_MODEL)
    engine = make_engine(stack.database_url)
    camera_id = new_camera(engine, "anomaly")
    token = create_token(engine, "anomaly-test", "admin")
    api = httpx.Client(
        base_url=stack.api_url, headers={"Authorization": f"Bearer {token}"}, timeout=30
    )
    switched = api.patch(f"/v1/cameras/{camera_id}", json={"model": ANOMALY_MODEL})
    assert switched.status_code == 200, switched.text
    saved = api.put("/v1/rules", json={"document": ANOMALY_RULES, "comment": "anomaly test"})
    assert saved.status_code == 200, saved.text
    time.sleep(3 * REFRESH_S)

    frames = _anomaly_frames(tmp_path / "bricks", repository / ANOMALY_MODEL / "1")
    assert sum(bad for _, bad in frames.values()) == 12 and len(frames) == 20
    predictions = TopicReader(stack.kafka_bootstrap, Topic.PREDICTIONS)
    alerts = TopicReader(stack.kafka_bootstrap, Topic.ALERTS)
    camera = Camera(stack.kafka_bootstrap)
    for frame_id, (jpeg, _) in frames.items():
        camera.send(camera_id, jpeg, frame_id=frame_id)
    camera.flush()
    try:
        found = {p["frame_id"]: p for p in _predictions(predictions, {camera_id}, len(frames))}
        flagged = {f for f, p in found.items() if p["top_k"][0]["label"] == "anomaly"}
        expected = len(flagged)
        ours = lambda seen: [a for a in seen if a.get("camera_id") == camera_id]  # noqa: E731
        alerts.wait_for(lambda seen: len(ours(seen)) >= expected, timeout=60)
        time.sleep(5)  # a repeated alert would come within this
        alerts.wait_for(lambda seen: True, timeout=5)
    finally:
        predictions.close()
        alerts.close()

    assert {p["model"]["name"] for p in found.values()} == {ANOMALY_MODEL}
    assert all({s["label"] for s in p["top_k"]} <= {"good", "anomaly"} for p in found.values())
    anomalous = {f for f, (_, bad) in frames.items() if bad}
    assert len(flagged & anomalous) >= 11, found  # offline: every cup above the threshold
    assert len(flagged - anomalous) <= 1, found  # a held-out good brick above it
    raised = ours(alerts.seen)
    assert sorted(a["frame_id"] for a in raised) == sorted(flagged), (raised, found)
    assert all(a["rule"] == "brick-anomaly" and a["label"] == "anomaly" for a in raised)
    assert all(a["confidence"] >= 0.5 and a["severity"] == "critical" for a in raised)
    api.close()
    engine.dispose()
