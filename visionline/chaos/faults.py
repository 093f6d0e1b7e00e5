"""The faults a chaos run injects into a running local stack, and how it waits for recovery.

Every fault is a ``kill -9`` of one process the stack's supervisor restarts: one replica of
each worker kind, one after another, then the servers (PostgreSQL, Redis, Triton, and the broker
when its log is on disk: an in-memory broker restarted has lost every topic, which is no fault
to recover from but data gone by design). A fault is over when every member of its component
is healthy again and none runs under the killed pid.
"""

from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass

from visionline.stack.api import LocalStack

# Simulated cameras of the demo: load, not part of the pipeline under test.
NOT_FAULTED = ("camera", "lines")
SERVERS = ("postgres", "redis", "triton", "broker")


@dataclass(frozen=True)
class Fault:
    name: str  # what the table calls it
    component: str  # the stack's service (group) or server name
    kind: str  # "worker" or "server"


@dataclass
class Struck:
    fault: Fault
    pid: int
    at: float  # epoch s
    restarted_s: float | None = None  # until healthy again under a new pid; None: never


def plan_faults(stack: LocalStack, broker_on_disk: bool) -> list[Fault]:
    """One kill per worker kind (in the stack's start order), then each server it runs."""
    status = stack.status()
    if status is None:
        raise RuntimeError("the stack is not running")
    groups: dict[str, str] = {}
    for c in status.components:
        if not c.external and c.group not in NOT_FAULTED:
            groups.setdefault(c.group, c.kind)
    workers = [Fault(f"kill -9 {g}", g, "worker") for g, k in groups.items() if k == "worker"]
    servers = [
        Fault(f"kill -9 {g}", g, "server")
        for g in SERVERS
        if g in groups and (g != "broker" or broker_on_disk)
    ]
    return workers + servers


def strike(stack: LocalStack, fault: Fault) -> Struck:
    pid = stack.pids(fault.component)[0]
    os.kill(pid, signal.SIGKILL)
    return Struck(fault, pid, time.time())


def healthy_again(stack: LocalStack, struck: Struck) -> bool:
    status = stack.status()
    members = status.members(struck.fault.component) if status is not None else []
    return bool(members) and all(
        m.state == "healthy" and m.pid not in (None, struck.pid) for m in members
    )


def wait_restarted(stack: LocalStack, struck: Struck, timeout_s: float) -> None:
    """Sets ``struck.restarted_s`` once the component is back (left None after ``timeout_s``)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if healthy_again(stack, struck):
            struck.restarted_s = round(time.time() - struck.at, 2)
            return
        time.sleep(0.2)
