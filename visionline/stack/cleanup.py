"""Finding and ending the processes of a stack whose supervisor is gone."""

from __future__ import annotations

import logging
import os
import signal
import time

from visionline.stack.postgres import server_processes
from visionline.stack.process import created_at, marked_processes, session_tree, signal_pids
from visionline.stack.state import StatePaths, read_sessions

log = logging.getLogger(__name__)


def find_leftovers(
    paths: StatePaths, run_id: str | None = None, created_before: float | None = None
) -> list[int]:
    """Live processes this state folder's supervisors started (in run ``run_id``, when given),
    or their descendants; only those created before ``created_before``, when given.

    Three nets: the sessions the supervisor recorded, with their descendants (created after
    the record, so no recycled pid); the ``MEMBER_ENV`` mark (what left those sessions); and
    PostgreSQL's processes of this data folder (which overwrite the environment /proc shows).
    """
    found: set[int] = set()
    records = [r for r in read_sessions(paths) if run_id is None or r.run_id == run_id]
    trees = session_tree(r.pid for r in records)
    for record in records:
        for pid in trees[record.pid]:
            started = created_at(pid)
            if started is not None and started >= record.started_at - 1.0:
                found.add(pid)
    found.update(marked_processes(str(paths.root), run_id))
    found.update(server_processes(paths.pgdata))
    found.discard(os.getpid())
    if created_before is not None:
        found = {p for p in found if (created_at(p) or created_before) < created_before}
    return sorted(found)


def kill_leftovers(
    paths: StatePaths,
    run_id: str | None = None,
    created_before: float | None = None,
    grace_s: float = 3.0,
) -> list[int]:
    """SIGTERM the leftovers, SIGKILL those still there after ``grace_s``; returns their pids."""

    def leftovers() -> set[int]:
        return set(find_leftovers(paths, run_id, created_before))

    pids = leftovers()
    if not pids:
        return []
    log.warning("ending %d leftover process(es) of %s: %s", len(pids), paths.root, sorted(pids))
    signal_pids(pids, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline and leftovers() & pids:
        time.sleep(0.1)
    signal_pids(leftovers(), signal.SIGKILL)
    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline and leftovers():
        time.sleep(0.1)
    return sorted(pids)
