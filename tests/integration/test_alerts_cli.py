"""`visionline alerts list` (PostgreSQL) and `visionline alerts tail` (the alerts topic)."""

from __future__ import annotations

import uuid

from typer.testing import CliRunner

from tests.integration.pipeline import Camera, chelsea_jpeg, new_camera, wait_rows
from visionline.cli import app


def test_alerts_list_and_tail_show_a_fresh_alert(stack, engine):
    camera_id = new_camera(engine)
    frame_id = f"cli-{uuid.uuid4().hex[:6]}"
    camera = Camera(stack.kafka_bootstrap)
    camera.send(camera_id, chelsea_jpeg(640, 480), frame_id)
    camera.flush()
    wait_rows(
        engine,
        "SELECT 1 FROM alerts WHERE camera_id = :c AND published",
        bool,
        timeout=60,
        c=camera_id,
    )
    env = {
        "VISIONLINE_KAFKA_BOOTSTRAP": stack.kafka_bootstrap,
        "VISIONLINE_DATABASE_URL": stack.database_url,
        "COLUMNS": "250",
    }
    runner = CliRunner()
    listed = runner.invoke(app, ["alerts", "list", "--camera", camera_id], env=env)
    assert listed.exit_code == 0, listed.output
    assert frame_id in listed.output and "test-cat-every-frame" in listed.output

    tailed = runner.invoke(app, ["alerts", "tail", "--from-beginning", "--seconds", "4"], env=env)
    assert tailed.exit_code == 0, tailed.output
    assert f"{camera_id} test-cat-every-frame" in tailed.output and frame_id in tailed.output
