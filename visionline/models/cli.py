"""`visionline models ...`: build the ONNX model and labels Triton serves, and inspect them."""

from pathlib import Path
from typing import Annotated

import numpy as np
import typer
from rich.console import Console
from rich.table import Table

from visionline.models.spec import DEFAULT_REPOSITORY, MODEL_NAME

app = typer.Typer(help="Build and inspect the models Triton serves.", no_args_is_help=True)
console = Console()

RepositoryOption = Annotated[
    Path, typer.Option("--repository", help="Triton model repository folder.")
]


@app.command()
def build(
    repository: RepositoryOption = DEFAULT_REPOSITORY,
    force: Annotated[bool, typer.Option("--force", help="Export even if up to date.")] = False,
    template: Annotated[
        Path,
        typer.Option(
            help="Where config.pbtxt and model.py come from when --repository is elsewhere."
        ),
    ] = DEFAULT_REPOSITORY,
) -> None:
    """Export pretrained EfficientNet-Lite0 to <repository>/efficientnet_lite0/ (ONNX + labels)."""
    # Imported here, not at the top: onnxruntime and torch would slow down --help.
    from visionline.models.export import copy_serving_files, export_model

    for path in copy_serving_files(template, repository):
        console.print(f"copied {path}")
    result = export_model(repository, force=force)
    if result.skipped:
        console.print(f"up to date: {result.model_path}, {result.labels_path} (--force rebuilds)")
        return
    console.print(f"wrote {result.model_path} ({result.model_path.stat().st_size:,} bytes)")
    console.print(f"wrote {result.labels_path}")
    console.print(f"ONNX vs torch max abs diff: {result.max_abs_diff:.2e}")
    for sample, (label, prob) in result.top1.items():
        console.print(f"top-1 {sample}: {label} ({prob:.2f})")
    console.print(f"took {result.seconds:.1f} s")
    if not (result.model_path.parents[1] / "config.pbtxt").is_file():
        console.print(f"note: no config.pbtxt in {result.model_path.parents[1]} (see --template)")


@app.command()
def info(
    repository: RepositoryOption = DEFAULT_REPOSITORY,
    model: Annotated[str, typer.Option(help="Model folder name.")] = MODEL_NAME,
    top: Annotated[int, typer.Option(help="Classify the bundled sample photos, top-k.")] = 3,
) -> None:
    """Show the model's version, tensors and its top-k on scikit-image's sample photos."""
    from visionline.models.export import sample_images, softmax
    from visionline.models.local import LocalModel, load_labels

    local = LocalModel(repository, model)
    labels = load_labels(repository, model)
    console.print(f"{local.name} version {local.version}: {local.path}")
    console.print(f"input {local.input_name} uint8 [N, {', '.join(map(str, local.input_shape))}]")
    console.print(f"output {local.output_name} float32 [N, {len(labels)}], labels.txt")
    table = Table("sample", *(f"#{k + 1}" for k in range(top)))
    samples = sample_images()
    probs = softmax(local.infer(np.stack(list(samples.values()))))
    for name, row in zip(samples, probs, strict=True):
        best = row.argsort()[::-1][:top]
        table.add_row(name, *(f"{labels[i]} {row[i]:.2f}" for i in best))
    console.print(table)
