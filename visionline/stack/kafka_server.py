"""Apache Kafka in KRaft mode for the local stack: one combined broker+controller node, or N of
them on loopback ports for the fault tests, run from the jars `make kafka` puts in .kafka/libs.

The pure part (a node's ``server.properties``, the log4j2 config, the storage tool's and the
broker's argv) is unit-tested; ``prepare_node`` writes those files in the state folder and
formats the node's log directory once, so topics, offsets and messages survive a restart.
The quorum is dynamic (KIP-853): every node names all controllers in
``controller.quorum.bootstrap.servers``; one node is formatted ``--standalone``, N nodes with
the same ``--initial-controllers`` (ids and directory ids kept in the state folder).
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from visionline.settings import KAFKA_MAX_MESSAGE_BYTES, REPO_ROOT
from visionline.stack.state import write_json_atomic as write_atomic  # any text, atomically

KAFKA_HOME = REPO_ROOT / ".kafka"  # `make kafka` (infra/kafka/pom.xml)
BROKER_MAIN = "kafka.Kafka"
STORAGE_TOOL_MAIN = "kafka.tools.StorageTool"
BROKER_LISTENER, CONTROLLER_LISTENER = "PLAINTEXT", "CONTROLLER"
SECURE_LISTENER = "SASL_SSL"  # clients and brokers, SCRAM-SHA-512 over TLS (BrokerSecurity)
SCRAM_MECHANISM = "SCRAM-SHA-512"
AUTHORIZER = "org.apache.kafka.metadata.authorizer.StandardAuthorizer"
# A 2-core machine that runs the whole pipeline beside it: a small heap, G1 as Kafka's own
# start script chooses it.
JVM_OPTIONS = (
    "-XX:+UseG1GC",
    "-XX:MaxGCPauseMillis=20",
    "-XX:InitiatingHeapOccupancyPercent=35",
    "-XX:+ExplicitGCInvokesConcurrent",
    "-Djava.awt.headless=true",
)


@dataclass(frozen=True)
class BrokerSecurity:
    """A node in secure mode: SASL/SCRAM-SHA-512 over TLS for clients and brokers, SASL/PLAIN
    over TLS on the controller listener (KRaft keeps SCRAM credentials in the metadata log,
    which the quorum cannot read before it runs), ACLs by the StandardAuthorizer with the admin
    principal as the one super user. The TLS files are PEM (visionline.stack.broker_security
    makes them); the admin's SCRAM credential is added when the storage is formatted."""

    admin_user: str
    admin_password: str
    keystore: Path  # PEM: the broker's private key (PKCS#8, unencrypted) and certificate chain
    ca_file: Path  # PEM: the CA clients and brokers trust


@dataclass(frozen=True)
class KafkaNode:
    """One combined broker+controller: its id (1..N), loopback ports and folder."""

    node_id: int
    host: str
    port: int  # clients and the other brokers (PLAINTEXT)
    controller_port: int  # the KRaft quorum (CONTROLLER)
    root: Path  # <state>/kafka/node-<id>: server.properties, log4j2.properties, data/

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def controller_address(self) -> str:
        return f"{self.host}:{self.controller_port}"

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def config_file(self) -> Path:
        return self.root / "server.properties"

    @property
    def log4j_file(self) -> Path:
        return self.root / "log4j2.properties"

    @property
    def formatted(self) -> bool:
        return (self.data_dir / "meta.properties").exists()


def cluster_nodes(host: str, ports: Sequence[tuple[int, int]], root: Path) -> list[KafkaNode]:
    """Nodes 1..N, node i on ``ports[i-1]`` = (client port, controller port), under ``root``."""
    return [
        KafkaNode(i, host, port, controller_port, root / f"node-{i}")
        for i, (port, controller_port) in enumerate(ports, start=1)
    ]


def bootstrap_servers(nodes: Sequence[KafkaNode]) -> str:
    return ",".join(node.address for node in nodes)


def replication(nodes: Sequence[KafkaNode]) -> tuple[int, int]:
    """(replication factor, min.insync.replicas): 1 and 1 alone, 3 and 2 in a cluster, so that
    ``acks=all`` survives one node down."""
    return (1, 1) if len(nodes) == 1 else (min(3, len(nodes)), 2)


def _jaas(module: str, user: str, password: str, **users: str) -> str:
    accounts = "".join(f' user_{name}="{secret}"' for name, secret in users.items())
    return (
        f"org.apache.kafka.common.security.{module} required "
        f'username="{user}" password="{password}"{accounts};'
    )


