"""Training a classifier on a user's dataset (issue 17), through the `visionline` commands:
photographs (tests/unit/dataset_photos.py) imported as a dataset version, a classifier trained
on the ImageNet backbone, installed as a candidate, evaluated with its robustness card, and
promoted through the model registry; the metrics and the split on hand-made cases."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from sqlalchemy import create_engine
from typer.testing import CliRunner

from tests.unit.dataset_photos import CLASSES, classification_folders
from visionline.cli import app
from visionline.datasets.model import Dataset, DatasetImage
from visionline.db.models import Base
from visionline.model_registry import version_policy as policy
from visionline.model_registry.promotion import PromotionError, promote
from visionline.model_registry.store import get_job, list_versions
from visionline.training import classifier_metrics as cm
from visionline.training import nuisance_images
from visionline.training.classifier_data import stratified_split

MODEL = "photo_classes"
TRAIN = ["train", "classifier", "--dataset", "photos", "--model", MODEL, "--epochs", "25"]
TRAIN += ["--copies", "1", "--threads", "1"]  # one thread: the fastest on a loaded machine


class FakeTriton:
    """Loads what the config's policy names, as Triton does on a load request."""

    def __init__(self, repository: Path) -> None:
        self.repository = repository
        self.ready: dict[str, set[int]] = {}

    def load_model(self, model_name: str) -> None:
        text = (self.repository / model_name / "config.pbtxt").read_text()
        self.ready[model_name] = set(policy.served_versions(text) or [])

    def is_model_ready(self, model_name: str, model_version: str = "") -> bool:
        return int(model_version) in self.ready.get(model_name, set())


def _run(args: list[str]) -> str:
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output + repr(result.exception)
    return result.output


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory):
    """A dataset imported, a classifier trained on it (v1), promoted, trained again (v2) with
    the same seed and without the feature cache, and v1 evaluated through `visionline eval`."""
    root = tmp_path_factory.mktemp("train-classifier")
    repository = root / "repo"
    engine = create_engine(f"sqlite:///{root / 'registry.db'}")
    Base.metadata.create_all(engine)
    with pytest.MonkeyPatch.context() as env:
        env.setenv("VISIONLINE_DATABASE_URL", str(engine.url))
        env.setenv("VISIONLINE_DATASETS_STORE_DIR", str(root / "store"))
        source = classification_folders(root / "photos")
        _run(["datasets", "import", str(source), "--format", "folders", "--name", "photos"])
        first = _run([*TRAIN, "--repository", str(repository), "--no-card"])
        promoted = promote(engine, FakeTriton(repository), repository, MODEL, 1, job_id=1)
        second = _run([*TRAIN, "--repository", str(repository), "--no-cache", "--no-card"])
        report = root / "eval.json"
        args = ["eval", "--model", MODEL, "--model-version", "1", "--dataset", "photos"]
        chart = root / "card.png"
        args += ["--repository", str(repository), "--json", str(report), "--chart", str(chart)]
        shown = _run(args)
    yield {
        "root": root,
        "engine": engine,
        "model_dir": repository / MODEL,
        "outputs": (first, second, shown),
        "promoted": promoted,
        "eval": json.loads(report.read_text()),
        "chart": chart.read_bytes(),
    }
    engine.dispose()


def _metadata(world, version: int) -> dict:
    return json.loads((world["model_dir"] / str(version) / "metadata.json").read_text())


def test_the_onnx_answers_with_the_users_classes_well_above_chance(world) -> None:
    from visionline.training.classifier_data import prepare
    from visionline.training.serving import OnnxModel

    folder = world["model_dir"] / "1"
    assert (folder / "labels.txt").read_text().split("\n")[:-1] == list(CLASSES)
    assert "dims: [ 4 ]" in (world["model_dir"] / "config.pbtxt").read_text()
    # A photograph the dataset holds only crops of, whole: each class's own picture.
    from skimage import data

    photos = [prepare(_jpeg(getattr(data, name)())) for name in CLASSES]
    logits = OnnxModel(folder / "model.onnx").run(np.stack(photos))["logits"]
    assert logits.shape == (4, 4)
    assert [CLASSES[k] for k in logits.argmax(1)] == list(CLASSES)
    report = world["eval"]
    assert report["classes"] == list(CLASSES) and report["images"] == 8  # the val/ split
    assert report["accuracy"] >= 0.75 and report["macro_f1"] >= 0.7  # chance: 0.25


