"""`visionline train classifier --dataset NAME --model MODEL` and the dataset mode of
`visionline eval` (`--dataset` / `--model`): the user's own classes, trained and evaluated."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from visionline.training.card_chart import CHART_FILE, EVALUATION_FILE, write_chart

console = Console()

DatasetOption = Annotated[
    str, typer.Option("--dataset", help="NAME (its newest version) or NAME@VERSION.")
]
MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,99}")


def _check_model_name(name: str) -> str:
    """A folder of the model repository and a Triton model name: no path, no dot."""
    if not MODEL_NAME.fullmatch(name):
        raise typer.BadParameter(f"{name!r}: letters, digits, '_' and '-', at most 100")
    return name


ModelOption = Annotated[
    str,
    typer.Option("--model", callback=_check_model_name, help="Model name in the model repository."),
]
RepositoryOption = Annotated[
    Path | None,
    typer.Option("--repository", help="Model repository (default: VISIONLINE_MODEL_REPOSITORY)."),
]
PrecisionOption = Annotated[
    float, typer.Option(min=0.0, max=1.0, help="Precision the suggested thresholds must meet.")
]


def _repository(repository: Path | None) -> Path:
    from visionline.settings import CommonSettings

    return repository or CommonSettings().model_repository


def _engine_and_store():
    from visionline.datasets.store import LocalDatasetStore
    from visionline.db import make_engine
    from visionline.settings import CommonSettings, DatasetSettings

    store = LocalDatasetStore(DatasetSettings().store_dir)
    return make_engine(CommonSettings().database_url), store


def _load(reference: str):
    """(engine, store, row, dataset) of a dataset version; exits with the reason if none."""
    from visionline.datasets.exporting import load_version
    from visionline.datasets.registry import DatasetNotFound

    engine, store = _engine_and_store()
    try:
        row, dataset = load_version(engine, store, reference)
    except DatasetNotFound as error:
        console.print(f"[red]{error}[/]")
        raise typer.Exit(1) from None
    return engine, store, row, dataset


@contextmanager
def progress_stages() -> Iterator[Callable[[str, int], Callable[[int], None]]]:
    """A rich progress display; yields ``stage(description, total) -> advance(n)``."""
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console) as progress:

        def stage(description: str, total: int) -> Callable[[int], None]:
            task = progress.add_task(description, total=total)
            return lambda n: progress.advance(task, n)

        yield stage


Epochs = Annotated[int, typer.Option(min=1, help="Epochs of the head.")]
Seed = Annotated[int, typer.Option(help="Seed of the split, augmentation and head.")]
Copies = Annotated[int, typer.Option(min=0, help="Nuisance-augmented copies of each image.")]
Hidden = Annotated[int, typer.Option(min=0, help="0: a linear head; else an MLP's width.")]
HeldOutShare = Annotated[
    float, typer.Option(min=0.05, max=0.5, help="Share held out when the dataset has no split.")
]
Threads = Annotated[int, typer.Option(min=1, help="CPU threads.")]
Cache = Annotated[bool, typer.Option(help="Reuse backbone features computed before.")]
Card = Annotated[bool, typer.Option(help="Compute the robustness card.")]
Register = Annotated[bool, typer.Option(help="Record the candidate in the model registry.")]
# The dataset mode of `visionline eval` (visionline.training.cli.eval_command).
EvalModel = Annotated[
    str | None,
    typer.Option(
        callback=lambda name: name if name is None else _check_model_name(name),
        help="Dataset mode: a classifier trained on a dataset.",
    ),
]
EvalDataset = Annotated[
    str | None,
    typer.Option(help="Dataset mode: NAME[@VERSION] (default: the one MODEL trained on)."),
]
EvalModelVersion = Annotated[
    int | None, typer.Option("--model-version", help="Dataset mode: default the newest.")
]
ChartOption = Annotated[
    Path | None,
    typer.Option("--chart", help="Dataset mode: write the robustness card as a PNG here."),
]


def check_chart(chart: Path | None, card: bool) -> None:
    """Before the evaluation runs: a chart needs the card."""
    if chart is not None and not card:
        raise typer.BadParameter("--chart draws the robustness card: drop --no-card")


def train_classifier_command(
    dataset: DatasetOption,
    model: ModelOption,
    epochs: Epochs = 60,
    seed: Seed = 7,
    copies: Copies = 4,
    hidden: Hidden = 0,
    heldout: HeldOutShare = 0.2,
    repository: RepositoryOption = None,
    threads: Threads = 2,
    cache: Cache = True,
    card: Card = True,
    target_precision: PrecisionOption = 0.95,
    register: Register = True,
) -> None:
    """Train a classifier with DATASET's classes on the ImageNet backbone; install it as a
    candidate version of MODEL (served once `visionline models promote` serves it)."""
    from visionline.settings import DatasetSettings
    from visionline.training.classifier import ClassifierSettings
    from visionline.training.classifier_job import DatasetRef

    engine, store, row, data = _load(dataset)
    settings = ClassifierSettings(
        epochs=epochs, seed=seed, augment_copies=copies, hidden=hidden, heldout_fraction=heldout
    )
    cache_dir = DatasetSettings().store_dir.parent / "feature-cache" if cache else None
    model_dir = _repository(repository) / model
    console.print(
        f"training {model} on {row.name}@{row.version[:12]}: {len(data.images)} "
        f"images, {len(data.classes)} classes"
    )
    ref = DatasetRef(row.name, row.version)
    options = (cache_dir, threads, card, target_precision)
    trained = partial(_train_and_evaluate, data, ref, store, model_dir, settings, *options)
    finish_training(engine, model, trained, print_evaluation, register)


def finish_training(
    engine, model: str, trained: Callable[[], tuple], show: Callable[[dict], None], register: bool
) -> None:
    """The end of every `train <kind> --dataset` command: ``trained()`` (a ValueError is the
    user's to fix: shown, exit 1), its evaluation shown, the candidate named and registered."""
    try:
        metadata, folder, evaluation = trained()
    except ValueError as error:
        console.print(f"[red]{error}[/]")
        raise typer.Exit(1) from None
    show(evaluation)
    console.print(
        f"candidate {model} version {metadata['version']} in {folder} "
        f"(timings {metadata['timings']})"
    )
    if register:
        register_job(engine, model, metadata)
    engine.dispose()


def register_job(engine, model: str, metadata: dict) -> int:
    """Record the trained version as a candidate job and say how to serve it."""
    from visionline.training.classifier_job import register_candidate

    job = register_candidate(engine, model, metadata["version"], metadata)
    console.print(
        f"registered as job {job}; serve it with: visionline models promote "
        f"{model} {metadata['version']} --job {job}"
    )
    return job


def _train_and_evaluate(
    data, ref, store, model_dir, settings, cache_dir, threads, card, target_precision
):
    import time

    from visionline.training.classifier_job import add_figures, train_classifier
    from visionline.training.dataset_eval import evaluate

    with progress_stages() as stage:
        result = train_classifier(
            data, ref, store, model_dir, settings, cache_dir=cache_dir, threads=threads, stage=stage
        )
        started = time.perf_counter()
        thresholds = {"target_precision": target_precision}
        evaluation = with_card(
            evaluate, stage, result.folder, data, store, card, threads, thresholds
        )
    result.timings["evaluate_s"] = time.perf_counter() - started
    return keep_evaluation(result, evaluation, ref, add_figures)


def with_card(evaluate, stage, folder, data, store, card: bool, threads: int, thresholds) -> dict:
    """``evaluate`` (a classifier's, detector's or anomaly model's) on the held-out images,
    with the robustness card (and its progress bar) unless ``card`` is off."""
    steps = stage("robustness card", _card_steps()) if card else None
    return evaluate(
        folder, data, store, robustness=card, threads=threads, advance=steps, **thresholds
    )


def keep_evaluation(result, evaluation: dict, ref, add_figures) -> tuple[dict, Path, dict]:
    """Beside the trained version: evaluation.json, the card's picture, the figures in its
    metadata; (metadata, folder, evaluation) for ``finish_training``."""
    (result.folder / EVALUATION_FILE).write_text(json.dumps(evaluation, indent=1))
    write_card_chart(result.folder, evaluation, ref)
    metadata = add_figures(result.folder, evaluation, result.timings)
    return metadata, result.folder, evaluation


def write_card_chart(folder: Path, evaluation: dict, ref) -> None:
    """``robustness.png`` beside ``evaluation.json`` when the card was computed."""
    if "robustness" not in evaluation:
        return
    about = {"model": folder.parent.name, "version": int(folder.name), "dataset": str(ref)}
    write_chart(folder / CHART_FILE, about | evaluation)


def _card_steps() -> int:
    from visionline.training import nuisance_images

    return len(nuisance_images.FACTORS) * len(nuisance_images.STRENGTHS)


def eval_dataset(
    model: str | None,
    dataset: str | None,
    version: int | None,
    repository: Path | None,
    target_precision: float,
    card: bool,
    json_out: Path | None,
    threads: int = 1,
    chart_out: Path | None = None,
) -> None:
    """`visionline eval --model MODEL [--dataset NAME[@VERSION]]`: a trained classifier's
    figures and robustness card on the dataset's held-out images."""
    from visionline.training.dataset_eval import evaluate

    folder, metadata, row, data, store = evaluated(model, version, repository, dataset)
    thresholds = {"target_precision": target_precision}
    with progress_stages() as stage:
        try:
            result = with_card(evaluate, stage, folder, data, store, card, threads, thresholds)
        except ValueError as error:
            console.print(f"[red]{error}[/]")
            raise typer.Exit(1) from None
    print_evaluation(report(result, model, folder, row, metadata))
    write_outputs(result, json_out, chart_out)


def evaluated(model: str | None, version: int | None, repository: Path | None, dataset):
    """(folder, metadata, dataset row, dataset, store) of `visionline eval --model MODEL
    [--model-version N] [--dataset NAME[@VERSION]]`: by default the dataset trained on."""
    from visionline.training.classifier_serving import read_metadata, version_folder

    if model is None:
        raise typer.BadParameter("--model is required with --dataset", param_hint="--model")
    try:
        folder = version_folder(_repository(repository) / model, version)
    except FileNotFoundError as error:
        console.print(f"[red]{error}[/]")
        raise typer.Exit(1) from None
    metadata = read_metadata(folder)
    engine, store, row, data = _load(dataset or metadata["dataset"]["reference"])
    engine.dispose()
    return folder, metadata, row, data, store


def trained_task(model: str | None, version: int | None, repository: Path | None) -> str | None:
    """The ``task`` in the metadata of the version `visionline eval --model MODEL` names
    (classification, detection, anomaly); None when there is none to read."""
    from visionline.training.classifier_serving import read_metadata, version_folder

    if model is None:
        return None
    try:
        return read_metadata(version_folder(_repository(repository) / model, version)).get("task")
    except (FileNotFoundError, ValueError):
        return None


def report(result: dict, model: str | None, folder: Path, row, metadata: dict) -> dict:
    """The evaluation with what was evaluated on what: model, version, dataset, trained on."""
    result.update(
        model=model,
        version=int(folder.name),
        dataset=f"{row.name}@{row.version}",
        trained_on=metadata["dataset"]["reference"],
    )
    return result


def write_outputs(result: dict, json_out: Path | None, chart_out: Path | None) -> None:
    """`eval --json FILE` and `--chart FILE`: the evaluation, and its card as a PNG."""
    if json_out is not None:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(result, indent=1))
        console.print(f"wrote {json_out}")
    if chart_out is not None:
        write_chart(chart_out, result)
        console.print(f"wrote {chart_out}")


