"""python -m services.preprocess: valid frames in, uint8 model-input tensors out."""

from __future__ import annotations

from services.preprocess.logic import preprocess
from visionline.imaging import FrameRejected
from visionline.messages import FrameMeta, Topic, pack_envelope
from visionline.settings import CommonSettings, PreprocessSettings
from visionline.worker import Worker, configure_logging, decode_message


def main() -> None:
    common, settings = CommonSettings(), PreprocessSettings()
    configure_logging(common, "preprocess")

    def handle(event) -> tuple[bytes, bytes]:
        meta, image = decode_message(event.message.value, FrameMeta)
        try:
            out, tensor = preprocess(
                meta, bytes(image), settings.input_size, settings.reduced_decode
            )
        except FrameRejected as rejected:
            raise rejected.of(meta) from None
        return event.message.key, pack_envelope(out, tensor)

    worker = Worker("preprocess", common)
    worker.each(Topic.VALID_FRAMES, Topic.PREPROCESSED, handle)
    worker.run()


if __name__ == "__main__":
    main()
