"""Health checks: each raises ``Unhealthy`` with a reason, or returns when the server answers."""

from __future__ import annotations

import socket
import urllib.error
import urllib.request

from confluent_kafka.admin import AdminClient
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool


class Unhealthy(Exception):
    """A health check failed; the message says why."""


def tcp_open(address: str, timeout_s: float = 1.0) -> None:
    """``host:port`` accepts a connection: fails fast where a client library would retry."""
    host, _, port = address.rpartition(":")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s).close()
    except (OSError, ValueError) as exc:
        raise Unhealthy(f"cannot connect to {address}: {exc}") from exc


def port_in_use(host: str, port: int) -> bool:
    """Whether a server could not listen on ``host:port`` now."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as servers do
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


def kafka_metadata(bootstrap: str, timeout_s: float = 2.0, **config: str) -> None:
    """A Kafka metadata request answered (``config``: the client's security settings)."""
    tcp_open(bootstrap.split(",")[0])
    # log_level 0: librdkafka would log every refused connection while the broker starts.
    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0, **config})
    try:
        admin.list_topics(timeout=timeout_s)
    except Exception as exc:
        raise Unhealthy(f"no metadata from {bootstrap}: {exc}") from exc
    finally:
        del admin  # destroyed now, with its threads: the supervisor forks children later


def sql_select_1(url: str, timeout_s: int = 2) -> None:
    engine = create_engine(url, poolclass=NullPool, connect_args={"connect_timeout": timeout_s})
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:
        raise Unhealthy(f"SELECT 1 failed: {str(exc).splitlines()[0]}") from exc
    finally:
        engine.dispose()


def redis_ping(url: str, timeout_s: float = 2.0) -> None:
    import redis

    client = redis.Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s)
    try:
        client.ping()
    except Exception as exc:
        raise Unhealthy(f"PING failed: {exc}") from exc
    finally:
        client.close()


def http_ok(url: str, timeout_s: float = 2.0) -> None:
    """``GET url`` answered 200."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            status = response.status
    except urllib.error.HTTPError as exc:
        status = exc.code
    except (OSError, ValueError) as exc:
        raise Unhealthy(f"GET {url}: {exc}") from exc
    if status != 200:
        raise Unhealthy(f"GET {url}: HTTP {status}")


def triton_ready(http_url: str, model: str, timeout_s: float = 2.0) -> None:
    http_ok(f"{http_url}/v2/health/ready", timeout_s)
    http_ok(f"{http_url}/v2/models/{model}/ready", timeout_s)
