"""The service table (visionline/services_table.py) against everything that lists services:
services/, docker-compose.yml, infra/prometheus/*.yml, StackSettings, the local stack, the CLI."""

from __future__ import annotations

import re

import pytest
import yaml
from typer.testing import CliRunner

from visionline.messages import Topic
from visionline.services_table import METRICS_PORT, SERVICES, service
from visionline.settings import REPO_ROOT
from visionline.stack.config import (
    METRICS_SERVICES,
    PIPELINE_SERVICES,
    PORT_FIELDS,
    PROMETHEUS_TARGETS_FILE,
    StackSettings,
    default_workers,
    metrics_ports,
    prometheus_targets,
)

NAMES = [spec.name for spec in SERVICES]


def compose_services() -> dict:
    return yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())["services"]


def scrape_configs(name: str) -> list[dict]:
    config = yaml.safe_load((REPO_ROOT / "infra" / "prometheus" / name).read_text())
    return config["scrape_configs"]


def test_names_are_unique_and_found():
    assert len(set(NAMES)) == len(NAMES)
    assert service("rules").name == "rules"
    with pytest.raises(KeyError):
        service("nope")


def test_every_service_package_is_a_row_that_builds_its_settings():
    packages = sorted(p.parent.name for p in (REPO_ROOT / "services").glob("*/__main__.py"))
    assert packages == sorted(NAMES)
    for spec in SERVICES:
        main = (REPO_ROOT / "services" / spec.name / "__main__.py").read_text()
        assert f"{spec.settings.__name__}()" in main, spec.name
        prefix = spec.settings.model_config["env_prefix"]
        assert prefix.removesuffix("_").startswith(f"VISIONLINE_{spec.name.upper()}"), prefix


def test_the_topics_a_service_names_are_in_its_row():
    for spec in SERVICES:
        package = REPO_ROOT / "services" / spec.name
        source = "\n".join(path.read_text() for path in package.rglob("*.py"))
        named = {Topic[m] for m in re.findall(r"\bTopic\.([A-Z_]+)\b", source)}
        assert named <= {*spec.consumes, *spec.produces, Topic.DEAD_LETTER}, spec.name


def test_compose_runs_every_service_and_nothing_else_with_its_command():
    services = compose_services()
    ran = {
        name: tuple(s["command"])
        for name, s in services.items()
        if any(str(part).startswith("services.") for part in s.get("command", []))
    }
    assert ran == {spec.name: spec.command for spec in SERVICES}


def test_compose_gives_each_service_its_metrics_port_health_check_and_dependencies():
    services = compose_services()
    for spec in SERVICES:
        composed = services[spec.name]
        env = composed["environment"]
        assert int(env["VISIONLINE_METRICS_PORT"]) == (spec.metrics_port or 0), spec.name
        check = " ".join(composed["healthcheck"]["test"])
        if spec.http:
            port = env[f"VISIONLINE_{spec.name.upper()}_PORT"]
            assert f":{port}/healthz" in check and f"{port}:{port}" in composed["ports"]
        else:
            assert f":{spec.metrics_port}/metrics" in check, spec.name
        assert ("triton" in composed["depends_on"]) == spec.needs_triton, spec.name
        if not spec.scalable:
            assert composed.get("deploy", {}).get("replicas", 1) == 1, spec.name


def test_prometheus_scrapes_each_metrics_service_on_its_port_and_nothing_else():
    jobs = {job["job_name"]: job for job in scrape_configs("prometheus.yml")}
    scraped = {
        name: [(sd["names"], sd["port"]) for sd in job["dns_sd_configs"]]
        for name, job in jobs.items()
        if "dns_sd_configs" in job
    }
    wanted = {s.name: [([s.name], s.metrics_port)] for s in SERVICES if s.metrics_port}
    assert scraped == wanted
    assert set(jobs) - set(scraped) == {"triton", "prometheus"}


def test_the_local_prometheus_reads_the_targets_the_stack_writes(tmp_path):
    (job,) = [j for j in scrape_configs("local.yml") if j["job_name"] == "visionline"]
    (files,) = [sd["files"] for sd in job["file_sd_configs"]]
    targets = (REPO_ROOT / "infra" / "prometheus" / files[0]).resolve()
    assert targets == StackSettings.model_fields["state_dir"].default / PROMETHEUS_TARGETS_FILE
    settings = StackSettings(state_dir=tmp_path, with_retrain=True)
    jobs = {g["labels"]["job"] for g in prometheus_targets(settings, default_workers(settings))}
    assert jobs == {*METRICS_SERVICES, "triton"}


def test_the_local_stack_runs_the_table_in_its_order(tmp_path):
    everything = StackSettings(state_dir=tmp_path, with_retrain=True)
    assert [w.name for w in default_workers(everything)] == NAMES
    assert list(metrics_ports(everything, default_workers(everything))) == list(METRICS_SERVICES)
    assert METRICS_SERVICES == tuple(n for n in NAMES if service(n).metrics_port == METRICS_PORT)
    default = StackSettings(state_dir=tmp_path)
    assert [w.name for w in default_workers(default)] == [*PIPELINE_SERVICES, "upload", "api"]


def test_stack_settings_has_a_switch_port_and_replicas_where_the_table_says():
    fields = StackSettings.model_fields
    replicas = {name.removesuffix("_replicas") for name in fields if name.endswith("_replicas")}
    assert replicas == {s.name for s in SERVICES if s.scalable}
    for spec in SERVICES:
        if spec.opt_in:
            assert fields[spec.opt_in].annotation is bool and fields[spec.opt_in].default is False
        if spec.http:
            assert f"{spec.name}_port" in PORT_FIELDS


def test_stack_services_lists_the_table():
    from visionline.stack.cli import app

    result = CliRunner().invoke(app, ["services"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    rows = [line.split("│")[1].strip() for line in result.output.splitlines() if "│" in line]
    assert [r for r in rows if r] == NAMES
    assert "IngestSettings" in result.output and "frames.raw" in result.output
