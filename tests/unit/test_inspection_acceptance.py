"""Scoring of the acceptance run: verdicts and alerts joined to the generator's truth."""

import pytest

from visionline.acceptance.run import CameraRun, PacedSender, frames_needed, plan, score
from visionline.synthetic.generator import LineGenerator


def _run(frames: int = 40) -> CameraRun:
    run = CameraRun("line-9", LineGenerator(seed=5, camera="line-9", defect_rate=0.5))
    for index in range(frames):
        run.render(index)
    return run


def _alert_for(run: CameraRun, part_id: int, n: int = 0) -> dict:
    for index in sorted(run.boxes):
        for pid, box in run.boxes[index]:
            if pid == part_id:
                return {
                    "alert_id": f"a-{part_id}-{n}",
                    "camera_id": run.camera,
                    "frame_id": run.frame_id(index),
                    "part": {"box": list(box)},
                }
    raise AssertionError(f"part {part_id} never seen")


def _scored_parts(run: CameraRun):
    return [
        p
        for p in run.generator.part_truth(run.frames)
        if p.first_frame > 0 and p.last_frame < run.frames - 1
    ]


def test_perfect_alerts_give_recall_and_precision_one():
    run = _run()
    parts = _scored_parts(run)
    assert any(p.defective for p in parts) and not all(p.defective for p in parts)
    alerts = [_alert_for(run, p.part_id) for p in parts if p.defective]
    figures = score([run], [], alerts)
    assert figures["recall"] == 1.0 and figures["precision"] == 1.0
    assert figures["parts"] == len(parts) and figures["duplicate_alerts"] == 0


def test_misses_false_alarms_duplicates_and_strays_are_counted():
    run = _run()
    parts = _scored_parts(run)
    bad = [p for p in parts if p.defective]
    good = [p for p in parts if not p.defective]
    alerts = [_alert_for(run, p.part_id) for p in bad[1:]]  # first defective part missed
    alerts.append(_alert_for(run, good[0].part_id))  # a false alarm
    alerts.append(_alert_for(run, bad[1].part_id, n=1))  # a second alert for one part
    stray = {
        "alert_id": "x",
        "camera_id": run.camera,
        "frame_id": run.frame_id(3),
        "part": {"box": [0, 0, 2, 2]},
    }
    figures = score([run], [], [*alerts, stray])
    row = figures["cameras"]["line-9"]
    assert row["fn"] == 1 and row["fp"] == 2 and row["unmatched_alerts"] == 1
    assert figures["duplicate_alerts"] == 1
    assert figures["recall"] == pytest.approx((len(bad) - 1) / len(bad), abs=1e-4)


def test_alerts_of_other_cameras_and_frame_alerts_are_ignored():
    run = _run()
    other = {"alert_id": "o", "camera_id": "dock-door-1", "frame_id": "f", "part": None}
    figures = score([run], [], [other])
    assert figures["tp"] == 0 and figures["fp"] == 0


def test_the_plan_gives_enough_frames_for_the_parts_asked():
    runs = plan(cameras=3, parts=30, fps=5, seed=1)
    assert [r.camera for r in runs] == ["line-1", "line-2", "line-3"]
    run = runs[0]
    for index in range(frames_needed(run.generator, 10)):
        run.boxes[index] = []
        run.frames = index + 1
    assert len(_scored_parts(run)) >= 10


def test_paced_sender_sends_each_camera_its_own_frame_count_stamped_when_due() -> None:
    class Journal:
        def __init__(self) -> None:
            self.sent: list[tuple[str, str, int]] = []
            self.flushed = False

        def publish(self, camera, data, frame_id, captured_at) -> None:
            self.sent.append((camera, frame_id, captured_at))

        def flush(self, timeout) -> None:
            self.flushed = True

    class Run:
        def __init__(self, camera: str) -> None:
            self.camera = camera

        def render(self, index: int) -> bytes:
            return b"jpeg"

        def frame_id(self, index: int) -> str:
            return f"{self.camera}-{index}"

    journal = Journal()
    sender = PacedSender(journal, [Run("a"), Run("b")], {"a": 3, "b": 1}, fps=200.0)
    sender.send_all()
    assert sender.done.is_set() and journal.flushed
    assert dict(sender.sent) == {"a": 3, "b": 1}
    a_times = [t for camera, _, t in journal.sent if camera == "a"]
    assert [f for c, f, _ in journal.sent if c == "a"] == ["a-0", "a-1", "a-2"]
    assert [t - a_times[0] for t in a_times] == [0, 5, 10]  # 200 fps: 5 ms apart
