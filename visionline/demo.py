"""`visionline demo`: the whole local stack with simulated cameras, alerts shown live."""

from __future__ import annotations

import json
import time
from collections import Counter, deque
from pathlib import Path

from rich.console import Console, Group
from rich.live import Live
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from visionline.camera.line_loops import LOOP_CACHE, ensure_loops, loops_of_lines
from visionline.db import make_engine
from visionline.inspection.config import config_for, load_inspection
from visionline.kafka import read_messages, topic_consumer
from visionline.messages import Topic
from visionline.report import RunSummary, capture_to_alert
from visionline.settings import PartsSettings
from visionline.stack import LocalStack
from visionline.stack.config import free_port_settings
from visionline.stack.state import fresh_stack_folder
from visionline.tokens import create_token

WATCHED = (Topic.PREDICTIONS, Topic.ALERTS, Topic.DEAD_LETTER, Topic.PART_DECISIONS)
WARMUP_S = 5.0  # latency figures leave out frames captured this early
# The lines' loops: the stack's start and the watch, so that a default demo never wraps; a
# longer one wraps every LOOP_MAX_S (the parts in view then are cut short).
LOOP_MARGIN_S, LOOP_MAX_S = 20.0, 120.0
# The demo's conveyor lines, demo-line-1, ...: the rules file's entry for them sets their frame
# rate (the belt speed is per second, so camera and tracker must agree on it).
DEMO_LINE_PREFIX = "demo-line"


def demo_line_fps(rules_file: Path) -> float:
    """The frame rate ``rules_file``'s inspection entry for the demo's lines was written for."""
    camera = f"{DEMO_LINE_PREFIX}-1"
    config = config_for(load_inspection(rules_file), camera)
    if config is None:
        raise ValueError(f"no inspection entry in {rules_file} names {camera}")
    return config.fps


def _alerts_table(recent: deque) -> Table:
    table = Table("time", "severity", "camera", "rule", "label", "conf", "latency", expand=True)
    table.title = "Alerts, live from the alerts topic"
    colours = {"critical": "bold red", "warning": "yellow", "info": "cyan"}
    for a in reversed(recent):
        table.add_row(
            time.strftime("%H:%M:%S", time.localtime(a["captured_at"])),
            f"[{colours[a['severity']]}]{a['severity']}[/]",
            a["camera_id"],
            a["rule"],
            a["label"],
            f"{a['confidence']:.2f}",
            f"{capture_to_alert(a) * 1000:.0f} ms",
        )
    return table


def _cameras_table(frames: Counter, alerts: Counter, labels: dict) -> Table:
    table = Table("camera", "frames", "alerts", "last top-1", title="Cameras")
    for camera in sorted(frames):
        table.add_row(camera, str(frames[camera]), str(alerts[camera]), labels.get(camera, ""))
    return table


def _lines_table(lines: dict[str, Counter], last: dict[str, str]) -> Table:
    table = Table(
        "line",
        "parts",
        "passed",
        "rejected",
        "insufficient",
        "last part",
        title="Conveyor lines: one decision per part",
    )
    for camera in sorted(lines):
        c = lines[camera]
        table.add_row(
            camera,
            str(c.total()),
            str(c["accepted"]),
            str(c["rejected"]),
            str(c["insufficient"]),
            last.get(camera, ""),
        )
    return table


def _verdict_text(verdict: dict) -> str:
    if verdict["status"] == "rejected":
        return f"[red]rejected[/] {verdict['defect_class']} {verdict['score']:.2f}"
    return verdict["status"]


def watch(bootstrap: str, seconds: float, console: Console) -> RunSummary:
    """Follow predictions, alerts and dead letters for ``seconds``, drawing them live."""
    consumer = topic_consumer(bootstrap, WATCHED, from_beginning=True)
    summary = RunSummary(seconds=seconds)
    by_topic = {
        str(Topic.PREDICTIONS): summary.predictions,
        str(Topic.ALERTS): summary.alerts,
        str(Topic.DEAD_LETTER): summary.dead_letters,
    }
    recent: deque = deque(maxlen=12)
    frames, alerts, labels = Counter[str](), Counter[str](), {}
    lines: dict[str, Counter] = {}
    last_part: dict[str, str] = {}
    progress = Progress(
        TextColumn("demo"), BarColumn(), TimeRemainingColumn(), TextColumn("{task.description}")
    )
    task = progress.add_task("", total=seconds)
    start = time.monotonic()
    with Live(console=console, refresh_per_second=4) as live:
        for message in read_messages(consumer, until=start + seconds, idle_s=0.25):
            if message is not None and message.topic() == str(Topic.PART_DECISIONS):
                verdict = json.loads(message.value())
                summary.verdicts.append(verdict)
                lines.setdefault(verdict["camera_id"], Counter())[verdict["status"]] += 1
                last_part[verdict["camera_id"]] = _verdict_text(verdict)
            elif message is not None:
                item = json.loads(message.value())
                by_topic[message.topic()].append(item)
                if message.topic() == str(Topic.ALERTS):
                    recent.append(item)
                    alerts[item["camera_id"]] += 1
                elif message.topic() == str(Topic.PREDICTIONS):
                    frames[item["camera_id"]] += 1
                    labels[item["camera_id"]] = item["top_k"][0]["label"]
            progress.update(
                task,
                completed=time.monotonic() - start,
                description=f"{len(summary.predictions)} frames, {len(summary.alerts)} alerts",
            )
            tables = [_cameras_table(frames, alerts, labels), _alerts_table(recent)]
            if lines:
                tables.insert(1, _lines_table(lines, last_part))
            live.update(Group(progress, *tables))
    consumer.close()
    console.print()
    return summary


