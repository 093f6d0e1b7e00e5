"""The bench's figure functions: no stack, no model, no timing."""

from types import SimpleNamespace

import pytest

from visionline.bench import figures as bench_figures
from visionline.bench import run
from visionline.bench.figures import (
    Sample,
    component_usage,
    counter_delta,
    cpu_seconds,
    evaluate_targets,
    half_load_camera_fps,
    in_window,
    latency_figures,
    model_counters,
    parse_prometheus,
    parse_triton_threads,
    peak_rss,
    rate_in_window,
    rule_hit,
    triton_figures,
)
from visionline.settings import REPO_ROOT

MB = 2**20

METRICS = """\
# HELP nv_inference_request_success Number of successful inference requests
# TYPE nv_inference_request_success counter
nv_inference_request_success{model="efficientnet_lite0",version="1"} 40
nv_inference_request_success{model="other",version="1"} 999
nv_inference_request_failure{model="efficientnet_lite0",version="1"} 0
nv_inference_count{model="efficientnet_lite0",version="1"} 320
nv_inference_exec_count{model="efficientnet_lite0",version="1"} 20
nv_inference_request_duration_us{model="efficientnet_lite0",version="1"} 2000000
nv_inference_queue_duration_us{model="efficientnet_lite0",version="1"} 400000
nv_inference_compute_infer_duration_us{model="efficientnet_lite0",version="1"} 1200000
nv_cpu_utilization 0.5
nv_gpu_utilization{gpu_uuid="x"} not-a-number
"""


def test_parse_prometheus_reads_names_labels_and_values():
    samples = parse_prometheus(METRICS)
    assert ("nv_cpu_utilization", {}, 0.5) in samples
    assert ("nv_inference_count", {"model": "efficientnet_lite0", "version": "1"}, 320.0) in samples
    assert not any(name == "nv_gpu_utilization" for name, _, _ in samples)  # bad value skipped
    assert parse_prometheus('m{a="x\\"y",b="z"} 1 1700000000000') == [
        ("m", {"a": 'x\\"y', "b": "z"}, 1.0)
    ]


def test_model_counters_keep_one_model_and_sum_its_versions():
    two_versions = METRICS + 'nv_inference_count{model="efficientnet_lite0",version="2"} 5\n'
    counters = model_counters(two_versions, "efficientnet_lite0")
    assert counters["nv_inference_request_success"] == 40
    assert counters["nv_inference_count"] == 325
    assert model_counters("", "efficientnet_lite0")["nv_inference_exec_count"] == 0


def test_triton_figures_from_a_counter_delta():
    before = model_counters(METRICS, "efficientnet_lite0")
    after = {k: 2 * v for k, v in before.items()}
    figures = triton_figures(counter_delta(before, after))
    assert figures["requests"] == 40 and figures["images"] == 320 and figures["executions"] == 20
    assert figures["client_batch_avg"] == 8.0  # images per gRPC request
    assert figures["execution_batch_avg"] == 16.0  # images per model run
    assert figures["requests_per_execution"] == 2.0
    assert figures["request_ms_avg"] == 50.0
    assert figures["queue_ms_avg"] == 10.0 and figures["compute_ms_avg"] == 30.0


def test_triton_figures_of_an_idle_window_are_none():
    figures = triton_figures(counter_delta({}, dict.fromkeys(bench_figures.TRITON_COUNTERS, 0.0)))
    assert figures["requests"] == 0 and figures["client_batch_avg"] is None
    assert figures["execution_batch_avg"] is None and figures["queue_ms_avg"] is None


def test_triton_threads_from_the_repository_config_ignore_comments():
    text = (REPO_ROOT / "triton_models" / "efficientnet_lite0" / "config.pbtxt").read_text()
    assert parse_triton_threads(text, cpu_count=2) >= 1  # the shipped config parses
    commented = """
    # parameters [ { key: "intra_op_thread_count" value: { string_value: "5" } } ]
    parameters [ { key: "intra_op_thread_count" value: { string_value: "3" } } ]
    """
    assert parse_triton_threads(commented, cpu_count=2) == 3
    config = """
    # instance_group [{ kind: KIND_GPU, count: 7 }]
    instance_group [ { count: 2 kind: KIND_CPU } ]
    parameters [ { key: "intra_op_thread_count" value: { string_value: "0" } } ]
    """
    assert parse_triton_threads(config, cpu_count=4) == 8  # 0 threads: one per core
    assert parse_triton_threads("", cpu_count=3) == 3


