"""`visionline camera ...`: push frames from a real or simulated camera into Kafka."""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from visionline.camera.conveyor import ConveyorSource
from visionline.camera.frames import FrameSource
from visionline.camera.line_loops import LOOP_CACHE, ensure_loops, loops_of_lines
from visionline.camera.publisher import CameraStats, FramePublisher, run_camera, run_cameras
from visionline.camera.simulator import Resolution, parse_resolution
from visionline.camera.sources import SPEC_HELP, SourceError, open_source, redact
from visionline.camera_registry import CAMERA_ID, LINE_PREFIX, CameraSpec, upsert_cameras
from visionline.db import make_engine
from visionline.kafka import producer
from visionline.labels.delayed import DelayedLabels
from visionline.settings import CommonSettings
from visionline.synthetic.schedule import CAMERA_MIXES

app = typer.Typer(help="Push frames from cameras into Kafka.", no_args_is_help=True)
console = Console(stderr=True)
log = logging.getLogger("visionline.camera")


def _resolution(text: str) -> str:
    try:
        parse_resolution(text)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    return text


def _camera_id(text: str) -> str:
    if not CAMERA_ID.match(text):
        raise typer.BadParameter(f"{text!r}: 1-64 of A-Z a-z 0-9 . _ - starting alphanumeric")
    return text


Fps = Annotated[float, typer.Option(min=0.01, max=240, help="Frames per second to send.")]
Quality = Annotated[int, typer.Option(min=1, max=100, help="JPEG quality of encoded frames.")]
Duration = Annotated[float | None, typer.Option(min=0.01, help="Stop after this many seconds.")]
ResolutionOpt = Annotated[
    str, typer.Option(help="WIDTHxHEIGHT of simulated frames.", callback=_resolution)
]
Seed = Annotated[int, typer.Option(help="Seed of the simulators (same seed, same frames).")]


def _settings() -> CommonSettings:
    common = CommonSettings()
    logging.basicConfig(
        level=common.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    return common


@contextmanager
def _stop_on_signals() -> Iterator[threading.Event]:
    """An event set by SIGTERM/SIGINT, so cameras stop at their next tick and get flushed."""
    stop = threading.Event()
    handled = (signal.SIGTERM, signal.SIGINT)
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in handled}
    try:
        yield stop
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@app.command()
def push(
    camera_id: Annotated[
        str, typer.Option("--camera-id", help="Camera id: the message key.", callback=_camera_id)
    ],
    source: Annotated[str, typer.Option("--source", help=f"Source spec: {SPEC_HELP}.")],
    fps: Fps = 5.0,
    jpeg_quality: Quality = 80,
    max_frames: Annotated[int | None, typer.Option(min=1, help="Stop after N frames.")] = None,
    duration: Duration = None,
    loop: Annotated[bool, typer.Option(help="Loop a video file or folder.")] = True,
    resolution: ResolutionOpt = "1280x720",
    seed: Seed = 0,
) -> None:
    """Push one camera's frames to Kafka at a steady rate."""
    common = _settings()
    frames = _open(source, parse_resolution(resolution), seed, jpeg_quality, loop)
    publisher = FramePublisher(common.kafka_bootstrap)
    log.info("pushing %s from %s at %s fps", camera_id, redact(source), fps)
    with _stop_on_signals() as stop:
        try:
            stats = run_camera(
                camera_id, frames, fps, jpeg_quality, publisher, max_frames, duration, stop
            )
        except SourceError as exc:  # e.g. a live stream that stopped for good
            stats = CameraStats(camera_id, error=str(exc))
        finally:
            frames.close()
    _finish(publisher, [stats])


