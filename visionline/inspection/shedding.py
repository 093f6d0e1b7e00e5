"""Load shedding in the inspect worker: when frames reach it later than a line can wait, it
inspects fewer of each camera's frames, evenly spaced along the belt, so that decisions stay
timely and each part is still seen (fewer frames per part, not no decision).

The policy: a frame that waited at most ``late_after_s`` is inspected. A frame that waited
longer is inspected when its capture time lies at least ``gap_per_late_s`` times its wait after
the camera's last inspected frame; any other frame is shed, and counted. The gap grows with the
backlog, so each camera's inspected rate falls until the worker keeps up: under twice the load
it can take, a 10-fps camera's frames settle at a wait of about 0.5 s with every other frame
inspected (gap 0.2 s = 0.4 x 0.5 s), instead of a wait that grows without end. At the
threshold the gap is 0.1 s, a 10-fps line's own spacing, so shedding starts smoothly.

Why this policy and not the plain ones:
- dropping frames past a deadline drops runs of consecutive frames, and a run can hide a part's
  whole pass through the view: a part with no decision at all;
- a fixed stride sheds frames at loads the worker keeps up with;
- spacing by capture time, not by a count of frames, keeps each part's frames spread along the
  belt whatever the camera's frame rate, and the parts worker's tracker already reads belt
  travel from capture times (a shed frame is no jump).

The gap never exceeds ``max_gap_s``, so no part passes unseen: beyond about three times the
load the worker can take, the wait grows again (a machine that small needs fewer lines).

Each inspected frame says how many of its camera's frames were shed just before it
(``frames_shed_before``), so the parts worker counts a part's shed frames toward the frames it
needs for a decision (``tracking.DecisionRules.min_frames``): fewer frames per part under
overload, not ``insufficient``.

The wait is measured on the server side's clocks (the inspection frame's Kafka timestamp, set
when ingest forwarded it), so a camera whose clock is off does not make its frames look late.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Shedding:
    """``late_after_s`` 0 turns shedding off."""

    late_after_s: float = 0.25
    gap_per_late_s: float = 0.4
    # Never a wider gap: a part crosses the lines' view in about 0.7 s, so each part keeps two
    # frames or more even after an outage left a backlog of seconds (then the wait drains at
    # several seconds per second instead of at once).
    max_gap_s: float = 0.3

    def min_gap_s(self, waited_s: float) -> float:
        """The capture-time gap a frame that waited ``waited_s`` needs after the camera's
        last inspected frame (0: it is inspected)."""
        if self.late_after_s <= 0 or waited_s <= self.late_after_s:
            return 0.0
        return min(self.max_gap_s, self.gap_per_late_s * waited_s)


@dataclass
class FrameShedder:
    """Per camera: the capture time of its last inspected frame, and the frames shed since."""

    policy: Shedding = field(default_factory=Shedding)
    last_inspected: dict[str, float] = field(default_factory=dict)
    shed_since: dict[str, int] = field(default_factory=dict)

    def inspect(self, camera: str, captured_at: float, waited_s: float) -> bool:
        """Whether to inspect the frame (True), or shed it (False)."""
        gap = self.policy.min_gap_s(waited_s)
        last = self.last_inspected.get(camera)
        # A frame captured before the last inspected one (a replay after a restart) is no gap.
        # A tenth of the gap is slack for capture jitter (0.199 s is a 0.2 s gap).
        if gap and last is not None and 0 <= captured_at - last < 0.9 * gap:
            self.shed_since[camera] = self.shed_since.get(camera, 0) + 1
            return False
        self.last_inspected[camera] = captured_at
        return True

    def shed_before(self, camera: str) -> int:
        """The frames of ``camera`` shed since its last inspected frame; 0 from now on."""
        return self.shed_since.pop(camera, 0)
