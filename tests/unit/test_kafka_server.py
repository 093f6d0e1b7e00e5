"""Apache Kafka's KRaft configuration for the local stack: one node, or a cluster of N."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from visionline.settings import KAFKA_MAX_MESSAGE_BYTES
from visionline.stack import kafka_server as ks
from visionline.stack.components import build_components, kafka_nodes
from visionline.stack.config import free_port_settings
from visionline.stack.state import StatePaths


def parse(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if line)


def test_one_combined_node(tmp_path: Path):
    nodes = ks.cluster_nodes("127.0.0.1", [(19092, 19093)], tmp_path / "kafka")
    config = parse(ks.render_properties(ks.server_properties(nodes[0], nodes)))
    assert config["node.id"] == "1"
    assert config["process.roles"] == "broker,controller"
    assert config["listeners"] == "PLAINTEXT://127.0.0.1:19092,CONTROLLER://127.0.0.1:19093"
    assert config["controller.listener.names"] == "CONTROLLER"
    assert config["inter.broker.listener.name"] == "PLAINTEXT"
    assert config["controller.quorum.bootstrap.servers"] == "127.0.0.1:19093"
    assert "controller.quorum.voters" not in config  # a dynamic quorum (KIP-853)
    assert config["log.dirs"] == str(tmp_path / "kafka" / "node-1" / "data")
    for key in (
        "offsets.topic.replication.factor",
        "transaction.state.log.replication.factor",
        "transaction.state.log.min.isr",
        "default.replication.factor",
        "min.insync.replicas",
    ):
        assert config[key] == "1", key
    assert config["group.initial.rebalance.delay.ms"] == "0"
    assert config["auto.create.topics.enable"] == "false"
    assert config["message.max.bytes"] == str(KAFKA_MAX_MESSAGE_BYTES)


def test_a_cluster_of_three_replicates_thrice_and_needs_two_in_sync(tmp_path: Path):
    ports = [(20001, 20002), (20003, 20004), (20005, 20006)]
    nodes = ks.cluster_nodes("127.0.0.1", ports, tmp_path)
    configs = [ks.server_properties(node, nodes) for node in nodes]
    assert [c["node.id"] for c in configs] == ["1", "2", "3"]
    assert len({c["log.dirs"] for c in configs}) == 3
    quorum = "127.0.0.1:20002,127.0.0.1:20004,127.0.0.1:20006"
    assert {c["controller.quorum.bootstrap.servers"] for c in configs} == {quorum}
    assert configs[1]["listeners"] == "PLAINTEXT://127.0.0.1:20003,CONTROLLER://127.0.0.1:20004"
    for config in configs:
        assert config["default.replication.factor"] == "3"
        assert config["offsets.topic.replication.factor"] == "3"
        assert config["transaction.state.log.replication.factor"] == "3"
        assert config["min.insync.replicas"] == "2"
        assert config["transaction.state.log.min.isr"] == "2"
    assert ks.bootstrap_servers(nodes) == "127.0.0.1:20001,127.0.0.1:20003,127.0.0.1:20005"


def test_format_standalone_alone_and_with_initial_controllers_in_a_cluster(tmp_path: Path):
    one = ks.cluster_nodes("127.0.0.1", [(1, 2)], tmp_path)
    argv = ks.format_argv(one[0], one, "CID", ["D1"], java="java", home=Path("/k"))
    assert argv[:5] == ["java", "-Xmx256m", "-cp", "/k/libs/*", "kafka.tools.StorageTool"]
    assert argv[5] == "format"
    assert argv[argv.index("--cluster-id") + 1] == "CID"
    assert argv[argv.index("--config") + 1] == str(one[0].config_file)
    assert "--standalone" in argv and "--ignore-formatted" in argv
    three = ks.cluster_nodes("127.0.0.1", [(1, 2), (3, 4), (5, 6)], tmp_path)
    argv = ks.format_argv(three[1], three, "CID", ["A", "B", "C"])
    controllers = argv[argv.index("--initial-controllers") + 1]
    assert controllers == "1@127.0.0.1:2:A,2@127.0.0.1:4:B,3@127.0.0.1:6:C"
    assert "--standalone" not in argv


def test_server_argv_runs_kafka_with_a_fixed_heap_and_its_log4j(tmp_path: Path):
    node = ks.cluster_nodes("127.0.0.1", [(1, 2)], tmp_path)[0]
    argv = ks.server_argv(node, 384, java="/usr/bin/java", home=Path("/k"))
    assert argv[0] == "/usr/bin/java"
    assert {"-Xms384m", "-Xmx384m"} <= set(argv)
    assert f"-Dlog4j2.configurationFile={node.log4j_file}" in argv
    assert argv[-3:] == ["/k/libs/*", "kafka.Kafka", str(node.config_file)]


def test_log4j_writes_to_stdout():
    config = parse(ks.log4j_config().replace(" = ", "="))
    assert config["appender.stdout.type"] == "Console"
    assert config["rootLogger.level"] == "INFO"
    assert config["logger.request.level"] == "WARN"


def test_uuids_are_kafka_uuids():
    for _ in range(50):
        text = ks.new_uuid()
        assert len(text) == 22 and not text.startswith("-")
        assert len(base64.urlsafe_b64decode(text + "==")) == 16


def test_cluster_ids_are_made_once(tmp_path: Path):
    first = ks.cluster_ids(tmp_path, 3)
    assert ks.cluster_ids(tmp_path, 3) == first
    assert len(set(first.directory_ids)) == 3
    assert json.loads((tmp_path / "ids.json").read_text())["cluster_id"] == first.cluster_id


def test_prepare_refuses_without_the_jars(tmp_path: Path):
    node = ks.cluster_nodes("127.0.0.1", [(1, 2)], tmp_path)[0]
    with pytest.raises(RuntimeError, match="make kafka"):
        ks.prepare_node(node, [node], home=tmp_path / "nothing")


def test_the_stack_runs_apache_kafka(tmp_path: Path):
    settings = free_port_settings(tmp_path, with_workers=False, with_triton=False)
    paths = StatePaths(settings.state_dir)
    spec = build_components(settings, paths, [], "run")["broker"]
    node = kafka_nodes(settings, paths)[0]
    assert spec.argv is not None and spec.argv[-2:] == ["kafka.Kafka", str(node.config_file)]
    assert spec.ports == (settings.broker_port, settings.broker_controller_port)
    assert spec.prepare is not None
    assert spec.ready_timeout_s == settings.broker_ready_timeout_s
    assert node.data_dir.is_relative_to(settings.state_dir)
