"""The worker's HTTP client: it connects only to addresses ``visionline.webhooks`` allows.

The check and the connection use the same lookup: the network backend below resolves the host,
checks every address, and connects to those very addresses, so a name that resolves to a public
address for the check and to a private one for the connection (DNS rebinding) cannot slip
through. The URL keeps its host: the Host header, TLS server name and certificate check are
those of the name, as without the check. No redirects are followed and no proxy from the
environment is used (a proxy would connect on our behalf, unchecked).
"""

from __future__ import annotations

from collections.abc import Iterable

import httpcore
import httpx

from visionline.webhooks import IPNetwork, Resolver, checked_addresses, resolve_host


class CheckedBackend(httpcore.NetworkBackend):
    """httpcore's network backend, connecting only to checked addresses: TargetRefused (from
    ``checked_addresses``) for a refused one, httpcore.ConnectError for a name that does not
    resolve or addresses that do not answer."""

    def __init__(
        self,
        allowed_networks: Iterable[IPNetwork] = (),
        resolve: Resolver = resolve_host,
        inner: httpcore.NetworkBackend | None = None,
    ) -> None:
        self.allowed_networks = tuple(allowed_networks)
        self.resolve = resolve
        self.inner = inner or httpcore.SyncBackend()

    def connect_tcp(self, host, port, timeout=None, local_address=None, socket_options=None):
        try:
            addresses = checked_addresses(host, port, self.allowed_networks, self.resolve)
        except (OSError, UnicodeError) as exc:
            raise httpcore.ConnectError(f"cannot resolve the host: {exc}") from exc
        for address in addresses[:-1]:
            try:
                return self.inner.connect_tcp(address, port, timeout, local_address, socket_options)
            except httpcore.ConnectError:
                continue  # the next address, as socket.create_connection does
        return self.inner.connect_tcp(addresses[-1], port, timeout, local_address, socket_options)

    def connect_unix_socket(self, path, timeout=None, socket_options=None):
        raise httpcore.ConnectError("webhooks connect over TCP only")

    def sleep(self, seconds: float) -> None:
        self.inner.sleep(seconds)


def checked_client(
    timeout_s: float,
    allowed_networks: Iterable[IPNetwork] = (),
    resolve: Resolver = resolve_host,
) -> httpx.Client:
    """An httpx client whose connections go only to allowed addresses (``CheckedBackend``)."""
    transport = httpx.HTTPTransport()
    # httpx's transport takes no network backend: its connection pool is replaced by one built
    # the same way (httpx 0.28: verified TLS from the environment's certificates, its default
    # limits) with ours. tests/unit/test_webhooks.py fails if a new httpx stops using it.
    limits = httpx.Limits(max_connections=100, max_keepalive_connections=20, keepalive_expiry=5.0)
    transport._pool = httpcore.ConnectionPool(
        ssl_context=httpx.create_ssl_context(),
        max_connections=limits.max_connections,
        max_keepalive_connections=limits.max_keepalive_connections,
        keepalive_expiry=limits.keepalive_expiry,
        network_backend=CheckedBackend(allowed_networks, resolve),
    )
    return httpx.Client(
        transport=transport, timeout=timeout_s, follow_redirects=False, trust_env=False
    )
