"""The faults a chaos run injects into a running local stack, and how it waits for recovery.

A worker fault is a ``kill -9`` of one replica of each worker kind, one after another. Each
server (PostgreSQL, Redis, Triton, and the broker when the stack started it, its log on disk)
is killed the same way; PostgreSQL and Redis are also stopped cleanly by the signal of their
own shutdown (``stop``), and frozen for ``PAUSE_S`` with every process of theirs (``pause``:
SIGSTOP, then SIGCONT: a server that hangs, where clients wait instead of being refused). The
stack's supervisor restarts what exited. A fault is over when every member of its component is
healthy again, under a new pid unless it was paused; and, for a worker that consumed, once its
successor holds partitions in the worker's consumer group (``consuming_s``): a Faust worker is
alive seconds before it reads again, and the next fault struck in between would strike two at
once (Redis killed while the restarted parts worker recalls its lines' memory).
"""

from __future__ import annotations

import os
import signal
import threading
import time
from dataclasses import dataclass, field
from typing import Literal

from visionline.kafka import admin_client, consumer_group
from visionline.messages import Topic
from visionline.stack.api import LocalStack
from visionline.stack.kafka_cluster import KafkaCluster

# Simulated cameras of the demo: load, not part of the pipeline under test.
NOT_FAULTED = ("camera", "lines")
SERVERS = ("postgres", "redis", "triton", "broker")
# The servers also stopped cleanly and paused, and the signal each shuts down on (PostgreSQL's
# fast shutdown: SIGTERM would wait for every client to leave).
STOPPED = {"postgres": signal.SIGINT, "redis": signal.SIGTERM}
PAUSE_S = 10.0
Action = Literal["kill", "stop", "pause"]


# On a three-node cluster (``visionline chaos --cluster``): the node leading this partition is
# killed, and started again on its log after LEADER_DOWN_S.
LEADER_OF = (str(Topic.RAW_FRAMES), 0)
LEADER_DOWN_S = 5.0


@dataclass(frozen=True)
class Fault:
    name: str  # what the table calls it
    component: str  # the stack's service (group) or server name
    kind: str  # "worker" or "server"
    action: Action = "kill"
    cluster: KafkaCluster | None = field(default=None, compare=False)  # its leader is struck


@dataclass
class Struck:
    fault: Fault
    pid: int
    at: float  # epoch s
    restarted_s: float | None = None  # until healthy again under a new pid; None: never
    # Members of the worker's consumer group that held partitions when it was struck (empty:
    # not a consumer, or not known), and the seconds until a new member held some.
    consumers: frozenset[str] = frozenset()
    consuming_s: float | None = None


def plan_faults(
    stack: LocalStack, broker_on_disk: bool, cluster: KafkaCluster | None = None
) -> list[Fault]:
    """One kill per worker kind (in the stack's start order), then each server it runs, then
    the partition leader of the cluster the stack runs on, if it runs on one."""
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
    for g in (g for g in STOPPED if g in groups):
        servers.append(Fault(f"stop {g}", g, "server", "stop"))
        servers.append(Fault(f"pause {g} {PAUSE_S:g} s", g, "server", "pause"))
    if cluster is not None:
        topic, partition = LEADER_OF
        name = f"kill -9 leader of {topic}/{partition}"
        servers.append(Fault(name, "kafka-cluster", "server", cluster=cluster))
    return workers + servers


def strike_leader(cluster: KafkaCluster) -> int:
    """SIGKILL of the partition's leader, started again after ``LEADER_DOWN_S``; its pid."""
    node = cluster.leader(*LEADER_OF)
    pid = cluster.kill(node)
    threading.Timer(LEADER_DOWN_S, cluster.launch, (node,)).start()
    return pid


def cluster_recovered(cluster: KafkaCluster, struck: Struck) -> bool:
    """Every node back and in sync on the struck topic, after the node was started again."""
    if time.time() - struck.at < LEADER_DOWN_S + 1:
        return False
    try:
        return cluster.brokers() == cluster.size and cluster.fully_in_sync(LEADER_OF[0])
    except Exception:  # noqa: BLE001 - a node not yet answering: not recovered
        return False


def group_members(bootstrap: str, group: str) -> dict[str, int] | None:
    """Each member of a consumer group and how many partitions it holds; None when the broker
    does not say (not answering, or the group is rebalancing)."""
    admin = admin_client(bootstrap)  # held: the futures fail once their client is collected
    try:
        futures = admin.describe_consumer_groups([group], request_timeout=5)
        described = futures[group].result(timeout=10)
    except Exception:  # noqa: BLE001 - a broker busy or restarting: not known now
        return None
    return {m.member_id: len(m.assignment.topic_partitions) for m in described.members}


def holding(members: dict[str, int] | None) -> frozenset[str]:
    return frozenset(m for m, n in (members or {}).items() if n > 0)


def rejoined(before: frozenset[str], members: dict[str, int] | None) -> bool:
    """Whether a member that was not there when the worker was struck holds partitions."""
    return bool(holding(members) - before)


def strike(stack: LocalStack, fault: Fault) -> Struck:
    """Strike now; a paused component is let go again after ``PAUSE_S`` (on a timer)."""
    if fault.cluster is not None:
        return Struck(fault, strike_leader(fault.cluster), time.time())
    consumers = frozenset[str]()
    if fault.kind == "worker":
        group = consumer_group(fault.component)
        consumers = holding(group_members(stack.kafka_bootstrap, group))
    pid = stack.pids(fault.component)[0]
    if fault.action == "kill":
        os.kill(pid, signal.SIGKILL)
    elif fault.action == "stop":
        os.kill(pid, STOPPED[fault.component])
    else:  # its whole process group: a PostgreSQL backend serves on while its postmaster sleeps
        os.killpg(pid, signal.SIGSTOP)
        threading.Timer(PAUSE_S, os.killpg, (pid, signal.SIGCONT)).start()
    return Struck(fault, pid, time.time(), consumers=consumers)


def healthy_again(stack: LocalStack, struck: Struck) -> bool:
    if struck.fault.cluster is not None:
        return cluster_recovered(struck.fault.cluster, struck)
    status = stack.status()
    members = status.members(struck.fault.component) if status is not None else []
    if struck.fault.action == "pause":
        let_go = time.time() - struck.at >= PAUSE_S
        return let_go and bool(members) and all(m.state == "healthy" for m in members)
    return bool(members) and all(
        m.state == "healthy" and m.pid not in (None, struck.pid) for m in members
    )


def wait_restarted(stack: LocalStack, struck: Struck, timeout_s: float) -> None:
    """Sets ``struck.restarted_s`` once the component is back, and ``consuming_s`` once a
    worker that consumed does so again (each left None after ``timeout_s``)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if healthy_again(stack, struck):
            struck.restarted_s = round(time.time() - struck.at, 2)
            break
        time.sleep(0.2)
    while struck.consumers and struck.restarted_s is not None and time.monotonic() < deadline:
        group = consumer_group(struck.fault.component)
        if rejoined(struck.consumers, group_members(stack.kafka_bootstrap, group)):
            struck.consuming_s = round(time.time() - struck.at, 2)
            return
        time.sleep(0.5)
