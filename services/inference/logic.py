"""Inference's logic: batching tensors, and choosing Triton or the in-process fallback."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence

import numpy as np

from visionline.messages import InferenceResult, ModelRef, PreprocessedFrame, TensorSpec
from visionline.resilience import BackendUnavailable, RetryPolicy, retrying

log = logging.getLogger(__name__)

# (batch uint8 NHWC) -> (logits float32 [N, classes], model version)
Backend = Callable[[np.ndarray], Awaitable[tuple[np.ndarray, str]]]


def stack_batch(frames: Sequence[PreprocessedFrame], tensors: Sequence[bytes]) -> np.ndarray:
    """One uint8 NHWC batch from the tensors of several messages (they share one shape)."""
    shapes = {f.tensor.shape for f in frames}
    if len(shapes) != 1:
        raise ValueError(f"tensors of different shapes in one batch: {sorted(shapes)}")
    shape = shapes.pop()
    return np.stack([np.frombuffer(t, np.uint8).reshape(shape) for t in tensors])


def results(
    frames: Sequence[PreprocessedFrame], logits: np.ndarray, model: ModelRef
) -> list[tuple[InferenceResult, bytes]]:
    now = time.time()
    out = []
    for frame, row in zip(frames, logits, strict=True):
        row = np.ascontiguousarray(row, dtype=np.float32)
        result = InferenceResult(
            frame=frame.frame.stamped("inferred", now),
            quality=frame.quality,
            model=model,
            batch_size=len(frames),
            tensor=TensorSpec(shape=row.shape, dtype="float32"),
        )
        out.append((result, row.tobytes()))
    return out


def group_by_model(frames: Sequence[PreprocessedFrame], default: str) -> dict[str, list[int]]:
    """The positions of the frames each model is to classify (a frame without a model: the
    default one), models in order of first appearance."""
    groups: dict[str, list[int]] = {}
    for i, frame in enumerate(frames):
        groups.setdefault(frame.frame.model or default, []).append(i)
    return groups


class ResilientModel:
    """Triton first, retried with backoff; when it stays unreachable, the same model in-process.

    While on the fallback, Triton is probed again every ``probe_after_s`` seconds, so service
    moves back to the server as soon as it is healthy.
    """

    def __init__(
        self,
        name: str,
        primary: Backend,
        fallback_factory: Callable[[], Backend],
        policy: RetryPolicy,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.name = name
        self._primary = primary
        self._fallback_factory = fallback_factory
        self._fallback: Backend | None = None
        self._policy = policy
        self._clock = clock
        self._sleep = sleep
        self._fallback_until = float("-inf")

    @property
    def on_fallback(self) -> bool:
        return self._clock() < self._fallback_until

    async def infer(self, batch: np.ndarray) -> tuple[np.ndarray, ModelRef]:
        if not self.on_fallback:
            try:
                logits, version = await self._with_retries(batch)
                return logits, ModelRef(name=self.name, version=version, served_by="triton")
            except BackendUnavailable as exc:
                log.warning("Triton unavailable (%s); serving from the in-process model", exc)
                self._fallback_until = self._clock() + self._policy.probe_after_s
        if self._fallback is None:
            self._fallback = self._fallback_factory()
        logits, version = await self._fallback(batch)
        return logits, ModelRef(name=self.name, version=version, served_by="local-onnxruntime")

    async def _with_retries(self, batch: np.ndarray) -> tuple[np.ndarray, str]:
        return await retrying(lambda: self._primary(batch), self._policy, self._sleep)


class ModelPool:
    """One ResilientModel per model name (its Triton client and its in-process fallback),
    made on first use; a name ``exists`` does not know is refused (None), asked again next
    time (a model added to the repository later is served without a restart)."""

    def __init__(
        self,
        default: str,
        make: Callable[[str], ResilientModel],
        exists: Callable[[str], bool],
    ) -> None:
        self.default = default
        self._make = make
        self._exists = exists
        self._models: dict[str, ResilientModel] = {}

    def get(self, name: str) -> ResilientModel | None:
        if name not in self._models:
            if name != self.default and not self._exists(name):
                return None
            self._models[name] = self._make(name)
        return self._models[name]
