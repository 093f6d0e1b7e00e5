"""python -m services.inference: tensors in, micro-batched through Triton, logits out."""

from __future__ import annotations

from services.inference.backends import local_backend, triton_backend
from services.inference.logic import ResilientModel, results, stack_batch
from visionline.messages import (
    PreprocessedFrame,
    Topic,
    pack_envelope,
)
from visionline.resilience import RetryPolicy
from visionline.settings import CommonSettings, InferenceSettings
from visionline.worker import Worker, configure_logging


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


def main() -> None:
    common, settings = CommonSettings(), InferenceSettings()
    configure_logging(common, "inference")
    model = build_model(common, settings)
    worker = Worker("inference", common)
    out_topic = worker.topic(Topic.INFERENCE)

    async def infer(parsed: list[tuple]) -> None:
        frames = [frame for _, (frame, _) in parsed]
        tensors = [tensor for _, (_, tensor) in parsed]
        logits, ref = await model.infer(stack_batch(frames, tensors))
        worker.model_in_use(ref)
        out = results(frames, logits, ref)
        keys = [event.message.key for event, _ in parsed]
        await worker.send_many(
            out_topic, [(k, pack_envelope(r, p)) for k, (r, p) in zip(keys, out, strict=True)]
        )

    worker.batched(
        Topic.PREPROCESSED,
        PreprocessedFrame,
        infer,
        settings.max_batch,
        settings.max_wait_ms,
        envelope=True,
    )
    worker.run()


if __name__ == "__main__":
    main()