def after_warmup(summary: RunSummary, since: float) -> RunSummary:
    """Only frames captured from ``since`` on: the first seconds measure consumer groups
    joining, not the pipeline."""
    return RunSummary(
        seconds=summary.seconds,
        predictions=[p for p in summary.predictions if p["captured_at"] >= since],
        alerts=[a for a in summary.alerts if a["captured_at"] >= since],
        dead_letters=summary.dead_letters,
        verdicts=summary.verdicts,
    )


def summary_table(figures: dict) -> Table:
    table = Table("measure", "value", title="Demo summary")
    table.add_row("frames predicted", str(figures["frames_predicted"]))
    table.add_row("frames / s", str(figures["frames_per_second"]))
    table.add_row("alerts", str(figures["alerts"]))
    table.add_row("dead letters", json.dumps(figures["dead_letters"]))
    table.add_row("served by", json.dumps(figures["served_by"]))
    for name in ("capture_to_prediction_ms", "capture_to_alert_ms"):
        p = figures[name]
        label = name.replace("_", " ") + f" (after {WARMUP_S:.0f} s)"
        table.add_row(label, f"p50 {p['p50']}  p95 {p['p95']}  p99 {p['p99']}")
    table.add_row("alerts by rule", json.dumps(figures["alerts_by_rule"]))
    decided, insufficient = part_counts(figures["parts"])
    passed, rejected = figures["parts"].get("accepted", 0), figures["parts"].get("rejected", 0)
    table.add_row("parts decided (lines)", f"{decided} (passed {passed}, rejected {rejected})")
    table.add_row("parts insufficient (seen in too few frames)", str(insufficient))
    return table


def part_counts(parts: dict[str, int]) -> tuple[int, int]:
    """(decided, insufficient) of the lines' part verdicts: a part seen in fewer than its
    line's ``min_frames`` frames comes out insufficient, neither passed nor rejected."""
    insufficient = parts.get("insufficient", 0)
    return sum(parts.values()) - insufficient, insufficient


def dashboard_token(database_url: str) -> str:
    """A viewer token for this run's dashboard link (the stack's database is the run's own)."""
    return create_token(make_engine(database_url), "demo dashboard", "viewer", created_by="demo")


def api_check(api_url: str, token: str) -> str:
    """What the operator API answers about the run: its cameras and stored alerts."""
    import httpx

    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=api_url, headers=headers, timeout=10) as client:
        cameras = client.get("/v1/cameras", params={"limit": 500}).raise_for_status().json()
        alerts = client.get("/v1/alerts", params={"limit": 500}).raise_for_status().json()
    healthy = sum(c["health"] == "ok" for c in cameras["items"])
    shed = sum(c.get("frames_shed_last_minute") or 0 for c in cameras["items"])
    return (
        f"operator API: {len(cameras['items'])} cameras ({healthy} healthy), "
        f"{len(alerts['items'])} alerts stored (first page of 500), "
        f"{shed} line frames shed in the last minute (inspect worker behind)"
    )


def prerender_lines(lines: int, fps: float, loop_s: float, console: Console) -> None:
    ids = [f"{DEMO_LINE_PREFIX}-{k}" for k in range(1, lines + 1)]
    loops = loops_of_lines(ids, fps, 0, loop_s)  # seed 0: `visionline camera lines`' default

    def announce(missing: list) -> None:
        console.print(
            f"rendering {len(missing)} conveyor lines' {missing[0].frames} frames once "
            f"(about 32 ms of CPU a frame; cached in {LOOP_CACHE} for the next run)"
        )

    ensure_loops(loops, LOOP_CACHE, announce)


def run_demo(
    cameras: int, fps: float, seconds: float, state_dir: Path, console: Console, lines: int = 0
) -> dict:
    line_fps = demo_line_fps(PartsSettings().rules_file)
    lines_at = {"line_cameras": lines, "line_fps": line_fps, "line_prefix": DEMO_LINE_PREFIX}
    if lines:
        # Rendering the lines live would take a third of a 2-core machine from the pipeline:
        # their frames are rendered once, before the stack starts, and replayed.
        lines_at["line_loop_s"] = loop_s = min(seconds + LOOP_MARGIN_S, LOOP_MAX_S)
        prerender_lines(lines, line_fps, loop_s, console)
    # The demo reads its topics from the beginning: a stack kept from the last run would count
    # that run's frames and parts as this one's.
    fresh_stack_folder(state_dir)
    settings = free_port_settings(state_dir, cameras=cameras, camera_fps=fps, **lines_at)
    console.print(
        f"[bold]Starting the local stack[/] ({cameras} simulated cameras at {fps} fps, "
        f"{lines} conveyor lines at {settings.line_fps:g} fps)"
    )
    started = time.monotonic()
    with LocalStack(settings) as stack:
        stack.start()
        console.print(
            f"stack ready in {time.monotonic() - started:.1f} s; watching {seconds:.0f} s"
        )
        token = dashboard_token(stack.database_url)
        console.print(f"dashboard (while the demo runs): {stack.api_url}/dashboard#token={token}")
        since = time.time() + WARMUP_S
        summary = watch(stack.kafka_bootstrap, seconds, console)
        console.print(api_check(stack.api_url, token))
        figures = summary.as_dict()
        steady = after_warmup(summary, since).as_dict()
        for key in ("capture_to_prediction_ms", "capture_to_alert_ms", "stage_ms"):
            figures[key] = steady[key]
        console.print("[bold]Stopping the local stack[/]")
    console.print(summary_table(figures))
    out = state_dir / "demo-summary.json"
    out.write_text(json.dumps(figures, indent=2))
    console.print(f"summary written to {out}")
    return figures
