"""The camera side without a broker: source specs, sources, simulators, frame ids, pacing."""

from __future__ import annotations

import itertools
import re
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from visionline.camera import cli, publisher
from visionline.camera.frames import EncodedFrame, encode_jpeg, sniff_content_type, tag_jpeg
from visionline.camera.publisher import (
    FramePublisher,
    Pacer,
    frame_headers,
    new_frame_id,
    next_tick,
    run_camera,
)
from visionline.camera.simulator import (
    PhotoSimulator,
    PooledSource,
    SceneSimulator,
    letterbox,
    parse_resolution,
    photos,
)
from visionline.camera.sources import (
    CaptureSource,
    FolderSource,
    SourceError,
    SourceSpec,
    SourceSpecError,
    open_source,
    parse_source_spec,
    redact,
)
from visionline.messages import Topic

SMALL = (160, 96)


def decode(data: bytes) -> np.ndarray:
    return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)


# --- source specs ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("file:/videos/a.mp4", SourceSpec("file", "/videos/a.mp4")),
        ("rtsp://user:pw@cam/stream1", SourceSpec("url", "rtsp://user:pw@cam/stream1")),
        ("http://cam/mjpeg", SourceSpec("url", "http://cam/mjpeg")),
        ("HTTPS://cam/x", SourceSpec("url", "HTTPS://cam/x")),
        ("usb:0", SourceSpec("usb", "0")),
        ("folder:./imgs", SourceSpec("folder", "./imgs")),
        ("  sim:photos ", SourceSpec("sim", "photos")),
        ("sim:scene", SourceSpec("sim", "scene")),
        ("file:C:/x.mp4", SourceSpec("file", "C:/x.mp4")),
    ],
)
def test_parse_source_spec(spec: str, expected: SourceSpec) -> None:
    assert parse_source_spec(spec) == expected


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("", "expected file:PATH"),
        ("video.mp4", "expected file:PATH"),
        ("file:", "expected file:PATH"),
        ("ftp://host/x", "expected file:PATH"),
        ("usb:front", "device index"),
        ("sim:robots", "sim:photos, sim:scene"),
    ],
)
def test_bad_source_spec_says_what_is_accepted(spec: str, message: str) -> None:
    with pytest.raises(SourceSpecError, match=message):
        parse_source_spec(spec)


def test_redact_hides_url_credentials() -> None:
    assert (
        redact("rtsp://admin:hunter2@10.0.0.5:554/live?x=1") == "rtsp://***@10.0.0.5:554/live?x=1"
    )
    assert redact("http://cam/mjpeg") == "http://cam/mjpeg"
    assert redact("file:/a@b/c.mp4") == "file:/a@b/c.mp4"
    assert redact(0) == "0"


def test_open_source_reports_missing_paths(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="no such video file"):
        open_source(f"file:{tmp_path / 'missing.mp4'}")
    with pytest.raises(SourceError, match="no such folder"):
        open_source(f"folder:{tmp_path / 'missing'}")
    with pytest.raises(SourceError, match="no images"):
        open_source(f"folder:{tmp_path}")


# --- folder and OpenCV sources -----------------------------------------------------------


@pytest.fixture
def image_folder(tmp_path: Path) -> Path:
    for name, value in (("b.jpg", 100), ("a.png", 50), ("c.bmp", 200)):
        cv2.imwrite(str(tmp_path / name), np.full((24, 32, 3), value, np.uint8))
    (tmp_path / "notes.txt").write_text("not an image")
    return tmp_path


def test_folder_source_sorted_passthrough_and_loop(image_folder: Path) -> None:
    source = open_source(f"folder:{image_folder}")
    frames = list(itertools.islice(source, 6))
    first = frames[0]
    assert isinstance(first, EncodedFrame) and first.content_type == "image/png"
    assert first.data == (image_folder / "a.png").read_bytes()  # sent as is, no re-encode
    assert isinstance(frames[1], EncodedFrame) and frames[1].content_type == "image/jpeg"
    assert isinstance(frames[2], np.ndarray) and frames[2].shape == (24, 32, 3)  # BMP decoded
    assert frames[3] == first  # looped


def test_folder_source_without_loop_ends(image_folder: Path) -> None:
    assert len(list(FolderSource(image_folder, loop=False))) == 3


