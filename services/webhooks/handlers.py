"""The webhooks worker's handlers: alerts in (consumer group ``visionline-webhooks``), one
delivery row per matching subscription, then signed POSTs with retries.

Two kinds of threads share a stop event:
- the intake reads the alerts topic, queues deliveries idempotently, and only then commits
  its offsets: a crash repeats the batch, the conflict on (subscription, alert) drops repeats;
- ``concurrency`` senders each claim one due delivery at a time (FOR UPDATE SKIP LOCKED), so
  replicas and threads never send the same delivery at once.
While PostgreSQL is down, each thread waits for it with backoff. Any thread's unexpected error
stops the process (exit 1) so that its supervisor restarts it.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from functools import partial

import httpx
from confluent_kafka import Consumer, KafkaException
from prometheus_client import Counter
from sqlalchemy import Engine

from services.webhooks.logic import Retry, parse_alerts
from services.webhooks.store import Due, claim_due, enqueue
from services.webhooks.transport import checked_client
from visionline.kafka import security_config
from visionline.messages import Topic
from visionline.observability import MESSAGES_IN, STAGE_SECONDS
from visionline.resilience import Backoff, waiting_while_down
from visionline.settings import CommonSettings, WebhookSettings
from visionline.webhooks import (
    NO_RESPONSE,
    REFUSED,
    TargetRefused,
    check_url,
    coarse_error,
    delivery_headers,
)

log = logging.getLogger("visionline.webhooks")
GROUP = "visionline-webhooks"
BATCH = 100
BACKOFF = Backoff()
SERVICE = "webhooks"
ATTEMPTS = Counter(
    "visionline_webhook_attempts_total",
    "Webhook POSTs, by result: delivered, or error (a retry or the last try)",
    ["result"],
)


def alert_consumer(common: CommonSettings) -> Consumer:
    consumer = Consumer(
        {
            "bootstrap.servers": common.kafka_bootstrap,
            **security_config(common),
            "group.id": GROUP,
            "enable.auto.commit": False,
            # A new group reads the topic from its start; subscriptions only take the alerts
            # raised after their creation, so no history is sent (services.webhooks.logic).
            "auto.offset.reset": "earliest",
            "session.timeout.ms": int(common.kafka_session_timeout_s * 1000),
            "heartbeat.interval.ms": max(100, int(common.kafka_session_timeout_s * 1000 / 3)),
            "fetch.wait.max.ms": common.kafka_fetch_max_wait_ms,
            "topic.metadata.refresh.interval.ms": 5000,
        }
    )
    consumer.subscribe([str(Topic.ALERTS)])
    return consumer


def intake(
    engine: Engine, common: CommonSettings, settings: WebhookSettings, stop: threading.Event
) -> None:
    consumer = alert_consumer(common)
    try:
        while not stop.is_set():
            messages = consumer.consume(BATCH, timeout=settings.poll_s)
            values = [m.value() for m in messages if m.error() is None]
            if not values:
                continue
            MESSAGES_IN.labels(SERVICE).inc(len(values))
            enqueued = partial(enqueue, engine, parse_alerts(values))
            queued = waiting_while_down(enqueued, BACKOFF, stop.wait, log)
            commit(consumer)
            if queued:
                log.info("queued %d deliveries from %d alerts", queued, len(values))
    finally:
        consumer.close()


def commit(consumer: Consumer) -> None:
    """Commit what was read, now that its rows are in (at least once). A commit refused in a
    rebalance is not fatal: the next owner reads those alerts again, and queues nothing twice."""
    try:
        consumer.commit(asynchronous=False)
    except KafkaException as exc:
        log.warning("offset commit failed (%s); those alerts will be read again", exc)


def post(client: httpx.Client, due: Due) -> tuple[int | None, str | None]:
    """One attempt: (HTTP status or None, coarse error or None). The error says only that the
    target is refused, that no answer came, or the status class (``coarse_error``); the kind of
    network failure goes to the log, not where the API shows it."""
    body = json.dumps(due.payload, separators=(",", ":")).encode()
    headers = delivery_headers(due.secret, body, due.alert_id, due.attempts + 1)
    try:
        check_url(due.url)  # a row stored before URLs with credentials were refused
    except ValueError as exc:
        log.warning("subscription %d: URL refused (%s)", due.subscription_id, exc)
        return None, REFUSED
    try:
        response = client.post(due.url, content=body, headers=headers)
    except TargetRefused as exc:  # an address that is not allowed
        log.warning("subscription %d: target refused (%s)", due.subscription_id, exc)
        return None, REFUSED
    except (httpx.HTTPError, httpx.InvalidURL) as exc:  # timeouts, refused connections, ...
        detail = f"{type(exc).__name__}: {exc}"
        log.info("subscription %d: no response (%s)", due.subscription_id, detail)
        return None, NO_RESPONSE
    status = response.status_code
    return status, None if response.is_success else coarse_error(None, status)


def send_due(engine: Engine, client: httpx.Client, retry: Retry) -> bool:
    """Send one due delivery; False when none was due."""
    with claim_due(engine) as claimed:
        if claimed is None:
            return False
        due, record = claimed
        with STAGE_SECONDS.labels(SERVICE).time():
            status, error = post(client, due)
        ATTEMPTS.labels("error" if error else "delivered").inc()
        record(status, error, retry)
    log.info(
        "delivery of %s to subscription %d: %s", due.alert_id, due.subscription_id, error or status
    )
    return True


def sender(engine: Engine, settings: WebhookSettings, stop: threading.Event) -> None:
    retry = Retry(settings.max_attempts, settings.backoff_s, settings.max_backoff_s)
    with checked_client(settings.timeout_s, settings.allowed_networks) as client:
        send_one = partial(send_due, engine, client, retry)
        while not stop.is_set():
            sent = waiting_while_down(send_one, BACKOFF, stop.wait, log)
            if not sent:
                stop.wait(settings.poll_s)


def guarded(target: Callable[..., None], stop: threading.Event, failed: list) -> Callable:
    def run(*args) -> None:
        try:
            target(*args)
        except Exception as exc:  # noqa: BLE001 - any thread's failure ends the process
            log.exception("%s failed; stopping", target.__name__)
            failed.append(exc)
            stop.set()

    return run


def run_threads(
    engine: Engine, common: CommonSettings, settings: WebhookSettings, stop: threading.Event
) -> bool:
    """The intake and ``concurrency`` senders until ``stop`` is set; False when one failed."""
    failed: list[BaseException] = []
    threads = [
        threading.Thread(
            target=guarded(intake, stop, failed),
            name="intake",
            args=(engine, common, settings, stop),
        )
    ]
    threads += [
        threading.Thread(
            target=guarded(sender, stop, failed), name=f"sender-{i}", args=(engine, settings, stop)
        )
        for i in range(settings.concurrency)
    ]
    for thread in threads:
        thread.start()
    log.info("webhook worker started: %d senders", settings.concurrency)
    while not stop.wait(1.0):
        pass
    for thread in threads:
        thread.join(settings.timeout_s + 10)
    return not failed
