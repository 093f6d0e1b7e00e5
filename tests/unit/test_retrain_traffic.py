"""A retraining job's traffic data: crops from labelled frames, the split by part, the shadow
scores; and the promotion guard against forgetting."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from visionline.inspection.generator import LineGenerator
from visionline.inspection.train.data import CropSample, render
from visionline.inspection.vision import CROP, DEFECT_CLASSES, DEFECT_OUTPUTS
from visionline.labels.truth import feedback_from_truth
from visionline.messages import LabelledDefect, LabelledPart
from visionline.retrain.policy import decide_promotion
from visionline.retrain.traffic import (
    defect_masks,
    labelled_crops,
    part_scores,
    shadow_scores,
    split_by_part,
)


def test_polygon_and_box_labels_become_masks() -> None:
    square = [(10.0, 10.0), (30.0, 10.0), (30.0, 30.0), (10.0, 30.0)]
    part = LabelledPart(part_id="1", box=(0, 0, 60, 60), defective=True, defects=[
        LabelledDefect(defect_class="stain", box=(10, 10, 30, 30), polygon=square),
        LabelledDefect(defect_class="crack", box=(40, 5, 50, 25)),
    ])  # fmt: skip
    (c1, m1), (c2, m2) = defect_masks(part, (64, 48))
    assert (c1, c2) == ("stain", "crack") and m1.shape == (48, 64)
    assert m1[20, 20] and not m1[40, 40] and 380 <= m1.sum() <= 460  # about 20 x 20
    assert m2.sum() == 10 * 20 and m2[10, 45] and not m2[30, 45]


def test_crops_of_labelled_frames_match_the_generators_own() -> None:
    generator = LineGenerator(seed=3, defect_rate=1.0)
    frames = []
    for index in (20, 29, 38):
        bgr, truth = generator.frame(index)
        label = feedback_from_truth("cam", f"f{index}", 0.0, truth)
        frames.append((cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), label))
    crops = labelled_crops(frames, np.random.default_rng(0), jitter=0.0)
    assert crops and all(c.image.shape == (CROP, CROP, 3) for c in crops)
    assert all(str(c.part_id).startswith("cam:") for c in crops)
    assert any(c.defective for c in crops)
    for c in crops:  # every labelled defect box lies inside its crop and is covered by the mask
        for x0, y0, x1, y1 in c.boxes:
            assert 0 <= x0 < x1 <= CROP and 0 <= y0 < y1 <= CROP
            assert c.mask[int(y0) : int(y1), int(x0) : int(x1)].any()
        assert all(DEFECT_CLASSES[k] in DEFECT_CLASSES for k in c.classes)


def crop(part: str, defective: bool) -> CropSample:
    image = np.zeros((CROP, CROP, 3), np.uint8)
    return CropSample(image, [0] if defective else [], np.zeros((1 if defective else 0, 4)),
                      np.zeros((CROP, CROP), bool), "t", part)  # fmt: skip


def test_the_split_keeps_every_part_on_one_side_and_is_stable() -> None:
    crops = [crop(f"cam:{p}", p % 3 == 0) for p in range(200) for _ in range(3)]
    train, test = split_by_part(crops, 0.3)
    assert {c.part_id for c in train}.isdisjoint({c.part_id for c in test})
    assert len(train) + len(test) == len(crops) and 0.2 < len(test) / len(crops) < 0.4
    assert [c.part_id for c in split_by_part(crops, 0.3)[1]] == [c.part_id for c in test]


class Heatmaps:
    """An exported detector's interface, answering a fixed peak per crop and class."""

    def __init__(self, peaks: np.ndarray) -> None:
        self.peaks = peaks

    def run(self, images: np.ndarray) -> dict[str, np.ndarray]:
        grid = CROP // 8
        heat = np.zeros((len(images), len(DEFECT_CLASSES), grid, grid), np.float32)
        heat[:, :, 3, 4] = self.peaks[: len(images)]
        return {DEFECT_OUTPUTS[0]: heat}


def test_a_part_is_scored_by_its_strongest_class_mean_over_its_crops() -> None:
    crops = [crop("a", True), crop("a", True), crop("b", False)]
    peaks = np.zeros((3, len(DEFECT_CLASSES)))
    peaks[0, 1], peaks[1, 1], peaks[0, 2] = 0.6, 0.2, 0.5  # class 1: mean 0.4; class 2: 0.25
    peaks[2, 0] = 0.1
    heat = Heatmaps(peaks).run(np.zeros((3, 1)))[DEFECT_OUTPUTS[0]]
    scored = part_scores(heat, crops)
    assert scored["a"] == (pytest.approx(0.4), True) and scored["b"] == (pytest.approx(0.1), False)


def test_shadow_scores_count_decisions_at_the_threshold() -> None:
    crops = [crop(f"p{k}", k < 4) for k in range(10)]
    peaks = np.zeros((10, len(DEFECT_CLASSES)))
    peaks[:, 0] = [0.9, 0.8, 0.35, 0.1, 0.05, 0.02, 0.5, 0.0, 0.0, 0.0]  # 3 of 4 found, 1 false
    figures = shadow_scores(Heatmaps(peaks), crops, threshold=0.3)
    assert figures["parts"] == 10 and figures["defective_parts"] == 4
    assert figures["recall"] == 0.75 and figures["precision"] == 0.75
    assert figures["part_auroc"] == pytest.approx((6 + 6 + 5 + 5) / 24, abs=1e-4)


def scores(shadow: float, generator: float) -> dict:
    return {"shadow": {"f1": shadow}, "summary": {"nuisance_mean": {"detector_auroc": generator}}}


GUARD = ("summary.nuisance_mean.detector_auroc", 0.01)


def test_a_candidate_better_on_traffic_is_promoted_if_it_forgot_nothing() -> None:
    promote, why = decide_promotion(scores(0.9, 0.985), scores(0.7, 0.99), "shadow.f1", 0.005,
                                    guards=[GUARD])  # fmt: skip
    assert promote and why.startswith("promoted: shadow.f1 0.9000")


def test_a_candidate_that_forgot_is_rejected_however_good_on_traffic() -> None:
    promote, why = decide_promotion(scores(0.95, 0.97), scores(0.7, 0.99), "shadow.f1", 0.005,
                                    guards=[GUARD])  # fmt: skip
    assert not promote and "forgot" in why and "0.9700" in why


def test_the_generators_rehearsal_frames_render() -> None:
    from visionline.inspection.train.data import eval_conditions

    data = render(5, list(eval_conditions(0.4))[:2], 1, 0.7, 0.08)
    assert data.crops and {c.condition for c in data.crops} <= {"clean", "brightness"}


def test_a_guard_with_no_figures_on_either_side_is_skipped() -> None:
    both = ("shadow_others.f1", 0.03)
    promote, _ = decide_promotion(scores(0.9, 0.99), scores(0.7, 0.99), "shadow.f1", 0.005,
                                  guards=[GUARD, both])  # fmt: skip
    assert promote
    candidate = {**scores(0.9, 0.99), "shadow_others": {"f1": 0.80}}
    serving = {**scores(0.7, 0.99), "shadow_others": {"f1": 0.85}}
    promote, why = decide_promotion(candidate, serving, "shadow.f1", 0.005, guards=[GUARD, both])
    assert not promote and "shadow_others.f1 fell to 0.8000" in why
