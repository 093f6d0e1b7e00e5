"""The benchmark's printed report."""

from __future__ import annotations

import json

from visionline.bench.figures import NOISE_WARN_CORES, TARGET_WORKER_RSS_MB


def _pcts(p: dict) -> str:
    return "  ".join(f"{k} {'-' if v is None else f'{v:.0f}'}" for k, v in p.items())


def summary_table(f: dict):
    from rich.table import Table

    sat, half = f["saturation"], f["half_load"]
    table = Table("measure", "value", title="visionline bench")
    runs = ", ".join(str(r["fps"]) for r in f["bare"]["runs"])
    table.add_row("bare loop frames/s", f"{f['bare']['fps']} (runs: {runs})")
    table.add_row("pipeline frames/s (saturated)", str(sat["fps"]))
    table.add_row("ratio pipeline / bare", str(f["ratio"]))
    bare_cpu = ", ".join(str(r["cpu_ms_per_frame"]) for r in f["bare"]["runs"])
    table.add_row(
        "CPU ms / frame: bare, pipeline",
        f"{bare_cpu}; {sat['cpu_ms_per_frame'].get('total')}",
    )
    table.add_row("half load frames/s", f"{half['fps']} ({half['camera_fps']} per camera)")
    table.add_row("capture-to-prediction ms", _pcts(half["capture_to_prediction_ms"]))
    table.add_row("capture-to-alert ms", _pcts(half["capture_to_alert_ms"]))
    table.add_row("alerts / predictions", f"{half['alerts']} / {half['predictions']}")
    table.add_row("served by", json.dumps(half["served_by"]))
    for name, phase in (("saturated", sat), ("half load", half)):
        t = phase["triton"] or {}
        table.add_row(
            f"Triton batch ({name})",
            f"client {t.get('client_batch_avg')}  execution {t.get('execution_batch_avg')}  "
            f"queue {t.get('queue_ms_avg')} ms  compute {t.get('compute_ms_avg')} ms",
        )
    table.add_row("dead letters (saturated)", json.dumps(sat["dead_letters"]))
    table.add_row("other load on the machine (cores)", str(sat["usage"]["other_load_cores"]))
    return table


def stage_table(half: dict):
    from rich.table import Table

    table = Table("stage (from the one before)", "p50 ms", "p95 ms", "p99 ms", title="Stages")
    for stage, p in half["stage_ms"].items():
        table.add_row(stage, *("-" if v is None else f"{v:.1f}" for v in p.values()))
    return table


def usage_table(f: dict):
    from rich.table import Table

    sat = f["saturation"]["usage"]["components"]
    half = f["half_load"]["usage"]["components"]
    idle = f["idle"]["usage"]["components"]
    per_frame = f["saturation"]["cpu_ms_per_frame"]
    table = Table(
        "process",
        "cores saturated",
        "CPU ms / frame",
        "cores half load",
        "cores idle",
        "peak RSS MB",
        title="Processes (with their children)",
    )
    for name in sorted(set(sat) | set(half)):
        peak = max(u[name]["peak_rss_mb"] for u in (sat, half) if name in u)
        over = name in f["worker_peak_rss_mb"] and peak >= TARGET_WORKER_RSS_MB
        table.add_row(
            name,
            _cores(sat.get(name)),
            str(per_frame.get(name, "-")),
            _cores(half.get(name)),
            _cores(idle.get(name)),
            f"[red]{peak:.0f}[/]" if over else f"{peak:.0f}",
        )
    return table


def _cores(usage: dict | None) -> str:
    return "-" if not usage or usage["cores"] is None else f"{usage['cores']:.2f}"


def targets_table(targets: list[dict]):
    from rich.table import Table

    table = Table("target", "limit", "measured", "", title="Targets (informational)")
    marks = {True: "[green]pass[/]", False: "[red]miss[/]", None: "[yellow]n/a[/]"}
    for t in targets:
        table.add_row(t["target"], t["limit"], str(t["value"]), marks[t["passed"]])
    return table


def print_report(figures: dict, console) -> None:
    console.print(summary_table(figures))
    console.print(stage_table(figures["half_load"]))
    console.print(usage_table(figures))
    console.print(targets_table(figures["targets"]))
    if not figures["half_load"]["all_served_by_triton"]:
        console.print("[yellow]not every prediction was served by Triton[/]")
    dropped = figures["half_load"]["load"]["dropped_at_camera"]
    if dropped:
        console.print(
            f"[yellow]half load: {dropped} frames dropped at the cameras: the pipeline did not "
            "keep up with that rate, so its latency includes queueing[/]"
        )
    for phase in ("saturation", "half_load"):
        usage = figures[phase]["usage"]
        noise = usage["other_load_cores"] + usage["steal_cores"]
        if noise > NOISE_WARN_CORES:
            console.print(
                f"[yellow]{phase}: other processes (or the hypervisor) took {noise:.2f} cores of "
                f"{figures['machine']['cpus']} during the window: its figures are pessimistic[/]"
            )


# ================================ command ===================================================


def inspect_tables(f: dict) -> list:
    """`visionline bench --path inspect`: the bare loop, then each phase through the stack."""
    from rich.table import Table

    bare = f["bare"]
    head = Table("measure", "value", title="visionline bench --path inspect")
    head.add_row("bare loop frames/s", f"{bare['fps']} ({bare['parts_per_frame']} parts/frame)")
    apart = bare.get("crop_models_apart")
    if apart:
        head.add_row(
            "bare, crop models apart (baseline)",
            f"{apart['fps']} frames/s; ratio {bare['over_crop_models_apart']}",
        )
    models = ", ".join(f"{k} {v}" for k, v in bare["model_ms_per_frame"].items())
    head.add_row("bare ms per frame", f"{models}, other {bare['other_ms_per_frame']}")
    head.add_row("pipeline frames/s (most inspected)", str(f["saturated_inspected_fps"]))
    head.add_row("ratio pipeline / bare", str(f["pipeline_over_bare"]))
    head.add_row("rated load", f"{f['rated_fps']} frames/s ({f['rated_lines']} 10-fps lines)")
    head.add_row("p99 under 3 s at twice the rated load", str(f["overload_p99_under_3s"]))
    phases = Table(
        "lines",
        "inspected/s",
        "shed",
        "parts/s",
        "decision p50/p99/max ms",
        "alert p99 ms",
        "insufficient",
        "recall / precision",
        title="Through the stack (decision: capture of a part's last frame to its verdict)",
    )
    for p in f["phases"]:
        d = p["decision_ms"]
        phases.add_row(
            f"{p['lines']} x {p['fps_per_line']:g}/s",
            str(p["inspected_fps"]),
            f"{p['shed_share']:.0%}",
            str(p["parts_per_s"]),
            f"{d['p50']} / {d['p99']} / {d['max']}",
            str(p["alert_ms"]["p99"]),
            f"{p['insufficient_share']:.1%}",
            f"{p['recall']} / {p['precision']}",
        )
    cpu = Table(
        "process",
        *(f"{p['offered_fps']:g}/s" for p in f["phases"]),
        title="CPU ms per inspected frame",
    )
    names = sorted({n for p in f["phases"] for n in p["cpu_ms_per_inspected_frame"]})
    for name in names:
        cpu.add_row(
            name, *(str(p["cpu_ms_per_inspected_frame"].get(name, "-")) for p in f["phases"])
        )
    return [head, phases, cpu]
