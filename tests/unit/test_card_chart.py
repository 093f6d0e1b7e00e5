"""The robustness card as a picture (issue 17): hand-made evaluations in the shapes
``dataset_eval`` and ``detector_eval`` write (tests/unit/card_evaluations.py), drawn, decoded
with OpenCV and looked at: size, content, the worst factor's red, the clean line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.unit.card_evaluations import FACTORS, classifier_evaluation, detector_evaluation
from visionline.training import card_chart as cc
from visionline.training.dataset_cli import write_card_chart

ROOT = Path(__file__).resolve().parents[2]


def _decode(content: bytes) -> np.ndarray:
    assert content[:8] == b"\x89PNG\r\n\x1a\n"
    image = cv2.imdecode(np.frombuffer(content, np.uint8), cv2.IMREAD_COLOR)
    assert image is not None
    return image


def _red_rows(image: np.ndarray) -> np.ndarray:
    """Rows holding the worst factor's red (the tick label), left of the plot."""
    b, g, r = (image[:, :170, c].astype(int) for c in range(3))
    return np.flatnonzero(((r > 150) & (g < 100) & (b < 100)).any(axis=1))


def _clean_line_x(image: np.ndarray) -> int:
    """The plot's column with the most black pixels, spines left out: the dashed line."""
    black = (image < 60).all(axis=2)[75:535, 190:865]  # the line: 42; navy bars: blue 107
    return 190 + int(black.sum(axis=0).argmax())


def test_a_classifier_card_is_a_900_by_600_png_with_content() -> None:
    image = _decode(cc.render_card(classifier_evaluation()))
    assert image.shape == (600, 900, 3)
    assert image.std() > 30  # bars, text and lines on white
    assert (image > 250).all(axis=2).mean() > 0.3  # and a white background, not noise


def test_a_detector_card_is_drawn_from_its_map50() -> None:
    evaluation = detector_evaluation()
    table = cc.card_table(evaluation)
    assert (table["key"], table["label"], table["clean"]) == ("map50", "mAP@0.5", 0.8)
    assert table["values"][FACTORS[0]][-1] == evaluation["robustness"][FACTORS[0]]["1.0"]["map50"]
    assert cc.card_table(classifier_evaluation())["key"] == "accuracy"
    image = _decode(cc.render_card(evaluation))
    assert image.shape == (600, 900, 3) and image.std() > 30


def test_the_same_card_gives_the_same_png_and_another_card_another() -> None:
    first = cc.render_card(classifier_evaluation())
    assert cc.render_card(classifier_evaluation()) == first
    other = _decode(cc.render_card(classifier_evaluation(slope=0.2)))
    assert (np.abs(other.astype(int) - _decode(first).astype(int)) > 30).mean() > 0.01
    assert cc.render_card(detector_evaluation()) != cc.render_card(detector_evaluation(0.5))


def test_the_worst_factor_is_red_where_its_row_is() -> None:
    last = _red_rows(_decode(cc.render_card(classifier_evaluation(worst=FACTORS[-1]))))
    first = _red_rows(_decode(cc.render_card(classifier_evaluation(worst=FACTORS[0]))))
    assert len(last) and len(first)
    assert first.max() < 200 < 400 < last.min()  # the card's order runs top to bottom


def test_the_clean_figure_is_a_line_where_its_value_is() -> None:
    plot_left, plot_width = 0.2 * 900, 0.77 * 900  # subplots_adjust(left=0.2, right=0.97)
    for clean in (0.5, 0.9):
        image = _decode(cc.render_card(classifier_evaluation(clean=clean)))
        assert abs(_clean_line_x(image) - (plot_left + clean * plot_width)) <= 3


def test_an_evaluation_without_a_card_is_a_clear_error() -> None:
    no_card = {k: v for k, v in classifier_evaluation().items() if k != "robustness"}
    with pytest.raises(ValueError, match="no robustness card"):
        cc.render_card(no_card)
    with pytest.raises(ValueError, match="no robustness card"):
        cc.render_card({"robustness": {}})
    broken = classifier_evaluation()
    del broken["robustness"]["jpeg"]["0.5"]
    with pytest.raises(ValueError, match="malformed robustness card"):
        cc.render_card(broken)
    unknown = {"robustness": {"blur": {"1.0": {"f2": 0.3}}}}
    with pytest.raises(ValueError, match="holds none of map50, accuracy, auroc, fpr"):
        cc.render_card(unknown)


def test_training_writes_the_chart_beside_the_evaluation_only_with_a_card(tmp_path: Path) -> None:
    folder = tmp_path / "photo_classes" / "2"
    folder.mkdir(parents=True)
    evaluation = classifier_evaluation()
    write_card_chart(folder, evaluation, "photos@" + "cd" * 32)
    drawn = (folder / cc.CHART_FILE).read_bytes()
    titled = {"model": "photo_classes", "version": 2, "dataset": "photos@" + "cd" * 32}
    assert drawn == cc.render_card(titled | evaluation)  # titled with model, version, dataset
    assert drawn != cc.render_card(evaluation)
    other = tmp_path / "photo_classes" / "3"
    other.mkdir()
    write_card_chart(other, {"accuracy": 0.9}, "photos@x")  # trained with --no-card
    assert not (other / cc.CHART_FILE).exists()


def test_a_version_serves_its_png_else_draws_its_evaluation(tmp_path: Path) -> None:
    folder = tmp_path / "photo_detector" / "3"
    folder.mkdir(parents=True)
    with pytest.raises(ValueError, match="photo_detector version 3 has no evaluation.json"):
        cc.version_chart(folder, "photo_detector", 3)
    evaluation = detector_evaluation()
    evaluation["robustness"]["blur"]["0.5"]["map50_95"] = float("nan")  # Python's json: NaN
    (folder / cc.EVALUATION_FILE).write_text(json.dumps(evaluation))
    assert cc.read_evaluation(folder)["robustness"]["blur"]["0.5"]["map50_95"] is None
    drawn = cc.version_chart(folder, "photo_detector", 3)
    assert _decode(drawn).shape == (600, 900, 3)
    (folder / cc.CHART_FILE).write_bytes(cc.render_card(classifier_evaluation()))
    assert cc.version_chart(folder, "photo_detector", 3) == (folder / cc.CHART_FILE).read_bytes()
    (folder / cc.EVALUATION_FILE).write_text("[1, 2]")
    with pytest.raises(ValueError, match="not a JSON object"):
        cc.read_evaluation(folder)


def test_importing_the_api_does_not_load_matplotlib() -> None:
    code = "import sys, services.api.app; print('matplotlib' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "False"


def test_an_anomaly_models_card_is_drawn_by_auroc_else_by_false_positive_rate() -> None:
    def card(auroc: float | None) -> dict:
        cells = {
            f: {s: {"auroc": auroc, "fpr": 0.1 * k} for s in ("0.25", "0.5", "1.0")}
            for k, f in enumerate(("jpeg", "noise", "occlusion"))
        }
        return {"robustness": cells, "clean": {"auroc": auroc, "fpr": 0.0}}

    assert cc.card_metric(card(0.9))[0] == "auroc"
    assert cc.card_metric(card(None))[0] == "fpr"  # no anomalous image: AUROC is null
    for evaluation in (card(0.9), card(None)):
        image = cv2.imdecode(np.frombuffer(cc.render_card(evaluation), np.uint8), cv2.IMREAD_COLOR)
        assert image.shape == (600, 900, 3) and image.std() > 10
