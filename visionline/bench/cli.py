"""`visionline bench`."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from visionline.bench.run import BenchOptions, run_bench, write_results
from visionline.bench.tables import print_report
from visionline.settings import REPO_ROOT
from visionline.stack import StackError


def bench_command(
    path: Annotated[
        str,
        typer.Option(
            help="classify: the photo cameras' path; inspect: the conveyor lines' (parts, "
            "verdicts, decision latency)."
        ),
    ] = "classify",
    lines: Annotated[
        int, typer.Option(min=1, max=16, help="inspect: most 10-fps lines tried.")
    ] = 4,
    cameras: Annotated[int, typer.Option(min=1, max=32, help="Simulated 720p cameras.")] = 4,
    seconds: Annotated[float, typer.Option(min=5, help="Measured seconds of each phase.")] = 30,
    warmup: Annotated[
        float, typer.Option(min=0, help="Seconds of load before the saturation window.")
    ] = 10,
    fps: Annotated[
        float | None,
        typer.Option(
            min=0.1, help="Frames/s per camera in the latency phase (default: half the maximum)."
        ),
    ] = None,
    out: Annotated[Path, typer.Option(help="Folder for the JSON results.")] = Path("bench-results"),
    state_dir: Annotated[Path, typer.Option(help="State folder of the bench's stack.")] = (
        REPO_ROOT / ".state" / "bench"
    ),
    in_flight: Annotated[
        int, typer.Option(min=1, help="Most frames between publish and prediction.")
    ] = 64,
    bare_seconds: Annotated[float, typer.Option(min=1, help="Seconds of each bare loop.")] = 8,
    bare_threads: Annotated[
        int | None,
        typer.Option(min=1, help="ONNX Runtime threads of the bare loop (default: Triton's)."),
    ] = None,
) -> None:
    """Full pipeline vs a bare single-process loop on the same frames: throughput, latency,
    Triton batch sizes, CPU and memory per process. Results in <out>/latest.json."""
    from rich.console import Console

    console = Console()
    if path == "inspect":
        _inspect_bench(console, lines, seconds, out)
        return
    if path != "classify":
        raise typer.BadParameter(f"--path is classify or inspect, not {path}")
    options = BenchOptions(
        cameras, seconds, warmup, fps, out, state_dir, in_flight, bare_seconds, bare_threads
    )
    figures = _on_stack(console, lambda log: run_bench(options, log))
    print_report(figures, console)
    console.print(f"written to {write_results(figures, out)} and {out / 'latest.json'}")
    if not figures["saturation"]["predictions"]:
        console.print("[red]no frame made it through the pipeline[/]")
        raise typer.Exit(1)


def _inspect_bench(console, lines: int, seconds: float, out: Path) -> None:
    from visionline.bench.inspection import (
        InspectBenchOptions,
        run_inspect_bench,
        write_inspect_results,
    )
    from visionline.bench.tables import inspect_tables

    options = InspectBenchOptions(max_lines=lines, seconds=max(seconds, 20), out=out)
    figures = _on_stack(console, lambda log: run_inspect_bench(options, log))
    for table in inspect_tables(figures):
        console.print(table)
    console.print(f"written to {write_inspect_results(figures, out)}")
    if not any(p["verdicts"] for p in figures["phases"]):
        console.print("[red]no part was decided through the stack[/]")
        raise typer.Exit(1)


def _on_stack(console, run):
    """``run(log)``'s figures, timestamped progress on the console; exit 1 if its stack fails."""
    started = time.monotonic()

    def log(text: str) -> None:
        console.print(f"[dim]{time.monotonic() - started:6.1f} s[/] {text}", highlight=False)

    try:
        return run(log)
    except StackError as exc:
        console.print("[red]the bench's stack failed[/]")
        console.print(str(exc), markup=False, highlight=False)
        raise typer.Exit(1) from None