@pytest.fixture
def video_file(tmp_path: Path) -> Path:
    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48))
    for i in range(5):
        writer.write(np.full((48, 64, 3), i * 50, np.uint8))
    writer.release()
    return path


def test_video_file_loops_only_when_asked(video_file: Path) -> None:
    once = list(open_source(f"file:{video_file}", loop=False))
    assert len(once) == 5 and once[0].shape == (48, 64, 3)
    looped = list(itertools.islice(open_source(f"file:{video_file}", loop=True), 12))
    assert len(looped) == 12
    assert abs(int(looped[5].mean()) - int(looped[0].mean())) <= 3  # back to the first frame


def test_live_capture_reads_in_background_and_closes(video_file: Path) -> None:
    source = CaptureSource(str(video_file), live=True, reopen_attempts=0)
    frames = list(itertools.islice(source, 3))
    assert all(f.shape == (48, 64, 3) for f in frames)
    source.close()


def test_unopenable_capture_is_a_source_error(tmp_path: Path) -> None:
    bogus = tmp_path / "bogus.mp4"
    bogus.write_bytes(b"not a video")
    with pytest.raises(SourceError, match="cannot open"):
        open_source(f"file:{bogus}")


# --- simulators --------------------------------------------------------------------------


def test_parse_resolution() -> None:
    assert parse_resolution("1280x720") == (1280, 720)
    assert parse_resolution("640X480") == (640, 480)
    for bad in ("1280", "axb", "1280x720x3", "8x8", "99999x10"):
        with pytest.raises(ValueError):
            parse_resolution(bad)


def test_letterbox_keeps_aspect_ratio() -> None:
    tall = np.full((200, 100, 3), 255, np.uint8)
    boxed = letterbox(tall, (400, 100))
    assert boxed.shape == (100, 400, 3)
    assert boxed[:, 175:225].min() == 255 and boxed[:, :170].max() == 0


def test_photo_simulator_is_deterministic_and_varies() -> None:
    sim = PhotoSimulator((1280, 720), seed=3)
    frame = sim.frame(0)
    assert frame.shape == (720, 1280, 3) and frame.dtype == np.uint8
    assert np.array_equal(frame, PhotoSimulator((1280, 720), seed=3).frame(0))
    assert not np.array_equal(frame, PhotoSimulator((1280, 720), seed=4).frame(0))
    first, again = sim.frame(0), next(iter(sim))
    assert np.array_equal(first, again)


def test_photo_simulator_jitters_the_same_photo() -> None:
    sim = PhotoSimulator(SMALL, seed=0)
    count = len(photos(SMALL))
    a, b = sim.frame(0), sim.frame(count)  # same photo, another shift and brightness
    assert a.shape == (96, 160, 3)
    assert not np.array_equal(a, b)
    assert np.abs(a.astype(int) - b.astype(int)).mean() < 40


def test_photo_source_is_a_pool_of_unique_jpegs() -> None:
    source = open_source("sim:photos", resolution=SMALL, seed=1, jpeg_quality=70)
    assert isinstance(source, PooledSource)
    size = len(source.pool)
    frames = list(itertools.islice(source, size + 1))
    assert all(f.content_type == "image/jpeg" for f in frames)
    assert len({f.data for f in frames}) == size + 1  # every payload differs...
    first, wrapped = decode(frames[0].data), decode(frames[size].data)
    assert first.shape == (96, 160, 3)
    assert np.array_equal(first, wrapped)  # ...while the pixels cycle through the pool


def test_scene_simulator_is_deterministic_and_moves() -> None:
    sim = SceneSimulator((640, 360), seed=7)
    frames = list(itertools.islice(sim, 3))
    assert frames[0].shape == (360, 640, 3)
    assert np.array_equal(frames[2], SceneSimulator((640, 360), seed=7).frame(2))
    assert not np.array_equal(frames[0], frames[2])
    assert not np.array_equal(frames[0], SceneSimulator((640, 360), seed=8).frame(0))


def test_scene_shapes_stay_in_frame_forever() -> None:
    sim = SceneSimulator(SMALL, seed=1)
    assert sim.frame(10_000_000).shape == (96, 160, 3)  # bouncing is closed-form, no drift