def test_window_selection_is_half_open():
    items = [{"t": t} for t in (0.9, 1.0, 1.5, 2.0)]
    assert [i["t"] for i in in_window(items, 1.0, 2.0, lambda i: i["t"])] == [1.0, 1.5]
    assert rate_in_window([0.9, 1.0, 1.5, 2.0, 2.5, 3.0], 1.0, 3.0) == 2.0
    assert rate_in_window([1.0], 2.0, 2.0) == 0.0


def prediction(frame_id, captured, *stamps):
    names = ("ingested", "preprocessed", "inferred", "postprocessed")
    return {
        "frame_id": frame_id,
        "captured_at": captured,
        "stages": dict(zip(names, stamps, strict=True)),
    }


def test_latency_figures_include_the_rules_stage():
    predictions = [
        prediction("a", 10.0, 10.01, 10.03, 10.08, 10.09),
        prediction("b", 20.0, 20.02, 20.04, 20.1, 20.11),
    ]
    alerts = [
        {"frame_id": "a", "captured_at": 10.0, "created_at": 10.12},
        {"frame_id": "unknown", "captured_at": 30.0, "created_at": 30.5},
    ]
    figures = latency_figures(predictions, alerts)
    assert figures["capture_to_prediction_ms"]["p50"] == pytest.approx(100.0)
    assert figures["capture_to_alert_ms"]["p50"] == pytest.approx(310.0)  # both alerts
    assert figures["stage_ms"]["inferred"]["p50"] == pytest.approx(55.0)
    assert figures["stage_ms"]["alerted"]["p99"] == pytest.approx(30.0)  # only the matched one
    assert latency_figures([], [])["capture_to_alert_ms"]["p99"] is None


def test_rule_hit_needs_a_watched_label_at_the_score():
    labels, top = ["tabby", "Egyptian cat"], [("tiger cat", 0.5), ("egyptian cat", 0.06)]
    assert rule_hit(top, labels, 0.05)
    assert not rule_hit(top, labels, 0.1)
    assert not rule_hit([("espresso", 0.9)], labels, 0.05)


def test_cpu_seconds_count_new_processes_from_zero_and_keep_ended_ones():
    snapshots = [
        {1: (10.0, 0), 2: (5.0, 0)},
        {1: (11.0, 0), 2: (5.5, 0), 3: (0.2, 0)},  # 3 appears (a restart, a new backend)
        {1: (12.0, 0), 3: (0.7, 0)},  # 2 ended after 0.5 s of CPU
    ]
    assert cpu_seconds(snapshots) == pytest.approx(2.0 + 0.5 + 0.7)
    assert cpu_seconds([]) == 0.0


def test_component_usage_cores_and_peak_memory():
    samples = [
        Sample(0.0, {"triton": {1: (0.0, 100 * MB), 2: (0.0, 50 * MB)}, "ingest": {5: (1.0, MB)}}),
        Sample(1.0, {"triton": {1: (1.0, 120 * MB), 2: (0.5, 60 * MB)}, "ingest": {5: (1.1, MB)}}),
        Sample(2.0, {"triton": {1: (2.0, 110 * MB), 2: (1.0, 40 * MB)}}),  # ingest gone
    ]
    usage = component_usage(samples)
    assert usage["triton"]["cores"] == pytest.approx(1.5)
    assert usage["triton"]["peak_rss_mb"] == 180.0  # whole tree, at one sample
    assert usage["triton"]["peak_process_rss_mb"] == 120.0
    assert usage["triton"]["processes"] == 2
    assert usage["ingest"]["cpu_s"] == pytest.approx(0.1)
    assert component_usage(samples[:1]) == {}


