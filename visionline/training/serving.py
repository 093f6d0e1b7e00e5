"""Triton version folders for the inspection models, and an in-process runner of them.

``triton_models/<model>/<version>/`` holds model.onnx, model.py (the generic ONNX Runtime
Python-backend model) and metadata.json (training settings, calibration, timings);
``triton_models/<model>/config.pbtxt`` is written from the same tensor specs the ONNX export
used, so the two cannot drift apart.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from visionline.model_registry.version_policy import served_versions, with_versions
from visionline.model_registry.versions import newest
from visionline.models.spec import LEARNED, METADATA_FILENAME, MODEL_FILENAME, TRITON_MODEL_PY

OPSET = 17
FROZEN_PREFIX = "backbone."


@dataclass(frozen=True)
class TensorSpec:
    name: str
    dtype: str  # Triton's TYPE_*
    dims: tuple[int, ...]  # without the batch axis


def config_pbtxt(
    name: str,
    inputs: Sequence[TensorSpec],
    outputs: Sequence[TensorSpec],
    max_batch: int,
    preferred: Sequence[int],
    comment: str,
) -> str:
    def block(specs: Sequence[TensorSpec]) -> str:
        return ",\n".join(_tensor(s) for s in specs)

    lines = [f"# {line}" if line else "#" for line in comment.strip().splitlines()]
    lines += [
        "# Written by `visionline train`. Python backend here; in production serve",
        "# model.onnx as efficientnet_lite0/config.pbtxt explains.",
    ]
    return "\n".join(
        [
            *lines,
            "",
            f'name: "{name}"',
            'backend: "python"',
            f"max_batch_size: {max_batch}",
            f"input [\n{block(inputs)}\n]",
            f"output [\n{block(outputs)}\n]",
            "dynamic_batching {",
            f"  preferred_batch_size: [ {', '.join(map(str, preferred))} ]",
            "  max_queue_delay_microseconds: 2000",
            "}",
            "instance_group [ { count: 1, kind: KIND_CPU } ]",
            "parameters [",
            '  { key: "intra_op_thread_count", value: { string_value: "1" } },',
            '  { key: "inter_op_thread_count", value: { string_value: "1" } }',
            "]",
            "",
        ]
    )


def _tensor(spec: TensorSpec) -> str:
    # A scalar per item: Triton wants dims [ 1 ] and a reshape to [ ] when batching.
    dims = ", ".join(map(str, spec.dims)) if spec.dims else "1"
    reshape = "" if spec.dims else "\n    reshape: { shape: [ ] }"
    return (
        f'  {{\n    name: "{spec.name}"\n    data_type: {spec.dtype}\n'
        f"    dims: [ {dims} ]{reshape}\n  }}"
    )


def export_onnx(
    module,
    example: np.ndarray,
    path: Path,
    inputs: Sequence[TensorSpec],
    outputs: Sequence[TensorSpec],
) -> None:
    """``module`` as an ONNX graph at ``path``, batch axis dynamic."""
    import torch

    names = [s.name for s in (*inputs, *outputs)]
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module.eval(),
            (torch.from_numpy(example),),
            str(path),
            dynamo=False,
            opset_version=OPSET,
            input_names=[s.name for s in inputs],
            output_names=[s.name for s in outputs],
            dynamic_axes={name: {0: "batch"} for name in names},
            do_constant_folding=True,
        )


def export_version(
    module,
    example: np.ndarray,
    model_dir: Path,
    version: int,
    inputs: Sequence[TensorSpec],
    outputs: Sequence[TensorSpec],
    metadata: dict,
    config: str,
) -> Path:
    """Export ``module`` to ONNX and install it as ``model_dir/version`` atomically."""
    model_dir.mkdir(parents=True, exist_ok=True)
    target = model_dir / str(version)
    with tempfile.TemporaryDirectory(dir=model_dir, prefix=".export-") as tmp:
        folder = Path(tmp) / "v"
        folder.mkdir()
        export_onnx(module, example, folder / MODEL_FILENAME, inputs, outputs)
        shutil.copyfile(TRITON_MODEL_PY, folder / "model.py")
        # numpy's stub matches the ** arrays against its allow_pickle: bool as well
        np.savez(folder / LEARNED, **learned_state(module))  # type: ignore[arg-type]
        (folder / METADATA_FILENAME).write_text(json.dumps(metadata, indent=1, default=float))
        if target.exists():
            shutil.rmtree(target)
        os.replace(folder, target)
    write_config(model_dir, config)
    return target


def learned_state(module) -> dict[str, np.ndarray]:
    """The module's parameters and buffers that training set: all but the frozen backbone's."""
    state = module.state_dict().items()
    return {k: v.detach().cpu().numpy() for k, v in state if not k.startswith(FROZEN_PREFIX)}


def write_config(model_dir: Path, config: str) -> None:
    """Write the model's config.pbtxt, keeping the versions a promotion pinned there: a newly
    trained version is a candidate, served only once it is promoted."""
    path = model_dir / "config.pbtxt"
    pinned = served_versions(path.read_text()) if path.is_file() else None
    path.write_text(config if pinned is None else with_versions(config, pinned))


class OnnxModel:
    """A version folder's model.onnx run in-process: ``run(x) -> {output name: array}``."""

    def __init__(self, path: Path, threads: int = 1) -> None:
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.input = self.session.get_inputs()[0].name
        self.outputs = [o.name for o in self.session.get_outputs()]

    def run(self, x: np.ndarray, batch: int = 16) -> dict[str, np.ndarray]:
        parts: list[list[np.ndarray]] = [[] for _ in self.outputs]
        for start in range(0, max(1, len(x)), batch):
            for k, r in enumerate(
                self.session.run(self.outputs, {self.input: x[start : start + batch]})
            ):
                parts[k].append(r)
        return {name: np.concatenate(p) for name, p in zip(self.outputs, parts, strict=True)}


def latest(model_dir: Path) -> tuple[int, Path]:
    version = newest(model_dir)
    if version is None:
        raise FileNotFoundError(f"no trained version under {model_dir}; run `visionline train all`")
    return version, model_dir / str(version)
