"""Per-camera detector banks, and the monitor that loads, feeds and checkpoints them.

State and the restart guarantee
-------------------------------
A camera's ``CameraBank`` (every signal's reference window, River detector, pending alarm and
cooldown, the distribution references) is pickled into PostgreSQL (``drift_state``, one row per
camera) together with, per topic partition, the offset of the last message it reflects. It is
saved every ``checkpoint_every`` frames of the camera, every ``checkpoint_interval_s`` for the
cameras with unsaved frames, when partitions are revoked and on shutdown.

The worker acks a message only once the bank that reflects it is saved, so the consumer group's
committed offset never passes the saved state. After a crash or a restart the replay starts at
or before the saved offsets: messages the saved bank already reflects are skipped (by offset,
per camera and partition) and the rest are fed again, in the same order, to the same saved
detectors (KSWIN is seeded per camera and signal, and its random state is saved), so they raise
the same alarms and confirm the same drifts in the same frames. Each detector sees each message
exactly once, detectors never start cold after a restart, and a drift confirmed again in a
replay has the same event id, which PostgreSQL writes once.

Limits: a camera whose frames come on both topics (classify and inspect) interleaves them in
arrival order, which a replay may change; a change of a signal's detector in the detectors
file restarts that signal's detector (its spec is saved with it); a bank that cannot be read
back (its format changed) is started afresh, with a warning.
"""

from __future__ import annotations

import logging
import pickle
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Protocol

from visionline.drift.detectors import DetectorSpec, seed_of
from visionline.drift.signals import (
    DISTANCES,
    DistributionReference,
    FrameSignals,
    Watched,
    extract,
)
from visionline.drift.tracker import Policy, SignalTracker
from visionline.messages import DriftEvent, SourceRef

log = logging.getLogger(__name__)

STATE_FORMAT = 1


def partition_key(topic: str, partition: int) -> str:
    return f"{topic}:{partition}"


@dataclass
class CameraBank:
    """Every signal tracker of one camera, and the offsets of the messages it reflects."""

    camera_id: str
    policy: Policy
    specs: dict[str, DetectorSpec]
    trackers: dict[str, SignalTracker] = field(default_factory=dict)
    references: dict[str, DistributionReference] = field(default_factory=dict)
    offsets: dict[str, int] = field(default_factory=dict)  # "topic:partition" -> last offset
    frames: int = 0
    models: dict[str, str] = field(default_factory=dict)  # name -> version of the last frames

    def reflects(self, source: SourceRef) -> bool:
        return self.offsets.get(partition_key(source.topic, source.partition), -1) >= source.offset

    def observe(self, signals: FrameSignals, source: SourceRef | None = None) -> list[DriftEvent]:
        """Feed one frame's signals; the drifts it confirmed."""
        if changed := model_changes(self.models, signals.models):
            self.restart(changed)
        self.models = {**self.models, **signals.models}
        frame, events = signals.frame, []
        for name, value in signals.scalars.items():
            if name in self.specs and (event := self.tracker(name).update(value, frame)):
                events.append(event)
        for name, dist in signals.distributions.items():
            reference = self.references.setdefault(
                name, DistributionReference(self.policy.reference_frames)
            )
            distance = reference.distance(dist, DISTANCES[name])
            if distance is None or name not in self.specs:
                continue
            if event := self.tracker(name).update(distance, frame):
                events.append(event)
                reference.reset()  # the new normal becomes the reference distribution
                self.trackers[name].rebase()  # distances to it start a new reference window
        if source is not None:
            self.offsets[partition_key(source.topic, source.partition)] = source.offset
        self.frames += 1
        return events

    def restart(self, reason: str) -> None:
        """Every signal takes a new reference. After a promotion the conditions a version was
        trained for are the normal ones: judged against the old references, the glare it was
        retrained on would raise a second job (seen in the drift scenario)."""
        log.info("drift references of %s restart: %s", self.camera_id, reason)
        self.trackers.clear()
        self.references.clear()

    def tracker(self, signal: str) -> SignalTracker:
        if signal not in self.trackers:
            self.trackers[signal] = SignalTracker(
                self.camera_id,
                signal,
                self.specs[signal],
                self.policy,
                seed=seed_of(self.camera_id, signal),
            )
        return self.trackers[signal]

    def states(self) -> dict[str, int]:
        """``visionline_drift_state`` per signal seen: 0 stable, 1 suspected, 2 confirmed."""
        return {name: t.state for name, t in self.trackers.items()}

    def reconfigure(self, specs: dict[str, DetectorSpec], policy: Policy) -> None:
        """Current settings on a loaded bank: a signal whose detector changed starts again."""
        self.specs, self.policy = specs, policy
        for name in [n for n, t in self.trackers.items() if specs.get(n) != t.spec]:
            del self.trackers[name]
        for tracker in self.trackers.values():
            tracker.policy = policy
        for reference in self.references.values():
            reference.frames = policy.reference_frames

    def dumps(self) -> bytes:
        return pickle.dumps((STATE_FORMAT, self), protocol=pickle.HIGHEST_PROTOCOL)

    @staticmethod
    def loads(blob: bytes) -> CameraBank | None:
        """A saved bank, or None when it cannot be read back (its format changed)."""
        try:
            version, bank = pickle.loads(blob)  # our own table's bytes, written by dumps
        except Exception as exc:  # noqa: BLE001 - a class renamed, a field removed, ...
            log.warning("drift state not readable, starting afresh: %r", exc)
            return None
        return bank if version == STATE_FORMAT and isinstance(bank, CameraBank) else None


