"""python -m services.webhooks: alerts in, signed POSTs to the subscriptions out (the handlers:
``services/webhooks/handlers.py``).

Unlike the Faust services, it runs threads: its senders block on HTTP and on row locks
(FOR UPDATE SKIP LOCKED), which a thread per sender expresses plainly.
"""

from __future__ import annotations

import signal
import sys
import threading

from prometheus_client import start_http_server

from services.webhooks.handlers import SERVICE, run_threads
from visionline.db import make_engine
from visionline.logs import configure
from visionline.settings import CommonSettings, WebhookSettings


def main() -> None:
    common, settings = CommonSettings(), WebhookSettings()
    configure(common.log_level, common.log_format, SERVICE)
    if common.metrics_port:
        start_http_server(common.metrics_port)
    # One connection per thread at most: the intake plus the senders.
    engine = make_engine(common.database_url, pool_size=settings.concurrency + 1)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    healthy = run_threads(engine, common, settings, stop)
    engine.dispose()
    sys.exit(0 if healthy else 1)


if __name__ == "__main__":
    main()
