"""`visionline`: the command line in front of the common operations."""

from __future__ import annotations

from datetime import UTC, datetime

import typer
from rich.console import Console
from rich.table import Table

from visionline.acceptance.cli import app as acceptance_app
from visionline.alerts import AlertFilter, list_alerts, tail_alerts
from visionline.annotations.cli import app as annotations_app
from visionline.api.cli import app as api_app
from visionline.bench import bench_command
from visionline.camera.cli import app as camera_app
from visionline.camera_registry import is_placeholder_key, load_cameras, provision_cameras
from visionline.chaos.cli import chaos_command, soak_command
from visionline.datasets.cli import app as datasets_app
from visionline.db import make_engine, migrate
from visionline.demo import part_counts, run_demo
from visionline.drift.cli import app as drift_app
from visionline.kafka import create_topics
from visionline.labels.cli import app as labels_app
from visionline.models.cli import app as models_app
from visionline.retrain.cli import app as retrain_app
from visionline.settings import CommonSettings, UploadSettings, refuse_dev_secrets
from visionline.stack.cli import app as stack_app
from visionline.training.cli import eval_command, train_app
from visionline.training.dataset_cli import train_classifier_command
from visionline.training.detector_cli import train_detector_command

app = typer.Typer(help="visionline: the streaming pipeline around the model.", no_args_is_help=True)
app.add_typer(stack_app, name="stack")
app.add_typer(camera_app, name="camera")
app.add_typer(models_app, name="models")
app.add_typer(annotations_app, name="annotations")
app.add_typer(datasets_app, name="datasets")
app.command("bench")(bench_command)
app.command("chaos")(chaos_command)
app.command("soak")(soak_command)
app.add_typer(train_app, name="train")
train_app.command("classifier")(train_classifier_command)
train_app.command("detector")(train_detector_command)
app.command("eval")(eval_command)
app.add_typer(acceptance_app, name="acceptance")
app.add_typer(retrain_app, name="retrain")
app.add_typer(drift_app, name="drift")
app.add_typer(labels_app, name="labels")
alerts_app = typer.Typer(help="Alerts: live from the alerts topic, or stored in PostgreSQL.")
app.add_typer(alerts_app, name="alerts")
app.add_typer(api_app, name="api")
console = Console()


