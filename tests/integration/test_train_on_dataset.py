"""Issue 17 on the real stack: photographs imported as a dataset version into the stack's
PostgreSQL, a classifier trained on them as a candidate, evaluated, promoted through
`visionline models promote` and served by Triton with the dataset's classes.

A Triton of its own (explicit model control, like the real one; PostgreSQL for the registry;
no workers) serves a temporary model repository holding the shipped classifier (which the
stack loads at start) and the model trained here.
"""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient

from tests.integration.pipeline import (
    repository_with_shipped_classifier,
    visionline_commands,
)
from tests.unit.dataset_photos import CLASSES, classification_folders
from visionline.db import make_engine
from visionline.model_registry import version_policy as policy
from visionline.model_registry.promotion import ready, triton_control
from visionline.model_registry.store import get_job, list_versions
from visionline.models import spec
from visionline.stack.api import LocalStack
from visionline.stack.config import free_port_settings

MODEL = "photo_classes"


@pytest.fixture(scope="module")
def repository(tmp_path_factory) -> Path:
    return repository_with_shipped_classifier(tmp_path_factory.mktemp("model-repository"))


@pytest.fixture(scope="module")
def triton(tmp_path_factory, repository: Path):
    settings = free_port_settings(
        tmp_path_factory.mktemp("train-stack"),
        model_repository=repository,
        model_name=spec.MODEL_NAME,
        inspection_models=(),
        with_workers=False,
    )
    with LocalStack(settings, attached=True) as stack:
        yield stack


def _photos() -> np.ndarray:
    """Each class's whole photograph, prepared as the pipeline prepares frames."""
    from skimage import data

    from visionline.models.preprocessing import resize_center_crop

    return np.stack([resize_center_crop(getattr(data, name)()[..., :3]) for name in CLASSES])


def _served_labels(grpc_url: str, labels: list[str]) -> list[str]:
    """The class Triton's model names for each class's photograph."""
    client = grpcclient.InferenceServerClient(grpc_url)
    image = grpcclient.InferInput(spec.INPUT_NAME, [len(CLASSES), 224, 224, 3], "UINT8")
    image.set_data_from_numpy(_photos())
    output = grpcclient.InferRequestedOutput(spec.OUTPUT_NAME)
    logits = client.infer(MODEL, [image], outputs=[output]).as_numpy(spec.OUTPUT_NAME)
    assert logits.shape == (len(CLASSES), len(labels))
    return [labels[k] for k in logits.argmax(1)]


def test_import_train_evaluate_promote_and_serve(triton, repository: Path, tmp_path) -> None:
    run = visionline_commands(triton, repository, tmp_path / "store")
    name = f"photos-{uuid.uuid4().hex[:8]}"
    source = classification_folders(tmp_path / "photos")
    run("datasets", "import", str(source), "--format", "folders", "--name", name)
    trained = run(
        "train",
        "classifier",
        "--dataset",
        name,
        "--model",
        MODEL,
        "--epochs",
        "25",
        "--copies",
        "1",
        "--no-card",
    )
    job = int(re.search(r"registered as job (\d+)", trained).group(1))
    engine = make_engine(triton.database_url)
    row = get_job(engine, job)
    assert (row.state, row.candidate_version, row.dataset["name"]) == ("evaluating", 1, name)

    report = tmp_path / "eval.json"
    run("eval", "--model", MODEL, "--dataset", name, "--json", str(report))
    figures = json.loads(report.read_text())
    assert figures["accuracy"] >= 0.75 and figures["classes"] == list(CLASSES)
    assert figures["worst_factor"] in figures["robustness"]

    control = triton_control(triton.triton_grpc_url)
    assert not ready(control, MODEL, 1)  # a candidate: not served before it is promoted
    promoted = run("models", "promote", MODEL, "1", "--job", str(job))
    assert "version 1 serving" in promoted
    assert ready(control, MODEL, 1)
    assert policy.served_versions((repository / MODEL / "config.pbtxt").read_text()) == [1]
    assert get_job(engine, job).state == "promoted"
    [version] = list_versions(engine, MODEL)
    assert (version.status, version.job_id) == ("serving", job)
    assert version.metrics["accuracy"] == figures["accuracy"]

    served = (repository / MODEL / spec.LABELS_FILENAME).read_text().split()
    assert _served_labels(triton.triton_grpc_url, served) == list(CLASSES)
    engine.dispose()
