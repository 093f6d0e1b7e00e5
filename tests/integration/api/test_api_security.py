"""Issue 15, findings 6 and 7, on the operator API of the session's real stack: failed tokens
limited per client address in its Redis, security headers, the schema behind a token, no
server path and no long id in error messages.

The limiter's tests use client addresses of their own (TestClient's ``client``), so the other
tests, all from TestClient's one address, are never locked out; their counters are removed."""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest
import redis
from fastapi.testclient import TestClient

from services.api.app import create_app
from visionline.auth_limits import PREFIX

pytestmark = pytest.mark.integration

WRONG = {"Authorization": "Bearer vl_0000000000000000_" + "x" * 43}


def address() -> str:
    """A documentation address (RFC 5737) no other test uses."""
    return f"198.51.100.{random.randint(1, 254)}"


@contextmanager
def limited_api(stack, engine, stack_common, api_settings, **limits) -> Iterator[TestClient]:
    """An API app with ``limits``; ``client(address)`` a client from that address."""
    settings = api_settings.model_copy(update=limits)
    app = create_app(stack_common, settings, engine)
    store = redis.Redis.from_url(stack.redis_url)
    clients: list[TestClient] = []

    def client(host: str) -> TestClient:
        clients.append(TestClient(app, client=(host, 50000)).__enter__())
        return clients[-1]

    try:
        yield client
    finally:
        for each in clients:
            each.__exit__(None, None, None)
        for key in store.scan_iter(f"{PREFIX}:api-client:*"):
            store.delete(key)
        store.close()


def test_wrong_tokens_from_one_address_are_refused_429_until_the_window_ends(
    stack, engine, stack_common, api_settings, as_role
):
    with limited_api(
        stack, engine, stack_common, api_settings, auth_max_failures=5, auth_window_s=60
    ) as client:
        guesser, other = client(address()), client("203.0.113.9")
        assert [guesser.get("/v1/alerts", headers=WRONG).status_code for _ in range(5)] == [401] * 5
        locked = guesser.get("/v1/alerts", headers=WRONG)
        assert locked.status_code == 429, locked.text
        assert 50 <= int(locked.headers["retry-after"]) <= 60
        # While locked out, even a right token is not looked at: guessing cannot go on.
        assert guesser.get("/v1/alerts", headers=as_role("viewer")).status_code == 429
        live = guesser.get("/v1/live/alerts", params={"access_token": "vl_x"})
        assert live.status_code == 429
        # Another address is not locked; right tokens and missing ones are not counted.
        for _ in range(10):
            assert other.get("/v1/alerts", headers=as_role("viewer")).status_code == 200
            assert other.get("/v1/alerts").status_code == 401
        assert other.get("/v1/alerts", headers=WRONG).status_code == 401


def test_the_count_is_shared_by_replicas_through_redis(
    stack, engine, stack_common, api_settings, as_role
):
    host = address()
    with limited_api(stack, engine, stack_common, api_settings, auth_max_failures=4) as one:
        with limited_api(stack, engine, stack_common, api_settings, auth_max_failures=4) as two:
            for replica in (one, two, one, two):
                assert replica(host).get("/v1/alerts", headers=WRONG).status_code == 401
            assert two(host).get("/v1/alerts", headers=as_role("viewer")).status_code == 429


def test_answers_carry_security_headers(stack, api_client, as_role):
    answers = {
        "dashboard": httpx.get(f"{stack.api_url}/dashboard"),  # the stack's own API process
        "json": api_client.get("/v1/alerts", headers=as_role("viewer")),
        "401": api_client.get("/v1/alerts"),
        "404": api_client.get("/v1/nothing-here"),
    }
    for name, response in answers.items():
        assert response.headers["x-frame-options"] == "DENY", name
        assert response.headers["x-content-type-options"] == "nosniff", name
        assert response.headers["referrer-policy"] == "no-referrer", name
        assert "frame-ancestors 'none'" in response.headers["content-security-policy"], name
    dashboard = answers["dashboard"].headers["content-security-policy"]
    assert "script-src 'sha256-" in dashboard and "unsafe-inline" not in dashboard
    assert answers["json"].headers["content-security-policy"].startswith("default-src 'none'")


def test_the_schema_needs_a_token_and_there_are_no_docs_pages(stack, api_client, as_role):
    assert httpx.get(f"{stack.api_url}/openapi.json").status_code == 401
    assert api_client.get("/openapi.json").status_code == 401
    assert api_client.get("/openapi.json", headers=WRONG).status_code == 401
    schema = api_client.get("/openapi.json", headers=as_role("viewer"))
    assert schema.status_code == 200 and "/v1/alerts" in schema.json()["paths"]
    for page in ("/docs", "/redoc"):
        assert api_client.get(page).status_code == 404
        assert httpx.get(f"{stack.api_url}{page}").status_code == 404


def test_a_404_does_not_echo_a_long_id(api_client, as_role):
    viewer = as_role("viewer")
    for path in (f"/v1/alerts/{'x' * 5000}", f"/v1/drift/events/{'y' * 300}"):
        response = api_client.get(path, headers=viewer)
        assert response.status_code == 404, response.text
        assert len(response.json()["detail"]) < 120 and "x" * 65 not in response.text
    short = api_client.get("/v1/alerts/cam-1:f-1:cat", headers=viewer)
    assert short.status_code == 404 and "cam-1:f-1:cat" in short.json()["detail"]
