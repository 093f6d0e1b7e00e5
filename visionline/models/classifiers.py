"""Which models of the Triton repository are classifiers a camera may use, and their labels.

A classifier takes the contract of ``efficientnet_lite0`` (input ``image``, uint8
[224, 224, 3]; output ``logits``, float32 [classes]) and names its classes in labels.txt, one a
line in output order: the version folder's own (a classifier trained on a user's dataset,
``visionline train classifier``), else the model folder's.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from visionline.model_registry.version_policy import CONFIG
from visionline.model_registry.versions import pinned_versions, repository_models
from visionline.models.spec import IMAGE_SIZE, INPUT_NAME, LABELS_FILENAME, OUTPUT_NAME

# The tensor blocks of a config.pbtxt the classify contract needs (whitespace aside).
_INPUT = re.compile(
    rf'name:\s*"{INPUT_NAME}"\s*data_type:\s*TYPE_UINT8\s*'
    rf"dims:\s*\[\s*{IMAGE_SIZE}\s*,\s*{IMAGE_SIZE}\s*,\s*3\s*\]"
)
_OUTPUT = re.compile(rf'name:\s*"{OUTPUT_NAME}"\s*data_type:\s*TYPE_FP32')


def uncommented(text: str) -> str:
    return "\n".join(line.split("#", 1)[0] for line in text.splitlines())


def is_classifier(repository: Path, model: str) -> bool:
    """``model`` is a folder of ``repository`` whose config has the classify contract."""
    if model not in repository_models(repository):
        return False
    text = uncommented((repository / model / CONFIG).read_text(encoding="utf-8"))
    return bool(_INPUT.search(text) and _OUTPUT.search(text))


def promoted_classifiers(repository: Path) -> list[str]:
    """The classifiers with versions pinned as serving (`visionline models promote`)."""
    return [
        m
        for m in repository_models(repository)
        if is_classifier(repository, m) and pinned_versions(repository / m)
    ]


def labels_path(repository: Path, model: str, version: str) -> Path:
    """The labels of ``model`` version ``version``: the version's own, else the model's."""
    own = repository / model / version / LABELS_FILENAME
    return own if version.isdigit() and own.is_file() else repository / model / LABELS_FILENAME


def model_labels(repository: Path) -> Callable[[str, str], list[str]]:
    """labels(model, version), each read once (a version's files never change)."""
    cache: dict[tuple[str, str], list[str]] = {}

    def labels(model: str, version: str) -> list[str]:
        key = (model, version)
        if key not in cache:
            if model not in repository_models(repository):  # names come off the wire
                raise FileNotFoundError(f"no model {model!r} in {repository}")
            path = labels_path(repository, model, version)
            if not path.is_file():
                raise FileNotFoundError(f"no labels for {model} version {version}: {path}")
            cache[key] = path.read_text(encoding="utf-8").splitlines()
        return cache[key]

    return labels
