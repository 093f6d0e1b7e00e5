"""A three-node Apache Kafka cluster on loopback (replication factor 3, ``min.insync.replicas``
2), started from the same node configuration as the stack's single broker
(``visionline.stack.kafka_server``), for the fault runs: a stack given its bootstrap servers
(``StackSettings.kafka_bootstrap``) runs on it, and a node, the leader of a partition, can be
killed and restarted on its log.

Its nodes are plain child processes, not the stack's supervisor's: a fault run kills and
restarts them itself, at the moments it chooses.
"""

from __future__ import annotations

import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from visionline.stack import kafka_server
from visionline.stack.config import free_ports

HEAP_MB = 256  # three JVMs beside the whole pipeline on two cores


@dataclass
class KafkaCluster:
    root: Path  # the nodes' folders: node-<id>/, their logs node-<id>/out.log
    size: int = 3
    host: str = "127.0.0.1"
    nodes: list[kafka_server.KafkaNode] = field(default_factory=list)
    procs: dict[int, subprocess.Popen] = field(default_factory=dict)
    _admin: Any = field(default=None, repr=False)  # one client for every question asked

    @property
    def bootstrap(self) -> str:
        return kafka_server.bootstrap_servers(self.nodes)

    def start(self, timeout_s: float = 240.0) -> KafkaCluster:
        """Format (once) and start every node; wait until all are in the metadata."""
        ports = free_ports(2 * self.size, self.host)
        pairs = [(ports[i], ports[i + 1]) for i in range(0, 2 * self.size, 2)]
        self.nodes = kafka_server.cluster_nodes(self.host, pairs, self.root)
        for node in self.nodes:
            kafka_server.prepare_node(node, self.nodes, kafka_server.java_bin())
        for node in self.nodes:
            self.launch(node.node_id)
        self.wait_brokers(self.size, timeout_s)
        return self

    def launch(self, node_id: int) -> None:
        node = self.nodes[node_id - 1]
        argv = kafka_server.server_argv(node, HEAP_MB, kafka_server.java_bin())
        with (node.root / "out.log").open("a") as log:
            self.procs[node_id] = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)

    def kill(self, node_id: int) -> int:
        """SIGKILL of one node; its pid."""
        proc = self.procs[node_id]
        proc.kill()
        proc.wait()
        return proc.pid

    def admin(self):
        """The cluster's admin client, made once: recovery checks poll it several times a
        second, and librdkafka reconnects to nodes that come back by itself."""
        if self._admin is None:
            from visionline.kafka import admin_client

            self._admin = admin_client(self.bootstrap, log_level=0)
        return self._admin

    def brokers(self) -> int:
        from confluent_kafka import KafkaException

        try:
            return len(self.admin().list_topics(timeout=5).brokers)
        except KafkaException:  # none of them answers yet
            return 0

    def wait_brokers(self, count: int, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while self.brokers() < count:
            dead = {i: p.returncode for i, p in self.procs.items() if p.poll() is not None}
            if dead:
                raise RuntimeError(f"Kafka node(s) exited: {dead}; see {self.root}/node-*/out.log")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{count} Kafka brokers not up after {timeout_s} s")
            time.sleep(0.5)

    def leader(self, topic: str, partition: int = 0) -> int:
        """The node leading ``partition`` of ``topic`` (-1 while none does)."""
        metadata = self.admin().list_topics(topic, timeout=10).topics[topic]
        return metadata.partitions[partition].leader

    def fully_in_sync(self, topic: str) -> bool:
        """Every partition of ``topic`` has all the nodes in its in-sync replicas."""
        partitions = self.admin().list_topics(topic, timeout=10).topics[topic].partitions
        return bool(partitions) and all(len(p.isrs) == self.size for p in partitions.values())

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs.values():
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
