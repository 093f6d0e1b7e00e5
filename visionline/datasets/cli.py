"""`visionline datasets`: import labelled images as versions, list them, show one, export."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from visionline.annotations.cli import format_check
from visionline.datasets.entries import Problem
from visionline.datasets.readers import FORMATS

if TYPE_CHECKING:
    from visionline.datasets.importing import ImportResult

app = typer.Typer(
    help="Your labelled images as immutable, content-addressed dataset versions.",
    no_args_is_help=True,
)
console = Console()
REPORT_LINES = 200  # the report names at most this many files, then counts the rest


Format = Annotated[
    str,
    typer.Option("--format", callback=format_check(FORMATS), help=f"One of: {', '.join(FORMATS)}."),
]


def _engine_and_store():
    from visionline.datasets.store import LocalDatasetStore
    from visionline.db import make_engine
    from visionline.settings import CommonSettings, DatasetSettings

    store = LocalDatasetStore(DatasetSettings().store_dir)
    return make_engine(CommonSettings().database_url), store


def print_problems(problems: list[Problem], title: str) -> None:
    table = Table("file", "reason", title=title, title_justify="left")
    for problem in problems[:REPORT_LINES]:
        table.add_row(problem.file, problem.reason)
    console.print(table)
    if len(problems) > REPORT_LINES:
        console.print(f"... and {len(problems) - REPORT_LINES} more")


@app.command("import")
def import_command(
    path: Annotated[Path, typer.Argument(help="The dataset folder.")],
    fmt: Format,
    name: Annotated[str, typer.Option(help="Dataset name (a new version of it is made).")],
    skip_invalid: Annotated[
        bool, typer.Option(help="Import the valid images and record the files skipped, and why.")
    ] = False,
    by: Annotated[str | None, typer.Option(help="Who imports it (default: the OS user).")] = None,
) -> None:
    """Check a folder of labelled images and import it as a new dataset version."""
    from visionline.datasets.importing import import_dataset

    engine, store = _engine_and_store()
    with import_errors(skip_invalid):
        result = import_dataset(
            path, fmt, name, engine, store, created_by=by, skip_invalid=skip_invalid
        )
    print_import(result)


@app.command("from-labels")
def from_labels_command(
    camera: Annotated[
        list[str], typer.Option(help="A camera whose labelled frames to take (repeatable).")
    ],
    name: Annotated[str, typer.Option(help="Dataset name (a new version of it is made).")],
    hours: Annotated[
        float, typer.Option(min=0.0, help="Frames captured in the last HOURS hours.")
    ] = 24.0,
    skip_invalid: Annotated[
        bool,
        typer.Option(help="Make the version of the frames found; record those missing, and why."),
    ] = False,
    by: Annotated[str | None, typer.Option(help="Who makes it (default: the OS user).")] = None,
) -> None:
    """Frames labelled in production (the labels feedback topic, as the labels worker stored
    them) as a new dataset version: each frame's image read back from the raw-frames topic."""
    from visionline.datasets.labelled_frames import replay_labelled, store_labelled_frames
    from visionline.settings import CommonSettings

    engine, store = _engine_and_store()
    end = time.time()
    start = end - hours * 3600
    cameras = sorted(set(camera))
    labels, frames = replay_labelled(engine, CommonSettings().kafka_bootstrap, cameras, start, end)
    console.print(f"{len(labels)} labelled frames of {', '.join(cameras)}, {len(frames)} found")
    source = f"labels of {', '.join(cameras)} captured {_utc(start)} to {_utc(end)}"
    with import_errors(skip_invalid):
        result = store_labelled_frames(
            frames, labels, name, source, engine, store, created_by=by, skip_invalid=skip_invalid
        )
    print_import(result)