def test_simulated_cameras_alternate_sources_and_seeds() -> None:
    cameras = cli.simulated_cameras(3, "sim-cam", seed=10)
    assert cameras == [
        ("sim-cam-01", "sim:photos", 11),
        ("sim-cam-02", "sim:scene", 12),
        ("sim-cam-03", "sim:photos", 13),
    ]


# --- frames and headers ------------------------------------------------------------------


def test_encode_and_tag_jpeg() -> None:
    frame = np.random.default_rng(0).integers(0, 255, (48, 64, 3), dtype=np.uint8)
    data = encode_jpeg(frame, 90)
    assert sniff_content_type(data) == "image/jpeg"
    tagged = tag_jpeg(data, "frame 1")
    assert tagged != data and np.array_equal(decode(tagged), decode(data))
    with pytest.raises(ValueError):
        encode_jpeg(frame, 0)


def test_frame_id_default_format() -> None:
    frame_id = new_frame_id("cam-1", 42)
    assert re.fullmatch(r"cam-1-42-[0-9a-f]{8}", frame_id)
    assert new_frame_id("cam-1", 42) != frame_id  # random part differs across restarts


def test_frame_headers() -> None:
    assert frame_headers("f-1", 1_700_000_000_123, "image/png") == [
        ("frame-id", b"f-1"),
        ("captured-at", b"1700000000123"),
        ("content-type", b"image/png"),
    ]


class FakeProducer:
    def __init__(self) -> None:
        self.produced: list[dict] = []

    def produce(self, topic: str, **kwargs) -> None:
        self.produced.append({"topic": topic, **kwargs})

    def poll(self, timeout: float = 0) -> int:
        return 0


@pytest.fixture
def fake_publisher(monkeypatch: pytest.MonkeyPatch) -> tuple[FramePublisher, FakeProducer]:
    fake = FakeProducer()
    monkeypatch.setattr(publisher, "producer", lambda bootstrap, **config: fake)
    return FramePublisher("unused:9092"), fake


def test_publish_builds_key_headers_and_counts_per_camera(fake_publisher) -> None:
    pub, fake = fake_publisher
    before = time.time_ns() // 1_000_000
    first = pub.publish("cam-a", b"jpeg-bytes")
    second = pub.publish("cam-a", b"x", frame_id="mine", captured_at=5, content_type="image/png")
    other = pub.publish("cam-b", b"y")
    assert re.fullmatch(r"cam-a-1-[0-9a-f]{8}", first) and second == "mine"
    assert other.startswith("cam-b-1-")
    assert pub.next_frame_id("cam-a").startswith("cam-a-2-")
    sent = fake.produced[0]
    assert sent["topic"] == Topic.RAW_FRAMES and sent["key"] == b"cam-a"
    assert sent["value"] == b"jpeg-bytes"
    headers = dict(sent["headers"])
    assert headers["frame-id"] == first.encode() and headers["content-type"] == b"image/jpeg"
    assert before <= int(headers["captured-at"]) <= time.time_ns() // 1_000_000
    assert dict(fake.produced[1]["headers"])["captured-at"] == b"5"


# --- pacing ------------------------------------------------------------------------------


def test_next_tick_arithmetic() -> None:
    assert next_tick(start=0.0, period=0.2, last_tick=0, now=0.05) == 1  # early: wait for 1
    assert next_tick(start=0.0, period=0.2, last_tick=0, now=0.2) == 1  # on time
    assert next_tick(start=0.0, period=0.2, last_tick=0, now=0.65) == 3  # late: 1, 2 skipped
    assert next_tick(start=10.0, period=0.5, last_tick=4, now=12.1) == 5  # no drift from start