def test_peak_rss_over_phases_for_workers_only():
    phase = {"ingest": {"peak_process_rss_mb": 120.0}, "triton": {"peak_process_rss_mb": 900.0}}
    later = {"ingest": {"peak_process_rss_mb": 150.0}}
    assert peak_rss([phase, later], ["ingest", "rules"]) == {"ingest": 150.0}


def test_targets_pass_and_miss():
    met = evaluate_targets(0.85, 120.0, {"ingest": 150.0, "inference": 280.0})
    assert [t["passed"] for t in met] == [True, True, True]
    assert met[2]["value"] == "280 MB (inference)"
    missed = evaluate_targets(0.5, 400.0, {"ingest": 310.0, "rules": 100.0})
    assert [t["passed"] for t in missed] == [False, False, False]
    assert "over: ingest" in missed[2]["value"]
    unmeasured = evaluate_targets(None, None, {})
    assert [t["passed"] for t in unmeasured] == [None, None, None]
    assert evaluate_targets(0.8, 250.0, {"x": 299.9})[0]["passed"]  # limits are inclusive


def test_half_load_rate_is_shared_by_the_cameras_unless_given():
    assert half_load_camera_fps(40.0, 4, None) == 5.0
    assert half_load_camera_fps(40.0, 4, 2.5) == 2.5
    assert half_load_camera_fps(0.0, 4, None) == 0.1  # never zero, even when nothing came out


def test_cpu_per_frame_sorted_with_a_total():
    usage = {"triton": {"cores": 0.8}, "ingest": {"cores": 0.1}, "idle": {"cores": None}}
    per = run.cpu_per_frame(usage, fps=40.0)
    assert list(per) == ["triton", "ingest", "idle", "total"]
    assert per["triton"] == 20.0 and per["total"] == 22.5
    assert run.cpu_per_frame(usage, fps=0.0) == {}


def phase_result(window, usage=None):
    return run.PhaseResult(
        window=window,
        load={"published": 3},
        triton=None,
        usage=usage or {"ingest": {"cores": 0.5}},
        workers={"ingest"},
        machine_cores=1.5,
        steal_cores=0.1,
        drained=True,
    )


def test_half_load_figures_take_frames_captured_in_the_window():
    inside = prediction("a", 10.5, 10.51, 10.52, 10.6, 10.61)
    inside["model"] = {"served_by": "triton"}
    late = prediction("b", 11.5, 11.51, 11.52, 11.6, 11.61)  # captured after the window
    late["model"] = {"served_by": "local-onnxruntime"}
    collector = SimpleNamespace(
        predictions=[inside, late],
        alerts=[{"frame_id": "a", "captured_at": 10.5, "created_at": 10.7}],
        dead_letters=[{"error_type": "rate_limited", "failed_at": 10.2}],
    )
    figures = run.half_load_figures(phase_result((10.0, 11.0)), collector)
    assert figures["predictions"] == 1 and figures["fps"] == 1.0
    assert figures["served_by"] == {"triton": 1} and figures["all_served_by_triton"]
    assert figures["alert_share"] == 1.0 and figures["dead_letters"] == {"rate_limited": 1}
    assert figures["capture_to_alert_ms"]["p50"] == pytest.approx(200.0)
    assert figures["usage"]["stack_cores"] == 0.5
    assert figures["usage"]["other_load_cores"] == 1.0


def test_saturation_counts_completions_in_the_window_whatever_their_capture():
    old = prediction("a", 5.0, 5.1, 5.2, 5.3, 10.2)  # captured long before, done inside
    early = prediction("b", 9.0, 9.1, 9.2, 9.3, 9.4)
    collector = SimpleNamespace(predictions=[old, early], alerts=[], dead_letters=[])
    figures = run.saturation_figures(phase_result((10.0, 12.0)), collector)
    assert figures["predictions"] == 1 and figures["fps"] == 0.5
    assert figures["cpu_ms_per_frame"]["total"] == 1000.0


def test_bare_summary_mean_and_spread():
    summary = run.bare_summary([{"fps": 100.0}, {"fps": 80.0}])
    assert summary["fps"] == 90.0 and summary["spread_pct"] == 20.0
