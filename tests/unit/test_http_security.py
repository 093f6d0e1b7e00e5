"""Security headers, the dashboard's Content-Security-Policy, ids not echoed at any length,
placeholder upload keys and the file the seeded keys go to (issue 15)."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import stat

from fastapi import FastAPI
from fastapi.responses import HTMLResponse
from fastapi.testclient import TestClient

from services.api.app import MAX_ECHOED, shortened
from services.api.routers.dashboard import STATIC, page_csp
from visionline.camera_registry import is_placeholder_key, write_upload_keys
from visionline.http_headers import STRICT_CSP, SecurityHeaders

PAGE = STATIC / "dashboard.html"


def test_every_answer_gets_the_headers_and_a_page_keeps_its_own_policy():
    app = FastAPI()
    app.add_middleware(SecurityHeaders)
    app.get("/json")(lambda: {"ok": True})
    app.get("/page")(lambda: HTMLResponse("<p>hi</p>", headers={"Content-Security-Policy": "x"}))
    with TestClient(app) as client:
        plain, page, missing = client.get("/json"), client.get("/page"), client.get("/nothing")
    for response in (plain, missing):
        assert response.headers["content-security-policy"] == STRICT_CSP
    for response in (plain, page, missing):
        assert response.headers["x-frame-options"] == "DENY"
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["referrer-policy"] == "no-referrer"
    assert page.headers.get_list("content-security-policy") == ["x"]


def test_the_dashboard_policy_allows_its_own_inline_blocks_and_nothing_else():
    html = PAGE.read_text(encoding="utf-8")
    policy = dict(part.split(" ", 1) for part in page_csp(PAGE).split("; "))
    [script] = re.findall(r"<script>(.*?)</script>", html, re.S)
    [style] = re.findall(r"<style>(.*?)</style>", html, re.S)

    def sha(text: str) -> str:
        return f"'sha256-{base64.b64encode(hashlib.sha256(text.encode()).digest()).decode()}'"

    assert policy["script-src"] == sha(script) and policy["style-src"] == sha(style)
    assert policy["default-src"] == "'none'" and policy["frame-ancestors"] == "'none'"
    assert policy["img-src"] == "'self' blob:" and policy["connect-src"] == "'self'"
    # What the policy would block: inline style attributes, handlers, scripts from elsewhere.
    assert not re.search(r"\sstyle=|\son[a-z]+=|javascript:|<script\s", html)


def test_long_ids_are_cut_in_messages():
    long_id = "a" * 1000
    assert shortened(f"no alert {long_id!r}", [long_id]) == f"no alert {'a' * MAX_ECHOED + '...'!r}"
    assert shortened(f"no event {long_id}", [long_id, 7]) == f"no event {'a' * MAX_ECHOED}..."
    assert shortened("no alert 'cam:f:1'", ["cam:f:1"]) == "no alert 'cam:f:1'"


def test_dev_keys_are_placeholders():
    assert is_placeholder_key("dev-key-dock-door-1")
    assert not is_placeholder_key("Xq3v-key-dev-key-")


def test_seeded_keys_are_added_to_a_file_only_its_owner_reads(tmp_path):
    path = tmp_path / "state" / "upload-keys.json"
    write_upload_keys(path, {"cam-1": "k1", "cam-2": "k2"})
    write_upload_keys(path, {"cam-2": "k2b", "cam-3": "k3"})
    assert json.loads(path.read_text()) == {"cam-1": "k1", "cam-2": "k2b", "cam-3": "k3"}
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in path.parent.iterdir()] == ["upload-keys.json"]
