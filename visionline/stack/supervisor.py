"""The supervisor daemon: ``python -m visionline.stack.supervisor --state-dir DIR``.

It reads ``DIR/stack.json``, starts the components stage by stage (broker, PostgreSQL and Redis
together; then Triton; then the workers), waits for each to pass its health check, restarts
crashed workers and servers with backoff (all but the in-memory broker), calls a worker that
keeps crashing unhealthy, publishes ``DIR/status.json``, and on SIGTERM stops everything in
reverse order. It holds ``DIR/supervisor.lock`` for as long as it lives.

Single-threaded on purpose: children are forked from the main thread only, because their
parent-death signal fires when the thread that forked them ends.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from visionline.settings import REPO_ROOT
from visionline.stack.cleanup import kill_leftovers
from visionline.stack.components import ComponentSpec, build_components
from visionline.stack.config import (
    RestartPolicy,
    default_workers,
    masked_url,
    start_stages,
    stop_order,
)
from visionline.stack.health import Unhealthy, port_in_use
from visionline.stack.process import (
    created_at,
    session_tree,
    signal_pids,
    spawn,
    stop_sessions,
    tail,
)
from visionline.stack.state import (
    EXIT_ALREADY_RUNNING,
    ComponentState,
    ComponentStatus,
    SessionRecord,
    StackConfig,
    StackStatus,
    StatePaths,
    SupervisorLock,
    summarize,
    write_sessions,
    write_status,
)
from visionline.stack.watchdog import start_watchdog

log = logging.getLogger("visionline.stack.supervisor")
STARTUP_RESTARTS = 2  # a worker that dies more often than this before it is healthy fails `up`
CHECK_EVERY_S = 5.0  # health checks of running components
FAILED_CHECKS = 3  # in a row before a running component is called unhealthy
# A component that exited this often within the window is in a crash loop: unhealthy, even
# while a restart passes its health check, until the window holds fewer exits.
CRASH_LOOP_EXITS = 3
CRASH_LOOP_WINDOW_S = 300.0
LOOP_S = 0.2
PUBLISH_EVERY_S = 2.0


class StartupFailed(Exception):
    """A component did not come up; the message says which, why, and quotes its log."""


class Interrupted(Exception):
    """A stop was requested while starting."""


@dataclass
class Proc:
    """Run-time state of one component."""

    spec: ComponentSpec
    log_path: Path
    popen: subprocess.Popen | None = None
    state: ComponentState = "stopped"
    restarts: int = 0
    failures: int = 0  # crashes in a row, for the backoff
    started_at: float = 0.0  # time.monotonic()
    deadline: float = 0.0
    restart_at: float | None = None
    last_check: float = 0.0
    failed_checks: int = 0
    last_error: str | None = None
    provisioned: bool = False
    exits: list[float] = field(default_factory=list)  # time.monotonic() of recent exits

    def crash_loop(self, now: float) -> str | None:
        """What to say while the component is in a crash loop, else None."""
        self.exits = [t for t in self.exits if now - t < CRASH_LOOP_WINDOW_S]
        if len(self.exits) < CRASH_LOOP_EXITS:
            return None
        minutes = CRASH_LOOP_WINDOW_S / 60
        return f"crash loop: exited {len(self.exits)} times in the last {minutes:.0f} min"

    @property
    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def status(self) -> ComponentStatus:
        spec = self.spec
        return ComponentStatus(
            name=spec.name,
            group=spec.group,
            kind=spec.kind,
            state=self.state,
            pid=self.popen.pid if self.popen is not None and self.alive else None,
            restarts=self.restarts,
            address=spec.address,
            log=None if spec.external else str(self.log_path),
            last_error=self.last_error,
            external=spec.external,
        )


class Supervisor:
    def __init__(self, config: StackConfig, paths: StatePaths, policy: RestartPolicy) -> None:
        self.settings = config.stack_settings()
        self.paths = paths
        self.policy = policy
        workers = config.workers if config.workers is not None else default_workers(self.settings)
        specs = build_components(self.settings, paths, workers, config.run_id)
        self.stages = start_stages(self.settings, workers)
        self.procs = {n: Proc(specs[n], paths.log(n)) for stage in self.stages for n in stage}
        self.sessions: list[SessionRecord] = []
        self.run_id = config.run_id
        self.stop_requested = False
        self.status = StackStatus(
            run_id=config.run_id,
            state="starting",
            supervisor_pid=os.getpid(),
            started_at=time.time(),
            urls=self._urls(),
        )
        self._published = 0.0

    def _urls(self) -> dict[str, str]:
        urls = self.settings.endpoints()
        return {
            "kafka_bootstrap": urls.kafka_bootstrap,
            "database_url": masked_url(urls.database_url),
            "redis_url": masked_url(urls.redis_url),
            "triton_grpc_url": urls.triton_grpc_url if self.settings.with_triton else "",
            "triton_http_url": urls.triton_http_url if self.settings.with_triton else "",
            "upload_url": urls.upload_url if self.settings.with_workers else "",
            "dashboard_url": f"{urls.api_url}/dashboard" if self.settings.with_workers else "",
        }

    def request_stop(self, signum: int, _frame: object) -> None:
        log.info("got signal %d: stopping", signum)
        self.stop_requested = True

    def run(self) -> int:
        self.publish(force=True)
        try:
            for stage in self.stages:
                self._start_stage(stage)
            self.status.ready_at = time.time()
            log.info("stack ready in %.1f s", self.status.ready_at - self.status.started_at)
            self._watch()
            return 0
        except StartupFailed as exc:
            log.error("start failed: %s", exc)
            self.status.error = str(exc)
            return 1
        except Interrupted:
            return 0
        finally:
            self._shutdown()

    # --- starting -------------------------------------------------------------------------

    def _start_stage(self, names: list[str]) -> None:
        earlier = [p for p in self.procs.values() if p.state != "stopped"]
        for name in names:
            self._launch(self.procs[name])
        while True:
            if self.stop_requested:
                raise Interrupted
            pending = [self.procs[n] for n in names if self.procs[n].state != "healthy"]
            if not pending:
                return
            for proc in pending:
                self._advance_startup(proc)
            for proc in earlier:
                self._supervise_earlier(proc)
            self.publish()
            time.sleep(LOOP_S)

    def _supervise_earlier(self, proc: Proc) -> None:
        """A server that died while a later stage started fails the start: better now than a
        stack that says ready and is not."""
        if proc.spec.kind == "infra" and proc.popen is not None and not proc.alive:
            code = proc.popen.returncode
            raise StartupFailed(self._failure(proc, f"exited with code {code} after it was up"))
        self._supervise(proc)

    def _launch(self, proc: Proc) -> None:
        spec = proc.spec
        now = time.monotonic()
        proc.state, proc.started_at, proc.deadline = "starting", now, now + spec.ready_timeout_s
        proc.restart_at = None
        if spec.external:
            return
        if proc.restarts == 0:
            self._check_ports(spec)
        try:
            if spec.prepare is not None:
                spec.prepare()
        except Exception as exc:  # the message says what to do: no log to quote yet
            raise StartupFailed(f"{spec.name}: {exc}") from exc
        try:
            proc.popen = spawn(
                spec.argv or [],
                env=spec.env,
                log_path=proc.log_path,
                cwd=spec.cwd,
                death_signal=spec.stop_signal,
                user=spec.user,
            )
        except Exception as exc:
            raise StartupFailed(self._failure(proc, f"could not start: {exc}")) from exc
        pid = proc.popen.pid
        started = created_at(pid) or time.time()
        record = SessionRecord(name=spec.name, pid=pid, started_at=started, run_id=self.run_id)
        self.sessions.append(record)
        write_sessions(self.paths, self.sessions)
        log.info("started %s (pid %d)", spec.name, pid)

    def _check_ports(self, spec: ComponentSpec) -> None:
        """A clear message beats the server's own bind error in its log."""
        host = self.settings.host
        busy = [port for port in spec.ports if port_in_use(host, port)]
        if busy:
            raise StartupFailed(
                f"{spec.name}: port {', '.join(map(str, busy))} on {host} is in use: another "
                "stack (`visionline stack status`), or set VISIONLINE_STACK_*_PORT"
            )

    def _advance_startup(self, proc: Proc) -> None:
        now = time.monotonic()
        if proc.restart_at is not None:
            if now >= proc.restart_at:
                self._relaunch(proc)
            return
        if proc.popen is not None and not proc.alive:
            code = proc.popen.returncode
            if proc.spec.kind == "worker" and proc.restarts < STARTUP_RESTARTS:
                self._schedule_restart(proc, code)
                return
            raise StartupFailed(self._failure(proc, f"exited with code {code} while starting"))
        if now > proc.deadline:
            timeout, why = proc.spec.ready_timeout_s, proc.last_error or "no answer"
            raise StartupFailed(self._failure(proc, f"not healthy after {timeout:.0f} s: {why}"))
        if proc.spec.kind == "worker" and now - proc.started_at < self.settings.worker_settle_s:
            return
        self._check_startup(proc)

    def _check_startup(self, proc: Proc) -> None:
        try:
            proc.spec.check()
        except Unhealthy as exc:
            proc.last_error = str(exc)
            return
        if proc.spec.provision is not None and not proc.provisioned:
            try:
                proc.spec.provision()
            except Exception as exc:
                raise StartupFailed(f"{proc.spec.name}: provisioning failed: {exc!r}") from exc
            proc.provisioned = True
        proc.state, proc.last_error, proc.last_check = "healthy", None, time.monotonic()
        log.info("%s healthy", proc.spec.name)

    def _failure(self, proc: Proc, what: str) -> str:
        message = f"{proc.spec.name}: {what}"
        if proc.spec.hint:
            message += f"\n{proc.spec.hint}"
        if not proc.spec.external:
            # Triton's option table has lines of 200+ characters: keep the start of each.
            lines = [line[:240] for line in tail(proc.log_path, 40).splitlines()]
            message += f"\n--- last lines of {proc.log_path} ---\n" + "\n".join(lines)
        return message

    # --- running --------------------------------------------------------------------------

    def _watch(self) -> None:
        while not self.stop_requested:
            for proc in self.procs.values():
                self._supervise(proc)
            self.publish()
            time.sleep(LOOP_S)

    def _supervise(self, proc: Proc) -> None:
        now = time.monotonic()
        if proc.restart_at is not None:
            if now >= proc.restart_at:
                self._relaunch(proc)
        elif proc.popen is not None and not proc.alive:
            self._on_exit(proc)
        elif proc.state == "starting":
            self._check_restarted(proc, now)
        elif now - proc.last_check >= CHECK_EVERY_S:
            self._periodic_check(proc, now)

    def _end_session(self, proc: Proc) -> None:
        """What a dead leader leaves in its session (its helpers) must not run beside the
        replacement: end it now."""
        if proc.popen is None:
            return
        sid = proc.popen.pid
        remnants = session_tree([sid])[sid]
        if remnants:
            log.warning("%s left %s behind: SIGKILL", proc.spec.name, remnants)
            signal_pids(remnants, signal.SIGKILL)

    def _on_exit(self, proc: Proc) -> None:
        self._schedule_restart(proc, proc.popen.returncode if proc.popen else None)

    def _schedule_restart(self, proc: Proc, code: int | None) -> None:
        self._end_session(proc)
        now = time.monotonic()
        uptime = now - proc.started_at
        proc.failures = self.policy.failures_after_crash(proc.failures, uptime)
        delay = self.policy.delay(proc.failures)
        proc.popen, proc.state = None, "unhealthy"
        proc.restart_at = now + delay
        proc.exits.append(now)
        proc.last_error = f"exited with code {code} after {uptime:.1f} s; restart in {delay:.1f} s"
        if looping := proc.crash_loop(now):
            proc.last_error = f"{looping}; {proc.last_error}"
        log.warning("%s %s", proc.spec.name, proc.last_error)

    def _relaunch(self, proc: Proc) -> None:
        proc.restarts += 1
        try:
            self._launch(proc)
        except StartupFailed as exc:
            if self.status.ready_at is None:
                raise
            self._schedule_restart(proc, None)  # out of fds or memory, say: try again later
            proc.last_error = str(exc).splitlines()[0]

    def _check_restarted(self, proc: Proc, now: float) -> None:
        # A worker's check may pass before it has joined its group; a server's answer counts.
        settling = (
            proc.spec.kind == "worker" and now - proc.started_at < self.settings.worker_settle_s
        )
        if settling:
            return
        try:
            proc.spec.check()
        except Unhealthy as exc:
            proc.last_error = str(exc)
            return
        proc.last_check = now
        self._passed(proc, now)
        if proc.state == "healthy":
            log.info("%s healthy again (restart %d)", proc.spec.name, proc.restarts)

    def _passed(self, proc: Proc, now: float) -> None:
        """A health check passed: healthy, unless the component is in a crash loop."""
        if looping := proc.crash_loop(now):
            proc.state, proc.last_error = "unhealthy", f"{looping}; up again since the last"
            return
        proc.state, proc.failed_checks, proc.last_error = "healthy", 0, None

    def _periodic_check(self, proc: Proc, now: float) -> None:
        proc.last_check = now
        try:
            proc.spec.check()
        except Unhealthy as exc:
            proc.failed_checks += 1
            proc.last_error = str(exc)
            if proc.failed_checks >= FAILED_CHECKS and proc.state != "unhealthy":
                proc.state = "unhealthy"
                log.error("%s unhealthy: %s", proc.spec.name, exc)
            return
        was = proc.state
        self._passed(proc, now)
        if was != "healthy" and proc.state == "healthy":
            log.info("%s healthy again", proc.spec.name)

    def publish(self, force: bool = False) -> None:
        components = [proc.status() for proc in self.procs.values()]
        state = self.status.state
        if state in ("starting", "ready", "degraded", "unhealthy"):
            state = "starting" if self.status.ready_at is None else summarize(components)
        changed = state != self.status.state or components != self.status.components
        if not (force or changed or time.monotonic() - self._published >= PUBLISH_EVERY_S):
            return
        if state != self.status.state:
            log.info("stack %s", state)
        self.status.state, self.status.components = state, components
        write_status(self.paths, self.status)
        self._published = time.monotonic()

    # --- stopping -------------------------------------------------------------------------

    def _shutdown(self) -> None:
        failed = self.status.error is not None
        self.status.state = "stopping"
        self.publish(force=True)
        for stage in stop_order(self.stages):
            self._stop_stage([self.procs[name] for name in stage])
        # Whatever outlived its session leader (a crashed worker's helpers, say).
        leftovers = kill_leftovers(self.paths)
        if leftovers:
            log.warning("ended leftover processes %s", leftovers)
        self.sessions.clear()
        write_sessions(self.paths, self.sessions)
        self.status.state = "failed" if failed else "stopped"
        self.publish(force=True)
        log.info("stack %s", self.status.state)

    def _stop_stage(self, procs: list[Proc]) -> None:
        running = [p for p in procs if p.alive]
        if running:
            names = ", ".join(p.spec.name for p in running)
            log.info("stopping %s", names)
            leaders = {p.popen.pid: p.spec.stop_signal for p in running if p.popen}
            killed = stop_sessions(leaders, max(p.spec.stop_timeout_s for p in running))
            if killed:
                log.warning("had to SIGKILL %s", killed)
        for proc in procs:
            if proc.popen is not None:
                try:
                    proc.popen.wait(timeout=5)  # reap it
                except subprocess.TimeoutExpired:
                    log.error("%s (pid %d) did not die", proc.spec.name, proc.popen.pid)
            proc.popen, proc.state, proc.restart_at = None, "stopped", None
        self.publish(force=True)


