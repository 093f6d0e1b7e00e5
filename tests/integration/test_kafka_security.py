"""Apache Kafka in secure mode (SASL/SCRAM-SHA-512 over TLS, ACLs per service principal), a
real KRaft node started from kafka_server's config as the stack starts it: a client without
credentials, or with a wrong password, is refused; a camera may write the raw frames and
nothing else; a worker reads its input in its own group and writes its output, and cannot
read another service's topics.
"""

from __future__ import annotations

import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from confluent_kafka import KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient

from visionline.kafka import create_topics, producer, reader
from visionline.kafka_acls import ADMIN_PRINCIPAL
from visionline.messages import Topic
from visionline.stack import kafka_server
from visionline.stack.broker_security import (
    Credentials,
    SecurityFiles,
    client_config,
    provision,
    tls_material,
)
from visionline.stack.config import free_ports

pytestmark = pytest.mark.integration

REFUSED = {
    KafkaError._TRANSPORT,
    KafkaError._AUTHENTICATION,
    KafkaError.SASL_AUTHENTICATION_FAILED,
    KafkaError._TIMED_OUT,
    KafkaError._ALL_BROKERS_DOWN,
}
DENIED = {
    KafkaError.TOPIC_AUTHORIZATION_FAILED,
    KafkaError.GROUP_AUTHORIZATION_FAILED,
    KafkaError.CLUSTER_AUTHORIZATION_FAILED,
}


@dataclass
class SecureBroker:
    bootstrap: str
    files: SecurityFiles
    credentials: Credentials

    def config(self, principal: str, password: str | None = None) -> dict[str, str]:
        secret = self.credentials.password(principal) if password is None else password
        return client_config(self.files, principal, secret) | {"log_level": "0"}


@pytest.fixture(scope="module")
def secure_broker(tmp_path_factory) -> Iterator[SecureBroker]:
    root = tmp_path_factory.mktemp("secure-kafka")
    files = SecurityFiles(root / "kafka" / "security")
    tls_material(files, "127.0.0.1")
    credentials = Credentials(files)
    port, controller_port = free_ports(2)
    nodes = kafka_server.cluster_nodes("127.0.0.1", [(port, controller_port)], root / "kafka")
    java = kafka_server.java_bin()
    kafka_server.prepare_node(nodes[0], nodes, java, security=credentials.broker())
    with (root / "broker.log").open("w") as log:
        argv = kafka_server.server_argv(nodes[0], 256, java)
        process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
    try:
        broker = SecureBroker(nodes[0].address, files, credentials)
        admin = broker.config(ADMIN_PRINCIPAL)
        wait_for_metadata(broker.bootstrap, admin, process, root / "broker.log")
        provision(broker.bootstrap, admin, credentials.passwords)
        create_topics(broker.bootstrap, 1, timeout=30, **admin)
        yield broker
    finally:
        process.kill()
        process.wait()


def wait_for_metadata(bootstrap: str, config: dict[str, str], process, log: Path) -> None:
    client = AdminClient({"bootstrap.servers": bootstrap, **config})
    until = time.monotonic() + 180
    while True:
        assert process.poll() is None, log.read_text()[-3000:]
        try:
            client.list_topics(timeout=3)
            return
        except KafkaException:
            assert time.monotonic() < until, log.read_text()[-3000:]
            time.sleep(0.5)


def produce_error(bootstrap: str, config: dict[str, str], topic: str) -> KafkaError | None:
    """Send one record; the delivery error, or None when the broker took it."""
    errors: list[KafkaError | None] = []
    sender = producer(bootstrap, **config, **{"message.timeout.ms": 10_000})
    sender.produce(topic, value=b"probe", on_delivery=lambda err, _msg: errors.append(err))
    sender.flush(20)
    assert errors, "no delivery report within 20 s"
    return errors[0]


def read_error(
    bootstrap: str, config: dict[str, str], topic: str, group: str, want: bytes | None = None
) -> KafkaError | bytes:
    """Subscribe in ``group`` and read: the first value (the first equal to ``want``, if
    given), or the first error the broker gives."""
    consumer = reader(bootstrap, group=group, **config, **{"auto.offset.reset": "earliest"})
    consumer.subscribe([topic])
    try:
        until = time.monotonic() + 30
        while time.monotonic() < until:
            message = consumer.poll(0.5)
            if message is None:
                continue
            if message.error() is not None:
                if message.error().code() in (KafkaError._PARTITION_EOF,):
                    continue
                return message.error()
            if want is None or message.value() == want:
                return message.value()
        raise AssertionError(f"neither a value nor an error from {topic} within 30 s")
    finally:
        consumer.close()


def test_a_client_without_credentials_is_refused(secure_broker):
    plain = AdminClient({"bootstrap.servers": secure_broker.bootstrap, "log_level": 0})
    with pytest.raises(KafkaException) as refused:
        plain.list_topics(timeout=5)
    assert refused.value.args[0].code() in REFUSED


def test_a_wrong_password_is_refused(secure_broker):
    config = secure_broker.config("camera", password="not-the-password")
    client = AdminClient({"bootstrap.servers": secure_broker.bootstrap, **config})
    with pytest.raises(KafkaException) as refused:
        client.list_topics(timeout=10)
    assert refused.value.args[0].code() in REFUSED


