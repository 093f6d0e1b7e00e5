"""The dataset mode of `visionline train anomaly` (``--dataset NAME --model MODEL``: an anomaly
model of the user's good items) and the anomaly branch of `visionline eval --model MODEL`
(chosen by the model's ``task`` in metadata). Without ``--dataset``, `train anomaly` still
trains the inspection line's part_anomaly (``visionline.training.cli``)."""

from __future__ import annotations

import time
from functools import partial
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from visionline.training import dataset_cli as dc
from visionline.training.anomaly_job import AnomalySettings

AnomalyDataset = Annotated[
    str | None,
    typer.Option(
        "--dataset", help="Dataset mode: NAME[@VERSION], a classification dataset of good items."
    ),
]
AnomalyModel = Annotated[
    str | None,
    typer.Option(
        "--model",
        callback=lambda name: name if name is None else dc._check_model_name(name),
        help="Dataset mode: the model's name in the model repository.",
    ),
]
Good = Annotated[
    str | None,
    typer.Option(help="Dataset mode: the class of good items (the others: anomalies, eval only)."),
]
Copies = Annotated[int, typer.Option(min=0, help="Dataset mode: nuisance copies of each image.")]
BankSize = Annotated[int, typer.Option(min=1, help="Dataset mode: patches in the memory bank.")]
TargetFpr = Annotated[
    float,
    typer.Option(min=0.0, max=1.0, help="False-positive rate the threshold allows on good images."),
]
EvalTargetFpr = Annotated[
    float | None,
    typer.Option(
        min=0.0,
        max=1.0,
        help="Anomaly models: the suggested threshold's false-positive rate (default: trained).",
    ),
]
HeldOut = Annotated[
    float, typer.Option(min=0.05, max=0.5, help="Dataset mode: share of good images held out.")
]


def train_dataset(
    dataset: str,
    model: str,
    good: str | None,
    settings: AnomalySettings,
    repository: Path | None,
    threads: int,
    card: bool,
    register: bool,
) -> None:
    """Train an anomaly model on DATASET's good images; install it as a candidate version of
    MODEL (served once `visionline models promote` serves it)."""
    from visionline.training.classifier_job import DatasetRef

    engine, store, row, data = dc._load(dataset)
    model_dir = dc._repository(repository) / model
    dc.console.print(
        f"training anomaly model {model} on {row.name}@{row.version[:12]}: "
        f"{len(data.images)} images, classes {', '.join(data.classes)}"
    )
    ref = DatasetRef(row.name, row.version)
    options = (good, threads, card)
    trained = partial(_train_and_evaluate, data, ref, store, model_dir, settings, *options)
    dc.finish_training(engine, model, trained, print_anomaly, register)


def _train_and_evaluate(data, ref, store, model_dir, settings, good, threads, card):
    from visionline.training.anomaly_job import add_figures, train_anomaly

    with dc.progress_stages() as stage:
        result = train_anomaly(
            data, ref, store, model_dir, settings, good=good, threads=threads, stage=stage
        )
        started = time.perf_counter()
        evaluation = _evaluate(result.folder, data, store, card, threads, stage)
    result.timings["evaluate_s"] = time.perf_counter() - started
    return dc.keep_evaluation(result, evaluation, ref, add_figures)


def _evaluate(folder, data, store, card: bool, threads: int, stage, target_fpr=None) -> dict:
    from visionline.training.anomaly_eval import evaluate

    thresholds = {"target_fpr": target_fpr}
    return dc.with_card(evaluate, stage, folder, data, store, card, threads, thresholds)


def eval_dataset(
    model: str | None,
    dataset: str | None,
    version: int | None,
    repository: Path | None,
    target_fpr: float | None,
    card: bool,
    json_out: Path | None,
    threads: int = 1,
    chart_out: Path | None = None,
) -> None:
    """`visionline eval --model MODEL [--dataset NAME[@VERSION]]` for an anomaly model: AUROC,
    false-positive rate and recall at its threshold, a threshold suggestion, the card."""
    folder, metadata, row, data, store = dc.evaluated(model, version, repository, dataset)
    with dc.progress_stages() as stage:
        try:
            result = _evaluate(folder, data, store, card, threads, stage, target_fpr)
        except ValueError as error:
            dc.console.print(f"[red]{error}[/]")
            raise typer.Exit(1) from None
    print_anomaly(dc.report(result, model, folder, row, metadata))
    dc.write_outputs(result, json_out, chart_out)


def _cell(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def print_anomaly(result: dict) -> None:
    dc.console.print(
        f"held-out images: {result['good']} good ({result['good_class']}), "
        f"{result['anomalies']} anomalies; AUROC {_cell(result['auroc'])}; at threshold "
        f"{result['threshold']:.4g}: false-positive rate {_cell(result['fpr'])}, "
        f"recall {_cell(result['recall'])}"
    )
    suggested = result["suggested"]
    if suggested["threshold"] is not None:
        dc.console.print(
            f"suggested threshold for a false-positive rate <= {suggested['target_fpr']:.1%} "
            f"on these good images: {suggested['threshold']:.4g} "
            f"(recall {_cell(suggested['recall'])})"
        )
    if "robustness" in result:
        _card(result)


def _card(result: dict) -> None:
    strengths = [str(s) for s in result["strengths"]]
    table = Table(
        "factor",
        *(f"AUROC @{s}" for s in strengths),
        *(f"FPR @{s}" for s in strengths),
        f"recall @{strengths[-1]}",
        title="robustness card (held-out images; FPR and recall at the threshold)",
        title_justify="left",
    )
    clean = result["clean"]
    repeat = len(strengths)
    table.add_row(
        "clean",
        *[_cell(clean["auroc"])] * repeat,
        *[_cell(clean["fpr"])] * repeat,
        _cell(clean["recall"]),
    )
    for factor, by_strength in result["robustness"].items():
        cells = [by_strength[s] for s in strengths]
        style = "bold red" if factor == result["worst_factor"] else None
        table.add_row(
            factor,
            *(_cell(c["auroc"]) for c in cells),
            *(_cell(c["fpr"]) for c in cells),
            _cell(cells[-1]["recall"]),
            style=style,
        )
    dc.console.print(table)
    worst = result["worst"]
    dc.console.print(
        f"worst factor: {result['worst_factor']} at strength {worst['strength']}: AUROC "
        f"{_cell(worst['auroc'])} ({_cell(worst['auroc_drop'])} below clean), false-positive "
        f"rate {_cell(worst['fpr'])} ({_cell(worst['fpr_rise'])} above clean)"
    )