def _jpeg(rgb: np.ndarray) -> bytes:
    import cv2

    return cv2.imencode(".png", cv2.cvtColor(rgb[..., :3], cv2.COLOR_RGB2BGR))[1].tobytes()


def test_metadata_records_the_dataset_version_the_split_and_the_figures(world) -> None:
    from visionline.datasets.registry import find_version

    metadata = _metadata(world, 1)
    row = find_version(world["engine"], "photos")
    assert metadata["dataset"] == {
        "name": "photos",
        "version": row.version,
        "reference": f"photos@{row.version}",
    }
    assert metadata["split"]["source"] == "dataset:val" and metadata["split"]["heldout"] == 8
    split = json.loads((world["model_dir"] / "1" / "split.json").read_text())
    assert len(split["heldout"]) == 8 and len(split["train"]) == 16
    assert not set(split["heldout"]) & set(split["train"])
    assert metadata["metrics"]["accuracy"] == world["eval"]["accuracy"]
    assert metadata["settings"]["seed"] == 7 and metadata["settings"]["epochs"] == 25


def test_the_same_seed_gives_the_same_model_and_figures(world) -> None:
    first, second = _metadata(world, 1), _metadata(world, 2)
    assert first["features_cached"] is False and second["features_cached"] is False
    assert first["training"] == second["training"]
    assert first["metrics"]["accuracy"] == second["metrics"]["accuracy"]
    assert first["metrics"]["macro_f1"] == second["metrics"]["macro_f1"]
    heads = [np.load(world["model_dir"] / str(v) / "learned.npz") for v in (1, 2)]
    assert sorted(heads[0].files) == ["head.bias", "head.weight"]  # the backbone is not in it
    for name in heads[0].files:
        np.testing.assert_allclose(heads[0][name], heads[1][name], atol=1e-6)


def test_a_new_version_is_a_candidate_registered_with_its_lineage(world) -> None:
    engine = world["engine"]
    promoted = world["promoted"]
    assert promoted.version == 1 and promoted.job_id == 1
    assert promoted.metrics["accuracy"] == _metadata(world, 1)["metrics"]["accuracy"]
    assert get_job(engine, 1).state == "promoted"
    candidate = get_job(engine, 2)
    assert candidate.state == "evaluating" and candidate.candidate_version == 2
    assert candidate.dataset["reference"] == _metadata(world, 2)["dataset"]["reference"]
    # Version 2 is written but Triton still serves version 1 only.
    config = (world["model_dir"] / "config.pbtxt").read_text()
    assert policy.served_versions(config) == [1]
    assert [(v.version, v.status) for v in list_versions(engine, MODEL)] == [(1, "serving")]
    assert "visionline models promote photo_classes 2 --job 2" in " ".join(
        world["outputs"][1].split()
    )


def test_the_robustness_card_covers_every_factor_at_three_strengths(world) -> None:
    report = world["eval"]
    card = report["robustness"]
    assert set(card) == set(nuisance_images.FACTORS) and len(card) >= 10
    for factor, by_strength in card.items():
        assert list(by_strength) == ["0.25", "0.5", "1.0"], factor
        for figures in by_strength.values():
            assert 0 <= figures["accuracy"] <= 1
            drop = report["clean"]["macro_f1"] - figures["macro_f1"]
            assert figures["macro_f1_drop"] == pytest.approx(drop)
    worst = report["worst_factor"]
    strongest = {f: card[f]["1.0"] for f in card}
    ranks = {f: (c["macro_f1"], c["accuracy"], c["true_class_score"]) for f, c in strongest.items()}
    assert worst in card and ranks[worst] == min(ranks.values())
    # Every factor at full strength shakes the model: the true class's score drops.
    assert all(
        c["true_class_score"] < report["clean"]["true_class_score"] for c in strongest.values()
    )
    assert report["clean"]["accuracy"] == report["accuracy"]
    assert (
        "robustness card" in world["outputs"][2] and f"worst factor: {worst}" in world["outputs"][2]
    )
    thresholds = report["thresholds"]
    assert thresholds["target_precision"] == 0.95 and set(thresholds["per_class"]) == set(CLASSES)


