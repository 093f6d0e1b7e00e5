"""Evaluation metrics against cases worked out by hand."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from visionline.inspection.metrics import (
    average_precision,
    binary_counts,
    class_confusion,
    iou,
    iou_matrix,
    mask_iou,
    mean_average_precision,
    pixel_auroc,
    roc_auc,
)

A = (0, 0, 10, 10)
A_SHIFTED = (1, 0, 11, 10)  # IoU with A: 90 / 110
B = (50, 50, 60, 60)
C = (100, 0, 110, 10)


def brute_auc(scores: list[float], labels: list[bool]) -> float:
    pos = [s for s, y in zip(scores, labels, strict=True) if y]
    neg = [s for s, y in zip(scores, labels, strict=True) if not y]
    wins = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p, n in itertools.product(pos, neg))
    return wins / (len(pos) * len(neg))


# --- ROC AUC ---------------------------------------------------------------------------------


def test_roc_auc_perfect_inverted_and_all_tied() -> None:
    labels = [False, False, True, True]
    assert roc_auc([0.1, 0.2, 0.8, 0.9], labels) == 1.0
    assert roc_auc([0.9, 0.8, 0.2, 0.1], labels) == 0.0
    assert roc_auc([0.5, 0.5, 0.5, 0.5], labels) == 0.5


def test_roc_auc_hand_cases() -> None:
    # pairs (pos, neg): (0.35, 0.1) win, (0.35, 0.4) loss, (0.8, *) two wins -> 3/4
    assert roc_auc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]) == pytest.approx(0.75)
    # pos {0.5, 0.9}, neg {0.5, 0.2}: one tie counts one half -> 3.5 / 4
    assert roc_auc([0.5, 0.5, 0.2, 0.9], [1, 0, 0, 1]) == pytest.approx(0.875)


def test_roc_auc_matches_pairwise_count_with_many_ties() -> None:
    rng = np.random.default_rng(4)
    scores = rng.integers(0, 5, 300).astype(float).tolist()  # heavy ties
    labels = (rng.random(300) < 0.3).tolist()
    assert roc_auc(scores, labels) == pytest.approx(brute_auc(scores, labels), abs=1e-12)


def test_roc_auc_needs_both_classes_and_equal_lengths() -> None:
    with pytest.raises(ValueError, match="both"):
        roc_auc([0.1, 0.2], [True, True])
    with pytest.raises(ValueError, match="both"):
        roc_auc([0.1, 0.2], [False, False])
    with pytest.raises(ValueError, match="length"):
        roc_auc([0.1, 0.2, 0.3], [False, True])


def test_pixel_auroc_perfect_map_and_uniform_map() -> None:
    mask = np.zeros((8, 8), bool)
    mask[2:4, 2:5] = True
    assert pixel_auroc([mask.astype(float)], [mask]) == 1.0
    assert pixel_auroc([np.ones((8, 8))], [mask]) == 0.5


def test_pixel_auroc_pools_images_and_subsamples_deterministically() -> None:
    rng = np.random.default_rng(0)
    masks = [rng.random((40, 50)) < 0.2 for _ in range(3)]
    maps = [m * 0.3 + rng.random(m.shape) for m in masks]
    full = pixel_auroc(maps, masks)
    pooled = roc_auc(np.concatenate([m.ravel() for m in maps]), np.concatenate(masks, axis=None))
    assert full == pytest.approx(pooled)
    sampled = pixel_auroc(maps, masks, max_pixels=3000, seed=1)
    assert sampled == pixel_auroc(maps, masks, max_pixels=3000, seed=1)
    assert sampled != full  # really subsampled
    assert sampled == pytest.approx(full, abs=0.05)


def test_pixel_auroc_rejects_mismatched_shapes() -> None:
    with pytest.raises(ValueError, match="shape"):
        pixel_auroc([np.zeros((4, 4))], [np.zeros((4, 5), bool)])
    with pytest.raises(ValueError, match="masks"):
        pixel_auroc([np.zeros((4, 4))], [])


# --- IoU -------------------------------------------------------------------------------------


def test_mask_iou() -> None:
    a = np.zeros((4, 4), bool)
    b = np.zeros((4, 4), bool)
    assert mask_iou(a, b) == 1.0  # both empty
    a[0, :2] = True
    assert mask_iou(a, b) == 0.0
    b[0, 1:3] = True
    assert mask_iou(a, b) == pytest.approx(1 / 3)
    assert mask_iou(a, a) == 1.0
    with pytest.raises(ValueError):
        mask_iou(a, np.zeros((4, 5), bool))


def test_box_iou_edge_cases() -> None:
    assert iou(A, A) == 1.0
    assert iou(A, B) == 0.0
    assert iou(A, (10, 0, 20, 10)) == 0.0  # touching: ends are exclusive
    assert iou(A, (5, 0, 15, 10)) == pytest.approx(50 / 150)
    assert iou(A, (2, 2, 4, 4)) == pytest.approx(4 / 100)  # contained
    assert iou((3, 3, 3, 9), (3, 3, 3, 9)) == 0.0  # zero-area boxes, no division by zero
    assert iou((5, 5, 0, 0), A) == 0.0  # inverted box counts as empty
    assert iou((0.0, 0.0, 2.5, 2.0), (0, 0, 5, 2)) == pytest.approx(0.5)  # float and int mix


def test_iou_matrix_shape_and_values() -> None:
    m = iou_matrix([A, B, C], [B, A])
    assert m.shape == (3, 2)
    assert np.allclose(m, [[0, 1], [1, 0], [0, 0]])
    assert iou_matrix([], [A]).shape == (0, 1)
    assert iou_matrix([A], []).shape == (1, 0)


# --- average precision -----------------------------------------------------------------------


def test_ap_perfect_detections_is_one() -> None:
    truths = [[("crack", A), ("stain", B)], [("crack", C)]]
    dets = [[("crack", A, 0.9), ("stain", B, 0.8)], [("crack", C, 0.7)]]
    assert average_precision(dets, truths) == {"crack": 1.0, "stain": 1.0}
    assert mean_average_precision(dets, truths) == 1.0


def test_ap_worked_example() -> None:
    # ranked: TP (P=1, R=1/2), FP (P=1/2, R=1/2), TP (P=2/3, R=1)
    # envelope: P=1 on (0, 1/2], P=2/3 on (1/2, 1] -> AP = 1/2 + 1/3 = 5/6
    truths = [[("crack", A)], [("crack", C)]]
    dets = [[("crack", A_SHIFTED, 0.9), ("crack", B, 0.8)], [("crack", C, 0.7)]]
    assert average_precision(dets, truths)["crack"] == pytest.approx(5 / 6)


def test_ap_uses_envelope_not_raw_precision() -> None:
    # FP, TP, TP over 2 truths: precision 0, 1/2, 2/3 at recall 0, 1/2, 1; the envelope makes the
    # precision at recall 1/2 equal 2/3 -> AP = 2/3 (raw precision would give 1/4 + 1/3)
    truths = [[("scratch", A), ("scratch", C)]]
    dets = [[("scratch", B, 0.9), ("scratch", A, 0.8), ("scratch", C, 0.7)]]
    assert average_precision(dets, truths)["scratch"] == pytest.approx(2 / 3)


def test_duplicate_detection_is_a_false_positive() -> None:
    truths = [[("crack", A), ("crack", C)]]
    # the duplicate of A ranks above the detection of C: TP, FP, TP -> 5/6 as above
    dets = [[("crack", A, 0.9), ("crack", A_SHIFTED, 0.8), ("crack", C, 0.7)]]
    assert average_precision(dets, truths)["crack"] == pytest.approx(5 / 6)
    # the duplicate must not take C's truth: only the best unmatched overlapping truth counts
    only_dupes = [[("crack", A, 0.9), ("crack", A_SHIFTED, 0.8)]]
    assert average_precision(only_dupes, truths)["crack"] == pytest.approx(0.5)


def test_higher_score_takes_the_truth_even_if_listed_later() -> None:
    truths = [[("crack", A)]]
    # the low-score box overlaps better but is matched second, so it is the false positive
    dets = [[("crack", A, 0.2), ("crack", A_SHIFTED, 0.9)]]
    assert average_precision(dets, truths)["crack"] == 1.0
    loose = [[("crack", (0, 0, 20, 20), 0.9), ("crack", A, 0.2)]]  # IoU 0.25 < 0.5: a miss
    assert average_precision(loose, truths)["crack"] == pytest.approx(0.5)  # FP then TP
    assert average_precision(loose, truths, iou_threshold=0.2)["crack"] == 1.0


def test_wrong_class_does_not_match_and_classes_without_truth_are_left_out() -> None:
    truths = [[("crack", A)], [("stain", B)]]
    dets = [[("stain", A, 0.9)], [("stain", B, 0.8), ("dent", C, 0.95)]]
    ap = average_precision(dets, truths)
    assert ap == {"crack": 0.0, "stain": pytest.approx(0.5)}  # stain: FP (0.9) then TP
    assert "dent" not in ap
    assert mean_average_precision(dets, truths) == pytest.approx(0.25)


def test_map_without_any_truth_is_nan_and_image_counts_must_agree() -> None:
    assert np.isnan(mean_average_precision([[("crack", A, 0.5)]], [[]]))
    with pytest.raises(ValueError, match="images"):
        average_precision([[]], [[], []])


# --- confusion and binary counts -------------------------------------------------------------


def test_class_confusion_layout() -> None:
    classes = ["crack", "stain"]
    truths = [[("crack", A), ("stain", B), ("stain", C)]]
    dets = [
        [
            ("crack", A, 0.9),  # correct
            ("crack", A_SHIFTED, 0.8),  # duplicate -> background row
            ("crack", B, 0.7),  # stain called crack
            ("stain", (200, 200, 210, 210), 0.6),  # nothing there -> background row
            ("stain", C, 0.01),  # below min_score: C counts as missed
        ]
    ]
    out = class_confusion(dets, truths, classes, min_score=0.05)
    assert out["labels"] == ["crack", "stain", "background"]
    assert out["matrix"].tolist() == [
        [1, 0, 0],  # truth crack
        [1, 0, 1],  # truth stain: one called crack, one missed
        [1, 1, 0],  # background: false positives
    ]
    assert out["matrix"].sum() == 3 + 2  # every truth once, plus every unmatched detection


def test_class_confusion_rejects_unknown_classes() -> None:
    with pytest.raises(ValueError, match="unknown class"):
        class_confusion([[("dent", A, 0.9)]], [[("crack", A)]], ["crack"])
    with pytest.raises(ValueError, match="distinct"):
        class_confusion([[]], [[]], ["crack", "background"])


def test_binary_counts() -> None:
    out = binary_counts([True, True, False, False, True], [True, False, True, False, True])
    assert (out["tp"], out["fp"], out["fn"], out["tn"]) == (2, 1, 1, 1)
    assert out["precision"] == pytest.approx(2 / 3)
    assert out["recall"] == pytest.approx(2 / 3)
    assert out["f1"] == pytest.approx(2 / 3)


def test_binary_counts_empty_denominators() -> None:
    nothing_predicted = binary_counts([False, False], [True, False])
    assert nothing_predicted["precision"] == 1.0  # no false alarm raised
    assert nothing_predicted["recall"] == 0.0
    assert nothing_predicted["f1"] == 0.0
    nothing_to_find = binary_counts([False, False], [False, False])
    assert (nothing_to_find["precision"], nothing_to_find["recall"]) == (1.0, 1.0)
    all_wrong = binary_counts([True], [False])
    assert (all_wrong["precision"], all_wrong["recall"], all_wrong["f1"]) == (0.0, 1.0, 0.0)
    with pytest.raises(ValueError):
        binary_counts([True], [True, False])
