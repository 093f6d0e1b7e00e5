"""Training pieces of the inspection models, and one tiny end-to-end train and export."""

import numpy as np
import pytest
import torch

from visionline.inspection.vision import STRIDE
from visionline.model_registry.versions import next_version
from visionline.training.heads import build_targets, focal_loss
from visionline.training.patchcore import coreset
from visionline.training.serving import TensorSpec, config_pbtxt


def test_targets_put_a_peak_size_and_offset_at_each_box_centre():
    boxes = [np.array([[16.0, 8.0, 48.0, 24.0]])]  # centre (32, 16): cell (x 4, y 2)
    t = build_targets(boxes, [[1]], 2, (4, 8), masks=[np.zeros((32, 64), bool)])
    assert t.heatmap.shape == (1, 2, 4, 8) and t.heatmap[0, 1, 2, 4] == 1.0
    assert t.heatmap[0, 0].max() == 0  # other class untouched
    assert t.centre.sum() == 1 and t.centre[0, 2, 4]
    np.testing.assert_allclose(t.size[0, :, 2, 4], [np.log(32 / STRIDE), np.log(16 / STRIDE)])
    np.testing.assert_allclose(t.offset[0, :, 2, 4], [0.0, 0.0])
    assert t.mask is not None and t.mask.sum() == 0


def test_mask_targets_mark_any_cell_a_thin_defect_touches():
    mask = np.zeros((32, 64), bool)
    mask[10, :] = True  # a one-pixel scratch across the crop
    t = build_targets([np.zeros((0, 4))], [[]], 1, (4, 8), masks=[mask])
    assert t.mask is not None and t.mask[0, 1].sum() == 8 and t.mask.sum() == 8


def test_focal_loss_is_low_for_the_right_heatmap_and_high_for_the_wrong_one():
    target = torch.zeros(1, 1, 4, 4)
    target[0, 0, 1, 1] = 1
    good, bad = target.clone().clamp(0.01, 0.99), 1 - target.clone().clamp(0.01, 0.99)
    assert focal_loss(good, target) < 0.1 < focal_loss(bad, target)


def test_coreset_picks_spread_out_points_deterministically():
    rng = np.random.default_rng(0)
    clusters = np.concatenate([rng.normal(c, 0.01, (100, 8)) for c in (0, 5, 10)])
    points = torch.from_numpy(clusters).float()
    chosen = coreset(points, 3, seed=1, project=8)
    assert sorted(int(i) // 100 for i in chosen) == [0, 1, 2]  # one from each cluster
    assert torch.equal(chosen, coreset(points, 3, seed=1, project=8))


def test_config_pbtxt_lists_the_tensors_and_dynamic_batching():
    text = config_pbtxt(
        "m",
        [TensorSpec("crop", "TYPE_UINT8", (224, 224, 3))],
        [TensorSpec("score", "TYPE_FP32", ())],
        16,
        [8, 16],
        "doc",
    )
    assert 'name: "m"' in text and "dims: [ 224, 224, 3 ]" in text
    assert "dims: [ 1 ]\n    reshape: { shape: [ ] }" in text
    assert "preferred_batch_size: [ 8, 16 ]" in text and text.startswith("# doc")


def test_next_version_counts_numbered_folders(tmp_path):
    assert next_version(tmp_path / "missing") == 1
    (tmp_path / "1").mkdir()
    (tmp_path / "3").mkdir()
    assert next_version(tmp_path) == 4


def test_a_tiny_training_run_installs_three_servable_models(tmp_path):
    from visionline.training.fit import TrainConfig, train_all
    from visionline.training.serving import OnnxModel, latest

    config = TrainConfig(
        conditions=2,
        frames_per_condition=2,
        good_frames_per_condition=2,
        part_epochs=1,
        defect_epochs=1,
        bank_size=64,
        bank_patches=2000,
    )
    summary = train_all(tmp_path, 1, config, log=lambda _: None)
    assert summary["part_anomaly"]["bank"] == 64
    shapes = {
        "part_detector": ((2, 192, 320, 3), {"part_heatmap": (2, 1, 24, 40)}),
        "part_anomaly": ((3, 160, 160, 3), {"anomaly_map": (3, 20, 20), "anomaly_score": (3,)}),
        "defect_detector": ((1, 160, 160, 3), {"defect_heatmap": (1, 5, 20, 20)}),
    }
    for name, (shape, expected) in shapes.items():
        version, folder = latest(tmp_path / name)
        assert version == 1 and (folder / "model.py").is_file()
        assert (tmp_path / name / "config.pbtxt").read_text().count(f'name: "{name}"') == 1
        out = OnnxModel(folder / "model.onnx").run(np.zeros(shape, np.uint8))
        for output, dims in expected.items():
            assert out[output].shape == dims
        if name == "part_anomaly":  # calibrated into (0, 1)
            assert ((out["anomaly_score"] > 0) & (out["anomaly_score"] < 1)).all()
    with pytest.raises(FileNotFoundError):
        latest(tmp_path / "nothing")
    # and `visionline eval` scores them: every figure in [0, 1] (None only without both labels)
    from visionline.training.data import render
    from visionline.training.evaluate import KEYS, evaluate_condition, load_models

    row = evaluate_condition(load_models(tmp_path, 1)[0], render(5, [("clean", {})], 3, 0.5))
    assert row["crops"] > row["defective_crops"] > 0
    assert all(row[k] is None or 0 <= row[k] <= 1 for k in KEYS)
    assert row["detector_auroc"] is not None and row["image_auroc"] is not None


def test_a_new_config_keeps_the_versions_a_promotion_pinned(tmp_path):
    from visionline.model_registry.version_policy import served_versions, with_versions
    from visionline.training.serving import write_config

    fresh = 'name: "m"\nmax_batch_size: 8\n'
    write_config(tmp_path, fresh)
    assert (tmp_path / "config.pbtxt").read_text() == fresh  # nothing pinned: latest serves
    (tmp_path / "config.pbtxt").write_text(with_versions(fresh, [2]))  # version 2 promoted
    write_config(tmp_path, fresh.replace("8", "16"))
    text = (tmp_path / "config.pbtxt").read_text()
    assert served_versions(text) == [2] and "max_batch_size: 16" in text


def test_heads_start_from_their_seed_so_training_is_repeatable():
    """The part detector's head once drew its initial weights from torch's unseeded global
    generator: the same command trained another model each time."""
    from visionline.training.fit import defect_head, part_head

    for make in (part_head, defect_head):
        torch.manual_seed(1)
        first = [p.detach().clone() for p in make(7).parameters()]
        torch.manual_seed(2)  # whatever ran before
        again = list(make(7).parameters())
        assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
        assert not all(torch.equal(a, b) for a, b in zip(first, make(8).parameters(), strict=True))
