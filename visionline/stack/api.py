"""``LocalStack``: start, watch and stop the local stack from Python (tests, demo, CLI).

It drives the same supervisor daemon as ``visionline stack up``: it writes ``stack.json`` into the
state folder, starts ``python -m visionline.stack.supervisor`` in a session of its own, and reads
``status.json`` back.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType

from visionline.settings import REPO_ROOT
from visionline.stack.cleanup import find_leftovers, kill_leftovers
from visionline.stack.config import StackSettings, WorkerSpec, common_env
from visionline.stack.process import spawn, tail, wait_gone
from visionline.stack.state import (
    EXIT_ALREADY_RUNNING,
    StackConfig,
    StackStatus,
    StatePaths,
    read_status,
    running_supervisor,
    write_json_atomic,
    write_status,
)

_FINAL = ("failed", "stopped")


class StackError(RuntimeError):
    """The stack did not start or stop; the message quotes the component's log."""


class StackAlreadyRunning(StackError):
    """A supervisor already runs for this state folder."""


class LocalStack:
    """The local stack of one state folder.

    ``attached=True`` ties the supervisor to the calling thread with a parent-death signal: if the
    caller dies (a test run killed with SIGKILL), the stack stops. Use it in tests; the CLI starts
    detached stacks that outlive it.
    """

    def __init__(
        self,
        settings: StackSettings | None = None,
        *,
        workers: Sequence[WorkerSpec] | None = None,
        attached: bool = False,
    ) -> None:
        self.settings = settings or StackSettings()
        self.paths = StatePaths(self.settings.state_dir)
        self.endpoints = self.settings.endpoints()
        self.workers = list(workers) if workers is not None else None  # None: the real pipeline
        self.attached = attached
        self._supervisor: subprocess.Popen | None = None
        self._run_id: str | None = None

    @classmethod
    def from_state_dir(cls, state_dir: Path | None = None) -> LocalStack:
        """The stack last started in ``state_dir``, with the settings it was started with."""
        root = (state_dir or StackSettings().state_dir).absolute()
        try:
            config = StackConfig.model_validate_json(StatePaths(root).config.read_text())
        except (FileNotFoundError, ValueError):
            return cls(StackSettings(state_dir=root))
        return cls(config.stack_settings(), workers=config.workers)

    # --- addresses --------------------------------------------------------------------------

    @property
    def kafka_bootstrap(self) -> str:
        return self.endpoints.kafka_bootstrap

    @property
    def database_url(self) -> str:
        return self.endpoints.database_url

    @property
    def redis_url(self) -> str:
        return self.endpoints.redis_url

    @property
    def triton_grpc_url(self) -> str:
        return self.endpoints.triton_grpc_url

    @property
    def triton_http_url(self) -> str:
        return self.endpoints.triton_http_url

    @property
    def upload_url(self) -> str:
        return self.endpoints.upload_url

    @property
    def api_url(self) -> str:
        return self.endpoints.api_url

    def common_env(self) -> dict[str, str]:
        """The ``VISIONLINE_*`` variables the workers get: give them to your own processes."""
        return common_env(self.settings)

    # --- life cycle -------------------------------------------------------------------------

    def is_running(self) -> bool:
        return running_supervisor(self.paths) is not None

    def start(
        self,
        timeout: float | None = None,
        on_progress: Callable[[StackStatus], None] | None = None,
    ) -> StackStatus:
        """Start the stack and wait until every component is healthy.

        Raises ``StackAlreadyRunning`` when this state folder has a running stack, and
        ``StackError`` (after stopping what was started) when a component does not come up.
        """
        timeout = timeout or self.settings.ready_timeout_s
        if self._run_id is not None and self._supervisor and self._supervisor.poll() is None:
            return self._wait_ready(self._run_id, timeout, on_progress)  # started by us already
        if self.is_running():
            raise StackAlreadyRunning(f"a stack is already running in {self.paths.root}")
        self.paths.make()
        kill_leftovers(self.paths)
        self._run_id = run_id = uuid.uuid4().hex
        config = StackConfig(
            run_id=run_id, settings=self.settings.model_dump(mode="json"), workers=self.workers
        )
        write_json_atomic(self.paths.config, config.model_dump_json(indent=1))
        self._supervisor = self._spawn_supervisor()
        try:
            return self._wait_ready(run_id, timeout, on_progress)
        except StackAlreadyRunning:
            raise
        except BaseException:
            self.stop()
            raise

    def _spawn_supervisor(self) -> subprocess.Popen:
        argv = [sys.executable, "-m", "visionline.stack.supervisor", "--state-dir"]
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        return spawn(
            [*argv, str(self.paths.root)],
            env=env,
            log_path=self.paths.supervisor_log,
            cwd=REPO_ROOT,
            death_signal=signal.SIGTERM if self.attached else None,
        )

    def _wait_ready(
        self,
        run_id: str,
        timeout: float,
        on_progress: Callable[[StackStatus], None] | None,
    ) -> StackStatus:
        deadline = time.monotonic() + timeout
        while True:
            status = read_status(self.paths)
            ours = status if status is not None and status.run_id == run_id else None
            if ours is not None and on_progress is not None:
                on_progress(ours)
            if ours is not None and ours.ready_at is not None:
                return ours
            if ours is not None and ours.state in _FINAL:
                self._wait_supervisor_exit(self.settings.stop_timeout_s * 4)
                raise StackError(ours.error or f"the stack {ours.state}")
            self._raise_if_supervisor_died(ours)
            if time.monotonic() > deadline:
                raise StackError(f"not ready after {timeout:.0f} s: {_describe(ours)}")
            time.sleep(0.1)

    def _raise_if_supervisor_died(self, status: StackStatus | None) -> None:
        assert self._supervisor is not None
        code = self._supervisor.poll()
        if code is None:
            return
        if code == EXIT_ALREADY_RUNNING:
            raise StackAlreadyRunning(f"a stack is already running in {self.paths.root}")
        log_tail = tail(self.paths.supervisor_log, 30)
        raise StackError(f"the supervisor exited with code {code}:\n{log_tail}")

    def _wait_supervisor_exit(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while self.is_running() and time.monotonic() < deadline:
            time.sleep(0.1)
        if self._supervisor is not None:
            try:
                self._supervisor.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass

    def stop(self) -> list[int]:
        """Stop the stack (no-op when none runs) and make sure none of its processes is left.

        Returns the pids of leftovers that had to be killed after the supervisor was gone.
        Raises ``StackError`` if any process survives even SIGKILL.
        """
        pid = self._supervisor_pid()
        if pid is not None:
            self._stop_supervisor(pid)
        killed = kill_leftovers(self.paths)
        survivors = find_leftovers(self.paths)
        if survivors:
            raise StackError(f"processes of {self.paths.root} survived SIGKILL: {survivors}")
        self._mark_stopped()
        self._run_id = None
        return killed

    def _stop_supervisor(self, pid: int) -> None:
        if pid <= 1:  # never os.kill(-1 or 0): that signals every process we may signal
            raise StackError(f"bad supervisor pid {pid} in {self.paths.lock}")
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        # It stops the workers, then Triton, then the servers, each stage with a timeout.
        if not wait_gone(pid, self.settings.stop_timeout_s * 3 + 15):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            wait_gone(pid, 5)
        self._wait_supervisor_exit(1)  # reap it, when it is our child

    def _supervisor_pid(self) -> int | None:
        for _ in range(20):  # -1: the lock is held, its pid not yet written
            pid = running_supervisor(self.paths)
            if pid != -1:
                return pid
            time.sleep(0.05)
        return None

    def _mark_stopped(self) -> None:
        """A supervisor that was killed left a status claiming the stack runs: correct it."""
        status = read_status(self.paths)
        if status is not None and status.state not in _FINAL:
            status.state = "stopped"
            status.error = "the supervisor was gone; its processes were ended by `stack down`"
            write_status(self.paths, status)

    # --- inspection -------------------------------------------------------------------------

    def status(self) -> StackStatus | None:
        """The published status, or None if this state folder never ran a stack. A status whose
        supervisor is gone is reported ``failed``."""
        status = read_status(self.paths)
        if status is None or status.state in _FINAL or self.is_running():
            return status
        status.state = "failed"
        status.error = "the supervisor is not running (killed?): `visionline stack down` cleans up"
        return status

    def pids(self, name: str) -> list[int]:
        """Pids of the component ``name``, or of every replica of the service ``name``."""
        status = self.status()
        members = status.members(name) if status is not None else []
        if not members:
            raise KeyError(f"no component {name!r} in {self.paths.root}")
        return [c.pid for c in members if c.pid is not None]

    def wait_ready(self, timeout: float = 30.0) -> StackStatus:
        """Wait until every component is healthy again (after a crash test, say)."""
        deadline = time.monotonic() + timeout
        while True:
            status = self.status()
            if status is not None and status.ready:
                return status
            if status is None or status.state in _FINAL:
                raise StackError(f"the stack is not running: {_describe(status)}")
            if time.monotonic() > deadline:
                raise StackError(f"not ready after {timeout:.0f} s: {_describe(status)}")
            time.sleep(0.1)

    def log_files(self, name: str) -> list[Path]:
        """Log files of a component, of every replica of a service, or of the supervisor."""
        exact = self.paths.log(name)
        if exact.exists():
            return [exact]
        status = read_status(self.paths)
        members = status.members(name) if status is not None else []
        return [Path(c.log) for c in members if c.log]

    def __enter__(self) -> LocalStack:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _describe(status: StackStatus | None) -> str:
    if status is None:
        return "no status published"
    waiting = [
        f"{c.name} ({c.last_error or c.state})" for c in status.components if c.state != "healthy"
    ]
    return f"state {status.state}; not healthy: {', '.join(waiting) or 'none'}"
