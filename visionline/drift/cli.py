"""``visionline drift``: the drift-to-retraining loop shown end to end."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from visionline.drift.scenario import ScenarioConfig, figures_tables, run_scenario
from visionline.inspection.config import config_for, load_inspection
from visionline.settings import REPO_ROOT

app = typer.Typer(help="Drift detection and the retraining it triggers.", no_args_is_help=True)
console = Console()


@app.command("scenario")
def scenario(
    before: Annotated[int, typer.Option(help="Frames per camera before the glare starts.")] = 200,
    ramp: Annotated[int, typer.Option(help="Frames over which the glare rises.")] = 100,
    after: Annotated[int, typer.Option(help="Frames once the new version serves.")] = 200,
    glare: Annotated[float, typer.Option(min=0.1, max=1.0, help="Final glare strength.")] = 1.0,
    drift_camera: Annotated[str, typer.Option(help="The camera that drifts.")] = "drift-line-2",
    labels_delay: Annotated[float, typer.Option(help="Seconds until a frame's label.")] = 10.0,
    seed: Annotated[int, typer.Option(help="Seed of the lines.")] = 2026,
    max_frames: Annotated[int, typer.Option(help="Frames per camera at most.")] = 1500,
    rules_file: Annotated[Path, typer.Option(help="Rules file (its drift-line-* fps).")] = (
        REPO_ROOT / "infra" / "rules.yaml"
    ),
    repository: Annotated[Path, typer.Option(help="Models to start from (copied).")] = (
        REPO_ROOT / "triton_models"
    ),
    state_dir: Annotated[Path, typer.Option(help="State of the stack started for the run.")] = (
        REPO_ROOT / ".state" / "drift-scenario"
    ),
    json_out: Annotated[Path, typer.Option("--json", help="Where to write the figures.")] = (
        REPO_ROOT / "bench-results" / "drift-scenario.json"
    ),
) -> None:
    """Glare drifts on one of three cameras: drift event, retraining on its labelled frames,
    promotion through Triton, and per-part F1 before, during and after, through the real stack."""
    entry = config_for(load_inspection(rules_file), drift_camera)
    if entry is None:
        raise typer.BadParameter(f"no inspection entry in {rules_file} matches {drift_camera}")
    config = ScenarioConfig(
        before=before,
        ramp=ramp,
        after=after,
        glare=glare,
        drift_camera=drift_camera,
        labels_delay_s=labels_delay,
        seed=seed,
        max_frames=max_frames,
        fps=entry.fps,
    )
    figures = run_scenario(config, state_dir.absolute(), repository.absolute(), console)
    for table in figures_tables(figures):
        console.print(table)
    json_out.parent.mkdir(parents=True, exist_ok=True)
    json_out.write_text(json.dumps(figures, indent=1, default=str))
    console.print(f"wrote {json_out}")
    for name, ok in figures["targets"].items():
        console.print(f"{'[green]met' if ok else '[red]missed'}[/]: {name}")