@app.command()
def simulate(
    count: Annotated[int, typer.Option(min=1, max=99, help="Number of simulated cameras.")] = 4,
    fps: Fps = 5.0,
    resolution: ResolutionOpt = "1280x720",
    jpeg_quality: Quality = 80,
    duration: Duration = None,
    register: Annotated[
        bool, typer.Option(help="Register the camera ids in the camera registry first.")
    ] = True,
    prefix: Annotated[str, typer.Option(help="Camera ids are <prefix>-01, -02, ...")] = "sim-cam",
    seed: Seed = 0,
) -> None:
    """Run COUNT simulated cameras (sim:photos and sim:scene in turn) in this process."""
    _camera_id(f"{prefix}-{count:02d}")
    common = _settings()
    cameras = simulated_cameras(count, prefix, seed)
    if register:
        _register([camera_id for camera_id, _, _ in cameras], fps, common)
    size = parse_resolution(resolution)
    sources = [(cid, _open(spec, size, s, jpeg_quality, True)) for cid, spec, s in cameras]
    publisher = FramePublisher(common.kafka_bootstrap)
    log.info("simulating %d cameras at %s fps, %s", count, fps, resolution)
    with _stop_on_signals() as stop:
        stats = run_cameras(sources, fps, jpeg_quality, publisher, duration, stop)
    _finish(publisher, stats)


def _line_prefix(value: str) -> str:
    if not LINE_PREFIX.match(value):
        raise typer.BadParameter("1-40 of a-z 0-9 - starting with a letter")
    return value


LinePrefix = Annotated[
    str,
    typer.Option(
        help="Camera ids are PREFIX-1, PREFIX-2, ...: the infra/rules.yaml inspection entry "
        "that names them gives their belt speed, so it must be written for FPS.",
        callback=_line_prefix,
    ),
]
LabelsDelay = Annotated[
    float | None,
    typer.Option(
        min=0,
        help="Publish each frame's ground truth on the labels feedback topic this many "
        "seconds later (off by default).",
    ),
]


@app.command()
def lines(
    count: Annotated[int, typer.Option(min=1, max=9, help="Conveyor cameras: line-1, ...")] = 3,
    fps: Fps = 10.0,
    prefix: LinePrefix = "line",
    duration: Duration = None,
    register: Annotated[
        bool, typer.Option(help="Register them as inspection cameras first.")
    ] = True,
    seed: Seed = 0,
    labels_delay: LabelsDelay = None,
    loop_s: Annotated[
        float | None,
        typer.Option(
            min=0.1,
            help="Replay each line's first LOOP_S seconds, rendered once and cached in "
            ".state/line-frames, instead of rendering every frame live (about 32 ms of CPU "
            "a frame, which a real camera does not cost this machine).",
        ),
    ] = None,
) -> None:
    """Run COUNT simulated conveyor lines for inspection, each with its own nuisance mix.

    The belt runs on the wall clock (late frames are skipped, capture times exact), so the
    parts worker's belt speed, ``fps`` x 184.9 px in ``infra/rules.yaml``, must match ``fps``.
    With ``--labels-delay`` the generator's truth of each frame follows as a late label
    (``visionline.labels``), for accuracy per model version (`visionline labels accuracy`).
    """
    common = _settings()
    ids = [f"{prefix}-{k}" for k in range(1, count + 1)]
    if register:
        max_fps = round(fps * 1.2 + 1, 2)
        specs = [
            CameraSpec(
                camera_id=cid, name=f"simulated conveyor {cid}", pipeline="inspect", max_fps=max_fps
            )
            for cid in ids
        ]
        _register_specs(specs, common)
    if loop_s is not None and labels_delay is not None:
        raise typer.BadParameter(
            "a replayed loop has no truth to label: --loop-s or --labels-delay"
        )
    loops = None if loop_s is None else _loop_frames(ids, fps, seed, loop_s)
    label_out = None if labels_delay is None else producer(common.kafka_bootstrap)
    sources = _conveyor_sources(ids, fps, seed, labels_delay, label_out, loops)
    publisher = FramePublisher(common.kafka_bootstrap)
    log.info("simulating %d conveyor lines at %s fps", count, fps)
    with _stop_on_signals() as stop:
        stats = run_cameras(sources, fps, 90, publisher, duration, stop)
    # The sources published the labels they still held when they closed.
    labels_lost = label_out is not None and label_out.flush(15.0) > 0
    _finish(publisher, stats)
    if labels_lost:
        console.print("[red]error:[/red] labels not delivered to the broker")
        raise typer.Exit(1)


