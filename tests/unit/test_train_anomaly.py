"""Training an anomaly model on a user's good items (issue 17), through the `visionline`
commands: crops of the brick photograph (good) and the same crops with the coffee photograph's
cup pasted in (defect) from tests/unit/dataset_photos.py, imported as a folders dataset;
`train anomaly --good good` fits PatchCore on the good images only, installs a registered
candidate with its threshold, and `visionline eval` scores it with its robustness card."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import create_engine
from typer.testing import CliRunner

from tests.unit.dataset_photos import anomaly_folders
from visionline.cli import app
from visionline.db.models import Base
from visionline.model_registry.store import get_job
from visionline.training import nuisance_images
from visionline.training.anomaly_job import NORMAL_FACTORS, threshold_at

MODEL = "brick_anomaly"
TRAIN = ["train", "anomaly", "--dataset", "bricks", "--model", MODEL, "--good", "good"]
TRAIN += ["--bank-size", "400", "--threads", "1", "--no-card"]  # one thread: fastest when loaded


def _run(args: list[str]) -> str:
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output + repr(result.exception)
    return result.output


@pytest.fixture(scope="module")
def bricks(tmp_path_factory: pytest.TempPathFactory):
    """The bricks dataset imported; an anomaly model trained on it twice with the same seed;
    version 1 evaluated through `visionline eval`; a good-only dataset (one class) trained
    and evaluated too; and the refusals, through the CLI."""
    root = tmp_path_factory.mktemp("train-anomaly")
    repository = root / "repo"
    engine = create_engine(f"sqlite:///{root / 'registry.db'}")
    Base.metadata.create_all(engine)
    boxes = anomaly_folders(root / "bricks")
    shutil.copytree(root / "bricks" / "good", root / "only-good" / "good")
    repo = ["--repository", str(repository)]
    with pytest.MonkeyPatch.context() as env:
        env.setenv("VISIONLINE_DATABASE_URL", str(engine.url))
        env.setenv("VISIONLINE_DATASETS_STORE_DIR", str(root / "store"))
        for name, folder in (("bricks", "bricks"), ("good_bricks", "only-good")):
            _run(["datasets", "import", str(root / folder), "--format", "folders", "--name", name])
        first = _run([*TRAIN, *repo])
        second = _run([*TRAIN, *repo])
        report = root / "eval.json"
        args = ["eval", "--model", MODEL, "--model-version", "1", "--dataset", "bricks", *repo]
        shown = _run([*args, "--json", str(report)])
        one = ["train", "anomaly", "--dataset", "good_bricks", "--model", "good_only"]
        _run([*one, "--bank-size", "200", "--copies", "0", "--threads", "1", "--no-card", *repo])
        _run(["eval", "--model", "good_only", *repo, "--json", str(root / "good.json")])
        refusals = [
            CliRunner().invoke(app, [*TRAIN[:6], *repo]),  # two classes, no --good
            CliRunner().invoke(app, [*TRAIN[:6], "--good", "scratch", *repo]),
        ]
    yield {
        "root": root,
        "engine": engine,
        "boxes": boxes,
        "model_dir": repository / MODEL,
        "outputs": (first, second, shown),
        "eval": json.loads(report.read_text()),
        "good_only": json.loads((root / "good.json").read_text()),
        "refusals": refusals,
    }
    engine.dispose()


def _metadata(bricks, version: int, model: str = MODEL) -> dict:
    folder = bricks["model_dir"].parent / model / str(version)
    return json.loads((folder / "metadata.json").read_text())


def _prepared(path: Path) -> np.ndarray:
    from visionline.training.classifier_data import prepare

    return prepare(path.read_bytes())


def test_the_onnx_scores_every_pasted_cup_above_the_held_out_good_bricks(bricks) -> None:
    from visionline.training.serving import OnnxModel

    folder = bricks["model_dir"] / "1"
    model = OnnxModel(folder / "model.onnx")
    split = json.loads((folder / "split.json").read_text())
    good_files = sorted((bricks["root"] / "bricks" / "good").iterdir())
    held = [p for p in good_files if _sha256(p) in set(split["heldout"])]
    assert len(held) == 8 and not {_sha256(p) for p in held} & set(split["train"])
    defects = [bricks["root"] / "bricks" / "defect" / name for name in bricks["boxes"]]
    out = model.run(np.stack([_prepared(p) for p in held + defects]))
    assert out["score"].shape == (20,) and out["anomaly_map"].shape == (20, 28, 28)
    good, bad = out["score"][:8], out["score"][8:]
    assert bad.min() > good.max()  # every defect above every held-out good image
    threshold = _metadata(bricks, 1)["threshold"]
    assert good.max() <= threshold < bad.min()
    # The map points at the cup: its hottest patch lies in the pasted box (in 8-px cells of
    # the 224-px input; the crops are 128 px).
    inside = 0
    for name, anomaly_map in zip(bricks["boxes"], out["anomaly_map"][8:], strict=True):
        y, x = np.unravel_index(int(anomaly_map.argmax()), anomaly_map.shape)
        x0, y0, x1, y1 = (v * 224 / 128 / 8 for v in bricks["boxes"][name])
        inside += x0 - 1 <= x <= x1 and y0 - 1 <= y <= y1
    assert inside >= 10, f"{inside} of 12 maps peak on the cup"


def test_its_logits_say_anomaly_exactly_above_the_threshold_so_a_classify_camera_serves_it(
    bricks,
) -> None:
    from visionline.models.classifiers import is_classifier, model_labels
    from visionline.training.serving import OnnxModel

    folder = bricks["model_dir"] / "1"
    files = sorted((bricks["root"] / "bricks").glob("*/*.jpg"))
    out = OnnxModel(folder / "model.onnx").run(np.stack([_prepared(p) for p in files]))
    assert out["logits"].shape == (len(files), 2)
    z = out["logits"].astype(np.float64)
    p_anomaly = np.exp(z[:, 1]) / np.exp(z).sum(1)
    metadata = _metadata(bricks, 1)
    above = out["score"] > metadata["threshold"]
    assert above.sum() >= 10 and (~above).sum() >= 30  # both sides are exercised
    np.testing.assert_array_equal(p_anomaly > 0.5, above)
    logit = (out["score"] - metadata["threshold"]) / metadata["logit_scale"] - 1e-3
    np.testing.assert_allclose(p_anomaly, 1 / (1 + np.exp(-logit)), atol=1e-5)
    # The highest held-out good image sets the threshold: it reads under 0.5, as a rule's
    # min_confidence 0.5 ("at least") needs.
    at = np.argmin(np.abs(out["score"] - metadata["threshold"]))
    assert abs(out["score"][at] - metadata["threshold"]) < 1e-5 and p_anomaly[at] < 0.5
    # The classify contract: the API lets a classify camera name it, postprocess names its
    # classes from its labels.
    assert is_classifier(bricks["model_dir"].parent, MODEL)
    assert model_labels(bricks["model_dir"].parent)(MODEL, "1") == ["good", "anomaly"]


def _sha256(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_eval_reports_auroc_fpr_recall_and_the_threshold(bricks) -> None:
    report = bricks["eval"]
    assert report["task"] == "anomaly" and report["good"] == 8 and report["anomalies"] == 12
    assert report["auroc"] >= 0.9  # measured: 1.000 (chance 0.5)
    assert report["fpr"] <= 0.01 and report["recall"] >= 0.9  # measured: 0.0 and 1.0
    assert report["threshold"] == _metadata(bricks, 1)["threshold"]
    suggested = report["suggested"]
    assert suggested["target_fpr"] == 0.01 and suggested["threshold"] == report["threshold"]
    shown = " ".join(bricks["outputs"][2].split())
    assert "AUROC 1.000" in shown or f"AUROC {report['auroc']:.3f}" in shown


def test_metadata_holds_the_dataset_version_the_split_and_the_threshold(bricks) -> None:
    from visionline.datasets.registry import find_version

    metadata = _metadata(bricks, 1)
    row = find_version(bricks["engine"], "bricks")
    assert metadata["task"] == "anomaly" and metadata["good_class"] == "good"
    assert metadata["dataset"] == {
        "name": "bricks",
        "version": row.version,
        "reference": f"bricks@{row.version}",
    }
    assert metadata["anomaly_classes"] == ["defect"]
    assert metadata["split"]["source"] == "seeded"
    assert (metadata["split"]["train"], metadata["split"]["heldout"]) == (32, 8)
    assert metadata["split"]["anomalies"] == 12
    scores = metadata["training"]["heldout_good_scores"]
    assert metadata["threshold"] == pytest.approx(max(scores), abs=1e-4)  # 1 % of 8: none above
    assert metadata["settings"]["seed"] == 7 and metadata["settings"]["bank_size"] == 400
    assert "occlusion" not in metadata["settings"]["augment_factors"]
    assert metadata["metrics"]["auroc"] == bricks["eval"]["auroc"]
    folder = bricks["model_dir"] / "1"
    assert (folder / "labels.txt").read_text() == "good\nanomaly\n"
    config = (bricks["model_dir"] / "config.pbtxt").read_text()
    assert 'name: "score"' in config and "dims: [ 28, 28 ]" in config
    assert 'name: "image"' in config and "TYPE_UINT8" in config


def test_the_anomalies_are_never_trained_on(bricks) -> None:
    split = json.loads((bricks["model_dir"] / "1" / "split.json").read_text())
    defects = {_sha256(p) for p in (bricks["root"] / "bricks" / "defect").iterdir()}
    assert len(defects) == 12 and defects <= set(split["heldout"])
    assert not defects & set(split["train"]) and len(split["train"]) == 32


def test_the_same_seed_gives_the_same_memory_bank_and_threshold(bricks) -> None:
    banks = [np.load(bricks["model_dir"] / str(v) / "learned.npz") for v in (1, 2)]
    assert "bank" in banks[0].files and not any(k.startswith("backbone.") for k in banks[0].files)
    assert banks[0]["bank"].shape == (400, 152)
    np.testing.assert_array_equal(banks[0]["bank"], banks[1]["bank"])
    first, second = _metadata(bricks, 1), _metadata(bricks, 2)
    assert first["threshold"] == second["threshold"]
    assert float(banks[0]["threshold"]) == pytest.approx(first["threshold"])


def test_each_version_is_a_registered_candidate_with_its_lineage(bricks) -> None:
    for job_id in (1, 2):
        job = get_job(bricks["engine"], job_id)
        assert job.state == "evaluating" and job.candidate_version == job_id
        assert job.dataset["reference"] == _metadata(bricks, job_id)["dataset"]["reference"]
        assert job.dataset["task"] == "anomaly"
    assert job.metrics["auroc"] >= 0.9
    shown = " ".join(bricks["outputs"][1].split())
    assert f"visionline models promote {MODEL} 2 --job 2" in shown


def test_the_robustness_card_covers_every_factor_at_three_strengths(bricks) -> None:
    report = bricks["eval"]
    card = report["robustness"]
    assert set(card) == set(nuisance_images.FACTORS)
    for factor, by_strength in card.items():
        assert list(by_strength) == ["0.25", "0.5", "1.0"], factor
        for cell in by_strength.values():
            assert cell["auroc_drop"] == pytest.approx(report["auroc"] - cell["auroc"])
            assert cell["fpr_rise"] == pytest.approx(cell["fpr"] - report["fpr"])
    strongest = {f: card[f]["1.0"] for f in card}
    ranks = {f: (c["auroc"], -c["fpr"], -c["good_score"]) for f, c in strongest.items()}
    assert ranks[report["worst_factor"]] == min(ranks.values())
    # A foreign object in front of a good brick is an anomaly: occlusion, never learned as
    # normal, flags the good images.
    assert strongest["occlusion"]["fpr"] >= 0.5
    assert f"worst factor: {report['worst_factor']}" in " ".join(bricks["outputs"][2].split())


def test_a_dataset_of_good_images_only_reports_the_false_positive_rate(bricks) -> None:
    report = bricks["good_only"]
    assert report["auroc"] is None and report["recall"] is None and report["anomalies"] == 0
    assert report["good"] == 8 and report["fpr"] == 0.0
    card = report["robustness"]
    worst = report["worst_factor"]
    assert card[worst]["1.0"]["fpr"] == max(c["1.0"]["fpr"] for c in card.values())
    assert _metadata(bricks, 1, "good_only")["good_class"] == "good"


def test_no_good_class_or_an_unknown_one_is_refused_clearly(bricks) -> None:
    no_good, unknown = bricks["refusals"]
    assert no_good.exit_code == 1 and unknown.exit_code == 1
    assert "name the good one with --good" in " ".join(no_good.output.split())
    assert "no class 'scratch' in the dataset (classes: defect, good)" in " ".join(
        unknown.output.split()
    )
    assert not (bricks["model_dir"] / "3").exists()


def test_the_threshold_allows_the_target_share_of_good_scores_above_it() -> None:
    scores = np.arange(1, 101, dtype=float)
    assert threshold_at(scores, 0.01) == 99.0  # one of 100 above
    assert threshold_at(scores, 0.05) == 95.0
    assert threshold_at(scores[:10], 0.01) == 10.0  # 1 % of 10: none above
    assert threshold_at(scores[:10], 0.2) == 8.0
    assert threshold_at(np.array([3.0]), 0.5) == 3.0


def test_anomaly_augmentation_leaves_occlusion_out() -> None:
    from skimage import data

    assert "occlusion" not in NORMAL_FACTORS and len(NORMAL_FACTORS) == 12
    image = np.ascontiguousarray(data.astronaut()[::4, ::4])
    rng = np.random.default_rng(3)
    # rate 0: exactly one factor of the pool, here brightness alone at some strength.
    out = nuisance_images.augment(image, rng, 0.0, ["brightness"])
    gain = out.astype(float).mean() / image.astype(float).mean()
    assert gain <= 0.95 and out.shape == image.shape  # dimmer, by 1 - 0.7 x strength >= 0.1
    assert np.abs(out - image * gain).mean() < 1.5  # and nothing else: the same picture