def model_changes(before: dict[str, str], now: dict[str, str]) -> str:
    """Each model whose version changed ("defect_detector 3 -> 4"); a model not seen before
    (a frame without parts names fewer models) is no change."""
    return ", ".join(
        f"{name} {before[name]} -> {version}"
        for name, version in sorted(now.items())
        if name in before and before[name] != version
    )


@dataclass(frozen=True)
class SavedBank:
    camera_id: str
    state: bytes
    offsets: dict[str, int]
    frames: int


@dataclass(frozen=True)
class Observed:
    """What one message did: the drifts it confirmed; ``skipped`` when the camera's bank
    already reflected it (then it is not held: ack it at once)."""

    camera_id: str
    events: list[DriftEvent]
    skipped: bool


class StateStore(Protocol):
    def load(self, camera_id: str) -> bytes | None: ...

    def save(self, banks: list[SavedBank]) -> None: ...


@dataclass
class DriftMonitor:
    """The banks of the cameras this process sees; frames are held until their bank is saved.

    ``observe`` takes a message with an opaque ``token`` (the worker's event) and answers the
    drifts it confirmed; ``checkpoint`` saves banks and hands back the tokens that may now be
    acked. A message the loaded bank already reflects is ``skipped``: ack it at once.
    """

    policy: Policy
    specs: dict[str, DetectorSpec]
    store: StateStore
    checkpoint_every: int = 100
    banks: dict[str, CameraBank] = field(default_factory=dict)
    held: dict[str, list] = field(default_factory=dict)  # camera -> tokens since its last save

    def bank(self, camera_id: str) -> CameraBank:
        if camera_id not in self.banks:
            blob = self.store.load(camera_id)
            bank = CameraBank.loads(blob) if blob is not None else None
            if bank is None:
                bank = CameraBank(camera_id, self.policy, self.specs)
            else:
                bank.reconfigure(self.specs, self.policy)
                log.info("drift state of %s loaded: %d frames", camera_id, bank.frames)
            self.banks[camera_id] = bank
        return self.banks[camera_id]

    def observe(self, message: Watched, source: SourceRef, token: object = None) -> Observed:
        signals = extract(message)
        camera = signals.camera_id
        bank = self.bank(camera)
        if bank.reflects(source):
            return Observed(camera, [], skipped=True)
        events = bank.observe(signals, source)
        self.held.setdefault(camera, []).append(token)
        return Observed(camera, events, skipped=False)

    def due(self) -> list[str]:
        """Cameras with ``checkpoint_every`` frames or more not yet saved."""
        return [c for c, tokens in self.held.items() if len(tokens) >= self.checkpoint_every]

    def checkpoint(self, cameras: Iterable[str] | None = None) -> list:
        """Save the banks of ``cameras`` (default: every one with unsaved frames) in one
        transaction; the tokens of the frames they reflect, to be acked."""
        chosen = [c for c in (self.held if cameras is None else cameras) if self.held.get(c)]
        if not chosen:
            return []
        self.store.save([self.saved(self.banks[c]) for c in chosen])
        return [token for c in chosen for token in self.held.pop(c)]

    @staticmethod
    def saved(bank: CameraBank) -> SavedBank:
        return SavedBank(bank.camera_id, bank.dumps(), dict(bank.offsets), bank.frames)

    def drop(self, revoked: Callable[[str], bool]) -> list[str]:
        """Forget the cameras with a partition for which ``revoked("topic:partition")``: they
        are loaded again from the store if they come back. Checkpoint first."""
        gone = [c for c, b in self.banks.items() if any(revoked(k) for k in b.offsets)]
        for camera in gone:
            del self.banks[camera]
            self.held.pop(camera, None)
        return gone

    def states(self, camera_id: str) -> dict[str, int]:
        bank = self.banks.get(camera_id)
        return bank.states() if bank is not None else {}
