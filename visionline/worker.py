"""What every stream worker shares: logging, metrics, dead letters, and how it is run."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from aiokafka.errors import MessageSizeTooLargeError
from prometheus_client import start_http_server
from pydantic import ValidationError

from visionline import logs
from visionline.imaging import FrameRejected
from visionline.kafka import faust_topic, source_of
from visionline.messages import (
    DeadLetter,
    M,
    MessageError,
    ModelRef,
    Topic,
    dead_letter,
    from_json,
    to_json,
    unpack_envelope,
)
from visionline.observability import (
    BATCH_SIZE,
    DEAD_LETTERS,
    MESSAGES_IN,
    MESSAGES_OUT,
    STAGE_SECONDS,
    LagGauge,
    ModelVersions,
)
from visionline.settings import CommonSettings


def decode_message(value: bytes, schema: type[M], envelope: bool = True, bind: bool = True):
    """An envelope's (metadata, payload), or a JSON message; malformed ones are rejected.

    With ``bind``, this task's log records carry the message's camera and frame from here on
    (until the worker counts the next message in); batch handlers pass False.
    """
    try:
        decoded = unpack_envelope(value, schema) if envelope else from_json(value, schema)
    except (MessageError, ValidationError) as exc:
        raise FrameRejected("malformed_message", str(exc)[:500]) from None
    if bind:
        logs.bind_frame(decoded[0] if envelope else decoded)
    return decoded


def _printable_key(key: bytes | None) -> str | None:
    return key.decode("utf-8", errors="backslashreplace")[:64] if key else None


def configure_logging(common: CommonSettings, service: str | None = None) -> None:
    """JSON lines (or plain text, ``VISIONLINE_LOG_FORMAT=text``) on stderr; the Worker names
    the service when it is not given here."""
    logs.configure(common.log_level, common.log_format, service)


@dataclass
class Worker:
    """A stream worker's Faust app with its dead-letter topic and metrics, wired once."""

    service: str
    common: CommonSettings
    app_options: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        from visionline.kafka import faust_app

        self.app = faust_app(self.service, self.common, **self.app_options)
        self.dead_letters = faust_topic(self.app, Topic.DEAD_LETTER)
        self.log = logging.getLogger(f"visionline.{self.service}")
        self.models = ModelVersions(self.service)
        # Faust's own topics (its leader topic, changelogs) are named after the app.
        self.lag = LagGauge(self.service, internal_prefix=f"{self.app.conf.id}-")
        logs.set_service(self.service)

        @self.app.timer(self.common.lag_refresh_s, name=f"visionline.{self.service}.lag")
        async def refresh_lag() -> None:
            await self.lag.refresh(self.app.consumer)

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

    def each(self, source: Topic, out: Topic, handle: Callable[[object], tuple]) -> None:
        """The usual agent: ``handle(event) -> (key, value)`` is sent to ``out``, a
        FrameRejected is dead-lettered, anything else crashes the worker."""
        self.routed(source, (out,), lambda event: (out, *handle(event)))

    def routed(
        self, source: Topic, outputs: tuple[Topic, ...], handle: Callable[[object], tuple]
    ) -> None:
        """Like ``each``, but ``handle(event) -> (topic, key, value)`` picks one of ``outputs``."""
        topics = {t: self.topic(t) for t in outputs}

        @self.app.agent(self.topic(source), name=f"visionline.{self.service}")
        async def process(stream):
            async for event in stream.events():
                self.counted_in()
                done = self.timed()
                try:
                    topic, key, value = handle(event)
                except FrameRejected as rejected:
                    await self.reject(event, rejected)
                    continue
                except Exception as exc:  # noqa: BLE001 - crash so the message is redelivered
                    self.crash(exc)
                try:
                    await self.send(topics[topic], key, value)
                except MessageSizeTooLargeError as exc:  # never lost: set aside with the reason
                    size = f"{len(value)} bytes do not fit a Kafka record here ({exc})"
                    await self.reject(event, FrameRejected("payload_too_large", size))
                done()

    async def decoded(self, events, schema: type[M], envelope: bool = False, ack=None):
        """Each event of the ``events`` stream counted in, with its decoded message and its
        stage timer: ``async for event, message, done in ...``. A malformed one is
        dead-lettered (and acked with ``ack``, on a manual-ack stream) and skipped."""
        async for event in events:
            self.counted_in()
            done = self.timed()
            try:
                message = decode_message(event.message.value, schema, envelope=envelope)
            except FrameRejected as rejected:
                await self.reject(event, rejected)
                if ack is not None:
                    await ack(event)
                continue
            yield event, message, done

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

    def crash(self, exc: BaseException) -> None:
        """Exit at once, without committing: the supervisor restarts the worker and the
        message that failed comes back (Faust would otherwise restart only the agent)."""
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
