import asyncio

import numpy as np
import pytest

from services.inference.logic import (
    ModelPool,
    ResilientModel,
    group_by_model,
    results,
    stack_batch,
)
from tests.factories import frame_meta, model_ref, quality
from visionline.messages import PreprocessedFrame, TensorSpec
from visionline.resilience import BackendUnavailable, RetryPolicy


def frame(shape=(4, 4, 3), i=0) -> PreprocessedFrame:
    return PreprocessedFrame(
        frame=frame_meta("cam-1", f"f{i}"),
        quality=quality(),
        tensor=TensorSpec(shape=shape, dtype="uint8"),
    )


def test_stack_batch_and_results_keep_order():
    frames = [frame(i=i) for i in range(3)]
    tensors = [np.full((4, 4, 3), i, np.uint8).tobytes() for i in range(3)]
    batch = stack_batch(frames, tensors)
    assert batch.shape == (3, 4, 4, 3) and batch[2].max() == 2
    logits = np.arange(6, dtype=np.float32).reshape(3, 2)
    out = results(frames, logits, model_ref("m", "1"))
    assert [r.frame.frame_id for r, _ in out] == ["f0", "f1", "f2"]
    assert np.frombuffer(out[1][1], np.float32).tolist() == [2.0, 3.0]
    assert all(r.batch_size == 3 and "inferred" in r.frame.stages for r, _ in out)


def test_stack_batch_refuses_mixed_shapes():
    with pytest.raises(ValueError):
        stack_batch([frame(), frame((2, 2, 3))], [b"\0" * 48, b"\0" * 12])


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def make(primary_failures: int, clock: Clock, attempts=2):
    calls = {"primary": 0, "fallback": 0}
    sleeps = []

    async def primary(batch):
        calls["primary"] += 1
        if calls["primary"] <= primary_failures:
            raise BackendUnavailable("down")
        return batch.sum(axis=(1, 2, 3)).astype(np.float32)[:, None], "3"

    async def fallback(batch):
        calls["fallback"] += 1
        return np.zeros((len(batch), 1), np.float32), "3"

    async def sleep(s):
        sleeps.append(s)

    model = ResilientModel(
        "m", primary, lambda: fallback, RetryPolicy(attempts, 0.1, 10.0), clock, sleep
    )
    return model, calls, sleeps


BATCH = np.ones((2, 1, 1, 3), np.uint8)


def test_retries_then_succeeds_on_triton():
    model, calls, sleeps = make(primary_failures=2, clock=Clock())
    logits, ref = asyncio.run(model.infer(BATCH))
    assert ref.served_by == "triton" and ref.version == "3" and logits[0, 0] == 3
    assert calls == {"primary": 3, "fallback": 0} and sleeps == [0.1, 0.2]


def test_falls_back_then_probes_triton_again():
    clock = Clock()
    model, calls, _ = make(primary_failures=3, clock=clock)
    _, ref = asyncio.run(model.infer(BATCH))
    assert ref.served_by == "local-onnxruntime" and calls["primary"] == 3
    clock.now = 5.0  # within the probe interval: no new Triton attempt
    _, ref = asyncio.run(model.infer(BATCH))
    assert ref.served_by == "local-onnxruntime" and calls["primary"] == 3
    clock.now = 11.0  # Triton is back
    _, ref = asyncio.run(model.infer(BATCH))
    assert ref.served_by == "triton" and calls["primary"] == 4


def test_frames_are_grouped_by_their_model_in_order_of_first_appearance():
    models = [None, "b", "a", None, "b"]
    frames = [
        frame(i=i).model_copy(update={"frame": frame_meta("c", f"f{i}", model=m)})
        for i, m in enumerate(models)
    ]
    assert group_by_model(frames, "default") == {"default": [0, 3], "b": [1, 4], "a": [2]}
    assert group_by_model([], "default") == {}


def test_the_pool_makes_each_model_once_and_refuses_an_unknown_one():
    made: list[str] = []

    def make(name: str) -> ResilientModel:
        made.append(name)
        return ResilientModel(name, None, lambda: None, RetryPolicy(1, 0.0, 1.0))  # type: ignore[arg-type]

    known = {"mine"}
    pool = ModelPool("default", make, lambda name: name in known)
    assert pool.get("default") is pool.get("default")
    assert pool.get("mine").name == "mine" and pool.get("mine") is pool.get("mine")
    assert pool.get("gone") is None
    known.add("gone")  # added to the repository later: served without a restart
    assert pool.get("gone").name == "gone"
    assert made == ["default", "mine", "gone"]
