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
