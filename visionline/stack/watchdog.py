"""The supervisor's watchdog (``python -m visionline.stack.watchdog``, started by the supervisor).

The supervisor starts it with the read end of a pipe whose write end only the supervisor holds.
When the supervisor dies, however it dies (SIGKILL included), the kernel closes that end, the read
returns, and the watchdog ends every process left of that run. The parent-death signal already
takes the supervisor's children; this also catches their descendants (a worker's own helpers).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from visionline.stack.cleanup import kill_leftovers
from visionline.stack.state import StatePaths

log = logging.getLogger("visionline.stack.watchdog")


def start_watchdog(paths: StatePaths, run_id: str, cwd: Path) -> tuple[subprocess.Popen, int]:
    """Start the watchdog of this (supervisor) process; keep the returned fd open for life."""
    read_end, write_end = os.pipe()  # both close on exec: only the watchdog gets the read end
    argv = [sys.executable, "-m", "visionline.stack.watchdog", "--state-dir", str(paths.root)]
    argv += ["--run-id", run_id, "--fd", str(read_end)]
    with open(paths.supervisor_log, "ab") as out:
        watchdog = subprocess.Popen(
            argv,
            pass_fds=[read_end],
            start_new_session=True,  # not in the supervisor's group: a signal to it spares this
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=cwd,
        )
    os.close(read_end)
    return watchdog, write_end


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m visionline.stack.watchdog")
    parser.add_argument("--state-dir", type=Path, required=True)
    parser.add_argument("--run-id", required=True)
    parser.add_argument("--fd", type=int, required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s watchdog: %(message)s"
    )
    for sig in (signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    while os.read(args.fd, 64):  # the supervisor never writes: this returns at its death
        pass
    # Only what existed at the supervisor's death: a new `up` may already be starting its own.
    ended = kill_leftovers(StatePaths(args.state_dir), args.run_id, created_before=time.time())
    if ended:
        log.warning("the supervisor died; ended its leftover processes %s", ended)
    return 0


if __name__ == "__main__":
    sys.exit(main())
