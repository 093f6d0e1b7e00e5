"""The labels worker's handlers: true labels, part observations and part verdicts in; outcomes
(tp, fp, fn, tn per part and model version) and accuracy to PostgreSQL.

Per message (observations, verdicts and detections in batches, one transaction each): store
it and join it to what is already stored for its frame (``visionline.labels.store``): a label
to the frame's observations and the verdicts decided on it, an observation or a verdict to the
frame's labels. Whichever comes second makes the
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
from visionline.labels.store import NewOutcome, accuracy, record_label, record_predictions
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

    async def on_observations(self, batch: list[tuple[object, PartObservations]]) -> None:
        source = self.policy.score_source
        self._record([frame_prediction(obs, source) for _, obs in batch])

    async def on_verdicts(self, batch: list[tuple[object, PartVerdict]]) -> None:
        self._record([verdict_prediction(verdict) for _, verdict in batch])

    async def on_detections(self, batch: list[tuple[object, FrameDetections]]) -> None:
        self._record([detection_prediction(found) for _, found in batch])

    def _record(self, predictions: list) -> None:
        count(record_predictions(self.engine, predictions, self.policy))

    async def refresh_f1(self, scores: ModelScores) -> None:
        try:
            rows = accuracy(self.engine)
        except Exception as exc:  # noqa: BLE001 - a metric must not stop the worker
            log.warning("visionline_model_f1 not refreshed: %r", exc)
            return
        scores.show({(r.camera_id, r.model, r.version, r.kind): r.f1 for r in rows})
