"""The labels worker's handlers: true labels, part observations and part verdicts in; outcomes
(tp, fp, fn, tn per part and model version) and accuracy to PostgreSQL.

Per message: store it and join it to what is already stored for its frame
(``visionline.labels.store``): a label to the frame's observations and the verdicts decided on
it, an observation or a verdict to the frame's labels. Whichever comes second makes the
outcomes; both orders work. A message is acked once its transaction committed, and outcome
rows are keyed on what they join, so a redelivered message counts nothing twice. A label that
does not parse or makes no sense is dead-lettered with the reason.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlalchemy import Engine

from visionline.imaging import FrameRejected
from visionline.labels.join import (
    JoinPolicy,
    detection_prediction,
    frame_prediction,
    label_problem,
    verdict_prediction,
)
from visionline.labels.store import NewOutcome, accuracy, record_label, record_prediction
from visionline.messages import FrameDetections, LabelFeedback, PartObservations, PartVerdict
from visionline.observability import LABELLED_PARTS, ModelScores

log = logging.getLogger("visionline.labels")


def count(new: list[NewOutcome]) -> None:
    for o in new:
        LABELLED_PARTS.labels(o.camera_id, o.model, o.version, o.kind, o.outcome).inc()


@dataclass
class LabelsHandlers:
    engine: Engine
    policy: JoinPolicy

    def on_label(self, label: LabelFeedback) -> None:
        if (problem := label_problem(label)) is not None:
            raise FrameRejected("invalid_label", problem)
        count(record_label(self.engine, label, self.policy))

    def on_observations(self, obs: PartObservations) -> None:
        prediction = frame_prediction(obs, self.policy.score_source)
        count(record_prediction(self.engine, prediction, self.policy))

    def on_verdict(self, verdict: PartVerdict) -> None:
        count(record_prediction(self.engine, verdict_prediction(verdict), self.policy))

    def on_detections(self, found: FrameDetections) -> None:
        count(record_prediction(self.engine, detection_prediction(found), self.policy))

    async def refresh_f1(self, scores: ModelScores) -> None:
        try:
            rows = accuracy(self.engine)
        except Exception as exc:  # noqa: BLE001 - a metric must not stop the worker
            log.warning("visionline_model_f1 not refreshed: %r", exc)
            return
        scores.show({(r.camera_id, r.model, r.version, r.kind): r.f1 for r in rows})
