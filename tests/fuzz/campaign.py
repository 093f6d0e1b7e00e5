"""A time-boxed fuzz campaign of the frame decoders: ``tests.fuzz.decoders`` for as long as asked.

    nice -n 10 .venv/bin/python -m tests.fuzz.campaign --minutes 10 --out .state/fuzz

Unlike the short run in the unit tests, a broken property does not stop the campaign: each
distinct failure (exception type and message, digits masked) is counted, its first input kept
under ``--out``, and generation goes on. Each example runs under a watchdog (when one takes
longer than ``--hang-s`` the process dumps its stack, keeps the input as a failure, writes the
figures and exits) and an address-space limit, so a bomb fails here instead of taking the
machine; the input being run is always in ``current.bin``.
The figures (examples, time, outcomes, slowest example, peak arrays, distinct failures) are
printed and written to ``figures.json``; docs/fuzzing.md holds those of the runs made.
"""

from __future__ import annotations

import argparse
import faulthandler
import json
import os
import re
import resource
import sys
import threading
import time
import traceback
from collections import Counter
from pathlib import Path

from hypothesis import HealthCheck, Phase, given, seed, settings

from tests.fuzz.decoders import DecoderBug, RawFrame, check, raw_frames

BATCH = 200
SLOW_S = 10.0


class Campaign:
    def __init__(self, out: Path, hang_s: float) -> None:
        self.out, self.hang_s = out, hang_s
        self.examples = 0
        self.outcomes: Counter[str] = Counter()
        self.failures: dict[str, dict] = {}
        self.slowest = (0.0, "")
        self.peak_bytes = 0
        self.running: tuple[float, RawFrame] | None = None  # (started, input) of the example
        self.harness_errors = 0

    def run_one(self, raw: RawFrame) -> None:
        self.examples += 1
        (self.out / "current.bin").write_bytes(raw.value or b"")
        start = time.perf_counter()
        self.running = (start, raw)
        try:
            outcome = check(raw)
        except DecoderBug as bug:
            self._failed(raw, bug)
            return
        finally:
            self.running = None
        took = time.perf_counter() - start
        self.outcomes[f"{outcome.stage}:{outcome.reason}"] += 1
        self.peak_bytes = max(self.peak_bytes, outcome.peak_bytes)
        if took > self.slowest[0]:
            self.slowest = (took, f"{outcome.stage}:{outcome.reason} {len(raw.value or b'')} B")
        if took > SLOW_S:
            self._failed(raw, DecoderBug(f"slow: {took:.1f}s ({outcome.seconds})"))

    def _failed(self, raw: RawFrame, bug: DecoderBug) -> None:
        signature = re.sub(r"\d+", "N", str(bug))[:160]
        seen = self.failures.setdefault(signature, {"count": 0})
        seen["count"] += 1
        if seen["count"] == 1:
            name = f"failure-{len(self.failures):03d}"
            (self.out / f"{name}.bin").write_bytes(raw.value or b"")
            cause = bug.__cause__ or bug
            seen.update(
                input=f"{name}.bin",
                key=repr(raw.key),
                headers=repr(raw.headers)[:500],
                traceback="".join(traceback.format_exception(cause))[-2000:],
            )
            print(f"FAILURE {signature}", file=sys.stderr, flush=True)

    def watch(self, figures) -> None:
        """The watchdog's loop (a thread: OpenCV's decoders release the GIL)."""
        while True:
            time.sleep(1.0)
            running = self.running
            if running is not None and time.perf_counter() - running[0] > self.hang_s:
                faulthandler.dump_traceback(all_threads=True)
                self._failed(running[1], DecoderBug(f"hang: over {self.hang_s:.0f}s"))
                figures()
                os._exit(3)

    def batch(self, batch_seed: int) -> None:
        @seed(batch_seed)
        @settings(
            max_examples=BATCH,
            deadline=None,
            database=None,
            phases=[Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        @given(raw_frames())
        def fuzz(raw: RawFrame) -> None:
            self.run_one(raw)

        try:
            fuzz()
        except Exception:  # noqa: BLE001 - a bug of the generators: told, counted, next seed
            self.harness_errors += 1
            traceback.print_exc()

    def figures(self, seconds: float, first_seed: int, batches: int) -> dict:
        return {
            "seconds": round(seconds, 1),
            "examples": self.examples,
            "examples_per_second": round(self.examples / max(seconds, 1e-9), 1),
            "seeds": [first_seed, first_seed + batches - 1],
            "outcomes": dict(self.outcomes.most_common()),
            "slowest_example_s": round(self.slowest[0], 3),
            "slowest_example": self.slowest[1],
            "peak_arrays_mib": round(self.peak_bytes / (1 << 20), 1),
            "max_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024,
            "harness_errors": self.harness_errors,
            "distinct_failures": len(self.failures),
            "failures": self.failures,
        }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--out", type=Path, default=Path(".state/fuzz"))
    parser.add_argument("--seed", type=int, default=int(time.time()))
    parser.add_argument("--hang-s", type=float, default=120.0)
    parser.add_argument("--max-memory-gib", type=float, default=6.0)
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    faulthandler.enable()  # a crash in C prints the Python stack of each thread
    limit = int(args.max_memory_gib * (1 << 30))
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    campaign = Campaign(args.out, args.hang_s)
    start = time.monotonic()
    batches = 0

    def write_figures() -> dict:
        figures = campaign.figures(time.monotonic() - start, args.seed, batches)
        (args.out / "figures.json").write_text(json.dumps(figures, indent=2))
        return figures

    threading.Thread(target=campaign.watch, args=(write_figures,), daemon=True).start()
    while time.monotonic() - start < args.minutes * 60:
        campaign.batch(args.seed + batches)
        batches += 1
        took, failed = time.monotonic() - start, len(campaign.failures)
        load = os.getloadavg()[0]
        print(
            f"{took:7.0f}s {campaign.examples} examples, {failed} distinct failures, "
            f"load {load:.1f}",
            flush=True,
        )
    figures = write_figures()
    print(json.dumps({k: v for k, v in figures.items() if k != "failures"}, indent=2))
    for signature, seen in figures["failures"].items():
        print(f"{seen['count']:6d} x {signature}  ({seen['input']})")
    return 1 if campaign.failures or campaign.harness_errors else 0


if __name__ == "__main__":
    raise SystemExit(main())
