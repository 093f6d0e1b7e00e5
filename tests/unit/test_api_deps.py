"""The API's dependencies (``services.api.deps``): the one place that reads ``app.state``."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.testclient import TestClient

from services.api.deps import PageSize
from visionline.settings import REPO_ROOT, ApiSettings


def test_routers_declare_what_they_use_instead_of_reading_app_state():
    api = REPO_ROOT / "services" / "api"
    modules = [*sorted((api / "routers").glob("*.py")), api / "auth.py"]
    readers = [p.name for p in modules if "app.state" in p.read_text()]
    assert readers == []


def paged_app(max_page: int) -> TestClient:
    app = FastAPI()
    app.state.settings = ApiSettings(max_page=max_page)

    @app.get("/items")
    def items(limit: PageSize) -> dict:
        return {"limit": limit}

    return TestClient(app)


def test_page_size_defaults_to_50_and_is_checked_against_max_page():
    client = paged_app(max_page=60)
    assert client.get("/items").json() == {"limit": 50}
    assert client.get("/items?limit=60").json() == {"limit": 60}
    over = client.get("/items?limit=61")
    assert over.status_code == 422
    assert over.json() == {"detail": "limit must be at most 60"}


def test_page_size_is_at_least_one():
    assert paged_app(max_page=60).get("/items?limit=0").status_code == 422
