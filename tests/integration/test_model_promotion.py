"""Promotion and rollback of a model version through a real Triton, with requests flowing.

A Triton of its own (the local stack's, started with ``--model-control-mode=explicit`` like the
real one, with PostgreSQL for the lineage and no workers) serves a temporary model repository:
the classifier of ``triton_models/`` copied in as versions 1 and 2, so the repository's own
files are never changed. A background thread sends inference requests without a version, as the
workers do, for the whole switch; every one must be answered.
"""

from __future__ import annotations

import json
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from typer.testing import CliRunner

from visionline.cli import app
from visionline.db import make_engine
from visionline.model_registry import version_policy as policy
from visionline.model_registry.promotion import promote, ready, triton_control, wait_until
from visionline.model_registry.store import advance_job, create_job, get_job, list_versions
from visionline.models import spec
from visionline.stack.api import LocalStack
from visionline.stack.config import free_port_settings

MODEL = spec.MODEL_NAME
SOURCE = Path(__file__).resolve().parents[2] / "triton_models" / MODEL


@pytest.fixture(scope="module")
def repository(tmp_path_factory) -> Path:
    if not (SOURCE / "1" / spec.MODEL_FILENAME).is_file():
        pytest.fail(f"{SOURCE}/1/{spec.MODEL_FILENAME} is missing: run `make models`", False)
    repo = tmp_path_factory.mktemp("model-repository")
    model_dir = repo / MODEL
    model_dir.mkdir()
    for name in ("config.pbtxt", spec.LABELS_FILENAME):
        shutil.copy2(SOURCE / name, model_dir / name)
    for version in (1, 2):
        folder = model_dir / str(version)
        folder.mkdir()
        for name in (spec.MODEL_FILENAME, "model.py"):
            shutil.copy2(SOURCE / "1" / name, folder / name)
        marker = {"marker": f"copy-as-version-{version}", "metrics": {"top1": 0.5 + version / 10}}
        (folder / "metadata.json").write_text(json.dumps(marker))
    policy.write_versions(model_dir, [1])  # version 1 serves at start, not the newest folder
    return repo


@pytest.fixture(scope="module")
def triton(tmp_path_factory, repository: Path):
    settings = free_port_settings(
        tmp_path_factory.mktemp("promotion-stack"),
        model_repository=repository,
        model_name=MODEL,
        inspection_models=(),
        with_workers=False,
    )
    with LocalStack(settings, attached=True) as stack:
        yield stack


class Requests(threading.Thread):
    """Inference requests one after another, no version pinned; answers and errors kept."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.client = grpcclient.InferenceServerClient(url)
        self.stop = threading.Event()
        self.versions: list[str] = []
        self.errors: list[str] = []
        image = np.random.default_rng(0).integers(0, 256, (1, 224, 224, 3), dtype=np.uint8)
        self.input = grpcclient.InferInput(spec.INPUT_NAME, list(image.shape), "UINT8")
        self.input.set_data_from_numpy(image)

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                result = self.client.infer(MODEL, [self.input], client_timeout=30)
                assert result.as_numpy(spec.OUTPUT_NAME).shape == (1, spec.NUM_CLASSES)
                self.versions.append(result.get_response().model_version)
            except Exception as exc:  # kept: the test fails on any
                self.errors.append(repr(exc))

    def wait_for(self, count: int, timeout_s: float = 60.0) -> None:
        assert wait_until(lambda: len(self.versions) >= count or self.errors, timeout_s)

    def __enter__(self) -> Requests:
        self.start()
        self.wait_for(3)
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.join(60)
        self.client.close()


def switch_seen(versions: list[str], old: str, new: str, switched_at: int) -> None:
    """Answers came from ``old`` then ``new``, never back, and only ``new`` once the switch
    returned (at most the one request in flight then may be answered by ``old``)."""
    assert versions[0] == old and versions[-1] == new
    first_new = versions.index(new)
    assert set(versions[:first_new]) == {old} and set(versions[first_new:]) == {new}
    assert first_new <= switched_at + 1


def test_promote_and_rollback_through_triton(triton, repository: Path) -> None:
    engine = make_engine(triton.database_url)
    control = triton_control(triton.triton_grpc_url)
    config = repository / MODEL / "config.pbtxt"
    assert ready(control, MODEL, 1) and not ready(control, MODEL, 2)

    job = create_job(engine, MODEL, "operator", parent_version=1, reason="test", dataset={"n": 0})
    advance_job(engine, job, "building_dataset", "dataset")
    advance_job(engine, job, "training", "train")
    advance_job(engine, job, "evaluating", "eval", candidate_version=2, metrics={"top1": 0.8})

    with Requests(triton.triton_grpc_url) as requests:
        info = promote(engine, control, repository, MODEL, 2, job_id=job, promoted_by="test")
        switched_at = len(requests.versions)
        requests.wait_for(switched_at + 5)
    assert requests.errors == []
    switch_seen(requests.versions, "1", "2", switched_at)
    assert (info.version, info.parent_version, info.job_id) == (2, 1, job)
    assert ready(control, MODEL, 2)
    assert wait_until(lambda: not ready(control, MODEL, 1), 30)
    assert policy.served_versions(config.read_text()) == [2]
    assert get_job(engine, job).state == "promoted"

    env = {
        "VISIONLINE_DATABASE_URL": triton.database_url,
        "VISIONLINE_TRITON_GRPC_URL": triton.triton_grpc_url,
        "VISIONLINE_MODEL_REPOSITORY": str(repository),
        "COLUMNS": "200",
    }
    with Requests(triton.triton_grpc_url) as requests:
        result = CliRunner().invoke(app, ["models", "rollback", MODEL], env=env)
        switched_at = len(requests.versions)
        requests.wait_for(switched_at + 5)
    assert result.exit_code == 0, result.output
    assert "version 1 serving" in result.output
    assert requests.errors == []
    switch_seen(requests.versions, "2", "1", switched_at)
    assert ready(control, MODEL, 1)
    assert wait_until(lambda: not ready(control, MODEL, 2), 30)
    assert policy.served_versions(config.read_text()) == [1]

    rows = {v.version: v for v in list_versions(engine, MODEL)}
    assert {v: (r.status, r.parent_version, r.job_id) for v, r in rows.items()} == {
        1: ("serving", None, None),
        2: ("rolled_back", 1, job),
    }
    assert rows[2].metrics == {"top1": 0.8} and rows[2].promoted_by == "test"
    table = CliRunner().invoke(app, ["models", "versions", MODEL], env=env)
    assert table.exit_code == 0, table.output
    lines = {line.split("│")[1].strip(): line for line in table.output.splitlines() if "│" in line}
    assert "rolled_back" in lines["2"] and "top1=0.8" in lines["2"] and "serving" in lines["1"]
    again = CliRunner().invoke(app, ["models", "rollback", MODEL], env=env)
    assert again.exit_code == 1 and "nothing to roll back to" in again.output
    engine.dispose()