def _when(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


@alerts_app.command("tail")
def alerts_tail(
    from_beginning: bool = typer.Option(False, help="Replay the topic from its start."),
    seconds: float = typer.Option(0, help="Stop after this many seconds (0: run until Ctrl-C)."),
) -> None:
    """Print alerts as they are published on the alerts topic."""
    import time

    until = time.monotonic() + seconds if seconds else None
    for alert in tail_alerts(CommonSettings().kafka_bootstrap, from_beginning, until):
        if alert is not None:
            console.print(
                f"{_when(alert.captured_at)} [bold]{alert.severity}[/] {alert.camera_id} "
                f"{alert.rule}: {alert.label} {alert.confidence:.2f} ({alert.frame_id})"
            )


@alerts_app.command("list")
def alerts_list(
    camera: str = typer.Option(None, help="Only this camera."),
    severity: str = typer.Option(None, help="info, warning or critical."),
    rule: str = typer.Option(None, help="Only this rule."),
    limit: int = typer.Option(50, min=1, max=10_000),
) -> None:
    """List stored alerts, newest first."""
    rows = list_alerts(
        make_engine(CommonSettings().database_url), AlertFilter(camera, severity, rule, limit)
    )
    table = Table("captured (UTC)", "severity", "camera", "rule", "label", "conf", "frame")
    for row in rows:
        table.add_row(
            _when(row.captured_at.timestamp()),
            row.severity,
            row.camera_id,
            row.rule,
            row.label,
            f"{row.confidence:.2f}",
            row.frame_id,
        )
    console.print(table)


@app.command()
def demo(
    cameras: int = typer.Option(4, min=1, max=32, help="Simulated cameras (real photos, scenes)."),
    fps: float = typer.Option(2.0, min=0.1, max=30, help="Frames per second per camera."),
    seconds: float = typer.Option(45, min=5, help="How long to watch the pipeline."),
    state_dir: str = typer.Option(".state/demo", help="Where the demo stack keeps its files."),
    lines: int = typer.Option(
        2,  # the 2-core machine's rated load (visionline bench --path inspect)
        min=0,
        max=3,
        help="Conveyor lines (inspection) at infra/rules.yaml's demo-line-* fps.",
    ),
) -> None:
    """Start the local stack with simulated cameras, show alerts live, summarise, stop."""
    from pathlib import Path

    figures = run_demo(cameras, fps, seconds, Path(state_dir).absolute(), console, lines)
    if not figures["frames_predicted"]:
        console.print("[red]no frame made it through the pipeline[/]")
        raise typer.Exit(1)
    if lines and not figures["parts"]:
        console.print("[red]no part decision came from the conveyor lines[/]")
        raise typer.Exit(1)
    if lines:
        decided, insufficient = part_counts(figures["parts"])
        console.print(f"conveyor parts: {decided} decided, {insufficient} insufficient")
        if insufficient > 0.1 * (decided + insufficient):
            console.print(
                "[yellow]many parts were seen in too few frames: this machine did not keep up. "
                "Fewer --lines or --cameras, or a lower fps for demo-line-* in "
                "infra/rules.yaml, gives it room.[/]"
            )


@app.command()
def setup(
    cameras_file: str = typer.Option("infra/cameras.yaml", help="Cameras to register."),
    keys_file: str = typer.Option(
        ".state/upload-keys.json",
        help="Where the upload keys made for cameras the file gives none go (owner-only).",
    ),
    kafka_users: bool = typer.Option(
        False,
        help="As the Kafka admin: a SCRAM-SHA-512 user for each principal with a password in "
        "KAFKA_PASSWORD_<PRINCIPAL> (INGEST, ..., CAMERA), and every principal's ACLs.",
    ),
) -> None:
    """Create the topics, migrate the database and register cameras (idempotent); a camera
    without an upload key gets a random one, written to --keys-file."""
    from pathlib import Path

    common, upload = CommonSettings(), UploadSettings()
    refuse_dev_secrets(common, VISIONLINE_UPLOAD_KEY_PEPPER=upload.key_pepper)
    cameras = load_cameras(Path(cameras_file))
    guessable = [c.camera_id for c in cameras if c.upload_key and is_placeholder_key(c.upload_key)]
    if guessable and not common.is_development:
        console.print(f"[red]dev-key-* upload keys are for development only: {guessable}[/]")
        raise typer.Exit(1)
    if kafka_users:
        provision_kafka_users(common)
    create_topics(common.kafka_bootstrap, common.topic_partitions)
    migrate(common.database_url)
    engine = make_engine(common.database_url)
    made = provision_cameras(engine, cameras, upload.key_pepper, Path(keys_file))
    console.print(f"topics ready, schema migrated, {len(cameras)} cameras registered")
    if made:
        console.print(f"upload keys made for {len(made)} cameras, written to {keys_file}")


def provision_kafka_users(common: CommonSettings) -> None:
    """SCRAM users from ``KAFKA_PASSWORD_<PRINCIPAL>`` and the ACL table, as this process's
    (admin) principal (docs/operations.md, "Broker security")."""
    import os

    from visionline.kafka import security_config
    from visionline.kafka_acls import principals
    from visionline.stack.broker_security import provision

    passwords = {
        name: os.environ[f"KAFKA_PASSWORD_{name.upper()}"]
        for name in principals()
        if os.environ.get(f"KAFKA_PASSWORD_{name.upper()}")
    }
    provision(common.kafka_bootstrap, security_config(common), passwords)
    console.print(f"kafka: {len(passwords)} SCRAM users and every principal's ACLs provisioned")


if __name__ == "__main__":
    app()