def test_eval_draws_the_card_and_no_card_draws_none(world) -> None:
    from visionline.training.card_chart import CHART_FILE, render_card

    assert world["chart"] == render_card(world["eval"])  # `eval --chart`: this evaluation's card
    assert "evaluation.json" in {p.name for p in (world["model_dir"] / "1").iterdir()}
    assert not (world["model_dir"] / "1" / CHART_FILE).exists()  # trained with --no-card
    refused = CliRunner().invoke(
        app, ["eval", "--model", MODEL, "--dataset", "photos", "--no-card", "--chart", "c.png"]
    )
    assert refused.exit_code == 2 and "drop --no-card" in refused.output


def test_nuisance_factors_leave_the_image_at_strength_zero_and_change_it_at_one() -> None:
    from skimage import data

    image = np.ascontiguousarray(data.astronaut()[::4, ::4])
    for name in nuisance_images.FACTORS:
        same = nuisance_images.apply(name, image, 0.0, seed=3)
        changed = nuisance_images.apply(name, image, 1.0, seed=3)
        assert same.dtype == np.uint8 and same.shape == image.shape, name
        assert np.abs(same.astype(int) - image).max() <= 1, name
        assert np.abs(changed.astype(int) - image).mean() > 1, name
        again = nuisance_images.apply(name, image, 1.0, seed=3)
        assert np.array_equal(changed, again), name


def test_metrics_on_hand_made_confusions() -> None:
    # truth:     0 0 0 1 1 2
    # predicted: 0 0 1 1 2 2
    matrix = cm.confusion_matrix([0, 0, 0, 1, 1, 2], [0, 0, 1, 1, 2, 2], 3)
    assert matrix.tolist() == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]
    assert cm.accuracy(matrix) == pytest.approx(4 / 6)
    figures = cm.per_class(matrix, ["a", "b", "c"])
    assert figures["a"] == {"precision": 1.0, "recall": 2 / 3, "f1": 0.8, "support": 3}
    assert figures["b"]["precision"] == 0.5 and figures["b"]["recall"] == 0.5
    assert figures["c"]["precision"] == 0.5 and figures["c"]["f1"] == pytest.approx(2 / 3)
    assert cm.macro_f1(matrix) == pytest.approx((0.8 + 0.5 + 2 / 3) / 3)
    perfect = cm.confusion_matrix([0, 1, 1], [0, 1, 1], 3)  # class 2 absent everywhere
    assert cm.accuracy(perfect) == 1.0 and cm.macro_f1(perfect) == 1.0
    wrong = cm.confusion_matrix([0, 1], [1, 0], 2)
    assert cm.accuracy(wrong) == 0.0 and cm.macro_f1(wrong) == 0.0


def test_threshold_for_precision_keeps_the_most_predictions_that_meet_it() -> None:
    scores = np.array([0.99, 0.95, 0.9, 0.8, 0.7, 0.6])
    correct = np.array([True, True, True, False, True, False])
    # Precision at each cut: 1, 1, 1, .75, .8, .667
    found = cm.threshold_for_precision(scores, correct, 0.8)
    assert found == {"threshold": 0.7, "precision": 0.8, "kept": 5, "coverage": 5 / 6}
    assert cm.threshold_for_precision(scores, correct, 0.95)["threshold"] == 0.9
    assert cm.threshold_for_precision(scores, ~correct, 0.5)["threshold"] is None
    ties = cm.threshold_for_precision(np.array([0.9, 0.9]), np.array([True, False]), 0.9)
    assert ties["threshold"] is None  # equal scores cannot be split by a threshold


def _image(n: int, label: str) -> DatasetImage:
    return DatasetImage(
        file_name=f"{label}/{n}.jpg", sha256=f"{n:064x}", width=8, height=8, label=label
    )


def test_a_dataset_without_a_split_is_held_out_stratified_and_seeded() -> None:
    images = [_image(n, "a") for n in range(10)] + [_image(100 + n, "b") for n in range(5)]
    images.append(_image(200, "c"))  # one image: nothing left to hold out
    dataset = Dataset(task="classification", classes=["a", "b", "c"], images=images)
    split = stratified_split(dataset.images, seed=7, fraction=0.2)
    held = [image.label for image in split.heldout]
    assert split.source == "seeded" and sorted(held) == ["a", "a", "b"]
    assert len(split.train) == 13 and "c" in {image.label for image in split.train}
    again = stratified_split(list(reversed(dataset.images)), seed=7, fraction=0.2)
    assert [i.sha256 for i in again.heldout] == [i.sha256 for i in split.heldout]
    others = {tuple(i.sha256 for i in stratified_split(images, s, 0.2).heldout) for s in range(8)}
    assert len(others) > 1  # the seed chooses


