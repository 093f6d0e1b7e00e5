"""`visionline chaos`: kill -9 every worker kind and every server of a local stack while frames
flow, then count what was lost or doubled (``visionline.chaos.run``)."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from visionline.settings import REPO_ROOT

console = Console()
COLUMNS = ("in_flight", "restarted_s", "recovered_s", "lost", "duplicated")
TOTALS = (
    "frames",
    "lost",
    "duplicated",
    "alerts",
    "missing_on_topic",
    "duplicated_on_topic",
    "alerts_lost",
    "alerts_doubled",
    "parts",
    "parts_lost",
    "parts_decided_twice",
    "dead_letters",
    "lag",
)


def fault_table(report: dict[str, Any]) -> Table:
    table = Table("fault", *COLUMNS, title=f"chaos run {report['run_id']}", title_justify="left")
    for row in report["faults"]:
        table.add_row(row["fault"], *(str(row[c]) for c in COLUMNS))
    return table


def totals_table(report: dict[str, Any]) -> Table:
    table = Table("checked", "count", title="after the run", title_justify="left")
    for key in TOTALS:
        table.add_row(key, str(report["totals"].get(key)))
    return table


def chaos_command(
    only: Annotated[
        list[str] | None,
        typer.Option("--fault", help="Only these components (repeatable): rules, redis, ..."),
    ] = None,
    settle_s: Annotated[float, typer.Option(help="Steady flow before each fault.")] = 10.0,
    fps: Annotated[float, typer.Option(help="Frames per second per camera.")] = 3.0,
    state_dir: Annotated[
        Path | None,
        typer.Option(help="A running stack's state folder; none: start one for the run."),
    ] = None,
    json_out: Annotated[Path, typer.Option("--json", help="Where to write the report.")] = (
        REPO_ROOT / "bench-results" / "chaos.json"
    ),
) -> None:
    """Frames from classify cameras and a conveyor line through the stack while each worker
    kind and each server is killed (kill -9) and restarted; then every frame, alert and part
    is counted: lost, doubled in PostgreSQL or on the alerts topic, dead-lettered."""
    from visionline.chaos.faults import plan_faults
    from visionline.chaos.run import ChaosConfig, run_chaos
    from visionline.stack import LocalStack
    from visionline.stack.config import free_port_settings

    config = ChaosConfig(fps=fps, settle_s=settle_s)

    def run(stack: LocalStack) -> dict[str, Any]:
        faults = plan_faults(stack, broker_on_disk(stack))
        faults = [f for f in faults if not only or f.component in only]
        return run_chaos(stack, faults, config, console.print)

    if state_dir is not None:
        report = run(LocalStack.from_state_dir(state_dir))
    else:
        folder = REPO_ROOT / ".state" / "chaos-run"
        if (folder / "stack.json").is_file():  # only ever a stack's own folder
            shutil.rmtree(folder)
        started = time.monotonic()
        with LocalStack(free_port_settings(folder, cameras=0)) as stack:
            console.print(f"stack ready in {time.monotonic() - started:.0f} s")
            report = run(stack)
    console.print(fault_table(report))
    console.print(totals_table(report))
    json_out.parent.mkdir(parents=True, exist_ok=True)
    json_out.write_text(json.dumps(report, indent=1))
    console.print(f"wrote {json_out}")
    console.print(
        "[green]nothing lost, nothing doubled[/]" if report["passed"] else "[red]FAILED[/]"
    )
    if not report["passed"]:
        raise typer.Exit(1)


def broker_on_disk(stack) -> bool:
    """Whether a restarted broker keeps its topics: a broker the stack started with its log on
    disk (an in-memory one comes back empty)."""
    settings = stack.settings
    return settings.kafka_bootstrap is None and getattr(settings, "broker_engine", "") == "kafka"
