"""`visionline train ...` and `visionline eval`: the inspection models, reproducibly."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from visionline.models.spec import DEFAULT_RELEASE, DEFAULT_REPOSITORY
from visionline.training import anomaly_cli, dataset_cli, detector_cli

train_app = typer.Typer(
    help="Train the inspection models on generated line data and install them for Triton.",
    no_args_is_help=True,
)
console = Console()

RepositoryOption = Annotated[Path, typer.Option("--repository", help="Triton model repository.")]
VersionOption = Annotated[
    int, typer.Option(help="Version folder to write; 0: the next free one per model.")
]
SeedOption = Annotated[int, typer.Option(help="Seed of the rendered training data.")]


def _train(
    only: set[str] | None, repository: Path, version: int, seed: int, skip_existing: bool
) -> dict | None:
    from visionline.inspection.vision import INSPECTION_MODELS
    from visionline.model_registry.versions import next_version
    from visionline.training.fit import TrainConfig, train_all

    # torch, ONNX Runtime and supervision are imported on use, not by the CLI's other commands.

    names = set(only or INSPECTION_MODELS)
    if skip_existing:
        names = {n for n in names if next_version(repository / n) == 1}
        if not names:
            console.print("inspection models already trained (--force-retrain trains anew)")
            return None
    chosen = version or max(next_version(repository / n) for n in names)
    summary = train_all(repository, chosen, TrainConfig(seed=seed), log=console.print, only=names)
    console.print_json(json.dumps(summary, default=str))
    if names & {"part_anomaly", "defect_detector"}:
        from visionline.training.crop_models import ensure_part_crops

        version, built = ensure_part_crops(repository)  # for the pair served, by the files
        console.print(f"part_crops: version {version} {'built' if built else 'up to date'}")
    return summary


@train_app.command("all")
def train_all_command(
    repository: RepositoryOption = DEFAULT_REPOSITORY,
    version: VersionOption = 0,
    seed: SeedOption = 7,
    if_missing: Annotated[
        bool, typer.Option("--if-missing", help="Only models with no version yet (make models).")
    ] = False,
    release: Annotated[
        Path | None,
        typer.Option(
            help="Train from scratch in a scratch repository and write the result as a release "
            "here (models/release: the one `make models` assembles), with its evaluation."
        ),
    ] = None,
) -> None:
    """Part detector, anomaly model (PatchCore) and defect detector: about 35 min on 2 cores."""
    if release is None:
        _train(None, repository, version, seed, if_missing)
        return
    import tempfile

    from visionline.training.release import write_release

    with tempfile.TemporaryDirectory(prefix="visionline-train-") as scratch:
        summary = _train(None, Path(scratch), 1, seed, False) or {}
        command = f"visionline train all --release {release} --seed {seed}"
        write_release(Path(scratch), release, command, summary, log=console.print)


@train_app.command("release")
def release_command(
    trained: Annotated[Path, typer.Argument(help="A model repository with trained versions.")],
    release: Annotated[Path, typer.Option(help="The release folder to write.")] = DEFAULT_RELEASE,
    command: Annotated[
        str, typer.Option(help="The command that trained them (recorded).")
    ] = "visionline train all",
) -> None:
    """Package the newest trained version of each inspection model in TRAINED as a release."""
    from visionline.training.release import write_release

    write_release(trained, release, command, log=console.print)


@train_app.command("parts")
def train_parts(
    repository: RepositoryOption = DEFAULT_REPOSITORY,
    version: VersionOption = 0,
    seed: SeedOption = 7,
) -> None:
    """The part detector only."""
    _train({"part_detector"}, repository, version, seed, False)


@train_app.command("anomaly")
def train_anomaly(
    repository: RepositoryOption = DEFAULT_REPOSITORY,
    version: VersionOption = 0,
    seed: SeedOption = 7,
    dataset: anomaly_cli.AnomalyDataset = None,
    model: anomaly_cli.AnomalyModel = None,
    good: anomaly_cli.Good = None,
    copies: anomaly_cli.Copies = 2,
    heldout: anomaly_cli.HeldOut = 0.2,
    bank_size: anomaly_cli.BankSize = 2000,
    target_fpr: anomaly_cli.TargetFpr = 0.01,
    threads: dataset_cli.Threads = 2,
    card: dataset_cli.Card = True,
    register: dataset_cli.Register = True,
) -> None:
    """The PatchCore anomaly model only (good parts only). With --dataset NAME --model MODEL:
    an anomaly model of the dataset's good images (--good CLASS; the other classes are
    anomalies, for evaluation only), installed as a candidate version of MODEL."""
    if dataset is None and model is None:
        _train({"part_anomaly"}, repository, version, seed, False)
        return
    if dataset is None or model is None:
        raise typer.BadParameter("--dataset and --model go together", param_hint="--dataset")
    from visionline.training.anomaly_job import AnomalySettings

    settings = AnomalySettings(
        seed=seed,
        augment_copies=copies,
        heldout_fraction=heldout,
        bank_size=bank_size,
        target_fpr=target_fpr,
    )
    repo = None if repository == DEFAULT_REPOSITORY else repository
    anomaly_cli.train_dataset(dataset, model, good, settings, repo, threads, card, register)


@train_app.command("defects")
def train_defects(
    repository: RepositoryOption = DEFAULT_REPOSITORY,
    version: VersionOption = 0,
    seed: SeedOption = 7,
) -> None:
    """The defect detector (boxes, classes, masks) only."""
    _train({"defect_detector"}, repository, version, seed, False)


def eval_command(
    repository: RepositoryOption = DEFAULT_REPOSITORY,
    frames: Annotated[int, typer.Option(help="Frames per condition.")] = 24,
    strength: Annotated[float, typer.Option(help="Nuisance strength (0.5: medium).")] = 0.5,
    seed: Annotated[int, typer.Option(help="Seed of the held-out data.")] = 9001,
    json_out: Annotated[
        Path | None,
        typer.Option(
            "--json",
            help="Where to write the figures (inspection: bench-results/inspection-eval.json).",
        ),
    ] = None,
    model: dataset_cli.EvalModel = None,
    dataset: dataset_cli.EvalDataset = None,
    model_version: dataset_cli.EvalModelVersion = None,
    target_precision: dataset_cli.PrecisionOption = 0.95,
    target_fpr: anomaly_cli.EvalTargetFpr = None,
    card: dataset_cli.Card = True,
    chart: dataset_cli.ChartOption = None,
) -> None:
    """Score the installed inspection models per nuisance condition: table and JSON. With
    --model/--dataset: a classifier, detector or anomaly model trained on a dataset, on its
    held-out images, with its robustness card (visionline.training.dataset_cli)."""
    if model is not None or dataset is not None:
        repo = None if repository == DEFAULT_REPOSITORY else repository
        dataset_cli.check_chart(chart, card)
        thresholds = (target_precision, target_fpr)
        _eval_dataset(model, dataset, model_version, repo, thresholds, card, (json_out, chart))
        return
    if chart is not None:
        raise typer.BadParameter("the card's chart needs --model/--dataset", param_hint="--chart")
    from visionline.training.evaluate import KEYS, EvalConfig, evaluate

    json_out = json_out or Path("bench-results/inspection-eval.json")

    config = EvalConfig(seed=seed, strength=strength, frames_per_condition=frames)
    result = evaluate(repository, config, log=console.print)
    headers = (
        "part AP50",
        "image AUROC",
        "pixel AUROC",
        "part AUROC",
        "detector AUROC",
        "mAP50",
        "mask IoU",
    )
    table = Table("condition", "crops (bad)", *headers, title=f"versions {result['versions']}")
    for name, row in result["conditions"].items():
        table.add_row(
            name, f"{row['crops']} ({row['defective_crops']})", *(_cell(row[k]) for k in KEYS)
        )
    for name, row in result["summary"].items():
        if name != "clean":
            table.add_row(
                name.replace("nuisance_", "factors: "), "", *(_cell(row[k]) for k in KEYS)
            )
    console.print(table)
    json_out.parent.mkdir(parents=True, exist_ok=True)
    json_out.write_text(json.dumps(result, indent=1))
    console.print(f"wrote {json_out} ({result['seconds']} s)")


def _eval_dataset(
    model: str | None,
    dataset: str | None,
    version: int | None,
    repository: Path | None,
    thresholds: tuple[float, float | None],
    card: bool,
    outputs: tuple[Path | None, Path | None],
) -> None:
    """The dataset mode, by the version's ``task``: anomaly, detection, else classification.
    ``outputs``: where `--json` and `--chart` go."""
    task = dataset_cli.trained_task(model, version, repository)
    json_out, chart_out = outputs
    if task == "anomaly":
        fpr = thresholds[1]
        run_anomaly = anomaly_cli.eval_dataset
        run_anomaly(model, dataset, version, repository, fpr, card, json_out, chart_out=chart_out)
        return
    run = detector_cli.eval_dataset if task == "detection" else dataset_cli.eval_dataset
    run(model, dataset, version, repository, thresholds[0], card, json_out, chart_out=chart_out)


def _cell(value) -> str:
    return "-" if value is None else f"{value:.3f}"
