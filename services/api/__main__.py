"""``python -m services.api``: the operator API and dashboard on ApiSettings' host and port."""

from __future__ import annotations

import uvicorn

from services.api.alert_feed import AlertFeed
from services.api.app import create_app
from visionline.db import make_engine
from visionline.kafka import producer
from visionline.logs import configure
from visionline.settings import ApiSettings, CommonSettings, WebhookSettings, refuse_dev_secrets


def main() -> None:
    common, settings = CommonSettings(), ApiSettings()
    refuse_dev_secrets(common, key_pepper=settings.key_pepper)
    configure(common.log_level, common.log_format, "api")
    engine, bootstrap = make_engine(common.database_url), common.kafka_bootstrap
    app = create_app(common, settings, engine, producer(bootstrap), AlertFeed(bootstrap))
    # Webhook targets on private networks the deployment allows (the worker reads the same).
    app.state.webhook_allowed_networks = WebhookSettings().allowed_networks
    # log_config=None: uvicorn's records go through the handler configured above.
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_level=common.log_level.lower(),
        log_config=None,
    )


if __name__ == "__main__":
    main()
