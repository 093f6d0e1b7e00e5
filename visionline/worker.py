"""What every stream worker shares: logging, metrics, dead letters, and how it is run."""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any, NoReturn

import redis
from aiokafka.errors import MessageSizeTooLargeError
from prometheus_client import start_http_server
from pydantic import ValidationError

from visionline import logs
from visionline.imaging import FrameRejected
from visionline.kafka import faust_topic, source_of
from visionline.messages import (
    UNKNOWN_SCHEMA_VERSION,
    DeadLetter,
    M,
    MessageError,
    ModelRef,
    Topic,
    dead_letter,
    frame_named_in,
    from_json,
    is_unknown_version,
    to_json,
    unpack_envelope,
)
from visionline.observability import (
    BATCH_SIZE,
    DEAD_LETTERS,
    DEPENDENCY_WAITS,
    MESSAGES_IN,
    MESSAGES_OUT,
    STAGE_SECONDS,
    LagGauge,
    ModelVersions,
)
from visionline.resilience import (
    DEPENDENCIES,
    Backoff,
    CrashLedger,
    coordinates,
    dependency_down,
    is_poison,
    outage_wait,
    split_suspects,
)
from visionline.settings import CommonSettings
from visionline.stream_batches import take_batches


def decode_message(value: bytes, schema: type[M], envelope: bool = True, bind: bool = True):
    """An envelope's (metadata, payload), or a JSON message, as the class of its
    ``schema_version`` in ``schema``'s family (``messages.SCHEMAS``). A malformed one is
    rejected (``malformed_message``), and so is one of a version no class decodes
    (``unknown_schema_version``).

    With ``bind``, this task's log records carry the message's camera and frame from here on
    (until the worker counts the next message in); batch handlers pass False.
    """
    try:
        decoded = unpack_envelope(value, schema) if envelope else from_json(value, schema)
    except MessageError as exc:
        raise FrameRejected("malformed_message", str(exc)[:500]) from None
    except ValidationError as exc:
        raise _rejection(exc, value) from None
    if bind:
        logs.bind_frame(decoded[0] if isinstance(decoded, tuple) else decoded)
    return decoded


def _rejection(error: ValidationError, value: bytes) -> FrameRejected:
    if is_unknown_version(error):  # well-formed, only newer: its dead letter names its frame
        why, frame_id = error.errors()[0]["msg"][:500], frame_named_in(value)[1]
        return FrameRejected(UNKNOWN_SCHEMA_VERSION, why, frame_id=frame_id)
    return FrameRejected("malformed_message", str(error)[:500])


def _printable_key(key: bytes | None) -> str | None:
    return key.decode("utf-8", errors="backslashreplace")[:64] if key else None


def _coordinates(event) -> str:
    message = event.message
    return coordinates(message.topic, message.partition, message.offset)


class InjectedFault(Exception):
    """Raised on purpose (``VISIONLINE_FAULT_CRASH_MARKER``) to test the crash policy."""


def configure_logging(common: CommonSettings, service: str | None = None) -> None:
    """JSON lines (or plain text, ``VISIONLINE_LOG_FORMAT=text``) on stderr; the Worker names
    the service when it is not given here."""
    logs.configure(common.log_level, common.log_format, service)


class ManualAcks:
    """The acks of a manual-ack agent (``Worker.manual``), for its handler and for timers."""

    stream: Any = None  # Faust's manual-ack stream, once the agent runs

    @property
    def running(self) -> bool:
        return self.stream is not None

    async def __call__(self, event) -> None:
        await self.stream.ack(event)


