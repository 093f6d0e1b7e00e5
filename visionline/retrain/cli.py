"""`visionline retrain ...`: create retraining jobs by hand, list them, run one.

Like `visionline models promote`, these find the stack through the common settings
(VISIONLINE_DATABASE_URL, VISIONLINE_KAFKA_BOOTSTRAP); defaults are the local stack's.
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from visionline.datasets.store import LocalDatasetStore
from visionline.db import make_engine
from visionline.kafka import producer
from visionline.messages import Topic, to_json
from visionline.model_registry.job_states import Trigger
from visionline.model_registry.store import get_job
from visionline.retrain.jobs import (
    JobNotQueued,
    create_job_once,
    list_jobs,
    outcome,
    request_for,
    run_job,
)
from visionline.retrain.policy import MODELS
from visionline.retrain.steps import RealSteps
from visionline.settings import CommonSettings, DatasetSettings, RetrainSettings

app = typer.Typer(
    help="Retraining jobs: create one (operator trigger), list them, run one.", no_args_is_help=True
)
console = Console()


@app.command("create")
def create(
    model: Annotated[str, typer.Argument(help=f"Model to retrain: {', '.join(MODELS)}.")],
    reason: Annotated[str, typer.Option(help="Why (recorded on the job).")] = "",
    publish: Annotated[
        bool, typer.Option(help="Publish the request for the retrain worker.")
    ] = True,
) -> None:
    """Queue a retraining job for MODEL and ask the retrain worker to run it."""
    if model not in MODELS:
        console.print(f"[red]unknown model {model!r}; one of {', '.join(MODELS)}[/]")
        raise typer.Exit(1)
    common = CommonSettings()
    engine = make_engine(common.database_url)
    try:
        created = create_job_once(
            engine, model, Trigger.OPERATOR, None, reason or "requested by an operator"
        )
        if created.job_id is None:
            console.print(f"[yellow]{created.reason}[/]")
            raise typer.Exit(1)
        job = get_job(engine, created.job_id)
    finally:
        engine.dispose()
    console.print(f"job {job.id} queued for {model}")
    if publish:
        send = producer(common.kafka_bootstrap)
        send.produce(str(Topic.RETRAIN_REQUESTS), to_json(request_for(job)), model.encode())
        if send.flush(15) > 0:
            console.print(
                "[red]the request was not acked; the worker runs queued jobs when it starts[/]"
            )
            raise typer.Exit(1)
        console.print(f"request published on {Topic.RETRAIN_REQUESTS}")


@app.command("list")
def list_command(
    model: Annotated[str | None, typer.Option(help="Only this model.")] = None,
    limit: Annotated[int, typer.Option(min=1, help="How many, newest first.")] = 20,
) -> None:
    """Retraining jobs, newest first: state, trigger, versions, last reason."""
    engine = make_engine(CommonSettings().database_url)
    try:
        rows = list_jobs(engine, model, limit)
    finally:
        engine.dispose()
    table = Table(
        "job", "model", "state", "trigger", "parent", "candidate", "updated (UTC)", "reason"
    )
    for row in rows:
        trigger = row.trigger + (f" {row.trigger_ref}" if row.trigger_ref else "")
        table.add_row(
            str(row.id),
            row.model,
            row.state,
            trigger,
            _opt(row.parent_version),
            _opt(row.candidate_version),
            row.updated_at.strftime("%Y-%m-%d %H:%M:%S"),
            row.reason,
        )
    console.print(table if rows else "no retraining job")


NOT_QUEUED = 3  # the exit status of `run` for a job already claimed: nothing was done


@app.command("run")
def run_command(job_id: Annotated[int, typer.Argument(help="A queued job.")]) -> None:
    """Run a queued job to promoted, rejected or failed, in this process. The retrain worker
    runs each job this way, in a child process: training holds the CPU and the interpreter
    for minutes, and the worker's own consumer must keep its heartbeat meanwhile."""
    from visionline.worker import configure_logging  # Faust and Redis: only to run a job

    common = CommonSettings()
    configure_logging(common, "retrain")
    engine = make_engine(common.database_url)
    steps = RealSteps(
        engine,
        common.model_repository,
        RetrainSettings(),
        common.triton_grpc_url,
        bootstrap=common.kafka_bootstrap,
        datasets=LocalDatasetStore(DatasetSettings().store_dir),
    ).steps()
    try:
        job = run_job(engine, job_id, steps)
    except JobNotQueued as skipped:
        console.print(f"[yellow]{skipped}[/]")
        raise typer.Exit(NOT_QUEUED) from None
    finally:
        engine.dispose()
    console.print(f"job {job.id} ({job.model}): {outcome(job)}")


@app.command("part-crops")
def part_crops_command() -> None:
    """Build part_crops for the crop models Triton serves now, if none is, and load it. The
    retrain worker runs this (in a child process) when a promotion or a rollback through the
    API or the CLI left part_crops built from other versions."""
    from visionline.model_registry.promotion import triton_control
    from visionline.training.crop_models import refresh_part_crops

    common = CommonSettings()
    version = refresh_part_crops(triton_control(common.triton_grpc_url), common.model_repository)
    if version is None:
        console.print("part_crops is up to date")
    else:
        console.print(f"part_crops version {version} built and loaded")


def _opt(value: int | None) -> str:
    return "-" if value is None else str(value)