def security_properties(security: BrokerSecurity) -> dict[str, str]:
    """The secure mode's part of ``server.properties`` (listeners apart)."""
    user, password = security.admin_user, security.admin_password
    secure, controller = SECURE_LISTENER.lower(), CONTROLLER_LISTENER.lower()
    return {
        "listener.security.protocol.map": (
            f"{SECURE_LISTENER}:SASL_SSL,{CONTROLLER_LISTENER}:SASL_SSL"
        ),
        "inter.broker.listener.name": SECURE_LISTENER,
        "sasl.enabled.mechanisms": SCRAM_MECHANISM,
        "sasl.mechanism.inter.broker.protocol": SCRAM_MECHANISM,
        f"listener.name.{secure}.scram-sha-512.sasl.jaas.config": _jaas(
            "scram.ScramLoginModule", user, password
        ),
        "sasl.mechanism.controller.protocol": "PLAIN",
        f"listener.name.{controller}.sasl.enabled.mechanisms": "PLAIN",
        f"listener.name.{controller}.plain.sasl.jaas.config": _jaas(
            "plain.PlainLoginModule", user, password, **{user: password}
        ),
        "ssl.keystore.type": "PEM",
        "ssl.keystore.location": str(security.keystore),
        "ssl.truststore.type": "PEM",
        "ssl.truststore.location": str(security.ca_file),
        "ssl.endpoint.identification.algorithm": "https",
        "authorizer.class.name": AUTHORIZER,
        "super.users": f"User:{user}",
        "allow.everyone.if.no.acl.found": "false",
    }


def server_properties(
    node: KafkaNode, nodes: Sequence[KafkaNode], security: BrokerSecurity | None = None
) -> dict[str, str]:
    """``server.properties`` of ``node`` in the cluster ``nodes`` (KRaft, dynamic quorum);
    with ``security``, SASL_SSL and ACLs (``security_properties``) instead of PLAINTEXT."""
    factor, min_isr = replication(nodes)
    client = SECURE_LISTENER if security else BROKER_LISTENER
    listeners = f"{client}://{node.address},{CONTROLLER_LISTENER}://{node.controller_address}"
    replicated = {
        "default.replication.factor": factor,
        "min.insync.replicas": min_isr,
        "offsets.topic.replication.factor": factor,
        "transaction.state.log.replication.factor": factor,
        "transaction.state.log.min.isr": min_isr,
        "share.coordinator.state.topic.replication.factor": factor,
        "share.coordinator.state.topic.min.isr": min_isr,
    }
    config = {
        "node.id": node.node_id,
        "process.roles": "broker,controller",
        "listeners": listeners,
        "advertised.listeners": listeners,
        "listener.security.protocol.map": (
            f"{BROKER_LISTENER}:PLAINTEXT,{CONTROLLER_LISTENER}:PLAINTEXT"
        ),
        "inter.broker.listener.name": BROKER_LISTENER,
        "controller.listener.names": CONTROLLER_LISTENER,
        "controller.quorum.bootstrap.servers": ",".join(n.controller_address for n in nodes),
        "log.dirs": str(node.data_dir),
        **replicated,
        # Topics are created up front with their partitions and retention (kafka.create_topics):
        # a typo'd topic name is an error, not a new topic.
        "auto.create.topics.enable": "false",
        "num.partitions": 4,
        # A consumer group starts at once: the tests start and stop many.
        "group.initial.rebalance.delay.ms": 0,
        # Frames up to the ingest cap, also on topics a test creates without a config.
        "message.max.bytes": KAFKA_MAX_MESSAGE_BYTES,
        "replica.fetch.max.bytes": KAFKA_MAX_MESSAGE_BYTES,
        # Retention deletes whole segments only: small ones, rolled at least hourly, keep the
        # frames topics (1 h retention) from growing for days on a small disk.
        "log.segment.bytes": 64 * 1024 * 1024,
        "log.roll.hours": 1,
        "log.retention.check.interval.ms": 60_000,
        "num.network.threads": 2,
        "num.io.threads": 4,
        "num.recovery.threads.per.data.dir": 1,
    }
    if security is not None:
        config |= security_properties(security)
    return {key: str(value) for key, value in config.items()}


def render_properties(config: dict[str, str]) -> str:
    """A Java properties file (values here hold no characters that need escaping)."""
    return "".join(f"{key}={value}\n" for key, value in config.items())


def log4j_config(level: str = "INFO") -> str:
    """log4j2: everything to stdout, which the stack's supervisor writes to the component's log
    in the state folder (logs/broker.log). The per-request and state-change loggers that
    Apache's own config sends to files of their own, and the lines logged for each partition
    at every start, are kept to warnings."""
    quiet = {
        "partition": "kafka.cluster.Partition",
        "logmanager": "kafka.log.LogManager",
        "unifiedlog": "org.apache.kafka.storage.internals.log",
        "request": "kafka.request.logger",
        "statechange": "state.change.logger",
        "authorizer": "kafka.authorizer.logger",
        "network": "kafka.network.RequestChannel$",
    }
    lines = [
        "status = warn",
        "appender.stdout.type = Console",
        "appender.stdout.name = STDOUT",
        "appender.stdout.layout.type = PatternLayout",
        "appender.stdout.layout.pattern = [%d] %p %m (%c)%n",
        f"rootLogger.level = {level}",
        "rootLogger.appenderRef.stdout.ref = STDOUT",
    ]
    for key, name in quiet.items():
        lines += [f"logger.{key}.name = {name}", f"logger.{key}.level = WARN"]
    return "\n".join(lines) + "\n"


