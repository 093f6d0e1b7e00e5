"""``python -m services.upload``: the upload API on UploadSettings' host and port."""

from __future__ import annotations

import logging

import uvicorn

from services.upload.app import create_app
from visionline.camera.publisher import FramePublisher
from visionline.cameras import CameraRegistry
from visionline.db import make_engine
from visionline.settings import CommonSettings, UploadSettings, refuse_dev_secrets


def main() -> None:
    common, upload = CommonSettings(), UploadSettings()
    refuse_dev_secrets(common, key_pepper=upload.key_pepper)
    logging.basicConfig(
        level=common.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    registry = CameraRegistry(make_engine(common.database_url))
    publisher = FramePublisher(common.kafka_bootstrap, delivery_timeout_s=upload.ack_timeout_s)
    app = create_app(common, upload, registry, publisher, ack_timeout_s=upload.ack_timeout_s)
    uvicorn.run(app, host=upload.host, port=upload.port, log_level=common.log_level.lower())


if __name__ == "__main__":
    main()