def print_evaluation(result: dict) -> None:
    console.print(
        f"held-out images {result['images']}: accuracy {result['accuracy']:.3f}, "
        f"macro F1 {result['macro_f1']:.3f}"
    )
    _per_class_table(result)
    if "robustness" in result:
        _robustness_table(result)


def _per_class_table(result: dict) -> None:
    classes = result["classes"]
    per_class = Table(
        "class",
        "precision",
        "recall",
        "F1",
        "support",
        *classes,
        "threshold",
        title="per class (rows: true; columns: predicted)",
        title_justify="left",
    )
    thresholds = result["thresholds"]["per_class"]
    for name, row in zip(classes, result["confusion_matrix"], strict=True):
        figures, cut = result["per_class"][name], thresholds[name]["threshold"]
        per_class.add_row(
            name,
            *(f"{figures[k]:.3f}" for k in ("precision", "recall", "f1")),
            str(figures["support"]),
            *map(str, row),
            "-" if cut is None else f"{cut:.3f}",
        )
    console.print(per_class)
    overall = result["thresholds"]["overall"]
    target = result["thresholds"]["target_precision"]
    if overall["threshold"] is None:
        console.print(f"no score threshold reaches precision {target} on the held-out images")
    else:
        console.print(
            f"score threshold for precision {target}: {overall['threshold']:.3f} "
            f"(keeps {overall['coverage']:.0%} of the predictions)"
        )


