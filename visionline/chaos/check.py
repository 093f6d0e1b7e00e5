"""What a chaos run counts, from what was sent and what came out: plain functions, no broker.

- classify frames: each must have exactly one prediction row (``lost``: none; ``duplicated``:
  rows beyond the first);
- alerts: each alert id of the run's cameras in PostgreSQL once (its key) and on the alerts
  topic exactly once (``missing_on_topic``, ``duplicated_on_topic``); each classify frame that
  meets the chaos rule has one alert (``alerts_lost``), no frame has two (``alerts_doubled``);
- inspection parts that entered and left the view: one verdict each (``parts_lost``,
  ``parts_decided_twice``), matched to the generator's truth by box;
- per fault: the classify frames in flight when it struck (captured before, out after), how
  many of them were lost or doubled, and when the last of them came out.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class SentFrame:
    camera_id: str
    frame_id: str
    sent_at: float  # epoch s, also its capture time


@dataclass(frozen=True)
class Outcome:
    """A prediction row of a classify frame: when it came out, and whether it alerts."""

    camera_id: str
    frame_id: str
    completed_at: float
    alerts: bool


def frame_counts(sent: Sequence[SentFrame], outcomes: Sequence[Outcome]) -> dict[str, int]:
    rows = Counter((o.camera_id, o.frame_id) for o in outcomes)
    keys = {(f.camera_id, f.frame_id) for f in sent}
    return {
        "frames": len(keys),
        "lost": sum(1 for k in keys if rows[k] == 0),
        "duplicated": sum(n - 1 for k, n in rows.items() if k in keys and n > 1),
    }


def alert_counts(
    outcomes: Sequence[Outcome],
    stored: Sequence[tuple[str, str, str]],
    on_topic: Iterable[str],
) -> dict[str, int]:
    """``stored``: (alert id, camera, frame id) of the run's alerts in PostgreSQL; ``on_topic``:
    every occurrence of an alert id of the run on the alerts topic."""
    topic = Counter(on_topic)
    ids = {alert_id for alert_id, _, _ in stored}
    per_frame = Counter((camera, frame) for _, camera, frame in stored)
    alerting = {(o.camera_id, o.frame_id) for o in outcomes if o.alerts}
    return {
        "alerts": len(ids),
        "missing_on_topic": sum(1 for i in ids if topic[i] == 0),
        "duplicated_on_topic": sum(n - 1 for n in topic.values() if n > 1),
        "on_topic_not_stored": sum(1 for i in topic if i not in ids),
        "alerts_lost": sum(1 for k in alerting if per_frame[k] == 0),
        "alerts_doubled": sum(n - 1 for k, n in per_frame.items() if k in alerting and n > 1),
    }


def part_counts(
    parts: Iterable[tuple[str, int]], decided: dict[tuple[str, int], list[dict]]
) -> dict[str, int]:
    """``parts``: (camera, part id) that entered and left the view; ``decided``: the verdicts
    of each part (matched by box), with ``status`` and ``last_frame_id``. A part decided twice
    whose later verdict rejects it and whose earlier one did not is ``parts_rejected_late``
    (decided early while its line was silent, then rejected when its frames resumed); any
    other repeat is ``parts_decided_twice``."""
    keys = list(parts)
    late = twice = 0
    for key in keys:
        verdicts = sorted(decided.get(key, []), key=lambda v: v["last_frame_id"])
        if len(verdicts) < 2:
            continue
        upgrade = len(verdicts) == 2 and [v["status"] == "rejected" for v in verdicts] == [
            False,
            True,
        ]
        late += upgrade
        twice += 0 if upgrade else len(verdicts) - 1
    return {
        "parts": len(keys),
        "parts_lost": sum(1 for k in keys if not decided.get(k)),
        "parts_decided_twice": twice,
        "parts_rejected_late": late,
    }


def in_flight(
    struck_at: float, sent: Sequence[SentFrame], outcomes: Sequence[Outcome]
) -> dict[str, Any]:
    """The classify frames sent before ``struck_at`` that had not come out by then: how many,
    lost or doubled, and seconds from the fault until the last of them came out."""
    done: dict[tuple[str, str], list[float]] = {}
    for o in outcomes:
        done.setdefault((o.camera_id, o.frame_id), []).append(o.completed_at)
    flying = [
        f
        for f in sent
        if f.sent_at < struck_at and min(done.get((f.camera_id, f.frame_id), [1e18])) > struck_at
    ]
    out = [
        max(done[(f.camera_id, f.frame_id)]) for f in flying if (f.camera_id, f.frame_id) in done
    ]
    return {
        "in_flight": len(flying),
        "lost": sum(1 for f in flying if (f.camera_id, f.frame_id) not in done),
        "duplicated": sum(len(done.get((f.camera_id, f.frame_id), [])) > 1 for f in flying),
        "recovered_s": round(max(out) - struck_at, 2) if out else 0.0,
    }


def passed(totals: dict[str, int]) -> bool:
    """Nothing lost, nothing doubled, nothing dead-lettered, no lag left."""
    bad = (
        "lost",
        "duplicated",
        "missing_on_topic",
        "duplicated_on_topic",
        "alerts_lost",
        "alerts_doubled",
        "parts_lost",
        "parts_decided_twice",
        "dead_letters",
        "lag",
    )
    return all(totals.get(key, 0) == 0 for key in bad)


def memory_curve(
    samples: Sequence[tuple[float, dict[str, int]]], warmup: float = 0.1
) -> dict[str, dict[str, float]]:
    """Resident memory (MiB) per process over a run, from ``(time, {name: bytes})`` samples:
    at the start, after the warm-up (``warmup`` of the samples: imports, model loads, caches
    filling), at its peak and at the end; ``growth`` is end minus after warm-up: flat is near
    zero, a leak grows with the run."""
    names = sorted({name for _, sizes in samples for name in sizes})
    settled = min(len(samples) - 1, int(len(samples) * warmup)) if samples else 0
    mib = 2**20
    curve = {}
    for name in names:
        seen = [sizes[name] / mib for _, sizes in samples if name in sizes]
        after = [sizes[name] / mib for _, sizes in samples[settled:] if name in sizes]
        if not seen or not after:
            continue
        curve[name] = {
            "start": round(seen[0], 1),
            "after_warmup": round(after[0], 1),
            "peak": round(max(seen), 1),
            "end": round(seen[-1], 1),
            "growth": round(seen[-1] - after[0], 1),
        }
    return curve
