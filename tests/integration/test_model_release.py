"""The committed release (models/release) is what the training code produces.

- The release is intact: every file matches the manifest, and the installed backbone is the one
  it was trained on.
- Assembled afresh, its models answer the trained graphs' probes and reproduce the evaluation
  figures committed with it (`visionline eval`, same settings).
- A short training run with the release's settings, on a small seeded subset, goes end to end:
  trained, packaged as a release, assembled, loaded by a real Triton and answering with outputs
  of the served shapes.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient

from visionline.inspection.vision import INSPECTION_MODELS, PART_CROPS
from visionline.models import spec
from visionline.stack.api import LocalStack
from visionline.stack.config import free_port_settings
from visionline.training.release import (
    EVALUATION,
    MANIFEST,
    assemble,
    check_backbone,
    probe,
    probe_mismatches,
    read_manifest,
    release_size,
    write_release,
)

ROOT = Path(__file__).resolve().parents[2]
RELEASE = ROOT / "models" / "release"
CLASSIFIER = ROOT / "triton_models" / spec.MODEL_NAME
QUIET = {"log": lambda _: None}
# Figures of `visionline eval` that the assembled release must reproduce, and by how much.
TOLERANCE = 0.005


@pytest.fixture(scope="module")
def manifest() -> dict:
    return read_manifest(RELEASE)


@pytest.fixture(scope="module")
def assembled(tmp_path_factory, manifest) -> Path:
    repository = tmp_path_factory.mktemp("assembled")
    done = assemble(RELEASE, repository, **QUIET)
    assert set(done) == {*INSPECTION_MODELS, PART_CROPS}  # part_crops derived from two of them
    return repository


def test_the_release_is_intact_small_and_matches_the_installed_backbone(manifest):
    check_backbone(manifest)
    assert set(manifest["models"]) == set(INSPECTION_MODELS)
    assert release_size(RELEASE) < 8_000_000  # what training learned, not the backbone
    assert not list(RELEASE.rglob("*.onnx"))
    for name in INSPECTION_MODELS:
        meta = json.loads((RELEASE / name / "metadata.json").read_text())
        assert meta["command"].startswith("visionline train all")
        assert meta["config"]["seed"] == 7 and meta["seconds"] > 0


def test_make_models_serves_the_release(manifest):
    """`make models` assembled triton_models/ from this very release."""
    from visionline.training.release import release_stamp

    stamp = release_stamp(RELEASE / MANIFEST)
    for name in INSPECTION_MODELS:
        meta = json.loads((ROOT / "triton_models" / name / "1" / "metadata.json").read_text())
        assert meta["release"]["manifest_sha256"] == stamp["manifest_sha256"], name


def test_assembled_models_answer_the_trained_graphs_probes(manifest, assembled):
    for name in INSPECTION_MODELS:
        assert probe_mismatches(manifest["probes"][name], probe(assembled / name / "1")) == []


def test_assembled_models_reproduce_the_released_evaluation(assembled):
    from visionline.training.evaluate import EvalConfig, evaluate

    released = json.loads((RELEASE / EVALUATION).read_text())
    again = evaluate(assembled, EvalConfig(**released["config"]), **QUIET)
    assert again["conditions"].keys() == released["conditions"].keys()
    compared = 0
    for section in ("conditions", "summary"):
        for condition, row in released[section].items():
            for key, value in row.items():
                if isinstance(value, float):
                    assert again[section][condition][key] == pytest.approx(value, abs=TOLERANCE), (
                        f"{section}/{condition}/{key}"
                    )
                    compared += 1
                elif isinstance(value, int | None):
                    assert again[section][condition][key] == value, f"{condition}/{key}"
    assert compared > 50


@pytest.fixture(scope="module")
def short_release(tmp_path_factory, manifest) -> Path:
    """The release's training settings, on a small seeded subset, trained and released."""
    from visionline.training.evaluate import EvalConfig
    from visionline.training.fit import TrainConfig, train_all

    settings = json.loads((RELEASE / "defect_detector" / "metadata.json").read_text())["config"]
    settings["seed"] = settings["seed"] + 1000  # another seeded subset than the release's
    small = {"conditions": 2, "frames_per_condition": 2, "good_frames_per_condition": 2}
    short = {"part_epochs": 1, "defect_epochs": 1, "bank_size": 128, "bank_patches": 4000}
    config = replace(TrainConfig(**settings), **small, **short)
    trained = tmp_path_factory.mktemp("short-trained")
    summary = train_all(trained, 1, config, **QUIET)
    release = tmp_path_factory.mktemp("short") / "release"
    tiny_eval = EvalConfig(frames_per_condition=2, defect_rate=0.8)
    write_release(trained, release, "short run", summary, evaluation_config=tiny_eval, **QUIET)
    return release


@pytest.fixture(scope="module")
def short_triton(tmp_path_factory, short_release):
    repository = tmp_path_factory.mktemp("short-repository")
    assemble(short_release, repository, **QUIET)
    shutil.copytree(CLASSIFIER, repository / spec.MODEL_NAME)  # Triton always serves it
    settings = free_port_settings(
        tmp_path_factory.mktemp("short-stack"),
        model_repository=repository,
        inspection_models=INSPECTION_MODELS,
        with_workers=False,
    )
    with LocalStack(settings, attached=True) as stack:
        yield stack


PART_OUT = {"part_heatmap": (1, 24, 40), "part_size": (2, 24, 40), "part_offset": (2, 24, 40)}
# A scalar per item is served as dims [ 1 ] (config.pbtxt reshapes the model's [ ] to it).
ANOMALY_OUT = {"anomaly_map": (20, 20), "anomaly_score": (1,)}
DEFECT_OUT = {"defect_heatmap": (5, 20, 20), "defect_size": (2, 20, 20), "defect_mask": (20, 20)}
SERVED = {
    "part_detector": ("frame", (192, 320, 3), PART_OUT),
    "part_anomaly": ("crop", (160, 160, 3), ANOMALY_OUT),
    "defect_detector": ("crop", (160, 160, 3), DEFECT_OUT),
}


@pytest.mark.parametrize("name", INSPECTION_MODELS)
def test_a_short_training_run_serves_on_triton(short_triton, name):
    input_name, dims, outputs = SERVED[name]
    batch = np.random.default_rng(0).integers(0, 256, (2, *dims), dtype=np.uint8)
    tensor = grpcclient.InferInput(input_name, list(batch.shape), "UINT8")
    tensor.set_data_from_numpy(batch)
    client = grpcclient.InferenceServerClient(short_triton.triton_grpc_url)
    try:
        result = client.infer(name, [tensor], client_timeout=60)
    finally:
        client.close()
    assert result.get_response().model_version == "1"
    for output, shape in outputs.items():
        value = result.as_numpy(output)
        assert value.shape == (2, *shape) and np.isfinite(value).all()
