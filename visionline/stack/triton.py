"""The tritonserver binary of the nvidia-pytriton wheel, in its own virtual environment.

The wheel's Python backend needs the stub for the Python version of that environment beside
``libtriton_python.so``. Rather than modify site-packages, the stack keeps a backends folder of
its own in the state folder (a copy: the libraries' RPATH is relative, so their shared libraries
are put on ``LD_LIBRARY_PATH`` instead).
"""

from __future__ import annotations

import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from visionline.inspection.vision import PART_CROPS
from visionline.model_registry.versions import newest
from visionline.models.classifiers import promoted_classifiers
from visionline.models.detectors import promoted_detectors
from visionline.stack.config import StackSettings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TritonTree:
    venv: Path
    site_packages: Path

    @property
    def root(self) -> Path:
        return self.site_packages / "pytriton" / "tritonserver"

    @property
    def server(self) -> Path:
        return self.root / "bin" / "tritonserver"

    @property
    def python_version(self) -> str:
        return self.site_packages.parent.name.removeprefix("python")  # lib/python3.11/...

    @property
    def stub(self) -> Path:
        stubs = self.root / "python_backend_stubs"
        return stubs / self.python_version / "triton_python_backend_stub"

    @property
    def libs(self) -> Path:
        return self.site_packages / "nvidia_pytriton.libs"

    def env(self, base: dict[str, str]) -> dict[str, str]:
        """The model code runs in the stub, which imports from the first python3 on PATH: the
        Triton venv (numpy<2, onnxruntime), not the workers' one."""
        library_path = [str(self.libs), *filter(None, [base.get("LD_LIBRARY_PATH")])]
        return {
            "PATH": os.pathsep.join([str(self.venv / "bin"), base.get("PATH", os.defpath)]),
            "LD_LIBRARY_PATH": os.pathsep.join(library_path),
            "VIRTUAL_ENV": str(self.venv),
        }


def triton_tree(venv: Path) -> TritonTree:
    for site_packages in sorted(venv.glob("lib/python3*/site-packages")):
        if (site_packages / "pytriton" / "tritonserver" / "bin" / "tritonserver").exists():
            return TritonTree(venv, site_packages)
    raise RuntimeError(f"no tritonserver in {venv} (nvidia-pytriton): run `make env`")


def _copy_if_changed(src: Path, dst: Path) -> None:
    if dst.exists():
        a, b = src.stat(), dst.stat()
        if a.st_size == b.st_size and int(a.st_mtime) == int(b.st_mtime):
            return
    tmp = dst.with_name(f".{dst.name}.tmp")
    shutil.copy2(src, tmp)
    os.replace(tmp, dst)


def check_model(settings: StackSettings) -> None:
    """Fail before starting Triton, with the fix, when the model has not been built."""
    folder = settings.model_repository / settings.model_name
    if not (folder / "config.pbtxt").exists():
        raise RuntimeError(f"no model {folder}/config.pbtxt: run `make models`")
    for wrapper in folder.glob("[0-9]*/model.py"):
        if not (wrapper.parent / "model.onnx").exists():
            raise RuntimeError(f"{wrapper.parent}/model.onnx is missing: run `make models`")


def model_built(folder: Path) -> bool:
    """A config and a newest version folder holding its model.onnx (the Python-backend
    wrapper model.py runs that file)."""
    version = newest(folder, holding=None)
    if not (folder / "config.pbtxt").exists() or version is None:
        return False
    return (folder / str(version) / "model.onnx").exists()


def promoted_user_models(settings: StackSettings) -> list[str]:
    """Classifiers other than the default and detectors, with a version promoted (pinned) and
    built: a camera may name one (its registry entry's ``model``), so Triton serves it from the
    start, as `visionline models promote` made it do while it ran."""
    repository = settings.model_repository
    return [
        name
        for name in promoted_classifiers(repository) + promoted_detectors(repository)
        if name != settings.model_name and model_built(repository / name)
    ]


def served_models(settings: StackSettings) -> list[str]:
    """The models Triton loads: the classifier always, the promoted classifiers and detectors
    cameras may choose, each inspection model once built.

    An inspection model not built yet is skipped with a warning, so the classify path (and its
    tests) runs before those models exist; the inspect worker then waits on Triton.
    """
    models = [settings.model_name, *promoted_user_models(settings)]
    for name in settings.inspection_models:
        if model_built(settings.model_repository / name):
            models.append(name)
        else:
            log.warning(
                "inspection model %s is not built (no %s/<version>/model.onnx): not loaded",
                name,
                settings.model_repository / name,
            )
    # Derived from two of them (`make models`); the inspect worker does without it.
    if model_built(settings.model_repository / PART_CROPS):
        models.append(PART_CROPS)
    return models


def prepare_backends(tree: TritonTree, backends: Path, settings: StackSettings) -> None:
    check_model(settings)
    if not tree.stub.exists():
        raise RuntimeError(f"no Python backend stub for Python {tree.python_version}: {tree.stub}")
    target = backends / "python"
    target.mkdir(parents=True, exist_ok=True)
    for src in (*(tree.root / "backends" / "python").iterdir(), tree.stub):
        _copy_if_changed(src, target / src.name)