@dataclass
class Worker:
    """A stream worker's Faust app with its dead-letter topic and metrics, wired once."""

    service: str
    common: CommonSettings
    app_options: dict = field(default_factory=dict)
    # Bytes a fetch waits for, up to the fetch wait (``kafka_fetch_max_wait_ms``). 1: each
    # message is read as it arrives, as the decision path needs. A worker off that path reads
    # in batches with more: every wake-up of a Faust worker costs thread hand-offs whatever it
    # reads, and per message that cost more CPU than the handlers of labels and drift.
    fetch_min_bytes: int = 1

    def __post_init__(self) -> None:
        from visionline.kafka import faust_app

        self.app = faust_app(
            self.service, self.common, fetch_min_bytes=self.fetch_min_bytes, **self.app_options
        )
        self.dead_letters = faust_topic(self.app, Topic.DEAD_LETTER)
        self.log = logging.getLogger(f"visionline.{self.service}")
        self.models = ModelVersions(self.service)
        # Faust's own topics (its leader topic, changelogs) are named after the app.
        self.lag = LagGauge(self.service, internal_prefix=f"{self.app.conf.id}-")
        logs.set_service(self.service)
        self.backoff = Backoff()
        for dependency in DEPENDENCIES:  # a series at 0 from the start, not from the first wait
            DEPENDENCY_WAITS.labels(self.service, dependency)
        ledger_redis = redis.Redis.from_url(
            self.common.redis_url, socket_timeout=2, socket_connect_timeout=2
        )
        self.ledger = CrashLedger(ledger_redis, self.app.conf.id)
        self.ledger.refresh()

        @self.app.timer(self.common.lag_refresh_s, name=f"visionline.{self.service}.lag")
        async def refresh_lag() -> None:
            await self.lag.refresh(self.app.consumer)

        # Another replica's crashes count too: it may have held these partitions before.
        every = self.common.crash_ledger_refresh_s

        @self.app.timer(every, name=f"visionline.{self.service}.ledger")
        async def refresh_ledger() -> None:
            await asyncio.to_thread(self.ledger.refresh)

    def topic(self, topic: Topic):
        return faust_topic(self.app, topic)

    async def send(self, topic, key: bytes | None, value: bytes) -> None:
        """Send and wait for the broker's ack: the offset is committed only after this."""
        future = await topic.send(key=key, value=value)
        await future
        MESSAGES_OUT.labels(self.service, topic.get_topic_name()).inc()

    async def send_many(self, topic, messages: list[tuple[bytes | None, bytes]]) -> None:
        """Send a batch and wait until the broker acked all of it."""
        futures = [await topic.send(key=key, value=value) for key, value in messages]
        await asyncio.gather(*futures)
        MESSAGES_OUT.labels(self.service, topic.get_topic_name()).inc(len(messages))

    def outbox(self, topic: Topic, id_field: str):
        """An outbox's two ends on ``topic``: ``send(messages)`` (``send_many``), and
        ``on_topic(ids, since_s)``, which of the ids the topic already holds in ``id_field``
        (``visionline.db.outbox.publish_once`` asks it before a resend)."""
        from visionline.replay import topic_lookup

        send = partial(self.send_many, self.topic(topic))
        return send, topic_lookup(self.common.kafka_bootstrap, str(topic), id_field)

    async def reject(self, event, error: FrameRejected) -> None:
        """Dead-letter the event, pointing at the frame's original coordinates when known."""
        message, frame = event.message, error.frame
        letter = dead_letter(
            error_type=error.error_type,
            error_message=error.message,
            stage=self.service,
            source=frame.source if frame else source_of(event),
            value=message.value,
            headers=message.headers,
            camera_id=frame.camera_id if frame else _printable_key(message.key),
            frame_id=error.frame_id,
        )
        await self.send_dead_letter(letter, message.key)

    def each(
        self,
        source: Topic,
        out: Topic,
        handle: Callable[[object], tuple | None | Awaitable],
        in_flight: int = 1,
    ) -> None:
        """The usual agent: ``handle(event) -> (key, value)`` (or a coroutine of it) is sent to
        ``out``, and None sends nothing; see ``routed`` for what a failure does and for
        ``in_flight``."""

        async def to_out(event) -> tuple | None:
            result = handle(event)
            result = await result if inspect.isawaitable(result) else result
            return None if result is None else (out, *result)

        self.routed(source, (out,), to_out, in_flight)

    def routed(
        self,
        source: Topic,
        outputs: tuple[Topic, ...],
        handle: Callable[[object], tuple | None | Awaitable[tuple | None]],
        in_flight: int = 1,
    ) -> None:
        """Like ``each``, but ``handle(event) -> (topic, key, value)`` picks one of ``outputs``
        (None: the event is done and nothing is sent).

        A poison message is dead-lettered unread; a FrameRejected is dead-lettered; while a
        server is down the handler is retried (``attempt``); anything else crashes the worker.

        ``in_flight`` > 1: up to that many handlers run at once, each started as its event
        comes, so that they overlap where they wait (on a model server, or in a thread); each
        result is sent as soon as those of the events before it are, so the output keeps the
        input's order (``_overlapped``). A handler's crash still counts against its own event
        only."""
        topics = {t: self.topic(t) for t in outputs}

        async def handled(event) -> tuple | FrameRejected | None:
            try:
                return await self.attempt(partial(handle, event), [event])
            except FrameRejected as rejected:
                return rejected

        async def route(event, result: tuple | FrameRejected | None, done) -> None:
            if isinstance(result, FrameRejected):
                await self.reject(event, result)
                return
            if result is not None:
                topic, key, value = result
                try:
                    await self.send(topics[topic], key, value)
                except MessageSizeTooLargeError as exc:  # never lost: set aside with the reason
                    size = f"{len(value)} bytes do not fit a Kafka record here ({exc})"
                    await self.reject(event, FrameRejected("payload_too_large", size))
            done()

        @self.app.agent(self.topic(source), name=f"visionline.{self.service}")
        async def process(stream):
            if in_flight <= 1:
                async for event in stream.events():
                    self.counted_in()
                    done = self.timed()
                    if not await self.poisoned(event):
                        await route(event, await handled(event), done)
                return
            await self._overlapped(stream.noack(), handled, route, in_flight)

    async def _overlapped(self, stream, handled, route, in_flight: int) -> None:
        """``routed``'s loop with ``in_flight`` handlers at once: each event's handler starts
        as it comes (in order, while fewer than ``in_flight`` are unsent), and one task sends
        the results and acks the events in their order, so the offsets committed never pass
        an event whose result is not sent."""
        slots = asyncio.Semaphore(in_flight)  # one per event not yet sent
        queue: asyncio.Queue = asyncio.Queue()

        async def send_in_order() -> None:
            while True:
                event, task, done = await queue.get()
                try:
                    if task is not None:
                        await route(event, await task, done)
                    await stream.ack(event)
                except Exception as exc:  # noqa: BLE001 - as an agent's error: exit, so the
                    self.crash(exc)  # events not acked come back
                slots.release()

        sender = asyncio.ensure_future(send_in_order())
        try:
            async for event in stream.events():
                self.counted_in()
                await slots.acquire()
                done = self.timed()
                task = None
                if not await self.poisoned(event):
                    task = asyncio.ensure_future(handled(event))
                queue.put_nowait((event, task, done))
        finally:
            sender.cancel()

    def sink(
        self,
        source: Topic,
        schema: type[M],
        handle: Callable[[M], object | Awaitable],
        name: str | None = None,
    ) -> None:
        """Per message with no output topic: ``handle(message)`` (awaited if need be), for a
        worker that writes to a database. A FrameRejected is dead-lettered; while a server is
        down the handler is retried (``attempt``); anything else crashes the worker."""

        @self.app.agent(self.topic(source), name=name or self._agent_name(source))
        async def process(stream):
            async for event, message, done in self.decoded(stream.events(), schema):
                try:
                    await self.attempt(lambda m=message: handle(m), [event])
                except FrameRejected as rejected:
                    await self.reject(event, rejected)
                done()

    def _agent_name(self, source: Topic) -> str:
        return f"visionline.{self.service}.{source.name.lower()}"

    def batched(
        self,
        source: Topic,
        schema: type[M],
        handle: Callable[[list[tuple]], Awaitable[None]],
        max_batch: int,
        max_wait_ms: float,
        envelope: bool = False,
    ) -> None:
        """The batch agent: ``await handle([(event, message), ...])`` on up to ``max_batch``
        messages (waiting at most ``max_wait_ms`` for them). Malformed and poison messages are
        dead-lettered first; a message that crashed the worker before is handled alone; the
        handler is retried while a dependency is down and crashes the worker on anything else,
        so nothing of the batch is committed before ``handle`` returns."""

        @self.app.agent(self.topic(source), name=self._agent_name(source))
        async def process(stream):
            async for batch in take_batches(stream, max_batch, max_wait_ms / 1000):
                self.batch_in(len(batch), source)
                done = self.timed()
                for events in await self.unpoisoned(batch):
                    parsed = []
                    for event in events:
                        try:
                            value = event.message.value
                            message = decode_message(value, schema, envelope=envelope, bind=False)
                        except FrameRejected as rejected:
                            await self.reject(event, rejected)
                            continue
                        parsed.append((event, message))
                    if parsed:
                        await self.attempt(lambda p=parsed: handle(p), events)
                done()

    def manual(
        self,
        source: Topic,
        schema: type[M],
        handle: Callable[[object, M], Awaitable[None]],
        acks: ManualAcks,
        name: str | None = None,
    ) -> None:
        """The manual-ack agent: ``await handle(event, message)`` per message; nothing is
        committed until the handler (or a timer) acks the event through ``acks``. For work that
        outlives one message: a part tracked over many frames, a detector saved every N frames,
        a job run in the background. Malformed and poison messages are dead-lettered and acked;
        any error crashes the worker.

        A rebalance does not wait for the held messages (``stream_wait_empty`` off): they are
        acked only when their work is done, which needs more messages, which a rebalance holds
        back; Faust would wait forever. What was not acked is not committed and is replayed by
        the partition's next owner."""
        self.app.conf.stream_wait_empty = False

        @self.app.agent(self.topic(source), name=name or self._agent_name(source))
        async def process(stream):
            manual = acks.stream = stream.noack()
            async for event, message, done in self.decoded(manual.events(), schema, ack=manual.ack):
                try:
                    await handle(event, message)
                except Exception as exc:  # noqa: BLE001 - crash so the message is redelivered
                    self.crash(exc, [event])
                done()

    def every(self, interval_s: float, tick: Callable[[], Awaitable[None]], name: str) -> None:
        """``await tick()`` every ``interval_s``; an error crashes the worker, so that what the
        tick had not acked is redelivered."""

        @self.app.timer(interval_s, name=f"visionline.{self.service}.{name}")
        async def timer() -> None:
            try:
                await tick()
            except Exception as exc:  # noqa: BLE001 - crash: the unacked messages come back
                self.crash(exc)

    def on_revoked(self, forget: Callable[[set], Awaitable[None]]) -> None:
        """``await forget(partitions)`` when partitions are taken from this replica."""

        @self.app.on_partitions_revoked.connect
        async def revoked(app, revoked, **kwargs) -> None:
            await forget(revoked)

    def on_shutdown(self, stop: Callable[[], None]) -> None:
        """``stop()`` once the consumer stopped, before the worker exits."""

        @self.app.on_before_shutdown.connect
        async def shutdown(app, **kwargs) -> None:
            stop()

    def at_start(self, start: Callable[[], Awaitable[None]]) -> None:
        """``await start()`` once the worker runs."""
        self.app.task(start)

    async def decoded(self, events, schema: type[M], envelope: bool = False, ack=None):
        """Each event of the ``events`` stream counted in, with its decoded message and its
        stage timer: ``async for event, message, done in ...``. A malformed one is
        dead-lettered (and acked with ``ack``, on a manual-ack stream) and skipped."""
        async for event in events:
            self.counted_in()
            done = self.timed()
            if await self.poisoned(event):
                if ack is not None:
                    await ack(event)
                continue
            try:
                message = decode_message(event.message.value, schema, envelope=envelope)
            except FrameRejected as rejected:
                await self.reject(event, rejected)
                if ack is not None:
                    await ack(event)
                continue
            yield event, message, done

    async def poisoned(self, event) -> bool:
        """Whether ``event`` crashed this worker often enough to be poison: then it is
        dead-lettered with the error it caused, rather than retried forever."""
        coords = _coordinates(event)
        crashes = self.ledger.crashes(coords)
        threshold = self.common.poison_after_crashes
        if not is_poison(crashes, self.ledger.crashed_alone(coords), threshold):
            return False
        error = self.ledger.last_error(coords) or "unknown error"
        why = f"crashed the {self.service} worker {crashes} times; last: {error}"
        camera_id, frame_id = frame_named_in(event.message.value)
        letter = dead_letter(
            error_type="poison_message",
            error_message=why,
            stage=self.service,
            source=source_of(event),
            value=event.message.value,
            headers=event.message.headers,
            camera_id=camera_id or _printable_key(event.message.key),
            frame_id=frame_id,
        )
        await self.send_dead_letter(letter, event.message.key)
        self.ledger.forget(coords)
        return True

    async def unpoisoned(self, events: list) -> list[list]:
        """A batch without its poison events (dead-lettered), as the groups to handle: each
        event that crashed the worker before alone, so that its next crash names it."""
        kept = [event for event in events if not await self.poisoned(event)]
        return split_suspects(kept, [self.ledger.crashes(_coordinates(e)) > 0 for e in kept])

    async def attempt(self, call: Callable[[], object | Awaitable], events: list):
        """``call()``'s result (awaited if need be) for ``events``. While a server it needs is
        down (Triton, PostgreSQL, Redis) it waits with backoff and calls again, as often as it
        takes: the messages are not at fault. A FrameRejected goes to the caller; any other
        exception crashes the worker, counted against ``events`` (see ``poisoned``)."""
        failures = 0
        while True:
            try:
                self._injected_fault(events)
                result = call()
                if inspect.isawaitable(result):
                    result = await result
            except FrameRejected:
                raise
            except Exception as exc:  # noqa: BLE001 - sorted below: wait, or crash
                failures += 1
                wait = outage_wait(exc, failures, self.backoff, self.log)
                if wait is None:
                    self.crash(exc, events)
                dependency, delay = wait
                DEPENDENCY_WAITS.labels(self.service, dependency).inc()
                await asyncio.sleep(delay)
                continue
            if failures:
                self.log.info("dependency back after %d failed attempts", failures)
            return result

    def _injected_fault(self, events: list) -> None:
        marker = self.common.fault_crash_marker
        if marker and self.common.fault_crash_service == self.service:
            if any(marker.encode() in (e.message.value or b"") for e in events):
                raise InjectedFault(f"fault injected on purpose: payload holds {marker!r}")

    async def send_dead_letter(self, letter: DeadLetter, key: bytes | None) -> None:
        await self.send(self.dead_letters, key, to_json(letter))
        DEAD_LETTERS.labels(self.service, letter.error_type).inc()
        with logs.frame_context(letter.camera_id, letter.frame_id):
            self.log.warning(
                "dead-lettered %s/%s: %s: %s",
                letter.camera_id,
                letter.frame_id,
                letter.error_type,
                letter.error_message,
            )

    def timed(self) -> Callable[[], None]:
        start = time.perf_counter()
        return lambda: STAGE_SECONDS.labels(self.service).observe(time.perf_counter() - start)

    def counted_in(self, n: int = 1) -> None:
        """A new message (or batch) is being handled: no frame in the log context until it is
        decoded."""
        logs.clear_frame()
        MESSAGES_IN.labels(self.service).inc(n)

    def batch_in(self, n: int, source: Topic) -> None:
        """``counted_in`` for a batch of ``n`` messages taken from ``source``."""
        self.counted_in(n)
        BATCH_SIZE.labels(self.service, str(source)).observe(n)

    def model_in_use(self, *refs: ModelRef) -> None:
        """The models (and versions) that answered the last request: ``visionline_model_info``."""
        self.models.record(refs)

    def crash(self, exc: BaseException, events: Sequence = ()) -> NoReturn:
        """Exit at once, without committing: the supervisor restarts the worker and the
        message that failed comes back (Faust would otherwise restart only the agent).

        The crash counts against ``events`` unless a server was down: a message that keeps
        crashing the worker is dead-lettered once it reaches ``poison_after_crashes``."""
        if dependency_down(exc) is None:
            error = f"{type(exc).__name__}: {exc}"
            self.ledger.record([_coordinates(e) for e in events], error)
        self.log.critical("unexpected error, exiting so the message is redelivered", exc_info=exc)
        logging.shutdown()
        os._exit(70)

    def run(self) -> None:
        """Run until SIGTERM. An unexpected exception crashes the worker: its supervisor restarts
        it and the uncommitted offsets bring the message back."""
        import faust

        if self.common.metrics_port:
            start_http_server(self.common.metrics_port)
        # override_logging=False: Faust would replace the JSON handler with its colored one.
        worker = faust.Worker(
            self.app,
            loglevel=self.common.log_level,
            redirect_stdouts=False,
            override_logging=False,
            quiet=self.common.log_format == "json",  # no banner or "OK ^" between JSON lines
        )
        if self.common.log_format == "json":
            worker.spinner = None  # it writes terminal escapes to stdout; Faust logs "Ready"
        worker.execute_from_commandline()
