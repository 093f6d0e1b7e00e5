"""SIGKILL workers while frames flow: nothing is lost, no alert is doubled."""

from __future__ import annotations

import os
import signal
import time
import uuid

from tests.integration.pipeline import Camera, chelsea_jpeg, new_camera, rows, wait_rows

FRAMES = 120
FPS = 15


def kill_one(stack, component: str) -> int:
    pids = stack.pids(component)
    assert pids, f"no running {component} worker"
    os.kill(pids[0], signal.SIGKILL)
    return pids[0]


def wait_restarted(stack, component: str, old_pid: int, timeout: float = 60) -> None:
    until = time.monotonic() + timeout
    while time.monotonic() < until:
        pids = stack.pids(component)
        if pids and old_pid not in pids:
            return
        time.sleep(0.5)
    raise AssertionError(f"{component} was not restarted within {timeout}s")


def test_killed_workers_lose_nothing_and_double_nothing(stack, engine, predictions, alerts):
    camera_id = new_camera(engine)
    camera = Camera(stack.kafka_bootstrap)
    tag = uuid.uuid4().hex[:6]
    frame_ids = [f"crash-{tag}-{i:04d}" for i in range(FRAMES)]
    images = [chelsea_jpeg(960, 540, shift=(i % 7) * 10) for i in range(7)]
    killed = {}
    for i, frame_id in enumerate(frame_ids):
        camera.send(camera_id, images[i % len(images)], frame_id)
        if i == FRAMES // 3:
            killed["rules"] = kill_one(stack, "rules")
        if i == FRAMES // 2:
            killed["preprocess"] = kill_one(stack, "preprocess")
        time.sleep(1 / FPS)
    camera.flush()
    for component, pid in killed.items():
        wait_restarted(stack, component, pid)

    def all_predicted(seen):
        return {p["frame_id"] for p in seen if p["camera_id"] == camera_id} >= set(frame_ids)

    predictions.wait_for(all_predicted, timeout=240)
    stored = wait_rows(
        engine,
        "SELECT frame_id, count(*) AS n FROM predictions WHERE camera_id = :c GROUP BY frame_id",
        lambda found: len(found) >= len(frame_ids),
        timeout=120,
        c=camera_id,
    )
    assert {r["frame_id"] for r in stored} == set(frame_ids)
    assert all(r["n"] == 1 for r in stored)

    # Every cat frame on a test-* camera alerts (no cooldown): one alert per frame, exactly.
    cat_frames = {
        r["frame_id"]
        for r in rows(
            engine,
            "SELECT frame_id, top_k FROM predictions WHERE camera_id = :c",
            c=camera_id,
        )
        if any(
            e["label"] in {"tabby", "tiger cat", "Egyptian cat"} and e["score"] >= 0.05
            for e in r["top_k"]
        )
    }
    assert len(cat_frames) > FRAMES * 0.9

    def all_alerted(seen):
        return {a["frame_id"] for a in seen if a["camera_id"] == camera_id} >= cat_frames

    seen = alerts.wait_for(all_alerted, timeout=120)
    stored_alerts = wait_rows(
        engine,
        "SELECT frame_id FROM alerts WHERE camera_id = :c",
        lambda found: len(found) >= len(cat_frames),
        timeout=60,
        c=camera_id,
    )
    assert sorted(a["frame_id"] for a in stored_alerts) == sorted(cat_frames)
    published = [a["alert_id"] for a in seen if a["camera_id"] == camera_id]
    assert set(published) == {f"{camera_id}:{f}:test-cat-every-frame" for f in cat_frames}
    assert (
        rows(
            engine,
            "SELECT count(*) AS n FROM alerts WHERE camera_id = :c AND NOT published",
            c=camera_id,
        )[0]["n"]
        == 0
    )