class FakeClock:
    """A clock that ``wait`` advances, standing in for time.monotonic and Event.wait."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now

    def wait(self, delay: float) -> bool:
        self.now += delay
        return False


def test_pacer_keeps_ticks_on_the_grid_and_skips_when_late() -> None:
    clock = FakeClock()
    pacer = Pacer(fps=10, clock=clock)
    sent_at, skipped = [], 0
    for work in (0.03, 0.03, 0.25, 0.01, 0.01):  # the third frame takes 2.5 periods
        sent_at.append(round(clock.now - 100.0, 6))
        clock.now += work
        skipped += pacer.wait(clock)  # type: ignore[arg-type]
    # Tick 3 (0.3 s) is skipped, tick 4 runs at once (late), tick 5 is back on the grid.
    assert sent_at == [0.0, 0.1, 0.2, 0.45, 0.5]
    assert skipped == 1


def test_pacer_rejects_bad_fps() -> None:
    with pytest.raises(ValueError):
        Pacer(0)


class ListPublisher:
    def __init__(self, full_after: int | None = None) -> None:
        self.frames: list[tuple[str, bytes, str]] = []
        self.full_after = full_after

    def publish(self, camera_id, image_bytes, frame_id=None, captured_at=None, content_type=""):
        if self.full_after is not None and len(self.frames) >= self.full_after:
            raise BufferError("queue full")
        self.frames.append((camera_id, image_bytes, content_type))
        return "id"


def test_run_camera_encodes_arrays_and_passes_bytes_through() -> None:
    source = [np.zeros((48, 64, 3), np.uint8), EncodedFrame(b"\x89PNG\r\n\x1a\n...", "image/png")]
    out = ListPublisher()
    stats = run_camera("cam", source, fps=100, jpeg_quality=80, publisher=out)  # type: ignore[arg-type]
    assert stats.sent == 2
    assert out.frames[0][2] == "image/jpeg" and decode(out.frames[0][1]).shape == (48, 64, 3)
    assert out.frames[1] == ("cam", b"\x89PNG\r\n\x1a\n...", "image/png")
    assert stats.bytes_sent == len(out.frames[0][1]) + len(out.frames[1][1])


def test_run_camera_limits_and_rate() -> None:
    frames = itertools.repeat(EncodedFrame(b"\xff\xd8\xff"))
    stats = run_camera("cam", frames, 50, 80, ListPublisher(), max_frames=10)  # type: ignore[arg-type]
    assert stats.sent == 10
    assert 0.17 <= stats.elapsed_s < 1.0  # 9 periods of 20 ms between 10 frames
    stats = run_camera("cam", frames, 50, 80, ListPublisher(), duration_s=0.2)  # type: ignore[arg-type]
    assert 9 <= stats.sent <= 11


def test_run_camera_skips_ticks_for_a_slow_source_and_drops_on_full_queue() -> None:
    def slow():
        while True:
            time.sleep(0.05)
            yield EncodedFrame(b"\xff\xd8\xff")

    stats = run_camera("cam", slow(), 100, 80, ListPublisher(full_after=3), max_frames=6)  # type: ignore[arg-type]
    assert stats.sent == 3 and stats.dropped == 3
    assert stats.skipped_ticks >= 10  # 50 ms per frame at a 10 ms period


def test_run_camera_stops_on_event() -> None:
    stop = threading.Event()
    threading.Timer(0.2, stop.set).start()
    frames = itertools.repeat(EncodedFrame(b"\xff\xd8\xff"))
    started = time.monotonic()
    stats = run_camera("cam", frames, 2, 80, ListPublisher(), stop_event=stop)  # type: ignore[arg-type]
    assert time.monotonic() - started < 1.0 and stats.sent == 1


# --- CLI without a broker ----------------------------------------------------------------


def test_cli_rejects_bad_spec_and_camera_id() -> None:
    runner = CliRunner()
    result = runner.invoke(cli.app, ["push", "--camera-id", "cam", "--source", "webcam"])
    assert result.exit_code == 2 and "bad source spec" in result.output
    result = runner.invoke(cli.app, ["push", "--camera-id", "bad id!", "--source", "sim:scene"])
    assert result.exit_code == 2
    result = runner.invoke(cli.app, ["simulate", "--resolution", "big"])
    assert result.exit_code == 2


def test_sim_line_source_yields_conveyor_jpegs_with_truth():
    from visionline.camera.sources import open_source

    source = open_source("sim:line", resolution=(320, 180), seed=3, jpeg_quality=80)
    try:
        first = next(iter(source))
        assert first.data[:3] == b"\xff\xd8\xff" and first.content_type == "image/jpeg"
        assert source.last_truth is not None and source.last_truth.resolution == (320, 180)
    finally:
        source.close()
