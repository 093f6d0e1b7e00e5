"""`visionline chaos`: kill -9 every worker kind and every server of a local stack while frames
flow, then count what was lost or doubled (``visionline.chaos.run``)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from visionline.settings import REPO_ROOT

console = Console()
COLUMNS = ("in_flight", "restarted_s", "consuming_s", "recovered_s", "lost", "duplicated")
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
    "parts_rejected_late",
    "dead_letters",
    "lag",
)


def fault_table(report: dict[str, Any]) -> Table:
    table = Table("fault", *COLUMNS, title=f"chaos run {report['run_id']}", title_justify="left")
    for row in report["faults"]:
        table.add_row(row["fault"], *(cell(row, c) for c in COLUMNS))
    return table


def cell(row: dict[str, Any], column: str) -> str:
    if column == "consuming_s" and row[column] is None:
        return "-"  # not a consumer (a server, the API); a restart that never came says None
    return str(row[column])


def totals_table(report: dict[str, Any]) -> Table:
    table = Table("checked", "count", title="after the run", title_justify="left")
    for key in TOTALS:
        table.add_row(key, str(report["totals"].get(key)))
    return table


StateDir = Annotated[
    Path | None,
    typer.Option(help="A running stack's state folder; none: start one for the run."),
]


def chaos_command(
    only: Annotated[
        list[str] | None,
        typer.Option("--fault", help="Only these components (repeatable): rules, redis, ..."),
    ] = None,
    settle_s: Annotated[float, typer.Option(help="Steady flow before each fault.")] = 10.0,
    fps: Annotated[float, typer.Option(help="Frames per second per camera.")] = 3.0,
    cluster: Annotated[
        bool,
        typer.Option(
            "--cluster",
            help="Run the stack on a three-node Kafka cluster of its own (replication 3) and "
            "kill the leader of a partition too (fault component: kafka-cluster).",
        ),
    ] = False,
    state_dir: StateDir = None,
    json_out: Annotated[Path, typer.Option("--json", help="Where to write the report.")] = (
        REPO_ROOT / "bench-results" / "chaos.json"
    ),
) -> None:
    """Frames from classify cameras and a conveyor line through the stack while each worker
    kind and each server is killed (kill -9) and restarted, PostgreSQL and Redis also stopped
    and paused; then every frame, alert and part is counted: lost, doubled in PostgreSQL or on
    the alerts topic, dead-lettered."""
    from visionline.chaos.faults import plan_faults
    from visionline.chaos.run import ChaosConfig, run_chaos

    def run(stack, kafka=None) -> dict[str, Any]:
        faults = plan_faults(stack, broker_on_disk(stack), kafka)
        faults = [f for f in faults if not only or f.component in only]
        return run_chaos(stack, faults, ChaosConfig(fps=fps, settle_s=settle_s), console.print)

    if cluster:
        report = on_cluster_stack("chaos-cluster-run", run)
    else:
        report = on_stack(state_dir, "chaos-run", run)
    console.print(fault_table(report))
    finish(report, json_out)


def soak_command(
    frames: Annotated[int, typer.Option(help="Frames to send, all cameras together.")] = 100_000,
    fps: Annotated[float, typer.Option(help="Frames per second per camera.")] = 4.0,
    cameras: Annotated[int, typer.Option(help="Classify cameras.")] = 3,
    lines: Annotated[int, typer.Option(help="Conveyor lines (inspection).")] = 1,
    state_dir: StateDir = None,
    json_out: Annotated[Path, typer.Option("--json", help="Where to write the report.")] = (
        REPO_ROOT / "bench-results" / "soak.json"
    ),
) -> None:
    """A long steady run: FRAMES frames through the stack with the resident memory of every
    process sampled; then the same counts as `visionline chaos`, and each process's memory
    at the start, after warm-up, at its peak and at the end."""
    from visionline.chaos.run import ChaosConfig, run_chaos

    config = ChaosConfig(
        classify_cameras=cameras, lines=lines, fps=fps, frames=frames, settle_s=10.0
    )
    report = on_stack(state_dir, "soak-run", lambda s: run_chaos(s, [], config, console.print))
    console.print(memory_table(report))
    finish(report, json_out)


def memory_table(report: dict[str, Any]) -> Table:
    keys = ("start", "after_warmup", "peak", "end", "growth")
    table = Table("process", *(f"{k} MiB" for k in keys), title="resident memory")
    for name, curve in sorted(report["memory_mb"].items()):
        table.add_row(name, *(str(curve[k]) for k in keys))
    return table


def fresh_state_folder(name: str) -> Path:
    """``.state/<name>``, emptied of an earlier run's stack (only ever a stack's own folder)."""
    from visionline.stack.state import fresh_stack_folder

    return fresh_stack_folder(REPO_ROOT / ".state" / name)


def on_stack(state_dir: Path | None, folder_name: str, run: Callable[[Any], dict]) -> dict:
    """``run(stack)`` on the running stack of ``state_dir``, or on one started for it."""
    from visionline.stack import LocalStack
    from visionline.stack.config import free_port_settings

    if state_dir is not None:
        return run(LocalStack.from_state_dir(state_dir))
    folder = fresh_state_folder(folder_name)
    started = time.monotonic()
    with LocalStack(free_port_settings(folder, cameras=0)) as stack:
        console.print(f"stack ready in {time.monotonic() - started:.0f} s")
        return run(stack)


def on_cluster_stack(folder_name: str, run: Callable[[Any, Any], dict]) -> dict:
    """``run(stack, cluster)`` on a stack started for it on a three-node cluster of its own."""
    from visionline.stack import LocalStack
    from visionline.stack.config import free_port_settings
    from visionline.stack.kafka_cluster import KafkaCluster

    folder = fresh_state_folder(folder_name)
    started = time.monotonic()
    kafka = KafkaCluster(folder / "kafka-cluster").start()
    console.print(f"three Kafka nodes up in {time.monotonic() - started:.0f} s: {kafka.bootstrap}")
    try:
        settings = free_port_settings(folder, cameras=0, kafka_bootstrap=kafka.bootstrap)
        with LocalStack(settings) as stack:
            console.print(f"stack ready in {time.monotonic() - started:.0f} s")
            return run(stack, kafka)
    finally:
        kafka.stop()


def finish(report: dict[str, Any], json_out: Path) -> None:
    console.print(totals_table(report))
    json_out.parent.mkdir(parents=True, exist_ok=True)
    json_out.write_text(json.dumps(report, indent=1))
    console.print(f"wrote {json_out}")
    ok = report["passed"]
    console.print("[green]nothing lost, nothing doubled[/]" if ok else "[red]FAILED[/]")
    if not ok:
        raise typer.Exit(1)


def broker_on_disk(stack) -> bool:
    """Whether the broker may be killed and restarted: one the stack started, its log on disk in
    the state folder (not an outside broker given by ``kafka_bootstrap``)."""
    return stack.settings.kafka_bootstrap is None
