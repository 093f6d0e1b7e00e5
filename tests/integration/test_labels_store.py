"""The labels store's batched writes on PostgreSQL (the test stack's): a batch of predictions
stores and joins exactly what recording them one by one does, and two transactions over the
same frames in opposite orders never deadlock (the frames' locks are taken in one order)."""

from __future__ import annotations

import threading
import uuid

from sqlalchemy import text

from tests.factories import label_feedback
from tests.factories import labelled_part as lpart
from visionline.labels.join import JoinPolicy, PredictedPart, Prediction
from visionline.labels.store import record_label, record_prediction, record_predictions

POLICY = JoinPolicy()
BOX = (10.0, 10.0, 50.0, 50.0)


def _prediction(camera: str, frame: str, score: float = 0.9) -> Prediction:
    part = PredictedPart(BOX, score)
    return Prediction(
        f"{camera}:{frame}", "frame_part", camera, frame, 100.0, (part,), (("m", "1"),)
    )


def _count(engine, table: str, camera: str) -> int:
    query = text(f"SELECT count(*) FROM {table} WHERE camera_id = :c")  # noqa: S608 - fixed names
    with engine.connect() as conn:
        return conn.execute(query, {"c": camera}).scalar_one()


def test_a_batch_stores_and_joins_what_one_by_one_does(engine) -> None:
    batched, single = f"batch-{uuid.uuid4().hex[:6]}", f"single-{uuid.uuid4().hex[:6]}"
    for camera in (batched, single):  # frame f1 is labelled before its prediction comes
        record_label(engine, label_feedback(camera, "f1", [lpart("p", BOX, True)]), POLICY)
    frames = ["f1", "f2", "f3", "f1"]  # f1's prediction twice: redelivered in the same batch
    made = record_predictions(engine, [_prediction(batched, f) for f in frames], POLICY)
    one_by_one = [
        o for f in frames for o in record_prediction(engine, _prediction(single, f), POLICY)
    ]

    assert [(o.kind, o.outcome) for o in made] == [("frame_part", "tp")]
    assert [(o.kind, o.outcome) for o in one_by_one] == [("frame_part", "tp")]
    for camera in (batched, single):
        assert _count(engine, "label_predictions", camera) == 3
        assert _count(engine, "label_outcomes", camera) == 1
    again = record_predictions(engine, [_prediction(batched, f) for f in frames], POLICY)
    assert again == [] and _count(engine, "label_outcomes", batched) == 1  # nothing twice


def test_batches_over_the_same_frames_in_opposite_orders_do_not_deadlock(engine) -> None:
    camera = f"order-{uuid.uuid4().hex[:6]}"
    frames = [f"f{i}" for i in range(12)]
    errors: list[BaseException] = []

    def write(order: list[str], rounds: int) -> None:
        try:
            for r in range(rounds):
                batch = [_prediction(camera, f"{f}-{r}") for f in order]
                record_predictions(engine, batch, POLICY)
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            errors.append(exc)

    threads = [
        threading.Thread(target=write, args=(frames, 15)),
        threading.Thread(target=write, args=(frames[::-1], 15)),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors
    assert _count(engine, "label_predictions", camera) == 12 * 15
