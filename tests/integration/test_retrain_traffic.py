"""A retraining job's dataset from real traffic, on the real stack: two cameras' frames on the
raw-frames topic, their labels through the labels worker into PostgreSQL, and the job's dataset
step replaying the drifting camera's labelled frames and the other camera's of the same time,
holding each camera's last frames out for the shadow run."""

from __future__ import annotations

import time
import uuid

import pytest

from visionline.camera.publisher import FramePublisher
from visionline.datasets.registry import list_versions
from visionline.datasets.store import LocalDatasetStore
from visionline.kafka import producer
from visionline.labels import labelled_frames
from visionline.labels.truth import feedback_from_truth
from visionline.messages import Topic, to_json
from visionline.retrain.jobs import Job
from visionline.retrain.steps import RealSteps
from visionline.settings import RetrainSettings
from visionline.synthetic.generator import LineGenerator

pytestmark = pytest.mark.integration

FRAMES = 24  # per camera, one every 2 s of capture time; parts take about 9 frames to cross


def test_a_drift_job_builds_its_dataset_from_replayed_labelled_frames(
    bootstrap, engine, tmp_path
) -> None:
    run = uuid.uuid4().hex[:6]
    drifting, other = f"traffic-a-{run}", f"traffic-b-{run}"
    t0 = time.time() - 120
    frames = FramePublisher(bootstrap)
    labels = producer(bootstrap)
    for k, camera in enumerate((drifting, other)):
        generator = LineGenerator(seed=40 + k, defect_rate=0.5, camera=camera)
        for index in range(FRAMES):
            data, truth = generator.encode(20 + index)
            frame_id, captured = f"{camera}-{index:04d}", t0 + 2 * index
            frames.publish(camera, data, frame_id, captured_at=int(captured * 1000))
            if index % 6 != 5:  # every sixth frame is never labelled: it must not be used
                label = feedback_from_truth(camera, frame_id, captured, truth)
                labels.produce(str(Topic.LABELS_FEEDBACK), to_json(label), camera.encode())
    assert frames.flush(30) == 0 and labels.flush(30) == 0
    frames.close()
    expected = FRAMES - FRAMES // 6
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        stored = [labelled_frames(engine, c, t0 - 1, t0 + 2 * FRAMES) for c in (drifting, other)]
        if all(len(s) == expected for s in stored):
            break
        time.sleep(1)
    assert [len(s) for s in stored] == [expected, expected]

    settings = RetrainSettings(
        traffic_min_frames=expected - 4,
        traffic_max_frames=expected - 2,
        traffic_wait_s=30,
        traffic_held_out=0.3,
    )
    store = LocalDatasetStore(tmp_path / "datasets")
    steps = RealSteps(engine, tmp_path, settings, "unused:1", bootstrap=bootstrap, datasets=store)
    window = {"first_captured_at": t0 + 2 * 2}  # the drift began at the third frame
    drift = {"drift": {"camera_id": drifting, "window": window, "signal": "brightness"}}
    job = Job(
        id=7,
        model="defect_detector",
        trigger="drift",
        trigger_ref=f"e-{run}",
        parent_version=None,
        dataset=drift,
    )
    assert steps.uses_traffic(job)
    dataset, parent = steps.build_dataset(job)

    assert parent is None  # no model in the empty repository
    assert dataset["source"] == "traffic" and dataset["camera_id"] == drifting
    assert dataset["labelled_frames"][drifting] == expected - 2  # two were before the window
    assert dataset["other_cameras"] == [other]
    # the other camera's labelled frames captured between the drifting camera's first and last
    assert 0 < dataset["labelled_frames"][other] <= expected
    # a lighting drift: the two labelled frames from before it are relit and trained on too
    assert dataset["relit_frames"] == 2 and dataset["relit_crops"] > 0
    assert dataset["crops_cut_by"] == "the labels' boxes"  # no part detector installed here
    assert dataset["frames"] == sum(dataset["labelled_frames"].values()) + 2  # all replayed
    assert dataset["captured_from"] == pytest.approx(t0 + 4, abs=1e-3)
    spans = dataset["offsets"]
    assert spans and all(first <= last for first, last in spans.values())
    held = steps._held[job.id]
    train, shadow = held["train"], held["shadow"]
    assert dataset["train_crops"] > 0
    kinds = ("train_crops", "relit_crops", "other_train_crops")
    assert len(train) == sum(dataset[k] for k in kinds)
    assert dataset["other_train_crops"] <= dataset["train_crops"]
    # the drifting camera's last labelled frames, in capture order, held out whole
    captured = [label.captured_at for _, label in shadow]
    assert captured == sorted(captured) and len(shadow) == dataset["shadow_frames"][drifting]
    assert {label.camera_id for _, label in shadow} == {drifting}
    assert captured[-1] == pytest.approx(dataset["captured_to"], abs=1e-3)
    assert dataset["shadow_from"] == pytest.approx(captured[0], abs=1e-3)
    shadow_parts = {f"{drifting}:{p.part_id}" for _, label in shadow for p in label.parts}
    assert shadow_parts.isdisjoint({c.part_id for c in train})  # never trained on
    assert list(held["shadow_others"]) == [other]
    assert all(label.camera_id == other for _, label in held["shadow_others"][other])
    # the frames the job replayed are a dataset version: lineage from data to model version
    kept = dataset["dataset_version"]
    assert kept["name"] == f"retrain-defect_detector-{drifting}"
    [row] = list_versions(engine, kept["name"])
    assert row.version == kept["version"] and row.format == "labels"
    assert row.image_count == dataset["frames"] and row.task == "detection"
    assert set(row.classes) <= {"good", "defective"} and row.created_by == "retrain"
    assert f"retraining job {job.id}" in row.source