def test_a_camera_writes_raw_frames_and_nothing_else(secure_broker):
    bootstrap, camera = secure_broker.bootstrap, secure_broker.config("camera")
    assert produce_error(bootstrap, camera, str(Topic.RAW_FRAMES)) is None
    for other in (Topic.ALERTS, Topic.VALID_FRAMES, Topic.LABELS_FEEDBACK):
        error = produce_error(bootstrap, camera, str(other))
        assert error is not None and error.code() in DENIED, (other, error)
    # Not even the frames it wrote, nor the alerts, nor in the groups of the workers.
    for topic, group in (
        (Topic.ALERTS, "visionline-webhooks"),
        (Topic.RAW_FRAMES, "visionline-ingest"),
        (Topic.ALERTS, f"camera-{uuid.uuid4().hex[:6]}"),
    ):
        error = read_error(bootstrap, camera, str(topic), group)
        assert isinstance(error, KafkaError) and error.code() in DENIED, (topic, group, error)


def test_a_camera_cannot_read_alerts_by_assignment(secure_broker):
    consumer = reader(secure_broker.bootstrap, **secure_broker.config("camera"))
    try:
        consumer.assign([TopicPartition(str(Topic.ALERTS), 0, 0)])
        until, error = time.monotonic() + 20, None
        while error is None and time.monotonic() < until:
            message = consumer.poll(0.5)
            if message is not None:
                assert message.error() is not None, "the camera read an alert"
                error = message.error()
        assert error is not None and error.code() in DENIED, error
    finally:
        consumer.close()


def test_a_worker_reads_its_input_in_its_group_and_writes_its_output(secure_broker):
    bootstrap = secure_broker.bootstrap
    value = f"frame-{uuid.uuid4().hex[:8]}".encode()
    sender = producer(bootstrap, **secure_broker.config("camera"))
    sender.produce(str(Topic.RAW_FRAMES), value=value)
    assert sender.flush(20) == 0
    ingest = secure_broker.config("ingest")
    assert read_error(bootstrap, ingest, str(Topic.RAW_FRAMES), "visionline-ingest", value) == value
    assert produce_error(bootstrap, ingest, str(Topic.VALID_FRAMES)) is None
    assert produce_error(bootstrap, ingest, str(Topic.DEAD_LETTER)) is None
    # Not another worker's topics, nor another worker's group.
    error = produce_error(bootstrap, ingest, str(Topic.ALERTS))
    assert error is not None and error.code() in DENIED
    error = read_error(bootstrap, ingest, str(Topic.RAW_FRAMES), "visionline-preprocess")
    assert isinstance(error, KafkaError) and error.code() in DENIED
    error = read_error(bootstrap, ingest, str(Topic.PREDICTIONS), "visionline-ingest")
    assert isinstance(error, KafkaError) and error.code() in DENIED


@pytest.fixture(scope="module")
def secure_stack(tmp_path_factory) -> Iterator:
    """The local stack in secure mode with two of its workers (ingest, preprocess: each logs
    in as its own service), PostgreSQL and Redis; no Triton."""
    import tempfile

    from visionline.services_table import service
    from visionline.stack import LocalStack, free_port_settings
    from visionline.stack.config import service_worker

    # Not pytest's tmp_path: its parent is 0700 and PostgreSQL runs as another user under root.
    state_dir = Path(tempfile.mkdtemp(prefix="visionline-secure-stack-"))
    settings = free_port_settings(state_dir, broker_security="sasl_ssl", with_triton=False)
    workers = [service_worker(settings, service(name)) for name in ("ingest", "preprocess")]
    stack = LocalStack(settings, workers=workers, attached=True)
    stack.start(timeout=300)
    try:
        yield stack
    finally:
        stack.stop()
        shutil.rmtree(state_dir, ignore_errors=True)


def test_workers_run_the_pipeline_on_the_secure_stack(secure_stack):
    from io import BytesIO

    from PIL import Image

    from visionline.camera.publisher import FramePublisher
    from visionline.kafka import OFFSET_BEGINNING, assign_all, read_messages
    from visionline.stack.broker_security import files_of

    bootstrap = secure_stack.kafka_bootstrap
    files = files_of(secure_stack.settings.state_dir)
    passwords = Credentials(files).passwords
    image = BytesIO()
    Image.new("RGB", (64, 48), (120, 30, 200)).save(image, format="JPEG")
    camera = client_config(files, "camera", passwords["camera"])
    publisher = FramePublisher(bootstrap, **camera)
    frame_id = publisher.publish("dock-door-1", image.getvalue())
    assert publisher.flush(30) == 0
    admin = reader(bootstrap, **client_config(files, ADMIN_PRINCIPAL, passwords[ADMIN_PRINCIPAL]))
    try:
        assign_all(admin, Topic.PREPROCESSED, OFFSET_BEGINNING)
        until = time.monotonic() + 120
        for message in read_messages(admin, until):
            if message is not None and frame_id.encode() in message.value():
                return
        raise AssertionError(f"{frame_id} not preprocessed within 120 s")
    finally:
        admin.close()
