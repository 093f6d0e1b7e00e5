"""Frame sources: anything OpenCV can open (file, RTSP/HTTP URL, USB), image folders, simulators.

A source is an iterable of frames (BGR arrays, or ``EncodedFrame`` bytes where the input is
already JPEG/PNG) with a ``close()``. ``open_source`` turns a spec string into one.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Literal

import cv2
import numpy as np

from visionline.camera.conveyor import ConveyorSource
from visionline.camera.frames import EncodedFrame, Frame, FrameSource, sniff_content_type
from visionline.camera.simulator import (
    DEFAULT_RESOLUTION,
    PhotoSimulator,
    Resolution,
    SceneSimulator,
)

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"})
URL_SCHEMES = ("rtsp://", "rtsps://", "http://", "https://")
SIMULATORS = ("photos", "scene", "line")
SPEC_HELP = (
    "file:PATH, rtsp://..., http(s)://..., usb:N, folder:PATH, sim:photos, sim:scene or sim:line"
)


class SourceSpecError(ValueError):
    """A source spec that does not parse."""


class SourceError(RuntimeError):
    """A source that cannot be opened or stopped delivering frames."""


@dataclass(frozen=True)
class SourceSpec:
    kind: Literal["file", "url", "usb", "folder", "sim"]
    target: str  # a path, a URL, a device index or a simulator name


def parse_source_spec(spec: str) -> SourceSpec:
    """Parse a source spec; ``SourceSpecError`` names the accepted forms when it does not."""
    spec = spec.strip()
    if spec.lower().startswith(URL_SCHEMES):
        return SourceSpec("url", spec)
    kind, sep, target = spec.partition(":")
    if not sep or not target:
        raise SourceSpecError(f"bad source spec {spec!r}: expected {SPEC_HELP}")
    if kind == "usb" and not target.isdigit():
        raise SourceSpecError(f"bad source spec {spec!r}: usb:N needs a device index like usb:0")
    if kind == "sim" and target not in SIMULATORS:
        raise SourceSpecError(
            f"bad source spec {spec!r}: simulators are sim:photos, sim:scene, sim:line"
        )
    if kind not in ("file", "usb", "folder", "sim"):
        raise SourceSpecError(f"bad source spec {spec!r}: expected {SPEC_HELP}")
    return SourceSpec(kind, target)  # type: ignore[arg-type]


def redact(spec: str | int) -> str:
    """``spec`` fit for logs and errors: a URL's user and password are replaced by ``***``."""
    text = str(spec)
    scheme, sep, rest = text.partition("://")
    netloc, slash, path = rest.partition("/")
    if sep and "@" in netloc:
        return f"{scheme}://***@{netloc.rpartition('@')[2]}{slash}{path}"
    return text


def open_source(
    spec: str,
    *,
    resolution: Resolution = DEFAULT_RESOLUTION,
    seed: int = 0,
    jpeg_quality: int = 80,
    loop: bool = True,
) -> FrameSource:
    """Open the source ``spec`` names; ``resolution``/``seed`` only matter for simulators."""
    parsed = parse_source_spec(spec)
    if parsed.kind == "file":
        if not Path(parsed.target).is_file():
            raise SourceError(f"no such video file: {parsed.target}")
        return CaptureSource(parsed.target, loop=loop)
    if parsed.kind == "url":
        return CaptureSource(parsed.target, live=True)
    if parsed.kind == "usb":
        return CaptureSource(int(parsed.target), live=True)
    if parsed.kind == "folder":
        return FolderSource(Path(parsed.target), loop=loop)
    if parsed.target == "photos":
        return PhotoSimulator(resolution, seed).encoded(jpeg_quality)
    if parsed.target == "line":
        return ConveyorSource(resolution, seed, jpeg_quality=jpeg_quality)
    return SceneSimulator(resolution, seed)


