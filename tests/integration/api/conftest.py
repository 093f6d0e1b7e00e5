"""The operator API in-process (FastAPI's TestClient) on the session's real stack: its
PostgreSQL and broker, with one token per role."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import text

from services.api.alert_feed import AlertFeed
from services.api.app import create_app
from tests.integration.conftest import WEBHOOK_ALLOWED_NETWORKS
from visionline.db import make_engine, migrate
from visionline.kafka import producer
from visionline.settings import ApiSettings, CommonSettings, WebhookSettings
from visionline.tokens import ROLES, create_token


@pytest.fixture(scope="session")
def api_settings(stack) -> ApiSettings:
    # Every TestClient request comes from one address, and the refusal tests send wrong tokens
    # on purpose: a limit they never reach (test_api_security.py tests the limiter).
    return ApiSettings(
        snapshot_dir=stack.settings.state_dir / "snapshots",
        max_body_bytes=64 << 10,
        auth_max_failures=10_000,
    )


@pytest.fixture(scope="session")
def stack_common(stack) -> CommonSettings:
    """The settings the stack hands its workers: its broker, databases, Triton and models."""
    return CommonSettings(
        kafka_bootstrap=stack.kafka_bootstrap,
        database_url=stack.database_url,
        redis_url=stack.redis_url,
        triton_grpc_url=stack.triton_grpc_url,
        model_repository=stack.settings.model_repository,
    )


@pytest.fixture(scope="session")
def new_api_app(stack, engine, api_settings, stack_common) -> Callable[[], FastAPI]:
    """``new_api_app()``: a fresh API app on the stack, with its broker and live alert feed."""

    def build() -> FastAPI:
        feed = AlertFeed(stack.kafka_bootstrap)
        return create_app(stack_common, api_settings, engine, producer(stack.kafka_bootstrap), feed)

    return build


@pytest.fixture(scope="session")
def api_client(new_api_app):
    app = new_api_app()
    # As python -m services.api does, with the networks the stack's workers allow.
    webhooks = WebhookSettings(allowed_networks=WEBHOOK_ALLOWED_NETWORKS)
    app.state.webhook_allowed_networks = webhooks.allowed_networks
    with TestClient(app) as client:
        yield client


@pytest.fixture(scope="session")
def tokens(engine) -> dict[str, str]:
    return {role: create_token(engine, f"test-{role}", role) for role in ROLES}


@pytest.fixture(scope="session")
def as_role(tokens):
    """Headers that authenticate as a role: ``as_role("operator")``."""

    def headers(role: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {tokens[role]}"}

    return headers


@pytest.fixture(scope="session")
def scratch_database(stack):
    """``scratch_database(name)``: a new, migrated database of that name on the stack's
    PostgreSQL, its URL. No worker reads it, so a test can write what the workers must not see
    or race for."""

    def create(name: str) -> str:
        admin = make_engine(stack.database_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
            connection.execute(text(f'CREATE DATABASE "{name}"'))
        admin.dispose()
        url = stack.database_url.rsplit("/", 1)[0] + f"/{name}"
        migrate(url)
        return url

    return create
