"""Broker security's pure parts: the ACL table from the service table, the secure node's
properties, the client settings every Kafka client of a process gets, and the credentials and
TLS files of the local stack's secure mode."""

from __future__ import annotations

import json
import ssl
import stat
from pathlib import Path

import pytest
from pydantic import ValidationError

from visionline.kafka import faust_credentials, security_config
from visionline.kafka_acls import (
    ADMIN_PRINCIPAL,
    CLIENT_PRINCIPALS,
    Acl,
    acls_for,
    all_acls,
    principals,
)
from visionline.messages import Topic
from visionline.services_table import SERVICES
from visionline.settings import CommonSettings
from visionline.stack import kafka_server as ks
from visionline.stack.broker_security import (
    Credentials,
    SecurityFiles,
    client_env,
    subject_alt_names,
    tls_material,
)


def topic_ops(principal: str) -> dict[str, set[str]]:
    ops: dict[str, set[str]] = {}
    for acl in acls_for(principal):
        if acl.resource == "TOPIC":
            ops.setdefault(acl.name, set()).add(acl.operation)
    return ops


def test_a_camera_may_only_write_the_raw_frames():
    assert topic_ops("camera") == {str(Topic.RAW_FRAMES): {"WRITE", "DESCRIBE"}}
    assert not [a for a in acls_for("camera") if a.resource == "GROUP"]


def test_a_worker_reads_its_input_writes_its_output_and_dead_letters_and_owns_its_groups():
    ops = topic_ops("ingest")
    assert ops[str(Topic.RAW_FRAMES)] == {"READ", "DESCRIBE"}
    for out in (Topic.VALID_FRAMES, Topic.INSPECTION_FRAMES, Topic.DETECTION_FRAMES):
        assert ops[str(out)] == {"WRITE", "READ", "DESCRIBE"}
    assert ops[str(Topic.DEAD_LETTER)] == {"WRITE", "READ", "DESCRIBE"}
    assert str(Topic.ALERTS) not in ops and str(Topic.PREDICTIONS) not in ops
    groups = {(a.name, a.pattern, a.operation) for a in acls_for("ingest") if a.resource == "GROUP"}
    assert groups == {
        ("visionline-ingest", "LITERAL", "READ"),
        ("visionline-ingest-", "PREFIXED", "READ"),
    }


def test_the_acl_table_follows_the_service_table():
    for spec in SERVICES:
        ops = topic_ops(spec.name)
        assert {str(t) for t in spec.consumes} <= {t for t, o in ops.items() if "READ" in o}
        written = {t for t, o in ops.items() if "WRITE" in o}
        assert written == {str(t) for t in (*spec.produces, Topic.DEAD_LETTER)}, spec.name
    assert principals() == (*(s.name for s in SERVICES), *CLIENT_PRINCIPALS)
    assert ADMIN_PRINCIPAL not in principals()
    assert len(all_acls()) == len(set(all_acls()))
    with pytest.raises(KeyError):
        acls_for("nobody")


def test_only_the_api_and_the_webhooks_read_alerts():
    readers = {
        a.principal for a in all_acls() if a.name == str(Topic.ALERTS) and a.operation == "READ"
    }
    assert readers == {"rules", "webhooks", "api"}  # rules reads back what it wrote


def test_acl_user_is_a_kafka_principal():
    assert Acl("camera", "TOPIC", "t", "LITERAL", "WRITE").user == "User:camera"


def secure_node(tmp_path: Path) -> tuple[dict[str, str], ks.BrokerSecurity]:
    nodes = ks.cluster_nodes("127.0.0.1", [(19092, 19093)], tmp_path / "kafka")
    security = ks.BrokerSecurity("admin", "s3cret", tmp_path / "ks.pem", tmp_path / "ca.pem")
    return ks.server_properties(nodes[0], nodes, security), security


def test_a_secure_node_takes_sasl_ssl_only_and_authorizes_by_acl(tmp_path: Path):
    config, _ = secure_node(tmp_path)
    assert config["listeners"] == "SASL_SSL://127.0.0.1:19092,CONTROLLER://127.0.0.1:19093"
    assert config["listener.security.protocol.map"] == "SASL_SSL:SASL_SSL,CONTROLLER:SASL_SSL"
    assert "PLAINTEXT" not in config["listeners"]
    assert config["sasl.enabled.mechanisms"] == "SCRAM-SHA-512"
    assert config["inter.broker.listener.name"] == "SASL_SSL"
    assert config["authorizer.class.name"] == ks.AUTHORIZER
    assert config["super.users"] == "User:admin"
    assert config["allow.everyone.if.no.acl.found"] == "false"
    assert config["ssl.keystore.type"] == config["ssl.truststore.type"] == "PEM"
    assert config["ssl.keystore.location"] == str(tmp_path / "ks.pem")
    jaas = config["listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config"]
    assert jaas.endswith('username="admin" password="s3cret";')
    plain = config["listener.name.controller.plain.sasl.jaas.config"]
    assert 'user_admin="s3cret"' in plain
    # The properties file round-trips (the renderer escapes nothing these values need).
    text = ks.render_properties(config)
    assert dict(line.split("=", 1) for line in text.splitlines()) == config


