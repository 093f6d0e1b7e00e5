import pytest

from visionline.demo import after_warmup
from visionline.report import RunSummary, percentiles, stage_latencies


def prediction(captured: float, done: float) -> dict:
    stages = {"ingested": captured + 0.01, "postprocessed": done}
    return {"captured_at": captured, "stages": stages}


def test_percentiles_in_ms_and_empty():
    assert percentiles([0.1, 0.2, 0.3]) == {"p50": 200.0, "p95": 290.0, "p99": 298.0}
    assert percentiles([]) == {"p50": None, "p95": None, "p99": None}


def test_stage_latencies_chain_from_capture():
    out = stage_latencies([prediction(10.0, 10.05)])
    assert round(out["ingested"][0], 3) == 0.01
    assert round(out["postprocessed"][0], 3) == 0.04
    assert out["preprocessed"] == []


def test_warmup_frames_are_left_out_of_latency():
    summary = RunSummary(seconds=10, predictions=[prediction(1.0, 3.0), prediction(6.0, 6.1)])
    steady = after_warmup(summary, since=5.0)
    assert [p["captured_at"] for p in steady.predictions] == [6.0]


def test_part_verdicts_are_counted_and_part_alerts_kept_out_of_frame_latency():
    frame_alert = {"captured_at": 1.0, "created_at": 1.1, "rule": "cat", "part": None}
    part_alert = {"captured_at": 1.0, "created_at": 3.0, "rule": "line-defect", "part": {}}
    verdicts = [{"status": "accepted"}, {"status": "rejected"}, {"status": "accepted"}]
    figures = RunSummary(seconds=1, alerts=[frame_alert, part_alert], verdicts=verdicts).as_dict()
    assert figures["parts"] == {"accepted": 2, "rejected": 1}
    assert figures["capture_to_alert_ms"]["p99"] == 100.0
    assert figures["alerts_by_rule"] == {"cat": 1, "line-defect": 1}


def test_demo_counts_insufficient_parts_apart_from_decided_ones():
    from visionline.demo import part_counts

    assert part_counts({"accepted": 30, "rejected": 4, "insufficient": 2}) == (34, 2)
    assert part_counts({"accepted": 3}) == (3, 0)
    assert part_counts({}) == (0, 0)


def test_the_demo_runs_its_lines_at_the_rate_their_rules_entry_was_written_for(tmp_path):
    from visionline.demo import demo_line_fps
    from visionline.settings import REPO_ROOT

    assert demo_line_fps(REPO_ROOT / "infra" / "rules.yaml") == 10  # the rated load (issue 19)
    other = tmp_path / "rules.yaml"
    other.write_text("inspection:\n  - {cameras: ['demo-line-*'], fps: 7, belt_px_per_s: 900}\n")
    assert demo_line_fps(other) == 7
    other.write_text("inspection:\n  - {cameras: ['line-*'], belt_px_per_s: 900}\n")
    with pytest.raises(ValueError, match="names demo-line-1"):
        demo_line_fps(other)
