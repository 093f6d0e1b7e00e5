"""python -m services.inference: tensors in, micro-batched through Triton, logits out (the
handler: ``services/inference/handlers.py``)."""

from __future__ import annotations

from functools import partial

from services.inference.handlers import InferenceHandlers, build_models
from visionline.messages import PreprocessedFrame, Topic
from visionline.settings import CommonSettings, InferenceSettings
from visionline.worker import Worker, configure_logging


def main() -> None:
    common, settings = CommonSettings(), InferenceSettings()
    configure_logging(common, "inference")
    worker = Worker("inference", common)
    out = partial(worker.send_many, worker.topic(Topic.INFERENCE))
    models = build_models(common, settings)
    inference = InferenceHandlers(models, out, worker.model_in_use, worker.reject)
    batches = settings.max_batch, settings.max_wait_ms
    worker.batched(Topic.PREPROCESSED, PreprocessedFrame, inference.infer, *batches, envelope=True)
    worker.run()


if __name__ == "__main__":
    main()
