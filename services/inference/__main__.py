"""python -m services.inference: tensors in, micro-batched through Triton, logits out."""

from __future__ import annotations

from services.inference.backends import local_backend, triton_backend
from services.inference.logic import ResilientModel, RetryPolicy, results, stack_batch
from visionline.imaging import FrameRejected
from visionline.messages import (
    PreprocessedFrame,
    Topic,
    pack_envelope,
)
from visionline.settings import CommonSettings, InferenceSettings
from visionline.worker import Worker, configure_logging, decode_message


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

    async def decode(events):
        frames, tensors, keys = [], [], []
        for event in events:
            try:
                frame, tensor = decode_message(event.message.value, PreprocessedFrame, bind=False)
            except FrameRejected as rejected:
                await worker.reject(event, rejected)
                continue
            frames.append(frame)
            tensors.append(tensor)
            keys.append(event.message.key)
        return frames, tensors, keys

    @worker.app.agent(worker.topic(Topic.PREPROCESSED))
    async def infer_batches(stream):
        async for events in stream.take_events(settings.max_batch, settings.max_wait_ms / 1000):
            worker.batch_in(len(events), Topic.PREPROCESSED)
            frames, tensors, keys = await decode(events)
            if not frames:
                continue
            done = worker.timed()
            try:
                logits, ref = await model.infer(stack_batch(frames, tensors))
            except Exception as exc:  # noqa: BLE001 - crash so the batch is redelivered
                worker.crash(exc)
            worker.model_in_use(ref)
            out = results(frames, logits, ref)
            await worker.send_many(
                out_topic, [(k, pack_envelope(r, p)) for k, (r, p) in zip(keys, out, strict=True)]
            )
            done()

    worker.run()


if __name__ == "__main__":
    main()
