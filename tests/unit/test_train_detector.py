"""Training a detector on a user's dataset (issue 17), through the `visionline` commands:
scenes made of real photographs (tests/unit/dataset_photos.py) imported as COCO, a detector
trained on the frozen ImageNet backbone, installed as a registered candidate and evaluated
with its robustness card; mAP on hand-made cases and against supervision's; boxes that follow
the augmentation's pixels; the same seed, the same detector."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import create_engine
from typer.testing import CliRunner

from tests.unit.dataset_photos import CLASSES, detection_coco
from visionline.cli import app
from visionline.db.models import Base
from visionline.model_registry.store import get_job
from visionline.synthetic import nuisance as nz
from visionline.training import detection_metrics as dm
from visionline.training import detector as det

MODEL = "photo_detector"
TRAIN = ["train", "detector", "--dataset", "scenes", "--model", MODEL, "--epochs", "12"]
TRAIN += ["--copies", "1", "--threads", "1", "--no-card"]  # one thread: fastest when loaded
B = dm.Boxes.of


def _run(args: list[str]) -> str:
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output + repr(result.exception)
    return result.output


# mAP on hand-made cases -----------------------------------------------------------------------


def test_perfect_predictions_score_one() -> None:
    truth = [B([[0, 0, 10, 10], [20, 20, 40, 30]], [0, 1]), B([[5, 5, 25, 25]], [1])]
    preds = [B(t.boxes, t.classes, [0.9] * len(t.classes)) for t in truth]
    result = dm.mean_average_precision(preds, truth, ["a", "b"])
    assert result["map50"] == 1.0 and result["map50_95"] == 1.0
    assert result["precision"] == 1.0 and result["recall"] == 1.0


def test_a_missed_box_halves_recall_and_ap() -> None:
    truth = [B([[0, 0, 10, 10], [50, 50, 60, 60]], [0, 0])]
    result = dm.mean_average_precision([B([[0, 0, 10, 10]], [0], [0.8])], truth, ["a"])
    assert result["map50"] == pytest.approx(51 / 101)  # precision 1 up to recall 0.5
    assert result["recall"] == 0.5 and result["precision"] == 1.0


def test_a_duplicate_is_a_false_positive() -> None:
    truth = [B([[0, 0, 10, 10]], [0])]
    preds = [B([[0, 0, 10, 10], [0, 0, 10, 9]], [0, 0], [0.9, 0.8])]
    result = dm.mean_average_precision(preds, truth, ["a"])
    assert result["map50"] == 1.0  # the duplicate ranks below the hit
    assert result["precision"] == 0.5 and result["recall"] == 1.0
    preds = [B([[0, 0, 10, 10], [0, 0, 10, 9]], [0, 0], [0.8, 0.9])]
    assert dm.mean_average_precision(preds, truth, ["a"])["map50"] == 1.0  # either one is a hit


def test_a_wrong_class_scores_zero_and_a_class_with_no_box_has_no_ap() -> None:
    truth = [B([[0, 0, 10, 10]], [0])]
    result = dm.mean_average_precision([B([[0, 0, 10, 10]], [1], [0.9])], truth, ["a", "b"])
    assert result["map50"] == 0.0 and result["per_class"]["a"]["ap50"] == 0.0
    assert result["per_class"]["b"]["ap50"] is None and result["precision"] == 0.0


def test_map50_95_counts_the_iou_thresholds_a_box_passes() -> None:
    truth = [B([[0, 0, 10, 10]], [0])]
    result = dm.mean_average_precision([B([[0, 0, 10, 7.2]], [0], [0.9])], truth, ["a"])
    assert result["map50"] == 1.0  # IoU 0.72 passes 0.5 ... 0.7: five of ten
    assert result["map50_95"] == pytest.approx(0.5)


def test_map_agrees_with_supervision() -> None:
    import supervision as sv
    from supervision.metrics import MeanAveragePrecision

    rng = np.random.default_rng(3)
    preds, truths, theirs, their_truths = [], [], [], []
    for _ in range(15):
        n = int(rng.integers(1, 5))
        corner = rng.uniform(0, 200, (n, 2))
        boxes = np.concatenate([corner, corner + rng.uniform(10, 60, (n, 2))], 1)
        labels = rng.integers(0, 3, n)
        found = np.concatenate([boxes + rng.normal(0, 6, boxes.shape), boxes[:1] + 40])
        found_labels = np.append(labels, rng.integers(0, 3))
        scores = rng.uniform(0.05, 1, n + 1)
        preds.append(B(found, found_labels, scores))
        truths.append(B(boxes, labels))
        theirs.append(sv.Detections(found.astype(np.float32), None, scores, found_labels))
        their_truths.append(sv.Detections(boxes.astype(np.float32), class_id=labels))
    mine = dm.mean_average_precision(preds, truths, ["a", "b", "c"])
    reference = MeanAveragePrecision().update(theirs, their_truths).compute()
    assert 0.1 < mine["map50"] < 0.95  # a case where the ranking matters
    assert mine["map50"] == pytest.approx(reference.map50, abs=1e-6)
    assert mine["map50_95"] == pytest.approx(reference.map50_95, abs=1e-6)


# Augmentation moves the boxes with the pixels -----------------------------------------------


def _bright_box(image: np.ndarray) -> np.ndarray:
    ys, xs = np.nonzero(image[..., 0] > 128)
    return np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], float)


def test_flip_zoom_and_tilt_move_the_boxes_with_the_pixels() -> None:
    image = np.zeros((det.INPUT, det.INPUT, 3), np.uint8)
    image[60:120, 30:110] = 255
    box = np.array([[30.0, 60, 110, 120]])
    settings = det.DetectorSettings(flip=1.0, scale_jitter=0.3)
    for seed in range(4):
        rng = np.random.default_rng(seed)
        moved_image, moved = det.flip_and_zoom(image, box, rng, settings)
        assert moved[0, 0] > det.INPUT / 2 - 40  # flipped to the right half
        inside = moved[0].clip(0, det.INPUT)  # training keeps the part inside the input
        assert np.abs(_bright_box(moved_image) - inside).max() <= 2.0
    profile = nz.CameraProfile.seeded(np.random.default_rng(5))
    matrix = nz.perspective((det.INPUT, det.INPUT), 1.0, profile)
    warped = det.warp_boxes(box, matrix)
    assert np.abs(warped - box).max() > 2  # the tilt moved it
    assert np.abs(_bright_box(nz.warp(image, matrix)) - warped[0]).max() <= 2.0


def test_letterbox_keeps_the_aspect_and_scales_the_boxes() -> None:
    out, scale = det.letterbox(np.full((120, 160, 3), 200, np.uint8))
    assert scale == pytest.approx(det.INPUT / 160)
    assert out[: round(120 * scale) - 1].min() == 200 and out[round(120 * scale) + 1 :].max() == 0


# Training through the commands ------------------------------------------------------------


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory):
    """Scenes imported as COCO, a detector trained on them (v1) and evaluated with its card
    through `visionline eval`."""
    root = tmp_path_factory.mktemp("train-detector")
    repository = root / "repo"
    engine = create_engine(f"sqlite:///{root / 'registry.db'}")
    Base.metadata.create_all(engine)
    with pytest.MonkeyPatch.context() as env:
        env.setenv("VISIONLINE_DATABASE_URL", str(engine.url))
        env.setenv("VISIONLINE_DATASETS_STORE_DIR", str(root / "store"))
        source = detection_coco(root / "scenes")
        _run(["datasets", "import", str(source), "--format", "coco", "--name", "scenes"])
        trained = _run([*TRAIN, "--repository", str(repository)])
        report = root / "eval.json"
        args = ["eval", "--model", MODEL, "--dataset", "scenes", "--repository", str(repository)]
        chart = root / "card.png"
        shown = _run([*args, "--json", str(report), "--chart", str(chart)])
    yield {
        "engine": engine,
        "model_dir": repository / MODEL,
        "outputs": (trained, shown),
        "eval": json.loads(report.read_text()),
        "chart": chart.read_bytes(),
    }


def test_the_candidate_folder_answers_boxes_of_the_users_classes(world) -> None:
    import onnxruntime as ort

    from tests.unit.dataset_photos import detection_scene

    folder = world["model_dir"] / "1"
    assert (folder / "labels.txt").read_text().split() == list(CLASSES)
    metadata = json.loads((folder / "metadata.json").read_text())
    assert metadata["task"] == "detection" and metadata["dataset"]["name"] == "scenes"
    assert metadata["split"]["source"] == "dataset:val" and metadata["split"]["heldout"] == 6
    assert metadata["metrics"]["map50"] == world["eval"]["map50"]
    config = (world["model_dir"] / "config.pbtxt").read_text()
    assert f"dims: [ {len(CLASSES)}, 32, 32 ]" in config
    session = ort.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])
    found, truths = [], []
    for index in range(3, 24, 4):  # the validation frames (val_every 4), by hand
        frame, objects = detection_scene(index)
        image, scale = det.letterbox(np.ascontiguousarray(frame[..., ::-1]))
        heatmap, size, offset = session.run(None, {"image": image[None]})
        found.append(det.decode(heatmap[0], size[0], offset[0], scale))
        labels = [CLASSES.index(label) for label, _ in objects]
        truths.append(B([box for _, box in objects], labels))
    assert dm.mean_average_precision(found, truths, list(CLASSES))["map50"] > 0.6
    assert max(f.boxes.max() for f in found) <= 160 + 1e-6  # in the image's pixels, not the input's


def test_eval_reports_map_per_class_and_the_robustness_card(world) -> None:
    result = world["eval"]
    assert set(result) >= {"map50", "map50_95", "per_class", "precision", "recall"}
    assert result["images"] == 6 and result["boxes"] == 12
    assert result["map50"] >= 0.6  # chance is near zero for boxes at IoU 0.5
    assert 0 < result["map50_95"] < result["map50"]
    assert set(result["per_class"]) == set(CLASSES)
    card, worst = result["robustness"], result["worst_factor"]
    assert len(card) == 13 and all(len(by_strength) == 3 for by_strength in card.values())
    assert card[worst]["1.0"]["map50"] == min(c["1.0"]["map50"] for c in card.values())
    assert card[worst]["1.0"]["map50"] < result["map50"]  # the worst factor hurts
    trained, shown = world["outputs"]
    assert "mAP@0.5" in trained and "worst factor" in shown
    from visionline.training.card_chart import CHART_FILE, card_table, render_card

    assert card_table(result)["key"] == "map50"
    assert world["chart"] == render_card(result)  # `eval --chart`: the card of this evaluation
    assert not (world["model_dir"] / "1" / CHART_FILE).exists()  # trained with --no-card


def test_the_candidate_is_registered_with_its_dataset(world) -> None:
    job = get_job(world["engine"], 1)
    assert job.candidate_version == 1 and job.state == "evaluating"
    assert job.dataset["task"] == "detection" and job.dataset["name"] == "scenes"


def test_the_same_seed_trains_the_same_detector(tmp_path: Path) -> None:
    from visionline.datasets.importing import read_and_check
    from visionline.datasets.store import LocalDatasetStore
    from visionline.training.classifier_job import DatasetRef
    from visionline.training.detector_job import train_detector

    store = LocalDatasetStore(tmp_path / "store")
    checked = read_and_check(detection_coco(tmp_path / "scenes", frames=8), "coco")
    dataset = checked.dataset
    for sha256, path in checked.files.items():
        store.put_blob(sha256, path.read_bytes())
    settings = det.DetectorSettings(epochs=2, augment_copies=1)
    ref = DatasetRef("scenes", dataset.version_id())
    runs = [train_detector(dataset, ref, store, tmp_path / f"m{k}", settings) for k in (0, 1)]
    learned = [np.load(run.folder / "learned.npz") for run in runs]
    assert sorted(learned[0].files) == sorted(learned[1].files)
    assert all(np.array_equal(learned[0][k], learned[1][k]) for k in learned[0].files)
    assert runs[0].metadata["training"] == runs[1].metadata["training"]
