"""A retraining job's traffic data: crops from labelled frames, the shadow frames held out, the
shadow run's per-part scores; and the promotion guard against forgetting."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from tests.factories import label_feedback, labelled_part, part_decision
from visionline.inspection.tracking import PartDecision
from visionline.inspection.vision import CROP, DEFECT_CLASSES, Crop
from visionline.labels.truth import feedback_from_truth
from visionline.messages import LabelFeedback, LabelledDefect, LabelledPart
from visionline.retrain.policy import decide_promotion
from visionline.retrain.shadow import part_truth, pooled, score_decisions
from visionline.retrain.traffic import (
    defect_masks,
    labelled_crops,
    relight,
    relighting,
    split_by_time,
)
from visionline.synthetic.generator import LineGenerator
from visionline.synthetic.nuisance import veiling_glare
from visionline.training.data import render


def test_polygon_and_box_labels_become_masks() -> None:
    square = [(10.0, 10.0), (30.0, 10.0), (30.0, 30.0), (10.0, 30.0)]
    part = LabelledPart(
        part_id="1",
        box=(0, 0, 60, 60),
        defective=True,
        defects=[
            LabelledDefect(defect_class="stain", box=(10, 10, 30, 30), polygon=square),
            LabelledDefect(defect_class="crack", box=(40, 5, 50, 25)),
        ],
    )
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


def labelled(index: int, parts: dict[str, bool]) -> tuple[np.ndarray, LabelFeedback]:
    """A frame at capture time ``index`` with parts {id: defective}, boxes side by side."""
    boxed = [
        labelled_part(p, (100.0 * k, 0, 100.0 * k + 80, 80), defective=d)
        for k, (p, d) in enumerate(parts.items())
    ]
    label = label_feedback(
        "cam", f"f{index}", boxed, label_id=f"l{index}", captured_at=float(index)
    )
    return np.zeros((4, 4, 3), np.uint8), label


def test_the_shadow_frames_are_the_last_and_their_parts_never_trained_on() -> None:
    frames = [labelled(k, {f"p{k // 3}": False, f"p{k // 3 + 1}": False}) for k in range(10)]
    train, shadow = split_by_time(frames[::-1], 0.3)  # any order in: capture order out
    assert [label.captured_at for _, label in shadow] == [7.0, 8.0, 9.0]
    assert [label.captured_at for _, label in train] == [float(k) for k in range(7)]
    in_shadow = {p.part_id for _, label in shadow for p in label.parts}
    assert in_shadow == {"p2", "p3", "p4"}
    trained = {p.part_id for _, label in train for p in label.parts}
    assert trained == {"p0", "p1"}  # p2 also shows in frames 6 and 5, dropped there


def decision(frame: int, box: tuple, defective: bool = True) -> PartDecision:
    return part_decision("cam", frame, box, frame, "rejected" if defective else "accepted")


def test_shadow_decisions_are_scored_per_part_seen_whole() -> None:
    # a (defective) and b seen whole in frames 1-2; c is in the last frame; z in the first.
    labels = [
        labelled(0, {"z": True})[1],
        labelled(1, {"a": True, "b": False})[1],
        labelled(2, {"a": True, "b": False})[1],
        labelled(3, {"c": True})[1],
    ]
    assert part_truth(labels) == {"a": True, "b": False}
    missed = score_decisions(labels, [decision(2, (100, 0, 180, 80), defective=False)])
    assert (missed["tp"], missed["fn"], missed["recall"]) == (0, 1, 0.0)
    found = [
        decision(1, (2, 2, 78, 78)),
        decision(3, (0, 0, 80, 80)),  # c: not whole, ignored
        decision(2, (500, 300, 560, 360)),
    ]  # on no labelled part: a false alert
    figures = score_decisions(labels, found)
    assert (figures["tp"], figures["fp"], figures["false_alerts"]) == (1, 1, 1)
    assert figures["recall"] == 1.0 and figures["precision"] == 0.5


def test_pooled_shadow_scores_sum_counts_before_rates() -> None:
    one = dict(tp=1, fp=0, fn=1, tn=8, parts=10, defective_parts=2, false_alerts=0, frames=30)
    two = dict(tp=9, fp=1, fn=0, tn=10, parts=20, defective_parts=9, false_alerts=1, frames=30)
    figures = pooled([one, two])
    assert (figures["tp"], figures["fp"], figures["fn"], figures["parts"]) == (10, 1, 1, 30)
    assert figures["recall"] == pytest.approx(10 / 11, abs=1e-4)
    assert figures["precision"] == pytest.approx(10 / 11, abs=1e-4)


def scores(shadow: float, generator: float) -> dict:
    return {"shadow": {"f1": shadow}, "summary": {"nuisance_mean": {"detector_auroc": generator}}}


GUARD = ("summary.nuisance_mean.detector_auroc", 0.01)


def test_a_candidate_better_on_traffic_is_promoted_if_it_forgot_nothing() -> None:
    promote, why = decide_promotion(
        scores(0.9, 0.985), scores(0.7, 0.99), "shadow.f1", 0.005, guards=[GUARD]
    )
    assert promote and why.startswith("promoted: shadow.f1 0.9000")


def test_a_candidate_that_forgot_is_rejected_however_good_on_traffic() -> None:
    promote, why = decide_promotion(
        scores(0.95, 0.97), scores(0.7, 0.99), "shadow.f1", 0.005, guards=[GUARD]
    )
    assert not promote and "forgot" in why and "0.9700" in why


def test_the_generators_rehearsal_frames_render() -> None:
    from visionline.training.data import eval_conditions

    data = render(5, list(eval_conditions(0.4))[:2], 1, 0.7, 0.08)
    assert data.crops and {c.condition for c in data.crops} <= {"clean", "brightness"}


def test_a_guard_with_no_figures_on_either_side_is_skipped() -> None:
    both = ("shadow_others.f1", 0.03)
    promote, _ = decide_promotion(
        scores(0.9, 0.99), scores(0.7, 0.99), "shadow.f1", 0.005, guards=[GUARD, both]
    )
    assert promote
    candidate = {**scores(0.9, 0.99), "shadow_others": {"f1": 0.80}}
    serving = {**scores(0.7, 0.99), "shadow_others": {"f1": 0.85}}
    promote, why = decide_promotion(candidate, serving, "shadow.f1", 0.005, guards=[GUARD, both])
    assert not promote and "shadow_others.f1 fell to 0.8000" in why


def test_relighting_learns_a_lighting_change_from_two_sets_of_frames() -> None:
    generator = LineGenerator(seed=8)
    before = [cv2.cvtColor(generator.frame(i)[0], cv2.COLOR_BGR2RGB) for i in (20, 30, 40)]
    lit = [cv2.cvtColor(generator.frame(i)[0], cv2.COLOR_BGR2RGB) for i in (50, 60, 70)]
    lit = [np.clip(veiling_glare(f.astype(np.float32), 1.0), 0, 255).astype(np.uint8) for f in lit]
    table = relighting(before, lit)  # other frames on each side: only the light is shared
    assert table.shape == (256, 3) and (np.diff(table.astype(int), axis=0) >= 0).all()
    relit = relight(before[0], table)
    expected = veiling_glare(before[0].astype(np.float32), 1.0)
    assert np.abs(relit.astype(float) - expected).mean() < 4  # of 256 levels
    assert np.abs(before[0].astype(float) - expected).mean() > 40


def test_crops_are_cut_around_detected_boxes_and_undetected_parts_left_out() -> None:
    generator = LineGenerator(seed=3, defect_rate=1.0)
    bgr, truth = generator.frame(29)
    rgb, label = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), feedback_from_truth("cam", "f", 0.0, truth)
    assert len(label.parts) >= 2
    seen, missed = label.parts[0], label.parts[1]
    x0, y0, x1, y1 = seen.box
    shifted = (x0 + 6, y0 - 4, x1 + 6, y1 - 4)  # the detector's box: near, not exact

    crops = labelled_crops(
        [(rgb, label)],
        np.random.default_rng(0),
        jitter=0.0,
        detect=lambda frame: [shifted, (0.0, 0.0, 5.0, 5.0)],
    )
    assert [c.part_id for c in crops] == [f"cam:{seen.part_id}"]
    assert np.array_equal(crops[0].image, Crop.around(shifted).cut(rgb))
    assert f"cam:{missed.part_id}" not in {c.part_id for c in crops}
