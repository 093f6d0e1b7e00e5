"""`visionline train detector --dataset NAME --model MODEL` and the detector branch of
`visionline eval --model MODEL --dataset NAME` (chosen by the model's ``task`` in metadata)."""

from __future__ import annotations

import time
from functools import partial
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from visionline.training import dataset_cli as dc

DetEpochs = Annotated[int, typer.Option(min=1, help="Epochs of the detection head.")]
ScoreThreshold = Annotated[
    float, typer.Option(min=0.0, max=1.0, help="Score threshold precision/recall are read at.")
]


def train_detector_command(
    dataset: dc.DatasetOption,
    model: dc.ModelOption,
    epochs: DetEpochs = 40,
    seed: dc.Seed = 7,
    copies: dc.Copies = 4,
    heldout: dc.HeldOutShare = 0.2,
    score_threshold: ScoreThreshold = 0.3,
    repository: dc.RepositoryOption = None,
    threads: dc.Threads = 2,
    card: dc.Card = True,
    target_precision: dc.PrecisionOption = 0.95,
    register: dc.Register = True,
) -> None:
    """Train a detector with DATASET's classes on the ImageNet backbone; install it as a
    candidate version of MODEL (served once `visionline models promote` serves it)."""
    from visionline.training.classifier_job import DatasetRef
    from visionline.training.detector import DetectorSettings

    engine, store, row, data = dc._load(dataset)
    settings = DetectorSettings(
        epochs=epochs,
        seed=seed,
        augment_copies=copies,
        heldout_fraction=heldout,
        score_threshold=score_threshold,
    )
    model_dir = dc._repository(repository) / model
    boxes = sum(len(image.boxes) for image in data.images)
    dc.console.print(
        f"training {model} on {row.name}@{row.version[:12]}: {len(data.images)} images, "
        f"{boxes} boxes, {len(data.classes)} classes"
    )
    ref = DatasetRef(row.name, row.version)
    options = (threads, card, target_precision)
    trained = partial(_train_and_evaluate, data, ref, store, model_dir, settings, *options)
    dc.finish_training(engine, model, trained, print_detection, register)


def _train_and_evaluate(data, ref, store, model_dir, settings, threads, card, target_precision):
    from visionline.training.detector_eval import evaluate
    from visionline.training.detector_job import add_figures, train_detector

    with dc.progress_stages() as stage:
        result = train_detector(data, ref, store, model_dir, settings, threads=threads, stage=stage)
        started = time.perf_counter()
        thresholds = {"target_precision": target_precision}
        evaluation = dc.with_card(
            evaluate, stage, result.folder, data, store, card, threads, thresholds
        )
    result.timings["evaluate_s"] = time.perf_counter() - started
    return dc.keep_evaluation(result, evaluation, ref, add_figures)


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
    """`visionline eval --model MODEL [--dataset NAME[@VERSION]]` for a trained detector:
    mAP, per-class AP, precision/recall and the robustness card on the held-out images."""
    folder, metadata, row, data, store = dc.evaluated(model, version, repository, dataset)
    try:
        result = _evaluate(folder, data, store, target_precision, card, threads)
    except ValueError as error:
        dc.console.print(f"[red]{error}[/]")
        raise typer.Exit(1) from None
    print_detection(dc.report(result, model, folder, row, metadata))
    dc.write_outputs(result, json_out, chart_out)


def _evaluate(folder: Path, data, store, target_precision: float, card: bool, threads: int):
    from visionline.training.detector_eval import evaluate

    thresholds = {"target_precision": target_precision}
    with dc.progress_stages() as stage:
        return dc.with_card(evaluate, stage, folder, data, store, card, threads, thresholds)


def print_detection(result: dict) -> None:
    dc.console.print(
        f"held-out images {result['images']} ({result['boxes']} boxes): mAP@0.5 "
        f"{result['map50']:.3f}, mAP@0.5:0.95 {result['map50_95']:.3f}; at score "
        f"{result['score_threshold']}: precision {result['precision']:.3f}, "
        f"recall {result['recall']:.3f}"
    )
    table = Table("class", "AP@0.5", "AP@0.5:0.95", "precision", "recall", "boxes")
    for name, row in result["per_class"].items():
        ap50, ap = row["ap50"], row["ap50_95"]
        table.add_row(
            name,
            "-" if ap50 is None else f"{ap50:.3f}",
            "-" if ap is None else f"{ap:.3f}",
            f"{row['precision']:.3f}",
            f"{row['recall']:.3f}",
            str(row["support"]),
        )
    dc.console.print(table)
    if "robustness" in result:
        _robustness_table(result)


def _robustness_table(result: dict) -> None:
    strengths = [str(s) for s in result["strengths"]]
    table = Table(
        "factor",
        *(f"mAP50 @{s}" for s in strengths),
        f"mAP50 drop @{strengths[-1]}",
        title="robustness card (held-out images)",
        title_justify="left",
    )
    table.add_row("clean", *[f"{result['clean']['map50']:.3f}"] * len(strengths), "")
    for factor, by_strength in result["robustness"].items():
        cells = [by_strength[s] for s in strengths]
        style = "bold red" if factor == result["worst_factor"] else None
        table.add_row(
            factor,
            *(f"{c['map50']:.3f}" for c in cells),
            f"{cells[-1]['map50_drop']:.3f}",
            style=style,
        )
    dc.console.print(table)
    worst = result["worst"]
    dc.console.print(
        f"worst factor: {result['worst_factor']} (mAP@0.5 {worst['map50']:.3f} at strength "
        f"{worst['strength']}, {worst['map50_drop']:.3f} below clean)"
    )
