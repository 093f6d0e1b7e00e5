"""`visionline stack up|down|status|logs`: the local stack, real services, no Docker."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from visionline.stack.api import LocalStack, StackAlreadyRunning, StackError
from visionline.stack.config import StackSettings
from visionline.stack.process import session_memory
from visionline.stack.state import StackStatus

app = typer.Typer(
    help="The local stack: Kafka-protocol broker, PostgreSQL, Redis, Triton and the workers.",
    no_args_is_help=True,
)
console = Console()

StateDirOption = Annotated[
    Path | None,
    typer.Option(
        "--state-dir", help="State folder (default: .state, or $VISIONLINE_STACK_STATE_DIR)."
    ),
]
_STYLE = {"healthy": "green", "starting": "yellow", "unhealthy": "red", "stopped": "dim"}


@app.command()
def up(
    cameras: Annotated[
        int | None, typer.Option("--cameras", "-c", min=0, help="Simulated cameras.")
    ] = None,
    fps: Annotated[
        float | None, typer.Option("--fps", min=0.01, help="Frames/s per camera.")
    ] = None,
    state_dir: StateDirOption = None,
    no_workers: Annotated[bool, typer.Option("--no-workers", help="Only the servers.")] = False,
    timeout: Annotated[float | None, typer.Option(help="Seconds to wait for ready.")] = None,
) -> None:
    """Start the stack in the background and wait until every component is healthy."""
    given = {"cameras": cameras, "camera_fps": fps, "state_dir": state_dir}
    overrides: dict[str, Any] = {k: v for k, v in given.items() if v is not None}
    if no_workers:
        overrides["with_workers"] = False
    stack = LocalStack(StackSettings(**overrides))
    started = time.monotonic()
    try:
        with console.status("starting the stack") as spinner:
            status = stack.start(timeout, on_progress=lambda s: spinner.update(_progress(s)))
    except StackAlreadyRunning:
        console.print(f"a stack is already running in {stack.paths.root}")
        _print_status(LocalStack.from_state_dir(stack.paths.root).status())
        return
    except StackError as exc:
        console.print("[red]stack up failed[/] (everything it started is stopped)")
        console.print(str(exc), markup=False, highlight=False)
        raise typer.Exit(1) from None
    _print_status(status)
    console.print(f"ready in {time.monotonic() - started:.1f} s; `visionline stack down` stops it")


@app.command()
def down(state_dir: StateDirOption = None) -> None:
    """Stop the stack and make sure none of its processes is left."""
    stack = LocalStack.from_state_dir(state_dir)
    was_running = stack.is_running()
    try:
        killed = stack.stop()
    except StackError as exc:
        console.print(str(exc), style="red", markup=False)
        raise typer.Exit(1) from None
    if killed:
        console.print(f"ended {len(killed)} leftover process(es): {killed}")
    console.print("stopped" if was_running else f"no stack was running in {stack.paths.root}")


@app.command()
def status(state_dir: StateDirOption = None) -> None:
    """Show each component's health; the exit code is 0 only when all are healthy."""
    stack = LocalStack.from_state_dir(state_dir)
    current = stack.status()
    if current is None:
        console.print(f"no stack in {stack.paths.root}")
        raise typer.Exit(1)
    _print_status(current)
    if not current.ready:
        raise typer.Exit(1)


@app.command()
def logs(
    name: Annotated[str, typer.Argument(help="Component, service (all replicas) or supervisor.")],
    lines: Annotated[int, typer.Option("--lines", "-n", min=1)] = 50,
    state_dir: StateDirOption = None,
) -> None:
    """Print the last lines of a component's log."""
    from visionline.stack.process import tail

    stack = LocalStack.from_state_dir(state_dir)
    files = stack.log_files(name)
    if not files:
        console.print(f"no log for {name!r} in {stack.paths.logs}")
        raise typer.Exit(1)
    for path in files:
        if len(files) > 1:
            console.rule(str(path))
        typer.echo(tail(path, lines))


@app.command()
def services() -> None:
    """List the services the stack runs (visionline/services_table.py), in start order."""
    from visionline.services_table import SERVICES

    title = "python -m services.<service>; topics visionline.<topic>"
    table = Table("service", "settings", "metrics port", "consumes", "produces", title=title)
    for spec in SERVICES:
        metrics = "HTTP /healthz" if spec.http else str(spec.metrics_port or "")
        if spec.opt_in:
            metrics += f" ({spec.opt_in})"
        topics = ("\n".join(t.removeprefix("visionline.") for t in ts) for ts in spec.topics)
        table.add_row(spec.name, spec.settings.__name__, metrics, *topics)
    console.print(table)


def _progress(status: StackStatus) -> str:
    starting = [c.name for c in status.components if c.state == "starting"]
    return f"starting: {', '.join(starting)}" if starting else "starting the stack"


def _print_status(status: StackStatus | None) -> None:
    if status is None:
        return
    colour = "green" if status.ready else "red"
    title = f"stack [{colour}]{status.state}[/] (supervisor pid {status.supervisor_pid})"
    table = Table("component", "state", "pid", "restarts", "memory", title=title)
    table.add_column("address", overflow="fold")
    for c in status.components:
        memory = f"{session_memory(c.pid) / 2**20:.0f} MiB" if c.pid else ""
        state = f"[{_STYLE.get(c.state, 'white')}]{c.state}[/]"
        table.add_row(c.name, state, str(c.pid or ""), str(c.restarts), memory, c.address)
    console.print(table)
    for c in status.components:
        if c.last_error and c.state != "healthy":
            console.print(f"[red]{c.name}[/]: {escape(c.last_error)}", highlight=False)
    if status.error:
        console.print(status.error, markup=False, highlight=False)


if __name__ == "__main__":
    app()
