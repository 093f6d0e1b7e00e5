"""`visionline labels accuracy`: outcomes of predictions against true labels, from PostgreSQL.

Finds the database through the common settings (VISIONLINE_DATABASE_URL); the default is the
local stack's.
"""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from visionline.db import make_engine
from visionline.labels.store import accuracy
from visionline.settings import CommonSettings

app = typer.Typer(
    help="True labels joined to predictions: accuracy per model version.", no_args_is_help=True
)
console = Console()


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def accuracy_table(rows: list) -> Table:
    table = Table(
        "camera",
        "model",
        "version",
        "kind",
        "tp",
        "fp",
        "fn",
        "tn",
        "precision",
        "recall",
        "f1",
        title="accuracy against true labels",
    )
    for r in rows:
        table.add_row(
            r.camera_id,
            r.model,
            r.version,
            r.kind,
            str(r.tp),
            str(r.fp),
            str(r.fn),
            str(r.tn),
            _rate(r.precision),
            _rate(r.recall),
            _rate(r.f1),
        )
    return table


@app.command("accuracy")
def accuracy_command(
    camera: Annotated[str | None, typer.Option(help="Only this camera.")] = None,
    model: Annotated[str | None, typer.Option(help="Only this model.")] = None,
    since: Annotated[
        float | None, typer.Option(help="Only frames captured at or after (epoch seconds).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON list instead.")] = False,
) -> None:
    """Per camera, model, version and kind (frame_part, tracked_part, frame_object): tp, fp, fn, tn,
    precision, recall and F1 of the defective decision."""
    engine = make_engine(CommonSettings().database_url)
    try:
        rows = accuracy(engine, camera_id=camera, model=model, since=since)
    finally:
        engine.dispose()
    if as_json:
        typer.echo(json.dumps([r.as_dict() for r in rows], indent=2))
        return
    if not rows:
        console.print("[yellow]no outcomes yet: no labelled frame was joined to a prediction[/]")
        return
    console.print(accuracy_table(rows))