def main(argv: list[str] | None = None) -> int:
    stop = {"requested": False}  # a signal before the supervisor exists still counts
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, lambda *_: stop.update(requested=True))
    parser = argparse.ArgumentParser(prog="python -m visionline.stack.supervisor")
    parser.add_argument("--state-dir", type=Path, required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(message)s"
    )
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)
    paths = StatePaths(args.state_dir.absolute())
    paths.make()
    lock = SupervisorLock(paths)
    if not lock.acquire():
        log.error("a supervisor already runs for %s", paths.root)
        return EXIT_ALREADY_RUNNING
    try:
        kill_leftovers(paths)  # of a supervisor that was killed before it could stop them
        config = StackConfig.model_validate_json(paths.config.read_text())
        watchdog, guard = start_watchdog(paths, config.run_id, REPO_ROOT)
        try:
            return _supervise(paths, config, stop)
        finally:
            os.close(guard)  # the watchdog wakes up, finds nothing left and exits
            try:
                watchdog.wait(timeout=30)
            except subprocess.TimeoutExpired:
                log.error("the watchdog (pid %d) did not exit", watchdog.pid)
    finally:
        lock.release()


def _supervise(paths: StatePaths, config: StackConfig, stop: dict) -> int:
    try:
        supervisor = Supervisor(config, paths, RestartPolicy())
    except Exception as exc:
        log.exception("bad stack configuration")
        _publish_failure(paths, config.run_id, f"bad stack configuration: {exc}")
        return 1
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, supervisor.request_stop)
    supervisor.stop_requested = stop["requested"]
    return supervisor.run()


def _publish_failure(paths: StatePaths, run_id: str, error: str) -> None:
    status = StackStatus(
        run_id=run_id,
        state="failed",
        supervisor_pid=os.getpid(),
        started_at=time.time(),
        error=error,
    )
    write_status(paths, status)


if __name__ == "__main__":
    sys.exit(main())
