"""A simulated conveyor through the whole real stack: one verdict per part, one alert per
rejected part, each alert with its evidence (snapshot, defects, model versions)."""

from __future__ import annotations

import time
import uuid

from tests.integration.pipeline import rows, wait_rows
from visionline.acceptance.run import CameraRun, score
from visionline.camera.publisher import FramePublisher
from visionline.camera_registry import CameraSpec, upsert_cameras
from visionline.inspection.snapshots import SnapshotStore
from visionline.stack.config import INSPECTION_MODELS
from visionline.synthetic.generator import LineGenerator

FRAMES = 40  # about 12 whole parts at 10 fps, the speed infra/rules.yaml gives test-line-*
FPS = 10.0


def test_a_line_gives_one_verdict_per_part_and_one_alert_per_rejected_part(stack, engine):
    camera_id = f"test-line-{uuid.uuid4().hex[:8]}"
    upsert_cameras(
        engine, [CameraSpec(camera_id=camera_id, max_fps=500, pipeline="inspect")], pepper="dev"
    )
    run = CameraRun(camera_id, LineGenerator(seed=21, camera=camera_id, defect_rate=0.5))
    publisher = FramePublisher(stack.kafka_bootstrap)
    t0 = time.time()
    for index in range(FRAMES):  # capture times on the belt's clock, sent as fast as possible
        publisher.publish(
            camera_id,
            run.render(index),
            run.frame_id(index),
            captured_at=int((t0 + index / FPS) * 1000),
        )
    assert publisher.close(30) == 0

    decisions_sql = "SELECT * FROM part_decisions WHERE camera_id = :camera"
    seen_parts = len(run.generator.part_truth(FRAMES))
    # The parts worker decides the last parts once the camera has been silent a few seconds.
    decided = wait_rows(
        engine, decisions_sql, lambda r: len(r) >= seen_parts - 2, timeout=180, camera=camera_id
    )
    time.sleep(8)  # anything still open is flushed by now
    decided = rows(engine, decisions_sql, camera=camera_id)
    alerts = rows(engine, "SELECT * FROM alerts WHERE camera_id = :camera", camera=camera_id)

    verdicts = decided  # rows carry what a PartVerdict does: status, best frame, box
    as_published = [
        {
            "alert_id": a["alert_id"],
            "camera_id": camera_id,
            "frame_id": a["frame_id"],
            "part": a["part"],
        }
        for a in alerts
    ]
    figures = score([run], verdicts, as_published)
    row = figures["cameras"][camera_id]
    assert row["parts"] >= 8 and row["decided"] == row["parts"]  # every whole part decided
    assert row["unmatched_verdicts"] == 0 and row["unmatched_alerts"] == 0
    assert figures["duplicate_alerts"] == 0  # one physical part, at most one alert
    # Model quality is measured by `visionline acceptance run`; here only that it works.
    assert figures["tp"] >= 1 and figures["precision"] >= 0.5

    rejected = {d["decision_id"] for d in decided if d["status"] == "rejected"}
    assert {a["alert_id"].rsplit(":", 1)[0] for a in alerts} == rejected
    store = SnapshotStore(stack.settings.state_dir / "snapshots")
    for alert in alerts:
        part = alert["part"]
        assert alert["rule"] == "test-line-defect" and alert["label"] == part["defect_class"]
        assert [m["name"] for m in part["models"]] == list(INSPECTION_MODELS)
        assert part["defects"] and part["frames_seen"] >= 3 and part["defect_frames"] >= 1
        if part["snapshot"]:
            assert store.get(part["snapshot"]).startswith(b"\xff\xd8")