class CaptureSource:
    """A ``cv2.VideoCapture``: a file read frame by frame (optionally looping), or a live stream.

    A live stream (URL, USB) is drained by a background thread that keeps only the newest
    frame: reading one buffered frame per tick at a lower rate than the camera's would
    serve ever older frames.
    """

    def __init__(
        self, target: str | int, *, loop: bool = False, live: bool = False, reopen_attempts: int = 5
    ) -> None:
        self.target = target
        self.name = redact(target)
        self.loop = loop
        self.live = live
        self.reopen_attempts = reopen_attempts
        self._cap = self._open()
        self._latest: _LatestFrame | None = None

    def _open(self) -> cv2.VideoCapture:
        cap = cv2.VideoCapture(self.target)
        if not cap.isOpened():
            cap.release()
            raise SourceError(f"OpenCV cannot open {self.name}")
        return cap

    def reopen(self) -> None:
        self._cap.release()
        self._cap = self._open()

    def grab(self) -> np.ndarray | None:
        ok, frame = self._cap.read()
        return frame if ok else None

    def __iter__(self) -> Iterator[np.ndarray]:
        if not self.live:
            return self._sequential()
        if self._latest is None:
            self._latest = _LatestFrame(self, self.reopen_attempts)
        return iter(self._latest)

    def _sequential(self) -> Iterator[np.ndarray]:
        while True:
            produced = False
            while (frame := self.grab()) is not None:
                produced = True
                yield frame
            if not (self.loop and produced):
                return
            self.reopen()  # more reliable than seeking to frame 0 across containers

    def close(self) -> None:
        if self._latest is not None and not self._latest.stop():
            return  # the reader is stuck in read(): releasing under it could crash
        self._cap.release()


class _LatestFrame:
    """Reads a live capture on its own thread; iterating yields each new newest frame once."""

    def __init__(self, capture: CaptureSource, reopen_attempts: int, stall_s: float = 15.0):
        self._capture = capture
        self._reopen_attempts = reopen_attempts
        self._stall_s = stall_s
        self._cond = threading.Condition()
        self._frame: np.ndarray | None = None
        self._seq = 0
        self._ended = False
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="capture", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        failures = 0
        while not self._stopping.is_set():
            frame = self._capture.grab()
            if frame is not None:
                failures = 0
                self._publish(frame)
            elif failures >= self._reopen_attempts or not self._recover(failures := failures + 1):
                self._publish(None)
                return

    def _recover(self, attempt: int) -> bool:
        """Back off and reopen a dropped stream; False when asked to stop meanwhile."""
        log.warning("source %s gave no frame, reopening (try %d)", self._capture.name, attempt)
        if self._stopping.wait(min(2.0**attempt, 10.0)):
            return False
        try:
            self._capture.reopen()
        except SourceError as exc:
            log.warning("%s", exc)
        return True

    def _publish(self, frame: np.ndarray | None) -> None:
        with self._cond:
            if frame is None:
                self._ended = True
            else:
                self._frame, self._seq = frame, self._seq + 1
            self._cond.notify_all()

    def __iter__(self) -> Iterator[np.ndarray]:
        seen = 0
        while True:
            with self._cond:
                fresh = self._cond.wait_for(partial(self._newer_than, seen), self._stall_s)
                if self._ended or self._stopping.is_set():
                    return
                if not fresh:
                    raise SourceError(f"no frame from {self._capture.name} in {self._stall_s}s")
                frame, seen = self._frame, self._seq
            assert frame is not None  # fresh: a frame came
            yield frame

    def _newer_than(self, seen: int) -> bool:
        return self._seq > seen or self._ended

    def stop(self) -> bool:
        """Stop reading; True once the reader thread has ended."""
        self._stopping.set()
        self._thread.join(timeout=2.0)
        return not self._thread.is_alive()


class FolderSource:
    """The images of a folder in name order; JPEG/PNG files go out as they are, others decoded."""

    def __init__(self, folder: Path, loop: bool = True) -> None:
        if not folder.is_dir():
            raise SourceError(f"no such folder: {folder}")
        self.files = sorted(
            p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
        )
        if not self.files:
            raise SourceError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in {folder}")
        self.loop = loop

    def __iter__(self) -> Iterator[Frame]:
        while True:
            produced = False
            for path in self.files:
                frame = read_image(path)
                if frame is None:
                    continue
                produced = True
                yield frame
            if not (self.loop and produced):
                return

    def close(self) -> None:
        pass


def read_image(path: Path) -> Frame | None:
    """A JPEG/PNG file's bytes unchanged, another format decoded to BGR; None if unreadable."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        log.warning("skipping %s: %s", path, exc)
        return None
    content_type = sniff_content_type(data)
    if content_type:
        return EncodedFrame(data, content_type)
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        log.warning("skipping %s: not a decodable image", path)
    return image
