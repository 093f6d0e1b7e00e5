"""python -m services.preprocess: valid frames in, uint8 model-input tensors out."""

from __future__ import annotations

from pydantic import ValidationError

from services.preprocess.logic import preprocess
from visionline.imaging import FrameRejected
from visionline.messages import FrameMeta, MessageError, Topic, pack_envelope, unpack_envelope
from visionline.settings import CommonSettings, PreprocessSettings
from visionline.worker import Worker, configure_logging


def main() -> None:
    common, settings = CommonSettings(), PreprocessSettings()
    configure_logging(common)
    worker = Worker("preprocess", common)
    out_topic = worker.topic(Topic.PREPROCESSED)

    @worker.app.agent(worker.topic(Topic.VALID_FRAMES))
    async def preprocess_frames(stream):
        async for event in stream.events():
            worker.counted_in()
            done = worker.timed()
            try:
                meta, image = unpack_envelope(event.message.value, FrameMeta)
            except (MessageError, ValidationError) as exc:
                await worker.reject(event, FrameRejected("malformed_message", str(exc)[:500]))
                continue
            try:
                out, tensor = preprocess(
                    meta, bytes(image), settings.input_size, settings.reduced_decode
                )
            except FrameRejected as rejected:
                await worker.reject(
                    event, rejected, meta.source, camera_id=meta.camera_id, frame_id=meta.frame_id
                )
                continue
            except Exception as exc:  # noqa: BLE001 - crash so the frame is redelivered
                worker.crash(exc)
            await worker.send(out_topic, event.message.key, pack_envelope(out, tensor))
            done()

    worker.run()


if __name__ == "__main__":
    main()