def classpath(home: Path = KAFKA_HOME) -> str:
    return f"{home / 'libs'}/*"


def java_bin() -> str:
    """``$JAVA_HOME/bin/java`` when JAVA_HOME is set, else the ``java`` on PATH."""
    home = os.environ.get("JAVA_HOME")
    found = str(Path(home) / "bin" / "java") if home else shutil.which("java")
    if not found or not Path(found).exists():
        raise RuntimeError("no java: Apache Kafka needs a JDK 17 or newer (JAVA_HOME or PATH)")
    return found


def server_argv(
    node: KafkaNode, heap_mb: int, java: str = "java", home: Path = KAFKA_HOME
) -> list[str]:
    """The broker's command: the JVM with a fixed heap, log4j2 from the node's folder."""
    return [
        java,
        f"-Xms{heap_mb}m",
        f"-Xmx{heap_mb}m",
        *JVM_OPTIONS,
        f"-Dlog4j2.configurationFile={node.log4j_file}",
        "-cp",
        classpath(home),
        BROKER_MAIN,
        str(node.config_file),
    ]


def initial_controllers(nodes: Sequence[KafkaNode], directory_ids: Sequence[str]) -> str:
    """``--initial-controllers``: ``id@host:port:directory-id`` of every controller."""
    return ",".join(
        f"{n.node_id}@{n.controller_address}:{d}" for n, d in zip(nodes, directory_ids, strict=True)
    )


def format_argv(
    node: KafkaNode,
    nodes: Sequence[KafkaNode],
    cluster_id: str,
    directory_ids: Sequence[str],
    java: str = "java",
    home: Path = KAFKA_HOME,
    security: BrokerSecurity | None = None,
) -> list[str]:
    """``kafka-storage format`` for ``node``: alone ``--standalone``, in a cluster the same
    ``--initial-controllers`` on every node. ``--ignore-formatted``: a formatted node is kept.
    With ``security``, the admin's SCRAM credential goes into the metadata log (``--add-scram``)."""
    argv = [java, "-Xmx256m", "-cp", classpath(home), STORAGE_TOOL_MAIN, "format"]
    argv += ["--cluster-id", cluster_id, "--config", str(node.config_file), "--ignore-formatted"]
    if security is not None:
        scram = f"name={security.admin_user},password={security.admin_password}"
        argv += ["--add-scram", f"{SCRAM_MECHANISM}=[{scram}]"]
    if len(nodes) == 1:
        return [*argv, "--standalone"]
    return [*argv, "--initial-controllers", initial_controllers(nodes, directory_ids)]


def new_uuid() -> str:
    """A Kafka ``Uuid`` as its tools print it: 16 random bytes, URL-safe base64, no padding
    (never starting with ``-``, which a command line would take for an option)."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not text.startswith("-"):
            return text


@dataclass(frozen=True)
class ClusterIds:
    cluster_id: str
    directory_ids: tuple[str, ...]  # one per node, in node order


def cluster_ids(root: Path, count: int) -> ClusterIds:
    """The cluster id and the nodes' directory ids, made once and kept in ``root/ids.json``:
    every format of the same state folder uses the same ones."""
    path = root / "ids.json"
    if path.exists():
        ids = json.loads(path.read_text())
        if len(ids["directory_ids"]) == count:
            return ClusterIds(ids["cluster_id"], tuple(ids["directory_ids"]))
    ids = {"cluster_id": new_uuid(), "directory_ids": [new_uuid() for _ in range(count)]}
    root.mkdir(parents=True, exist_ok=True)
    write_atomic(path, json.dumps(ids, indent=1))
    return ClusterIds(ids["cluster_id"], tuple(ids["directory_ids"]))


def check_installed(home: Path = KAFKA_HOME) -> None:
    if not (home / ".ready").exists():
        raise RuntimeError(f"Apache Kafka's jars are not in {home / 'libs'}: run `make kafka`")


def prepare_node(
    node: KafkaNode,
    nodes: Sequence[KafkaNode],
    java: str = "java",
    home: Path = KAFKA_HOME,
    security: BrokerSecurity | None = None,
) -> None:
    """Before each start: the node's config files (rewritten: ports may change between runs),
    and its storage formatted if it is not yet (the first start of this state folder).
    ``server.properties`` holds the admin's password in secure mode: readable by its owner only."""
    check_installed(home)
    node.data_dir.parent.mkdir(parents=True, exist_ok=True)
    node.root.chmod(0o700)
    write_atomic(node.config_file, render_properties(server_properties(node, nodes, security)))
    node.config_file.chmod(0o600)
    write_atomic(node.log4j_file, log4j_config())
    if node.formatted:
        return
    ids = cluster_ids(node.root.parent, len(nodes))
    argv = format_argv(node, nodes, ids.cluster_id, ids.directory_ids, java, home, security)
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        raise RuntimeError(
            f"formatting {node.data_dir} failed ({done.returncode}): "
            f"{(done.stderr or done.stdout).strip()[-2000:]}"
        )
