"""`visionline models ...`: build the ONNX model and labels Triton serves, and inspect them."""

from pathlib import Path
from typing import Annotated

import numpy as np
import typer
from rich.console import Console
from rich.table import Table

from visionline.db import make_engine
from visionline.model_registry.job_states import InvalidTransition
from visionline.model_registry.promotion import PromotionError, triton_control
from visionline.model_registry.promotion import promote as do_promote
from visionline.model_registry.promotion import rollback as do_rollback
from visionline.model_registry.store import JobNotFound, list_versions
from visionline.models.scores import softmax
from visionline.models.spec import DEFAULT_RELEASE, DEFAULT_REPOSITORY, MODEL_NAME
from visionline.settings import CommonSettings

app = typer.Typer(
    help="Build and inspect the models Triton serves; promote and roll back their versions.",
    no_args_is_help=True,
)
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
def assemble(
    release: Annotated[Path, typer.Option(help="The release folder.")] = DEFAULT_RELEASE,
    repository: RepositoryOption = DEFAULT_REPOSITORY,
    force: Annotated[
        bool, typer.Option("--force", help="Rebuild, and replace models trained here.")
    ] = False,
) -> None:
    """Build the released inspection models (models/release) into Triton version folders.

    Checks every file against the release's manifest, rebuilds each ONNX graph from the frozen
    backbone and the released weights, and checks it answers as the trained graph did.
    """
    from visionline.training.release import ReleaseError
    from visionline.training.release import assemble as do_assemble

    try:
        do_assemble(release, repository, force=force, log=console.print)
    except ReleaseError as exc:
        raise _fail(exc) from exc


@app.command()
def info(
    repository: RepositoryOption = DEFAULT_REPOSITORY,
    model: Annotated[str, typer.Option(help="Model folder name.")] = MODEL_NAME,
    top: Annotated[int, typer.Option(help="Classify the bundled sample photos, top-k.")] = 3,
) -> None:
    """Show the model's version, tensors and its top-k on scikit-image's sample photos."""
    from visionline.models.export import sample_images
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


# --- versions: promotion and rollback through Triton (visionline.model_registry) -----------------
# Like `visionline alerts list`, these find the stack through the common settings
# (VISIONLINE_DATABASE_URL, VISIONLINE_TRITON_GRPC_URL, VISIONLINE_MODEL_REPOSITORY), whose
# defaults are the local stack's (`make up`).

TimeoutOption = Annotated[
    float, typer.Option("--timeout", min=1, help="Seconds to wait for the version to be ready.")
]


def _registry_context(repository: Path | None):
    common = CommonSettings()
    engine = make_engine(common.database_url)
    return engine, triton_control(common.triton_grpc_url), repository or common.model_repository


def _fail(exc: Exception) -> typer.Exit:
    console.print(f"[red]{exc}[/]")
    return typer.Exit(1)


SettingsRepositoryOption = Annotated[
    Path | None, typer.Option(help="Model repository (default: VISIONLINE_MODEL_REPOSITORY).")
]


@app.command()
def promote(
    model: Annotated[str, typer.Argument(help="Model name, e.g. part_detector.")],
    version: Annotated[int, typer.Argument(min=1, help="Version folder to serve.")],
    job: Annotated[int | None, typer.Option(help="Retraining job that produced it.")] = None,
    by: Annotated[str, typer.Option(help="Who promotes (recorded).")] = "operator",
    repository: SettingsRepositoryOption = None,
    timeout: TimeoutOption = 120.0,
) -> None:
    """Serve VERSION of MODEL on Triton in place of the current one, and record its lineage."""
    engine, control, repo = _registry_context(repository)
    try:
        info = do_promote(
            engine, control, repo, model, version, job_id=job, promoted_by=by, timeout_s=timeout
        )
    except (PromotionError, InvalidTransition, JobNotFound) as exc:
        raise _fail(exc) from exc
    finally:
        engine.dispose()
    console.print(f"{model} version {info.version} serving (replaced {info.parent_version})")


@app.command()
def rollback(
    model: Annotated[str, typer.Argument(help="Model name.")],
    repository: SettingsRepositoryOption = None,
    timeout: TimeoutOption = 120.0,
) -> None:
    """Serve again the version the current one replaced; the current one is marked rolled_back."""
    engine, control, repo = _registry_context(repository)
    try:
        info = do_rollback(engine, control, repo, model, timeout_s=timeout)
    except PromotionError as exc:
        raise _fail(exc) from exc
    finally:
        engine.dispose()
    console.print(f"{model} rolled back: version {info.version} serving")


@app.command()
def versions(model: Annotated[str, typer.Argument(help="Model name.")]) -> None:
    """Recorded versions of MODEL: status, parent, job, metrics, when promoted."""
    engine = make_engine(CommonSettings().database_url)
    try:
        rows = list_versions(engine, model)
    finally:
        engine.dispose()
    table = Table("version", "status", "parent", "job", "metrics", "promoted at (UTC)", "by")
    for row in rows:
        metrics = ", ".join(f"{k}={_short(v)}" for k, v in sorted(row.metrics.items()))
        when = row.promoted_at.strftime("%Y-%m-%d %H:%M:%S") if row.promoted_at else "-"
        table.add_row(
            str(row.version),
            row.status,
            "-" if row.parent_version is None else str(row.parent_version),
            "-" if row.job_id is None else str(row.job_id),
            metrics or "-",
            when,
            row.promoted_by or "-",
        )
    console.print(table if rows else f"no version of {model} recorded")


def _short(value: object) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