def test_promotion_serves_the_labels_of_the_version_it_serves(tmp_path: Path) -> None:
    from visionline.model_registry.promotion import rollback

    model_dir = tmp_path / "repo" / "m"
    for version, classes in ((1, "cat\ndog\n"), (2, "bolt\nnut\nwasher\n")):
        (model_dir / str(version)).mkdir(parents=True)
        (model_dir / str(version) / "model.onnx").write_bytes(b"onnx")
        (model_dir / str(version) / "labels.txt").write_text(classes)
    (model_dir / "config.pbtxt").write_text('name: "m"\nmax_batch_size: 4\n')
    (model_dir / "labels.txt").write_text("cat\ndog\n")
    engine = create_engine(f"sqlite:///{tmp_path / 'registry.db'}")
    Base.metadata.create_all(engine)
    triton = FakeTriton(tmp_path / "repo")
    promote(engine, triton, tmp_path / "repo", "m", 1)
    promote(engine, triton, tmp_path / "repo", "m", 2)
    assert (model_dir / "labels.txt").read_text() == "bolt\nnut\nwasher\n"
    rollback(engine, triton, tmp_path / "repo", "m")
    assert (model_dir / "labels.txt").read_text() == "cat\ndog\n"
    triton.load_model = lambda name: (_ for _ in ()).throw(RuntimeError("failed to load"))
    with pytest.raises(PromotionError):
        promote(engine, triton, tmp_path / "repo", "m", 2)
    assert (model_dir / "labels.txt").read_text() == "cat\ndog\n"  # put back with the config
    engine.dispose()


@pytest.mark.parametrize("hidden", [0, 16])
def test_the_head_learns_separable_features_the_same_way_twice(hidden: int) -> None:
    from visionline.training.classifier import FEATURES, ClassifierSettings, fit_head
    from visionline.training.classifier import train_accuracy as head_accuracy

    rng = np.random.default_rng(0)
    centres = rng.normal(0, 1, (3, FEATURES)).astype(np.float32)
    labels = np.repeat(np.arange(3), 20)
    features = centres[labels] + rng.normal(0, 0.5, (len(labels), FEATURES)).astype(np.float32)
    settings = ClassifierSettings(epochs=15, hidden=hidden, batch=16)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a tiny problem: more threads only wait on each other
    try:
        head, loss = fit_head(features[None], labels, 3, settings)
        again, loss_again = fit_head(features[None], labels, 3, settings)
    finally:
        torch.set_num_threads(threads)
    assert head_accuracy(head, features[None], labels) == 1.0 and loss < 0.5
    assert loss == loss_again
    first, second = head.state_dict(), again.state_dict()
    assert list(first) == list(second)
    for name in first:
        assert bool((first[name] == second[name]).all()), name


def test_a_detection_dataset_is_refused_and_another_version_is_scored_on_unseen_images() -> None:
    from visionline.training.classifier_data import heldout_of, split_dataset

    boxes = Dataset(task="detection", classes=["a"], images=[])
    with pytest.raises(ValueError, match="classification dataset"):
        split_dataset(boxes, seed=7, fraction=0.2)
    images = [_image(n, "ab"[n % 2]) for n in range(6)]
    dataset = Dataset(task="classification", classes=["a", "b"], images=images)
    recorded = [images[0].sha256]
    assert [i.sha256 for i in heldout_of(dataset, recorded, set())] == recorded
    trained = {image.sha256 for image in images[:4]}
    unseen = heldout_of(dataset, [f"{999:064x}"], trained)  # none of the recorded images here
    assert [i.sha256 for i in unseen] == [images[4].sha256, images[5].sha256]


def test_a_model_name_that_is_a_path_is_refused(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["train", "classifier", "--dataset", "d", "--model", "../x"])
    assert result.exit_code == 2 and "letters, digits" in result.output
