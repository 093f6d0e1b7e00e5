"""python -m services.labels: true labels, part observations and part verdicts in; outcomes
(tp, fp, fn, tn per part and model version) and accuracy to PostgreSQL.

Per message: store it and join it to what is already stored for its frame
(``visionline.labels.store``): a label to the frame's observations and the verdicts decided on
it, an observation or a verdict to the frame's labels. Whichever comes second makes the
outcomes; both orders work. A message is acked once its transaction committed, and outcome
rows are keyed on what they join, so a redelivered message counts nothing twice. A label that
does not parse or makes no sense is dead-lettered with the reason.
"""

from __future__ import annotations

from collections.abc import Callable

from visionline.db import make_engine
from visionline.imaging import FrameRejected
from visionline.labels.join import (
    JoinPolicy,
    frame_prediction,
    label_problem,
    verdict_prediction,
)
from visionline.labels.store import NewOutcome, accuracy, record_label, record_prediction
from visionline.messages import LabelFeedback, PartObservations, PartVerdict, Topic
from visionline.observability import LABELLED_PARTS, ModelScores
from visionline.settings import CommonSettings, LabelsSettings
from visionline.worker import Worker, configure_logging


def count(new: list[NewOutcome]) -> None:
    for o in new:
        LABELLED_PARTS.labels(o.camera_id, o.model, o.version, o.kind, o.outcome).inc()


def main() -> None:
    common, settings = CommonSettings(), LabelsSettings()
    configure_logging(common, "labels")
    engine = make_engine(common.database_url)
    policy = JoinPolicy.of(settings)
    worker = Worker("labels", common)
    scores = ModelScores()

    def on_label(label: LabelFeedback) -> list[NewOutcome]:
        if (problem := label_problem(label)) is not None:
            raise FrameRejected("invalid_label", problem)
        return record_label(engine, label, policy)

    def on_observations(obs: PartObservations) -> list[NewOutcome]:
        return record_prediction(engine, frame_prediction(obs, policy.score_source), policy)

    def on_verdict(verdict: PartVerdict) -> list[NewOutcome]:
        return record_prediction(engine, verdict_prediction(verdict), policy)

    def watch(source: Topic, schema, handle: Callable[[object], list[NewOutcome]]) -> None:
        @worker.app.agent(worker.topic(source), name=f"visionline.labels.{source.name.lower()}")
        async def agent(stream):
            manual = stream.noack()
            async for event, message, done in worker.decoded(
                manual.events(), schema, ack=manual.ack
            ):
                try:
                    count(await worker.attempt(lambda m=message: handle(m), [event]))
                except FrameRejected as rejected:
                    await worker.reject(event, rejected)
                await manual.ack(event)
                done()

    watch(Topic.LABELS_FEEDBACK, LabelFeedback, on_label)
    watch(Topic.PART_OBSERVATIONS, PartObservations, on_observations)
    watch(Topic.PART_DECISIONS, PartVerdict, on_verdict)

    @worker.app.timer(settings.f1_refresh_s, name="visionline.labels.f1")
    async def refresh_f1() -> None:
        try:
            rows = accuracy(engine)
        except Exception as exc:  # noqa: BLE001 - a metric must not stop the worker
            worker.log.warning("visionline_model_f1 not refreshed: %r", exc)
            return
        scores.show({(r.camera_id, r.model, r.version, r.kind): r.f1 for r in rows})

    worker.run()


if __name__ == "__main__":
    main()