def _robustness_table(result: dict) -> None:
    strengths = [str(s) for s in result["strengths"]]
    table = Table(
        "factor",
        *(f"acc @{s}" for s in strengths),
        *(f"F1 @{s}" for s in strengths),
        f"F1 drop @{strengths[-1]}",
        f"true-class score @{strengths[-1]}",
        title="robustness card (held-out images)",
        title_justify="left",
    )
    clean = result["clean"]
    table.add_row(
        "clean",
        *[f"{clean['accuracy']:.3f}"] * len(strengths),
        *[f"{clean['macro_f1']:.3f}"] * len(strengths),
        "",
        f"{clean['true_class_score']:.3f}",
    )
    for factor, by_strength in result["robustness"].items():
        cells = [by_strength[s] for s in strengths]
        style = "bold red" if factor == result["worst_factor"] else None
        table.add_row(
            factor,
            *(f"{c['accuracy']:.3f}" for c in cells),
            *(f"{c['macro_f1']:.3f}" for c in cells),
            f"{cells[-1]['macro_f1_drop']:.3f}",
            f"{cells[-1]['true_class_score']:.3f}",
            style=style,
        )
    console.print(table)
    worst = result["worst"]
    console.print(
        f"worst factor: {result['worst_factor']} (macro F1 {worst['macro_f1']:.3f} at "
        f"strength {worst['strength']}, {worst['macro_f1_drop']:.3f} below clean; true-class "
        f"score {worst['true_class_score']:.3f} against {result['clean']['true_class_score']:.3f})"
    )
