"""python -m services.postprocess: logits in, public JSON predictions out."""

from __future__ import annotations

import numpy as np

from services.postprocess.logic import to_prediction
from visionline.imaging import FrameRejected
from visionline.messages import InferenceResult, Topic, to_json
from visionline.models.local import load_labels
from visionline.settings import CommonSettings, PostprocessSettings
from visionline.worker import Worker, configure_logging, decode_message


def main() -> None:
    common, settings = CommonSettings(), PostprocessSettings()
    configure_logging(common, "postprocess")
    labels = load_labels(common.model_repository, common.model_name)

    def handle(event) -> tuple[bytes, bytes]:
        result, payload = decode_message(event.message.value, InferenceResult)
        logits = np.frombuffer(payload, dtype=result.tensor.dtype)
        try:
            prediction = to_prediction(
                result, logits, labels, settings.top_k, settings.min_confidence
            )
        except ValueError as exc:
            raise FrameRejected("malformed_message", str(exc)).of(result.frame) from None
        return event.message.key, to_json(prediction)

    worker = Worker("postprocess", common)
    worker.each(Topic.INFERENCE, Topic.PREDICTIONS, handle)
    worker.run()


if __name__ == "__main__":
    main()
