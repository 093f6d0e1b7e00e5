"""`visionline acceptance run`: the acceptance run of the inspection use case, one command."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from visionline.acceptance.run import RunConfig, figures_table, plan, run_acceptance
from visionline.inspection.config import config_for, load_inspection
from visionline.settings import REPO_ROOT

app = typer.Typer(
    help="Acceptance of inspection on conveyor lines: end-to-end runs, replays.",
    no_args_is_help=True,
)
console = Console()


@app.command("run")
def run(
    parts: Annotated[int, typer.Option(help="Whole parts to pass, over all cameras.")] = 500,
    cameras: Annotated[int, typer.Option(help="Conveyor cameras (line-1, line-2, ...).")] = 3,
    fps: Annotated[float, typer.Option(help="Frames per second per camera.")] = 10.0,
    seed: Annotated[int, typer.Option(help="Seed of the lines.")] = 4242,
    bootstrap: Annotated[
        str | None, typer.Option(help="Use a running stack's broker instead of starting one.")
    ] = None,
    state_dir: Annotated[Path, typer.Option(help="State of the stack started for the run.")] = (
        REPO_ROOT / ".state" / "inspection-run"
    ),
    json_out: Annotated[Path, typer.Option("--json", help="Where to write the figures.")] = (
        REPO_ROOT / "bench-results" / "inspection-acceptance.json"
    ),
) -> None:
    """Parts with mixed nuisances through the real stack; per-part recall and precision."""
    config = RunConfig(parts=parts, cameras=cameras, fps=fps, seed=seed)
    figures = run_acceptance(config, state_dir, console, bootstrap=bootstrap)
    console.print(figures_table(figures))
    json_out.parent.mkdir(parents=True, exist_ok=True)
    json_out.write_text(json.dumps(figures, indent=1))
    console.print(f"wrote {json_out}")
    ok = figures["recall"] >= 0.95 and figures["precision"] >= 0.95
    ok = ok and figures["duplicate_alerts"] == 0
    console.print("[green]targets met[/]" if ok else "[red]targets missed[/]")


@app.command("replay")
def replay(
    frames: Annotated[int, typer.Option(help="Frames per camera.")] = 150,
    cameras: Annotated[int, typer.Option(help="Conveyor cameras (line-1, line-2, ...).")] = 3,
    seed: Annotated[int, typer.Option(help="Seed of the lines (not the acceptance run's).")] = 777,
    rules_file: Annotated[Path, typer.Option(help="Rules file with the inspection: list.")] = (
        REPO_ROOT / "infra" / "rules.yaml"
    ),
    camera: Annotated[str, typer.Option(help="Whose inspection settings to start from.")] = (
        "line-1"
    ),
    repository: Annotated[Path, typer.Option(help="Triton model repository.")] = (
        REPO_ROOT / "triton_models"
    ),
) -> None:
    """Tune decisions without the stack: the lines through the models and tracker in-process,
    per-part recall and precision for the configured rules and for nearby thresholds."""
    from rich.table import Table

    # Imported on use: ONNX Runtime and supervision (seconds) would slow down every command.
    from visionline.acceptance.replay import observe, replay_score, rule_grid
    from visionline.inspection.vision import CropDecoding

    base = config_for(load_inspection(rules_file), camera)
    if base is None:
        raise typer.BadParameter(f"no inspection entry in {rules_file} names {camera}")
    runs = plan(cameras, 0, base.fps, seed)
    low = CropDecoding(min_defect_score=0.1)  # keep weak defects: the grid decides
    observed = [observe(r, frames, repository, low, log=console.print) for r in runs]
    table = Table(
        "rule",
        "threshold",
        "recall",
        "precision",
        "parts",
        "defective",
        title=f"Per-part decisions, {cameras} lines x {frames} frames",
    )
    for rule, threshold, config in rule_grid(base):
        f = replay_score(observed, config)
        table.add_row(
            rule,
            threshold,
            f"{f['recall']:.3f}",
            f"{f['precision']:.3f}",
            str(f["parts"]),
            str(f["defective"]),
        )
    console.print(table)
