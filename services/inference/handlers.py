"""The inference worker's handler: a batch of preprocessed frames through the model (Triton,
else the local fallback), one result per frame."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from services.inference.backends import local_backend, triton_backend
from services.inference.logic import ResilientModel, results, stack_batch
from visionline.messages import ModelRef, pack_envelope
from visionline.resilience import RetryPolicy
from visionline.settings import CommonSettings, InferenceSettings


def build_model(common: CommonSettings, settings: InferenceSettings) -> ResilientModel:
    version = settings.model_version
    return ResilientModel(
        common.model_name,
        triton_backend(
            common.triton_grpc_url, common.model_name, version, settings.triton_timeout_s
        ),
        lambda: local_backend(
            common.model_repository, common.model_name, version, settings.local_threads
        ),
        RetryPolicy(settings.retry_attempts, settings.retry_backoff_s, settings.fallback_probe_s),
    )


@dataclass
class InferenceHandlers:
    model: ResilientModel
    send_results: Callable[[list[tuple[bytes | None, bytes]]], Awaitable[None]]
    model_in_use: Callable[[ModelRef], None]

    async def infer(self, parsed: list[tuple]) -> None:
        """``parsed``: ``(event, (frame, tensor))`` pairs; the results keep each frame's key."""
        frames = [frame for _, (frame, _) in parsed]
        tensors = [tensor for _, (_, tensor) in parsed]
        logits, ref = await self.model.infer(stack_batch(frames, tensors))
        self.model_in_use(ref)
        out = results(frames, logits, ref)
        keys = [event.message.key for event, _ in parsed]
        await self.send_results(
            [(k, pack_envelope(r, p)) for k, (r, p) in zip(keys, out, strict=True)]
        )