def test_the_plain_node_is_unchanged_without_security(tmp_path: Path):
    nodes = ks.cluster_nodes("127.0.0.1", [(19092, 19093)], tmp_path / "kafka")
    config = ks.server_properties(nodes[0], nodes)
    assert "authorizer.class.name" not in config and "sasl.enabled.mechanisms" not in config


def test_format_adds_the_admin_scram_credential(tmp_path: Path):
    _, security = secure_node(tmp_path)
    nodes = ks.cluster_nodes("127.0.0.1", [(19092, 19093)], tmp_path / "kafka")
    argv = ks.format_argv(nodes[0], nodes, "cid", ["d1"], security=security)
    i = argv.index("--add-scram")
    assert argv[i + 1] == "SCRAM-SHA-512=[name=admin,password=s3cret]"
    assert "--add-scram" not in ks.format_argv(nodes[0], nodes, "cid", ["d1"])


SECURE = {
    "kafka_security_protocol": "SASL_SSL",
    "kafka_username": "ingest",
    "kafka_password": "pw",
    "kafka_ca_file": Path("/ca.pem"),
}


def test_client_settings_for_sasl_ssl():
    config = security_config(CommonSettings(**SECURE))
    assert config == {
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": "ingest",
        "sasl.password": "pw",
        "ssl.ca.location": "/ca.pem",
    }
    assert security_config(CommonSettings()) == {}


def test_client_settings_come_from_the_environment_when_not_given(monkeypatch):
    monkeypatch.setenv("VISIONLINE_KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("VISIONLINE_KAFKA_USERNAME", "camera")
    monkeypatch.setenv("VISIONLINE_KAFKA_PASSWORD", "pw")
    assert security_config()["sasl.username"] == "camera"
    assert "ssl.ca.location" not in security_config()  # the system's CAs


def test_sasl_without_credentials_is_refused():
    with pytest.raises(ValidationError, match="VISIONLINE_KAFKA_USERNAME"):
        CommonSettings(kafka_security_protocol="SASL_SSL")
    assert "pw" not in repr(CommonSettings(**SECURE))  # the password is a SecretStr


def test_faust_gets_scram_over_tls(tmp_path: Path):
    files = SecurityFiles(tmp_path / "security")
    tls_material(files, "127.0.0.1")
    credentials = faust_credentials(CommonSettings(**(SECURE | {"kafka_ca_file": files.ca_file})))
    assert credentials.protocol.value == "SASL_SSL"
    assert credentials.mechanism.value == "SCRAM-SHA-512"
    assert credentials.username == "ingest" and credentials.password == "pw"
    assert credentials.ssl_context.verify_mode == ssl.CERT_REQUIRED
    assert faust_credentials(CommonSettings()) is None


def test_credentials_are_made_once_and_private(tmp_path: Path):
    files = SecurityFiles(tmp_path / "security")
    first = Credentials(files)
    assert set(first.passwords) == {ADMIN_PRINCIPAL, *principals()}
    assert len(set(first.passwords.values())) == len(first.passwords)
    assert Credentials(files).passwords == first.passwords
    assert stat.S_IMODE(files.credentials.stat().st_mode) == 0o600
    assert json.loads(files.credentials.read_text()) == first.passwords
    env = client_env(files, "camera", first.password("camera"))
    assert env["VISIONLINE_KAFKA_USERNAME"] == "camera"
    assert CommonSettings(**{k[11:].lower(): v for k, v in env.items()}).kafka_username == "camera"


def test_tls_material_names_the_host_and_is_private(tmp_path: Path):
    files = SecurityFiles(tmp_path / "security")
    tls_material(files, "127.0.0.1")
    keystore = files.keystore.read_text()
    assert "BEGIN PRIVATE KEY" in keystore and keystore.count("BEGIN CERTIFICATE") == 2
    assert stat.S_IMODE(files.keystore.stat().st_mode) == 0o600
    assert stat.S_IMODE(files.root.stat().st_mode) == 0o700
    before = files.keystore.read_text()
    tls_material(files, "127.0.0.1")
    assert files.keystore.read_text() == before  # made once
    assert subject_alt_names("10.0.0.5") == "DNS:localhost,IP:10.0.0.5,IP:127.0.0.1"
    assert subject_alt_names("kafka") == "DNS:kafka,DNS:localhost,IP:127.0.0.1"


def test_compose_logs_every_service_in_as_itself_over_sasl_ssl():
    import yaml

    from visionline.settings import REPO_ROOT

    compose = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())["services"]
    kafka = compose["kafka"]["environment"]
    assert "PLAINTEXT" not in kafka["KAFKA_LISTENERS"]
    assert kafka["KAFKA_AUTHORIZER_CLASS_NAME"] == ks.AUTHORIZER
    assert kafka["KAFKA_ALLOW_EVERYONE_IF_NO_ACL_FOUND"] == "false"
    for spec in SERVICES:
        env = compose[spec.name]["environment"]
        assert env["VISIONLINE_KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL", spec.name
        assert env["VISIONLINE_KAFKA_USERNAME"] == spec.name
        assert f"KAFKA_PASSWORD_{spec.name.upper()}" in env["VISIONLINE_KAFKA_PASSWORD"]
    setup = compose["setup"]["environment"]
    assert "--kafka-users" in compose["setup"]["command"]
    assert {f"KAFKA_PASSWORD_{name.upper()}" for name in principals()} <= set(setup)
