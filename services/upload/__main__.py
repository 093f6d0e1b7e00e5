"""``python -m services.upload``: the upload API on UploadSettings' host and port."""

from __future__ import annotations

import uvicorn

from services.upload.app import create_app
from visionline.camera.publisher import FramePublisher
from visionline.camera_registry import CameraRegistry
from visionline.db import make_engine
from visionline.logs import configure
from visionline.settings import CommonSettings, UploadSettings, refuse_dev_secrets


def main() -> None:
    common, upload = CommonSettings(), UploadSettings()
    refuse_dev_secrets(common, key_pepper=upload.key_pepper)
    configure(common.log_level, common.log_format, "upload")
    registry = CameraRegistry(make_engine(common.database_url))
    publisher = FramePublisher(common.kafka_bootstrap, delivery_timeout_s=upload.ack_timeout_s)
    app = create_app(common, upload, registry, publisher, ack_timeout_s=upload.ack_timeout_s)
    # log_config=None: uvicorn's records go through the handler configured above.
    uvicorn.run(
        app,
        host=upload.host,
        port=upload.port,
        log_level=common.log_level.lower(),
        log_config=None,
    )


if __name__ == "__main__":
    main()
