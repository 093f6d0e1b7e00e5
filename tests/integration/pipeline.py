"""Driving the real pipeline from tests: push frames, read topics and tables back."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import cv2
import numpy as np
from confluent_kafka import Message
from skimage import data as skdata
from sqlalchemy import Engine, text

from visionline.camera_registry import CameraSpec, Pipeline, upsert_cameras
from visionline.kafka import producer, read_messages, read_topic, topic_consumer
from visionline.messages import HEADER_CAPTURED_AT, HEADER_FRAME_ID, Topic
from visionline.models import spec
from visionline.stack.config import free_ports


def chelsea_jpeg(width: int = 1280, height: int = 720, shift: int = 0) -> bytes:
    """scikit-image's real cat photo, letterboxed into a camera-sized frame."""
    rgb = skdata.chelsea()
    canvas = np.full((height, width, 3), 40, np.uint8)
    scale = min(width / rgb.shape[1], height / rgb.shape[0]) * 0.9
    cat = cv2.resize(rgb, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    top = (height - cat.shape[0]) // 2
    left = max(0, min(width - cat.shape[1], (width - cat.shape[1]) // 2 + shift))
    canvas[top : top + cat.shape[0], left : left + cat.shape[1]] = cat
    ok, encoded = cv2.imencode(".jpg", cv2.cvtColor(canvas, cv2.COLOR_RGB2BGR))
    assert ok
    return encoded.tobytes()


def new_camera(
    engine: Engine, prefix: str = "test", max_fps: float = 200.0, pipeline: Pipeline = "classify"
) -> str:
    """A camera id of its own for each test (test-* cameras alert on every cat frame)."""
    camera_id = f"{prefix}-{uuid.uuid4().hex[:8]}"
    spec = CameraSpec(camera_id=camera_id, max_fps=max_fps, pipeline=pipeline)
    upsert_cameras(engine, [spec], pepper="dev")
    return camera_id


class Camera:
    """A plain-Kafka camera: value = image bytes, key = camera id, metadata in headers."""

    def __init__(self, bootstrap: str) -> None:
        self.producer = producer(bootstrap)

    def send(
        self,
        camera_id: str | bytes | None,
        value: bytes | None,
        frame_id: str | None = None,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> None:
        all_headers = list(headers or [])
        if frame_id is not None:
            all_headers.append((HEADER_FRAME_ID, frame_id.encode()))
            all_headers.append((HEADER_CAPTURED_AT, str(int(time.time() * 1000)).encode()))
        key = camera_id.encode() if isinstance(camera_id, str) else camera_id
        self.producer.produce(str(Topic.RAW_FRAMES), value=value, key=key, headers=all_headers)
        self.producer.poll(0)

    def flush(self) -> None:
        assert self.producer.flush(30) == 0, "frames not delivered to the broker"


class TopicReader:
    """Reads a JSON topic from its start and keeps what it has seen."""

    def __init__(self, bootstrap: str, topic: Topic) -> None:
        self.consumer = topic_consumer(bootstrap, topic, from_beginning=True)
        self.seen: list[dict] = []

    def wait_for(self, done: Callable[[list[dict]], bool], timeout: float) -> list[dict]:
        until = time.monotonic() + timeout
        for value in read_topic(self.consumer, until):
            if value is not None and (message := _json_or_none(value)) is not None:
                self.seen.append(message)
            if done(self.seen):
                return self.seen
        raise AssertionError(f"timed out after {timeout}s; saw {len(self.seen)} messages")

    def close(self) -> None:
        self.consumer.close()


def _json_or_none(value: bytes) -> dict | None:
    """One of our messages (a JSON object with a ``schema_version``), else None. Topics are
    public: the API tests publish garbage on the alerts topic, and every reader must step over
    it, as the workers do."""
    try:
        message = json.loads(value)
    except ValueError:
        return None
    return message if isinstance(message, dict) and "schema_version" in message else None


def rows(engine: Engine, sql: str, **params) -> list[dict]:
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(text(sql), params)]


def wait_rows(
    engine: Engine, sql: str, done: Callable[[list[dict]], bool], timeout: float, **params
) -> list[dict]:
    """Poll a query until ``done`` holds: the rules worker writes a moment after the topic."""
    until = time.monotonic() + timeout
    while True:
        found = rows(engine, sql, **params)
        if done(found):
            return found
        if time.monotonic() > until:
            raise AssertionError(f"timed out after {timeout}s; last result had {len(found)} rows")
        time.sleep(0.5)


@contextmanager
def child(args: list[str], **popen) -> Iterator[subprocess.Popen]:
    """A process run for the block (text output); killed on the way out if still running, so a
    failed assertion leaves no process behind."""
    process = subprocess.Popen(args, text=True, **popen)
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def free_port() -> int:
    return free_ports(1)[0]


def frames_of(bootstrap: str, camera_id: str, count: int, timeout: float = 15.0) -> list[Message]:
    """``camera_id``'s frames on the raw topic from its start, once ``count`` have arrived.

    Each test uses camera ids of its own, so reading from the start is enough.
    """
    consumer = topic_consumer(bootstrap, Topic.RAW_FRAMES, from_beginning=True)
    found: list[Message] = []
    try:
        for message in read_messages(consumer, time.monotonic() + timeout, idle_s=0.2):
            if message is not None and message.key() == camera_id.encode():
                found.append(message)
            if len(found) >= count:
                break
    finally:
        consumer.close()
    return found


# A model repository and the `visionline` commands, for tests that train and promote ------------

SHIPPED_CLASSIFIER = Path(__file__).resolve().parents[2] / "triton_models" / spec.MODEL_NAME


def repository_with_shipped_classifier(folder: Path) -> Path:
    """``folder`` as a Triton model repository holding the shipped ImageNet classifier."""
    import pytest

    if not (SHIPPED_CLASSIFIER / "1" / spec.MODEL_FILENAME).is_file():
        pytest.fail(
            f"{SHIPPED_CLASSIFIER}/1/{spec.MODEL_FILENAME} is missing: run `make models`", False
        )
    target = folder / spec.MODEL_NAME
    shutil.copytree(SHIPPED_CLASSIFIER, target, ignore=shutil.ignore_patterns("__pycache__"))
    return folder


def visionline_commands(stack, repository: Path, store: Path) -> Callable[..., str]:
    """``run(*args)``: a `visionline` command against the stack's PostgreSQL and Triton, the
    repository and a dataset store; its output, or the test fails with it."""
    from typer.testing import CliRunner

    from visionline.cli import app

    env = {
        "VISIONLINE_DATABASE_URL": stack.database_url,
        "VISIONLINE_DATASETS_STORE_DIR": str(store),
        "VISIONLINE_TRITON_GRPC_URL": stack.triton_grpc_url,
        "VISIONLINE_MODEL_REPOSITORY": str(repository),
        "COLUMNS": "250",
    }

    def run(*args: str) -> str:
        result = CliRunner().invoke(app, list(args), env=env)
        assert result.exit_code == 0, result.output + repr(result.exception)
        return result.output

    return run
