"""The real Prometheus (Debian's, `make prometheus`) scrapes the local stack: the scrape configs
pass promtool, every worker replica and Triton are up through the stack's file_sd targets file,
and every query of the Grafana dashboards runs and finds series for the metrics it names."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
import uuid
from pathlib import Path

import httpx
import pytest
import yaml

from tests.factories import labelled_part, observed_part
from tests.integration.pipeline import Camera, chelsea_jpeg, free_port, new_camera
from tests.integration.test_labels_service import Frames
from visionline.settings import REPO_ROOT
from visionline.stack.config import PIPELINE_SERVICES, PROMETHEUS_TARGETS_FILE, TRITON

pytestmark = pytest.mark.integration

PROMETHEUS, PROMTOOL = shutil.which("prometheus"), shutil.which("promtool")
CONFIGS = [REPO_ROOT / "infra" / "prometheus" / f for f in ("prometheus.yml", "local.yml")]
DASHBOARDS = sorted((REPO_ROOT / "infra" / "grafana" / "dashboards").glob("*.json"))
METRIC = re.compile(r"\b((?:visionline|nv)_[a-z0-9_]+)")
MISSING = "no prometheus/promtool on PATH: `make prometheus` installs them (make test does)"


def dashboard_exprs() -> list[str]:
    found: list[str] = []

    def walk(node) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "expr" and isinstance(value, str):
                    found.append(value)
                else:
                    walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    for path in DASHBOARDS:
        walk(json.loads(path.read_text()))
    return found


def promql(expr: str) -> str:
    """A Grafana expression as Prometheus takes it: its interval and template variables set."""
    expr = expr.replace("$__rate_interval", "1m").replace("$__interval", "1m")
    return re.sub(r"\$\{?\w+\}?", ".*", expr)


@pytest.fixture(scope="module")
def prometheus(stack, tmp_path_factory):
    """Prometheus on a free port, scraping every second what the stack's targets file lists."""
    assert PROMETHEUS is not None, MISSING
    folder = tmp_path_factory.mktemp("prometheus")
    port = free_port()
    config = yaml.safe_load(CONFIGS[1].read_text())
    config["global"] = {f"{k}_interval": "1s" for k in ("scrape", "evaluation")}
    config["global"]["scrape_timeout"] = "1s"
    for job in config["scrape_configs"]:
        for sd in job.get("file_sd_configs", []):
            sd["files"] = [str(stack.paths.root / PROMETHEUS_TARGETS_FILE)]
            sd["refresh_interval"] = "1s"
        if job["job_name"] == "prometheus":
            job["static_configs"] = [{"targets": [f"127.0.0.1:{port}"]}]
    (folder / "prometheus.yml").write_text(yaml.safe_dump(config))
    log = (folder / "prometheus.log").open("wb")
    proc = subprocess.Popen(
        [
            PROMETHEUS,
            f"--config.file={folder / 'prometheus.yml'}",
            f"--storage.tsdb.path={folder / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--log.level=warn",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, (folder / "prometheus.log").read_text()[-3000:]
            try:
                if httpx.get(f"{url}/-/ready", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "prometheus not ready in 60 s"
            time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        log.close()


def api(url: str, path: str, **params) -> dict:
    body = httpx.get(f"{url}/api/v1/{path}", params=params, timeout=10).json()
    assert body["status"] == "success", body
    return body["data"]


def metric_names(url: str) -> set[str]:
    return set(api(url, "label/__name__/values"))


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: p.name)
def test_promtool_accepts_the_scrape_config(config: Path):
    assert PROMTOOL is not None, MISSING
    done = subprocess.run(
        [PROMTOOL, "check", "config", str(config)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr


def expected_jobs(stack) -> set[str]:
    """Every pipeline worker, and Triton unless it is a given server (a container)."""
    return {*PIPELINE_SERVICES, *([TRITON] if stack.settings.triton_http_url is None else [])}


def test_the_targets_file_lists_every_worker_and_triton(stack):
    groups = json.loads((stack.paths.root / PROMETHEUS_TARGETS_FILE).read_text())
    jobs = {g["labels"]["job"] for g in groups}
    assert expected_jobs(stack) <= jobs
    assert not {"api", "upload"} & jobs  # no /metrics endpoint
    addresses = [t for g in groups for t in g["targets"]]
    assert len(addresses) == len(set(addresses))


def test_every_target_is_up(stack, prometheus):
    groups = json.loads((stack.paths.root / PROMETHEUS_TARGETS_FILE).read_text())
    expected = {t for g in groups for t in g["targets"]}
    deadline = time.monotonic() + 60
    while True:
        active = api(prometheus, "targets", state="active")["activeTargets"]
        mine = {t["labels"]["instance"]: t for t in active if t["scrapeUrl"].endswith("/metrics")}
        down = {
            f"{t['labels']['job']} {i}: {t['health']} {t['lastError']}"
            for i, t in mine.items()
            if t["health"] != "up"
        }
        if expected <= mine.keys() and not down:
            break
        if time.monotonic() > deadline:
            missing = sorted(expected - mine.keys())
            raise AssertionError(f"not scraped: {missing}; down: {sorted(down)}")
        time.sleep(1)
    jobs = {t["labels"]["job"] for t in mine.values()}
    assert {*expected_jobs(stack), "prometheus"} <= jobs, jobs
    print("targets up:", *sorted(f"{t['labels']['job']} {i}" for i, t in mine.items()), sep="\n  ")


def send_traffic(stack, engine) -> tuple[str, str]:
    """Frames for the classify path (and one bad one), and a labelled inspection frame."""
    camera_id = new_camera(engine)
    camera = Camera(stack.kafka_bootstrap)
    tag = uuid.uuid4().hex[:6]
    for i in range(3):
        camera.send(camera_id, chelsea_jpeg(640, 480, shift=i), f"prom-{tag}-{i}")
    camera.send(camera_id, b"", f"prom-bad-{tag}")  # a dead letter
    camera.flush()
    line = f"prom-{tag}"
    frames, frame = Frames(stack.kafka_bootstrap, line), f"{line}-1"
    frames.observations(frame, [observed_part((0, 0, 100, 100), 0.9)])
    frames.label(frame, [labelled_part("1", (0, 0, 100, 100), True)])
    return camera_id, tag


def test_dashboard_queries_run_and_find_their_metrics(stack, engine, prometheus, predictions):
    camera_id, tag = send_traffic(stack, engine)
    predictions.wait_for(lambda seen: any(p["camera_id"] == camera_id for p in seen), timeout=90)

    exprs = [promql(e) for e in dashboard_exprs()]
    assert exprs, f"no expr in {DASHBOARDS}"
    wanted = {name for e in exprs for name in METRIC.findall(e)}
    deadline, missing = time.monotonic() + 120, wanted
    while time.monotonic() < deadline:
        missing = wanted - metric_names(prometheus)
        if not missing:
            break
        time.sleep(2)
    assert not missing, f"dashboard metrics without a series: {sorted(missing)}"

    served = api(prometheus, "query", query='sum(nv_inference_count{model="efficientnet_lite0"})')
    assert served["result"] and float(served["result"][0]["value"][1]) > 0, served
    ingested = api(prometheus, "query", query='visionline_messages_in_total{service="ingest"}')
    assert ingested["result"] and float(ingested["result"][0]["value"][1]) > 0, ingested

    empty = []
    for expr in exprs:
        if not api(prometheus, "query", query=expr)["result"]:  # "success" asserted by api()
            empty.append(expr)
    print("dashboard queries with no result yet:", *empty, sep="\n  ")
    print("metrics found:", *sorted(wanted), sep="\n  ")
    print("Triton's:", *sorted(n for n in metric_names(prometheus) if n.startswith("nv_")))