def _utc(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@contextmanager
def import_errors(skip_invalid: bool) -> Iterator[None]:
    """An import's problems as a report and exit 1; a wrong argument as exit 2."""
    from visionline.datasets.importing import InvalidDataset

    try:
        yield
    except InvalidDataset as error:
        print_problems(error.problems, f"{error}: nothing imported")
        if error.problems and not skip_invalid:
            console.print("fix these, or give --skip-invalid to import the rest")
        raise typer.Exit(1) from None
    except ValueError as error:
        console.print(f"[red]{error}[/]")
        raise typer.Exit(2) from None


def print_import(result: ImportResult) -> None:
    if result.skipped:
        print_problems(result.skipped, f"skipped {len(result.skipped)} file(s)")
    name, summary = result.name, result.dataset.summary()
    if not result.created:
        console.print(f"{name}@{result.version[:12]} already holds this content: no new version")
        return
    console.print(
        f"imported {name}@{result.version[:12]}: {summary['images']} images, "
        f"{len(result.dataset.classes)} classes ({result.dataset.task})"
    )


@app.command("list")
def list_command(
    name: Annotated[str | None, typer.Argument(help="Only this dataset's versions.")] = None,
) -> None:
    """Every dataset version, newest first within each dataset."""
    from visionline.datasets.registry import list_versions

    engine, _ = _engine_and_store()
    table = Table("name", "version", "task", "format", "images", "classes", "skipped", "by", "at")
    for row in list_versions(engine, name):
        table.add_row(
            row.name,
            row.version[:12],
            row.task,
            row.format,
            str(row.image_count),
            str(len(row.classes)),
            str(len(row.skipped)),
            row.created_by,
            row.created_at.strftime("%Y-%m-%d %H:%M:%S"),
        )
    console.print(table)


@app.command("show")
def show_command(
    reference: Annotated[str, typer.Argument(help="NAME (newest version) or NAME@VERSION.")],
) -> None:
    """A version's classes, counts per class and split, image sizes and skipped files."""
    from visionline.datasets.registry import DatasetNotFound, find_version

    engine, _ = _engine_and_store()
    try:
        row = find_version(engine, reference)
    except DatasetNotFound as error:
        console.print(f"[red]{error}[/]")
        raise typer.Exit(1) from None
    console.print(f"[bold]{row.name}@{row.version}[/]")
    console.print(f"task {row.task}, imported from {row.format} ({row.source})")
    console.print(f"by {row.created_by} at {row.created_at.isoformat()}")
    console.print(f"{row.image_count} images; sizes (w x h) {_sizes(row.sizes)}")
    classes = Table("class", "count", title="per class", title_justify="left")
    for label, count in sorted(row.counts["per_class"].items()):
        classes.add_row(label, str(count))
    console.print(classes)
    per_split = sorted(row.counts["per_split"].items())  # PostgreSQL's JSONB orders keys its way
    splits = ", ".join(f"{split} {count}" for split, count in per_split)
    console.print(f"per split: {splits}")
    if row.skipped:
        skipped = [Problem(item["file"], item["reason"]) for item in row.skipped]
        print_problems(skipped, f"skipped at import: {len(skipped)} file(s)")


def _sizes(sizes: dict) -> str:
    return ", ".join(f"{key} {sizes[key][0]}x{sizes[key][1]}" for key in ("min", "median", "max"))


@app.command("export")
def export_command(
    reference: Annotated[str, typer.Argument(help="NAME (newest version) or NAME@VERSION.")],
    fmt: Format,
    out: Annotated[Path, typer.Option(help="A new (or empty) folder to write to.")],
) -> None:
    """Write a dataset version in one of the formats."""
    from visionline.datasets.exporting import export_dataset, load_version
    from visionline.datasets.registry import DatasetNotFound

    engine, store = _engine_and_store()
    try:
        row, dataset = load_version(engine, store, reference)
        export_dataset(dataset, store, fmt, out)
    except (DatasetNotFound, ValueError, FileExistsError) as error:
        console.print(f"[red]{error}[/]")
        raise typer.Exit(1) from None
    console.print(
        f"wrote {row.name}@{row.version[:12]} ({len(dataset.images)} images) as {fmt} to {out}"
    )
