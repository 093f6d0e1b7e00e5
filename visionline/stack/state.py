"""A stack's state folder: where each file lives, the status the supervisor publishes, its lock.

The supervisor is the only writer of ``status.json`` and ``sessions.json``; the CLI and
``LocalStack`` read them. Writes are atomic (write then rename), so a reader never sees half a file.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from visionline.stack.config import StackSettings, WorkerSpec

ComponentState = Literal["starting", "healthy", "unhealthy", "stopped"]
EXIT_ALREADY_RUNNING = 3  # the supervisor's exit code when another one holds the state folder
StackState = Literal["starting", "ready", "degraded", "unhealthy", "failed", "stopping", "stopped"]


def fresh_stack_folder(folder: Path) -> Path:
    """``folder`` emptied of an earlier run's stack, for a command that starts its own: only a
    stack's own folder (one with ``stack.json``) is ever removed."""
    if (folder / "stack.json").is_file():
        shutil.rmtree(folder)
    return folder


@dataclass(frozen=True)
class StatePaths:
    root: Path

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def config(self) -> Path:
        return self.root / "stack.json"

    @property
    def status(self) -> Path:
        return self.root / "status.json"

    @property
    def sessions(self) -> Path:
        return self.root / "sessions.json"

    @property
    def lock(self) -> Path:
        return self.root / "supervisor.lock"

    @property
    def supervisor_log(self) -> Path:
        return self.logs / "supervisor.log"

    @property
    def pgdata(self) -> Path:
        return self.root / "pgdata"

    @property
    def run(self) -> Path:
        return self.root / "run"

    @property
    def redis(self) -> Path:
        return self.root / "redis"

    @property
    def triton_backends(self) -> Path:
        return self.root / "triton" / "backends"

    def log(self, component: str) -> Path:
        return self.logs / f"{component}.log"

    def make(self) -> None:
        for folder in (self.root, self.logs, self.run, self.redis):
            folder.mkdir(parents=True, exist_ok=True)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class StackConfig(_Model):
    """What the CLI or ``LocalStack`` hands the supervisor (``stack.json``)."""

    run_id: str
    settings: dict
    workers: list[WorkerSpec] | None = None  # None: the real pipeline (default_workers)

    def stack_settings(self) -> StackSettings:
        return StackSettings(**self.settings)


class ComponentStatus(_Model):
    name: str
    group: str  # the service a replica belongs to: ``ingest`` for ``ingest-2``
    kind: Literal["infra", "worker"]
    state: ComponentState = "stopped"
    pid: int | None = None
    restarts: int = 0
    address: str = ""
    log: str | None = None
    last_error: str | None = None
    external: bool = False  # a server given by URL: health-checked, not started


class StackStatus(_Model):
    run_id: str
    state: StackState
    supervisor_pid: int
    started_at: float
    updated_at: float = Field(default_factory=time.time)
    ready_at: float | None = None
    error: str | None = None
    urls: dict[str, str] = Field(default_factory=dict)
    components: list[ComponentStatus] = Field(default_factory=list)

    @property
    def ready(self) -> bool:
        return self.state == "ready"

    def component(self, name: str) -> ComponentStatus:
        for component in self.components:
            if component.name == name:
                return component
        raise KeyError(name)

    def members(self, name: str) -> list[ComponentStatus]:
        """The component called ``name``, or every replica of the service ``name``."""
        return [c for c in self.components if name in (c.name, c.group)]


class SessionRecord(_Model):
    """A process the supervisor started, in its own session (sid = pid)."""

    name: str
    pid: int
    started_at: float
    run_id: str = ""


def write_json_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def read_status(paths: StatePaths) -> StackStatus | None:
    try:
        return StackStatus.model_validate_json(paths.status.read_text())
    except (FileNotFoundError, ValueError):
        return None


def write_status(paths: StatePaths, status: StackStatus) -> None:
    status.updated_at = time.time()
    write_json_atomic(paths.status, status.model_dump_json(indent=1))


def read_sessions(paths: StatePaths) -> list[SessionRecord]:
    try:
        raw = json.loads(paths.sessions.read_text())
    except (FileNotFoundError, ValueError):
        return []
    return [SessionRecord.model_validate(item) for item in raw]


def write_sessions(paths: StatePaths, sessions: list[SessionRecord]) -> None:
    write_json_atomic(paths.sessions, json.dumps([s.model_dump() for s in sessions]))


class SupervisorLock:
    """An exclusive ``flock`` the supervisor holds for its whole life: the kernel drops it when
    the process dies however it dies, so a held lock means a live supervisor."""

    def __init__(self, paths: StatePaths) -> None:
        self._path = paths.lock
        self._fd: int | None = None

    def acquire(self, patience_s: float = 1.0) -> bool:
        fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + patience_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                # A reader's probe (running_supervisor) holds it for an instant: try again.
                if time.monotonic() > deadline:
                    os.close(fd)
                    return False
                time.sleep(0.05)
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._fd = fd
        return True

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def running_supervisor(paths: StatePaths) -> int | None:
    """The pid of the supervisor that holds this state folder's lock, or None."""
    try:
        fd = os.open(paths.lock, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        text = os.pread(fd, 32, 0).decode().strip()
        return int(text) if text.isdigit() else -1
    finally:
        os.close(fd)  # closing also drops the shared lock taken when it was free
    return None


def summarize(components: list[ComponentStatus]) -> StackState:
    """The state of a running stack: ``unhealthy`` while an infrastructure server is down,
    ``degraded`` while a worker is down or crash-looping, else ``ready``."""
    if any(c.kind == "infra" and c.state != "healthy" for c in components):
        return "unhealthy"
    if any(c.state != "healthy" for c in components):
        return "degraded"
    return "ready"
