"""Starting and stopping supervised processes so that none is ever left behind.

Each child runs in its own session (``setsid``), so it and its descendants (Triton's Python
stubs, a worker's helpers) can be found by session and stopped together. Each child also gets a
parent-death signal (``PR_SET_PDEATHSIG``), so a supervisor killed with SIGKILL still takes its
children with it, and carries ``MEMBER_ENV``, by which ``stack down`` and the supervisor's
watchdog find any descendant that escaped (see ``cleanup.find_leftovers``).
"""

from __future__ import annotations

import ctypes
import logging
import os
import pwd
import signal
import subprocess
import time
from collections import defaultdict, deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import psutil

from visionline.stack.config import MEMBER_ENV, RUN_ENV

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1
_libc = ctypes.CDLL(None, use_errno=True)


def parent_death_signal(sig: int) -> Callable[[], None]:
    """A ``preexec_fn``: the child gets ``sig`` when this process dies (even by SIGKILL)."""
    parent = os.getpid()

    def preexec() -> None:  # runs in the child between fork and exec: keep it tiny
        _libc.prctl(_PR_SET_PDEATHSIG, sig, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before prctl: no signal would ever come
            os.kill(os.getpid(), signal.SIGKILL)

    return preexec


def as_user(user: str | None) -> dict:
    """Popen arguments that drop root for ``user``, supplementary groups included."""
    if user is None:
        return {}
    entry = pwd.getpwnam(user)
    return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}


def spawn(
    argv: Sequence[str],
    *,
    env: Mapping[str, str],
    log_path: Path,
    cwd: Path,
    death_signal: int | None = signal.SIGTERM,
    user: str | None = None,
) -> subprocess.Popen:
    """Start ``argv`` as a session leader, stdout+stderr appended to ``log_path``.

    ``death_signal`` is sent to the child when its parent dies (None: it outlives it). The signal
    fires when the *thread* that forked the child ends: spawn from a thread that lives as long.
    """
    preexec = None if death_signal is None else parent_death_signal(death_signal)
    _rotate(log_path)
    with open(log_path, "ab") as out:
        out.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} start: {' '.join(argv)}\n".encode())
        out.flush()
        return subprocess.Popen(
            list(argv),
            env=dict(env),
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
            preexec_fn=preexec,
            **as_user(user),
        )


def _rotate(log_path: Path, max_bytes: int = 20 << 20) -> None:
    """Logs are appended across runs: keep one older generation once one grows large."""
    try:
        if log_path.stat().st_size > max_bytes:
            os.replace(log_path, log_path.with_name(log_path.name + ".1"))
    except FileNotFoundError:
        pass


@dataclass(frozen=True)
class ProcInfo:
    pid: int
    ppid: int
    pgrp: int
    sid: int
    state: str


def _read_stat(pid: int) -> ProcInfo | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name may hold spaces and parentheses: fields start after the last ')'.
    fields = raw[raw.rindex(")") + 2 :].split()
    return ProcInfo(pid, int(fields[1]), int(fields[2]), int(fields[3]), fields[0])


def live_processes() -> list[ProcInfo]:
    """Every process on the machine but zombies (dead, only waiting to be reaped)."""
    out = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            info = _read_stat(int(name))
            if info is not None and info.state not in ("Z", "X"):
                out.append(info)
    return out


def wait_gone(pid: int, timeout_s: float) -> bool:
    """Wait until ``pid`` has exited (a zombie counts as exited); False on timeout."""
    deadline = time.monotonic() + timeout_s
    while True:
        info = _read_stat(pid)
        if info is None or info.state in ("Z", "X"):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)


def session_tree(sids: Iterable[int]) -> dict[int, list[int]]:
    """Live pids of each session in ``sids``, with every descendant of its members.

    Descendants count as well because PostgreSQL's backends start sessions of their own.
    """
    procs = live_processes()
    children: dict[int, list[int]] = defaultdict(list)
    members: dict[int, list[int]] = defaultdict(list)
    for info in procs:
        children[info.ppid].append(info.pid)
        members[info.sid].append(info.pid)
    tree: dict[int, list[int]] = {}
    for sid in set(sids):
        seen = set(members[sid])
        todo = list(seen)
        while todo:
            for child in children[todo.pop()]:
                if child not in seen:
                    seen.add(child)
                    todo.append(child)
        tree[sid] = sorted(seen)
    return tree


def signal_pids(pids: Iterable[int], sig: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def stop_sessions(
    leaders: Mapping[int, int], timeout_s: float, poll_s: float = 0.1
) -> dict[int, list[int]]:
    """Stop whole sessions: send each leader its signal (``{sid: signal}``), wait up to
    ``timeout_s`` for its session to empty, then SIGKILL what is left.

    The leader gets the polite signal first: tritonserver and the postmaster stop their own
    children in order. Once a leader is gone, what is left of its session (helpers nobody
    stops any more) gets the same signal. Returns ``{sid: pids that needed SIGKILL}``.
    """
    orphaned: set[int] = set()
    for sid, sig in leaders.items():
        signal_pids([sid], sig)
    deadline = time.monotonic() + timeout_s
    while True:
        alive = {sid: pids for sid, pids in session_tree(leaders).items() if pids}
        for sid in alive.keys() - orphaned:
            if sid not in alive[sid]:
                signal_pids(alive[sid], leaders[sid])
                orphaned.add(sid)
        if not alive or time.monotonic() >= deadline:
            break
        time.sleep(poll_s)
    for pids in alive.values():
        signal_pids(pids, signal.SIGKILL)
    if alive:
        _wait_sessions_empty(alive.keys(), 5.0, poll_s)
    return alive


def _wait_sessions_empty(sids: Iterable[int], timeout_s: float, poll_s: float) -> dict:
    deadline = time.monotonic() + timeout_s
    while True:
        alive = {sid: pids for sid, pids in session_tree(sids).items() if pids}
        if not alive or time.monotonic() >= deadline:
            return alive
        time.sleep(poll_s)


def marked_processes(marker: str, run_id: str | None = None) -> list[int]:
    """Pids whose environment says they belong to the stack of ``marker`` (its state folder),
    and to its run ``run_id`` when given.

    PostgreSQL rewrites the memory /proc shows as its environment (for its process titles), so
    this misses its processes: session records cover those.
    """
    me = os.getpid()
    found = []
    for proc in psutil.process_iter():
        try:
            env = proc.environ()
            if proc.pid == me or env.get(MEMBER_ENV) != marker:
                continue
            if run_id is None or env.get(RUN_ENV) == run_id:
                found.append(proc.pid)
        except (psutil.Error, OSError):
            continue
    return found


def created_at(pid: int) -> float | None:
    try:
        return psutil.Process(pid).create_time()
    except psutil.Error:
        return None


def tail(path: Path, lines: int = 30) -> str:
    """The last ``lines`` lines of a text file ('' when there is none)."""
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(0, handle.tell() - 256 * lines))
            kept = deque(handle.read().splitlines(), maxlen=lines)
    except OSError:
        return ""
    return "\n".join(line.decode("utf-8", errors="replace") for line in kept)


def session_memory(sid: int) -> int:
    """Proportional set size (bytes) of a session's processes: shared pages counted once."""
    total = 0
    for pid in session_tree([sid])[sid]:
        try:
            info = psutil.Process(pid).memory_full_info()
        except psutil.Error:
            continue
        total += getattr(info, "pss", info.rss)
    return total
