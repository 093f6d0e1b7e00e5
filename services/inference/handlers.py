"""The inference worker's handler: a batch of preprocessed frames through the models their
cameras chose (Triton, else the local fallback), one result per frame."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial

from services.inference.backends import local_backend, triton_backend
from services.inference.logic import (
    ModelPool,
    ResilientModel,
    group_by_model,
    results,
    stack_batch,
)
from visionline.imaging import FrameRejected
from visionline.messages import ModelRef, pack_envelope
from visionline.models.classifiers import is_classifier
from visionline.resilience import RetryPolicy
from visionline.settings import CommonSettings, InferenceSettings


def build_model(common: CommonSettings, settings: InferenceSettings, name: str) -> ResilientModel:
    """``name`` on Triton, else in-process; the configured version pins only the default model
    (another serves the version its promotion pinned)."""
    version = settings.model_version if name == common.model_name else ""
    return ResilientModel(
        name,
        triton_backend(common.triton_grpc_url, name, version, settings.triton_timeout_s),
        lambda: local_backend(common.model_repository, name, version, settings.local_threads),
        RetryPolicy(settings.retry_attempts, settings.retry_backoff_s, settings.fallback_probe_s),
    )


def build_models(common: CommonSettings, settings: InferenceSettings) -> ModelPool:
    exists = partial(is_classifier, common.model_repository)
    return ModelPool(common.model_name, partial(build_model, common, settings), exists)


@dataclass
class InferenceHandlers:
    models: ModelPool
    send_results: Callable[[list[tuple[bytes | None, bytes]]], Awaitable[None]]
    model_in_use: Callable[..., None]
    reject: Callable[[object, FrameRejected], Awaitable[None]]

    async def infer(self, parsed: list[tuple]) -> None:
        """``parsed``: ``(event, (frame, tensor))`` pairs, classified by each frame's model in
        one request per model; the results keep each frame's key. A frame naming a model that
        is not a classifier of the repository is dead-lettered (``unknown_model``)."""
        frames = [frame for _, (frame, _) in parsed]
        refs = []
        for name, positions in group_by_model(frames, self.models.default).items():
            group = [parsed[i] for i in positions]
            model = self.models.get(name)
            if model is None:
                await self._refuse(name, group)
            else:
                refs.append(await self._infer(model, group))
        if refs:
            self.model_in_use(*refs)

    async def _infer(self, model: ResilientModel, parsed: list[tuple]) -> ModelRef:
        frames = [frame for _, (frame, _) in parsed]
        tensors = [tensor for _, (_, tensor) in parsed]
        logits, ref = await model.infer(stack_batch(frames, tensors))
        out = results(frames, logits, ref)
        keys = [event.message.key for event, _ in parsed]
        await self.send_results(
            [(k, pack_envelope(r, p)) for k, (r, p) in zip(keys, out, strict=True)]
        )
        return ref

    async def _refuse(self, name: str, parsed: list[tuple]) -> None:
        for event, (frame, _) in parsed:
            why = f"model {name!r} is not a classifier of the model repository"
            await self.reject(event, FrameRejected("unknown_model", why).of(frame.frame))
