"""`python -m visionline.camera` as real processes against a real (Apache Kafka) broker."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.integration.pipeline import child, frames_of

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


def camera_cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "visionline.camera", *args]


def camera_env(bootstrap: str) -> dict[str, str]:
    return {**os.environ, "VISIONLINE_KAFKA_BOOTSTRAP": bootstrap}


def run_camera_cli(bootstrap: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        camera_cli(*args),
        env=camera_env(bootstrap),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


# --- tests -------------------------------------------------------------------------------


def test_push_folder(bootstrap: str, tmp_path: Path) -> None:
    for i, name in enumerate(("c.jpg", "a.jpg", "b.jpg")):
        cv2.imwrite(str(tmp_path / name), np.full((40, 60, 3), 60 * i, np.uint8))
    before_ms = time.time_ns() // 1_000_000
    args = "push --camera-id folder-cam --fps 20 --max-frames 6".split()
    result = run_camera_cli(bootstrap, *args, "--source", f"folder:{tmp_path}")
    assert result.returncode == 0, result.stderr
    assert "delivered 6, delivery errors 0" in result.stderr

    frames = frames_of(bootstrap, "folder-cam", 6)
    assert len(frames) == 6
    files = [(tmp_path / name).read_bytes() for name in ("a.jpg", "b.jpg", "c.jpg")]
    assert [m.value() for m in frames] == files * 2  # name order, looped, bytes unchanged
    assert len({m.partition() for m in frames}) == 1  # one key, one partition: in order
    ids, stamps = [], []
    for message in frames:
        headers = dict(message.headers())
        assert headers["content-type"] == b"image/jpeg"
        ids.append(headers["frame-id"].decode())
        stamps.append(int(headers["captured-at"]))
    assert all(i.startswith(f"folder-cam-{n}-") for n, i in enumerate(ids, start=1))
    assert before_ms <= stamps[0] and stamps == sorted(stamps)
    assert 0.2 <= (stamps[-1] - stamps[0]) / 1000 < 2.0  # 5 periods of 50 ms, paced


def test_simulate_two_cameras(bootstrap: str) -> None:
    result = run_camera_cli(
        bootstrap, "simulate", "--count", "2", "--fps", "5", "--duration", "2", "--no-register"
    )
    assert result.returncode == 0, result.stderr
    sent = _sent_counts(result.stderr)
    for camera_id in ("sim-cam-01", "sim-cam-02"):
        assert 8 <= sent[camera_id] <= 11, sent
        frames = frames_of(bootstrap, camera_id, sent[camera_id])
        assert len(frames) == sent[camera_id]
        image = cv2.imdecode(np.frombuffer(frames[0].value(), np.uint8), cv2.IMREAD_COLOR)
        assert image.shape == (720, 1280, 3)
        assert len({m.value() for m in frames}) == len(frames)


def _sent_counts(summary: str) -> dict[str, int]:
    """camera id -> the 'sent' column of the summary table the CLI prints."""
    rows = [line.split("│") for line in summary.splitlines() if "sim-cam-" in line]
    return {row[1].strip(): int(row[2]) for row in rows}


def test_simulate_stops_cleanly_on_sigterm(bootstrap: str) -> None:
    args = "simulate --count 1 --fps 10 --no-register --prefix term-cam --resolution 320x240"
    pipes = dict(stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    with child(camera_cli(*args.split()), env=camera_env(bootstrap), cwd=REPO, **pipes) as process:
        assert len(frames_of(bootstrap, "term-cam-01", 3, timeout=30)) == 3
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=15)
    assert process.returncode == 0, stderr
    assert "delivery errors 0, undelivered 0" in stderr
    sent = int(stderr.split("delivered ")[1].split(",")[0])
    # Everything queued before the signal was flushed to the broker.
    assert len(frames_of(bootstrap, "term-cam-01", sent)) == sent


def test_push_reports_a_bad_source(bootstrap: str, tmp_path: Path) -> None:
    result = run_camera_cli(
        bootstrap, "push", "--camera-id", "cam", "--source", f"folder:{tmp_path / 'none'}"
    )
    assert result.returncode == 2 and "no such folder" in result.stderr