def _loop_frames(ids: list[str], fps: float, seed: int, loop_s: float) -> list[list[bytes]]:
    """Each line's loop of frames, rendered first unless cached."""
    loops = loops_of_lines(ids, fps, seed, loop_s)

    def announce(missing: list) -> None:
        log.info("rendering %d line loops of %d frames (cached)", len(missing), missing[0].frames)

    ensure_loops(loops, LOOP_CACHE, announce)
    return [loop.load(LOOP_CACHE) for loop in loops]


def _conveyor_sources(
    ids: list[str], fps: float, seed: int, labels_delay, label_out, loops=None
) -> list:
    """(camera id, its ConveyorSource) per line, the k-th line with the k-th nuisance mix; each
    camera holds its own labels back when ``labels_delay`` is set, or replays its loop."""

    def truth_of() -> dict:
        if label_out is None or labels_delay is None:  # both are set, or neither
            return {}
        return {"labels": DelayedLabels(labels_delay), "label_producer": label_out}

    return [
        (
            cid,
            ConveyorSource(
                seed=seed + k,
                camera=cid,
                fps=fps,
                realtime_fps=fps,
                nuisances=CAMERA_MIXES.get(f"line-{k + 1}", {}),
                loop=None if loops is None else loops[k],
                **truth_of(),
            ),
        )
        for k, cid in enumerate(ids)
    ]


def simulated_cameras(
    count: int, prefix: str = "sim-cam", seed: int = 0
) -> list[tuple[str, str, int]]:
    """``(camera_id, source spec, seed)`` of each simulated camera."""
    specs = ("sim:photos", "sim:scene")
    return [(f"{prefix}-{i:02d}", specs[(i - 1) % 2], seed + i) for i in range(1, count + 1)]


def _open(spec: str, size: Resolution, seed: int, quality: int, loop: bool) -> FrameSource:
    try:
        return open_source(spec, resolution=size, seed=seed, jpeg_quality=quality, loop=loop)
    except (ValueError, SourceError) as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None


def _register(camera_ids: list[str], fps: float, common: CommonSettings) -> None:
    # Rate limit a bit above the sending rate, so jitter never gets frames refused.
    specs = [
        CameraSpec(camera_id=cid, name=f"simulated {cid}", max_fps=round(fps * 1.2 + 1, 2))
        for cid in camera_ids
    ]
    _register_specs(specs, common)


def _register_specs(specs: list[CameraSpec], common: CommonSettings) -> None:
    engine = make_engine(common.database_url)
    try:
        upsert_cameras(engine, specs, pepper="")  # no upload key: the pepper is unused
    except Exception as exc:  # noqa: BLE001 - any DB failure: say so and stop
        console.print(f"[red]error:[/red] cannot register cameras: {type(exc).__name__}: {exc}")
        raise typer.Exit(1) from None
    finally:
        engine.dispose()
    log.info("registered %d simulated cameras", len(specs))


def _finish(publisher: FramePublisher, stats: list[CameraStats]) -> None:
    """Flush, print a summary, and exit non-zero when frames were lost or a camera failed."""
    undelivered = publisher.close(15.0)
    table = Table("camera", "sent", "fps", "avg KB", "skipped ticks", "dropped", "error")
    for s in stats:
        avg_kb = s.bytes_sent / s.sent / 1024 if s.sent else 0.0
        table.add_row(
            s.camera_id,
            str(s.sent),
            f"{s.fps:.2f}",
            f"{avg_kb:.1f}",
            str(s.skipped_ticks),
            str(s.dropped),
            s.error or "",
        )
    console.print(table)
    console.print(
        f"delivered {publisher.delivered}, delivery errors {publisher.delivery_errors}, "
        f"undelivered {undelivered}"
    )
    if undelivered or publisher.delivery_errors or any(s.error for s in stats):
        raise typer.Exit(1)
