"""Schemathesis on the published OpenAPI: valid and invalid requests to every operation, as an
admin and without a token, and not one server error.

The fuzzed app writes to a database of its own on the stack's PostgreSQL (created and migrated
here), publishes nothing (its producer only acks) and sees a model repository without
versions: random but valid rules, camera changes or promotions must not reach the workers the
other tests watch.
"""

from __future__ import annotations

import shutil

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from sqlalchemy import create_engine

from services.api.app import create_app
from visionline.db import make_engine
from visionline.settings import ApiSettings, CommonSettings
from visionline.tokens import create_token

pytestmark = pytest.mark.integration

# Streams never end: the live endpoint is tested in test_live_api.py.
NOT_FUZZED = {("GET", "/v1/live/alerts")}
EXAMPLES = 30  # per operation and generation mode


def _operations() -> list[tuple[str, str]]:
    app = create_app(CommonSettings(), ApiSettings(), create_engine("sqlite://"))
    return sorted(
        (method.upper(), path)
        for path, methods in app.openapi()["paths"].items()
        for method in methods
        if (method.upper(), path) not in NOT_FUZZED
    )


class NullProducer:
    """Acks every message and sends none: a label for a camera the fuzzing registered is
    accepted (without a producer it was a 503), and nothing reaches the workers."""

    def produce(self, *_args, on_delivery=None, **_kwargs) -> None:
        if on_delivery is not None:
            on_delivery(None, None)

    def flush(self, _timeout: float | None = None) -> int:
        return 0


@pytest.fixture(scope="module")
def fuzz_database(scratch_database) -> str:
    return scratch_database("visionline_fuzz")


@pytest.fixture(scope="module")
def fuzz_schema(stack, fuzz_database, tmp_path_factory):
    repository = tmp_path_factory.mktemp("models")
    for config in stack.settings.model_repository.glob("*/config.pbtxt"):
        (repository / config.parent.name).mkdir()
        shutil.copy(config, repository / config.parent.name)  # configs only, no versions
    # A Redis database of its own too: its wrong tokens count against no other test's client.
    redis_url = stack.redis_url.rsplit("/", 1)[0] + "/1"
    common = CommonSettings(
        kafka_bootstrap=stack.kafka_bootstrap,
        database_url=fuzz_database,
        redis_url=redis_url,
        triton_grpc_url=stack.triton_grpc_url,
        model_repository=repository,
    )
    engine = make_engine(fuzz_database)
    snapshots = tmp_path_factory.mktemp("snapshots")
    settings = ApiSettings(snapshot_dir=snapshots, auth_max_failures=10**6)
    app = create_app(common, settings, engine, producer=NullProducer())
    admin = create_token(engine, "fuzz-admin", "admin")
    headers = {"Authorization": f"Bearer {admin}"}  # the schema is for token holders
    yield schemathesis.openapi.from_asgi("/openapi.json", app, headers=headers), admin
    engine.dispose()


@pytest.mark.parametrize(("method", "path"), _operations())
def test_no_input_makes_the_api_answer_a_server_error(fuzz_schema, method, path):
    schema, admin = fuzz_schema
    operation = schema[path][method]
    failures: list[str] = []

    @given(
        st.one_of(
            operation.as_strategy(generation_mode=GenerationMode.POSITIVE),
            operation.as_strategy(generation_mode=GenerationMode.NEGATIVE),
        )
    )
    @settings(
        max_examples=2 * EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def call(case) -> None:
        for headers in ({"Authorization": f"Bearer {admin}"}, {}):
            response = case.call(headers=headers)
            if response.status_code >= 500:
                failures.append(
                    f"{response.status_code} {response.text[:200]}\n"
                    f"{case.as_curl_command(headers=headers)}"
                )

    call()
    assert not failures, f"{len(failures)} server errors, first: {failures[0]}"
