"""python -m services.postprocess: logits in, public JSON predictions out."""

from __future__ import annotations

import numpy as np
from pydantic import ValidationError

from services.postprocess.logic import to_prediction
from visionline.imaging import FrameRejected
from visionline.messages import InferenceResult, MessageError, Topic, to_json, unpack_envelope
from visionline.models.local import load_labels
from visionline.settings import CommonSettings, PostprocessSettings
from visionline.worker import Worker, configure_logging


def main() -> None:
    common, settings = CommonSettings(), PostprocessSettings()
    configure_logging(common)
    labels = load_labels(common.model_repository, common.model_name)
    worker = Worker("postprocess", common)
    out_topic = worker.topic(Topic.PREDICTIONS)

    @worker.app.agent(worker.topic(Topic.INFERENCE))
    async def publish_predictions(stream):
        async for event in stream.events():
            worker.counted_in()
            done = worker.timed()
            try:
                result, payload = unpack_envelope(event.message.value, InferenceResult)
                logits = np.frombuffer(payload, dtype=result.tensor.dtype)
                prediction = to_prediction(
                    result, logits, labels, settings.top_k, settings.min_confidence
                )
            except (MessageError, ValidationError, ValueError) as exc:
                await worker.reject(event, FrameRejected("malformed_message", str(exc)[:500]))
                continue
            await worker.send(out_topic, event.message.key, to_json(prediction))
            done()

    worker.run()


if __name__ == "__main__":
    main()
