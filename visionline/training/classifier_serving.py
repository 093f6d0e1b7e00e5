"""A trained classifier as a Triton version folder, and the same folder run in-process.

``<repository>/<model>/<version>/`` holds model.onnx (backbone and head, one graph),
model.py (the generic ONNX Runtime Python-backend model), labels.txt (the class names, one a
line, in output order), split.json (the images trained on and held out, by sha256),
learned.npz (the head's weights) and metadata.json; ``<model>/config.pbtxt`` follows the
``efficientnet_lite0`` contract with the user's class count, and ``<model>/labels.txt`` (which
Triton's ``label_filename`` reads) is written while no version of the model is pinned as
serving: a candidate with other classes must not relabel the version that serves.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from visionline.models.spec import (
    IMAGE_SIZE,
    INPUT_NAME,
    LABELS_FILENAME,
    METADATA_FILENAME,
    OUTPUT_NAME,
)

SPLIT_FILE = "split.json"


def config_text(model: str, classes: int) -> str:
    """The classify contract of triton_models/efficientnet_lite0/config.pbtxt, C classes."""
    return f"""# A classifier trained on a dataset version by `visionline train classifier`: the
# ImageNet EfficientNet-Lite0 backbone with a head for this model's classes. The same input
# contract as efficientnet_lite0 (whose config.pbtxt explains production serving).

name: "{model}"
backend: "python"
max_batch_size: 32

input [
  {{
    # RGB uint8, NHWC, resized (short side {IMAGE_SIZE}) and centre-cropped; the model normalises.
    name: "{INPUT_NAME}"
    data_type: TYPE_UINT8
    dims: [ {IMAGE_SIZE}, {IMAGE_SIZE}, 3 ]
  }}
]
output [
  {{
    # Logits over the classes of labels.txt (softmax not applied).
    name: "{OUTPUT_NAME}"
    data_type: TYPE_FP32
    dims: [ {classes} ]
    label_filename: "{LABELS_FILENAME}"
  }}
]

dynamic_batching {{
  preferred_batch_size: [ 8, 16, 32 ]
  max_queue_delay_microseconds: 2000
}}

instance_group [ {{ count: 1, kind: KIND_CPU }} ]

parameters [
  {{ key: "intra_op_thread_count", value: {{ string_value: "1" }} }},
  {{ key: "inter_op_thread_count", value: {{ string_value: "1" }} }}
]
"""


def install(
    module,
    model_dir: Path,
    version: int,
    classes: list[str],
    metadata: dict,
    split: dict,
) -> Path:
    """Export ``module`` and write the version folder atomically, then the model's files."""
    from visionline.training.serving import TensorSpec, export_version

    example = np.zeros((2, IMAGE_SIZE, IMAGE_SIZE, 3), np.uint8)
    inputs = [TensorSpec(INPUT_NAME, "TYPE_UINT8", (IMAGE_SIZE, IMAGE_SIZE, 3))]
    outputs = [TensorSpec(OUTPUT_NAME, "TYPE_FP32", (len(classes),))]
    target = export_version(
        module,
        example,
        model_dir,
        version,
        inputs,
        outputs,
        metadata,
        config_text(model_dir.name, len(classes)),
    )
    write_labels_and_split(target, classes, split)
    return target


def write_labels_and_split(folder: Path, classes: list[str], split: dict) -> None:
    """The version's labels.txt and split.json; the model folder's labels.txt too while no
    version is pinned as serving (a candidate must not relabel the version that serves)."""
    labels = "\n".join(classes) + "\n"
    (folder / LABELS_FILENAME).write_text(labels, encoding="utf-8")
    (folder / SPLIT_FILE).write_text(json.dumps(split), encoding="utf-8")
    if pinned_versions(folder.parent) is None:
        (folder.parent / LABELS_FILENAME).write_text(labels, encoding="utf-8")


def write_metadata(folder: Path, metadata: dict) -> None:
    """Replace the version's metadata.json atomically."""
    path = folder / METADATA_FILENAME
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(json.dumps(metadata, indent=1, default=float), encoding="utf-8")
    partial.replace(path)


def pinned_versions(model_dir: Path) -> list[int] | None:
    from visionline.model_registry.version_policy import CONFIG, served_versions

    config = model_dir / CONFIG
    return served_versions(config.read_text()) if config.is_file() else None


def pin_serving(model_dir: Path) -> None:
    """Without a pinned policy Triton serves the newest folder on its next load: pin the
    newest version there now (it is the one served), so the version trained next is only a
    candidate. A model with no version yet has nothing to pin."""
    from visionline.model_registry.version_policy import write_versions
    from visionline.model_registry.versions import next_version

    newest = next_version(model_dir) - 1
    if (
        newest >= 1
        and (model_dir / "config.pbtxt").is_file()
        and pinned_versions(model_dir) is None
    ):
        write_versions(model_dir, [newest])


def read_metadata(folder: Path) -> dict:
    return json.loads((folder / METADATA_FILENAME).read_text(encoding="utf-8"))


def read_split(folder: Path) -> dict:
    return json.loads((folder / SPLIT_FILE).read_text(encoding="utf-8"))


def version_folder(model_dir: Path, version: int | None) -> Path:
    """``version``, else the newest trained version (the candidate, before it is promoted)."""
    from visionline.training.serving import latest

    if version is None:
        return latest(model_dir)[1]
    folder = model_dir / str(version)
    if not (folder / METADATA_FILENAME).is_file():
        raise FileNotFoundError(f"no trained version {version} of {model_dir.name} ({folder})")
    return folder
