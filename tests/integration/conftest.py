"""One fixture layer for every integration test: a real stack on free ports of its own.

Where a Docker engine is reachable, ``visionline.stack.testing`` starts the same services as
testcontainers; here there is none, so it starts the embedded local stack (Apache Kafka, Triton,
PostgreSQL, Redis and every worker) under a temporary state folder.
"""

from __future__ import annotations

import json

import pytest

from tests.integration.pipeline import TopicReader
from visionline.db import make_engine
from visionline.messages import Topic

# The inspect worker crashes on a frame holding this marker, as on a bug (poison messages:
# tests/integration/test_poison_message.py).
FAULT_MARKER = "visionline-fault-crash"
# Webhook receivers in the tests listen on 127.0.0.1: allowed although loopback (127.0.0.2
# stays refused). Webhook retries a test can wait for (tests/integration/api/test_webhooks.py).
WEBHOOK_ALLOWED_NETWORKS = ["127.0.0.1/32"]
WORKER_ENV = {
    "VISIONLINE_FAULT_CRASH_MARKER": FAULT_MARKER,
    "VISIONLINE_FAULT_CRASH_SERVICE": "inspect",
    "VISIONLINE_WEBHOOKS_BACKOFF_S": "0.5",
    "VISIONLINE_WEBHOOKS_MAX_ATTEMPTS": "3",
    "VISIONLINE_WEBHOOKS_POLL_S": "0.2",
    "VISIONLINE_WEBHOOKS_TIMEOUT_S": "3",
    "VISIONLINE_WEBHOOKS_ALLOWED_NETWORKS": json.dumps(WEBHOOK_ALLOWED_NETWORKS),
    # The tests check each inspection frame's outcome, and frames sent in a burst while Triton
    # warms up would be shed (visionline/inspection/shedding.py, tested on its own).
    "VISIONLINE_INSPECT_SHED_LATE_AFTER_S": "0",
}


@pytest.fixture(scope="session")
def stack(tmp_path_factory):
    from visionline.stack.testing import pipeline_stack

    with pipeline_stack(tmp_path_factory.mktemp("stack"), worker_env=WORKER_ENV) as running:
        yield running


@pytest.fixture(scope="session")
def bootstrap(stack) -> str:
    return stack.kafka_bootstrap


@pytest.fixture(scope="session")
def database_url(stack) -> str:
    return stack.database_url


@pytest.fixture(scope="session")
def engine(stack):
    engine = make_engine(stack.database_url)
    yield engine
    engine.dispose()


def _reader(stack, topic: Topic):
    reader = TopicReader(stack.kafka_bootstrap, topic)
    yield reader
    reader.close()


@pytest.fixture(scope="session")
def predictions(stack):
    yield from _reader(stack, Topic.PREDICTIONS)


@pytest.fixture(scope="session")
def alerts(stack):
    yield from _reader(stack, Topic.ALERTS)


@pytest.fixture(scope="session")
def dead_letters(stack):
    yield from _reader(stack, Topic.DEAD_LETTER)
