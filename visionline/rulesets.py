"""Versioned rules documents (``rule_sets``): what the rules and parts workers apply.

The highest version is in effect; with no version saved, ``infra/rules.yaml`` is (version 0).
A document is a ``RulesFile`` (``rules:``, ``inspection:`` and ``detect:``), validated before
it is saved, so a worker never meets one it cannot apply. Workers hold a ``RulesWatcher``: it
asks for the highest version at most every ``refresh_s`` and loads the document only when it
changed, so a change through the API reaches the next frames without a restart.
"""

from __future__ import annotations

import fnmatch
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy import Engine, func, select, text
from sqlalchemy.orm import Session

from visionline import audit
from visionline.db.models import RuleSetRow
from visionline.detection.config import DetectRule
from visionline.detection.config import check_unique_names as unique_detect_rules
from visionline.inspection.config import InspectionConfig, check_unique_names, config_for
from visionline.rule_names import RuleName

log = logging.getLogger(__name__)

FILE_VERSION = 0  # the rules file, while no version is saved
AUDIT_TARGET = "rules"


class Rule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: RuleName
    cameras: list[str] = Field(default_factory=lambda: ["*"])  # ids or glob patterns
    labels: list[str] = Field(min_length=1)
    min_confidence: float = Field(0.5, ge=0, le=1)
    cooldown_s: float = Field(0.0, ge=0)  # per camera and label
    severity: Literal["info", "warning", "critical"] = "warning"

    def applies_to(self, camera_id: str) -> bool:
        return any(fnmatch.fnmatchcase(camera_id, pattern) for pattern in self.cameras)


class RulesFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    rules: list[Rule]
    inspection: list[InspectionConfig] = Field(default_factory=list)  # inspection cameras
    # Detect cameras: zone dwell, line crossing, count and seen rules (visionline.detection)
    detect: list[DetectRule] = Field(default_factory=list)

    @field_validator("detect")
    @classmethod
    def _unique_detect(cls, rules: list[DetectRule]) -> list[DetectRule]:
        return unique_detect_rules(rules)

    @field_validator("inspection")
    @classmethod
    def _unique_inspection(cls, configs: list[InspectionConfig]) -> list[InspectionConfig]:
        return check_unique_names(configs)

    @field_validator("rules")
    @classmethod
    def _unique_names(cls, rules: list[Rule]) -> list[Rule]:
        names = [r.name for r in rules]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"duplicate rule names: {', '.join(duplicates)}")
        return rules


def load_rules_file(path: Path) -> RulesFile:
    return RulesFile.model_validate(yaml.safe_load(path.read_text()) or {})


def load_rules(path: Path) -> list[Rule]:
    return load_rules_file(path).rules


@dataclass(frozen=True)
class RuleSet:
    """One version of the rules, as the workers and the API see it."""

    version: int
    rules: RulesFile
    changed_by: str | None = None  # None: the rules file
    changed_at: datetime | None = None
    comment: str = ""

    @property
    def source(self) -> str:
        return "file" if self.version == FILE_VERSION else "database"


def document_of(rules: RulesFile) -> dict[str, Any]:
    """The stored form: every field, defaults included, as JSON. ValueError for what JSONB
    cannot hold (a valid RulesFile may): an infinite or NaN number, NUL or a lone surrogate."""
    document = rules.model_dump(mode="json")
    try:
        json.dumps(document, allow_nan=False)
    except ValueError:
        raise ValueError("numbers must be finite (no Infinity or NaN)") from None
    if not all(storable_text(text) for text in _strings(document)):
        raise ValueError("text must be valid UTF-8 without NUL characters (\\u0000)")
    return document


def storable_text(text: str) -> bool:
    """PostgreSQL refuses NUL characters and lone surrogates (JSON may carry both)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return "\x00" not in text


def _strings(value: Any):
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield key
            yield from _strings(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _strings(item)


def from_row(row: RuleSetRow) -> RuleSet:
    return RuleSet(
        version=row.version,
        rules=RulesFile.model_validate(row.document),
        changed_by=row.changed_by,
        changed_at=row.changed_at,
        comment=row.comment,
    )


def from_file(path: Path) -> RuleSet:
    return RuleSet(version=FILE_VERSION, rules=load_rules_file(path))


def latest_version(engine: Engine) -> int:
    """The version in effect: one cheap aggregate on the primary key."""
    with engine.connect() as conn:
        found = conn.execute(select(func.max(RuleSetRow.version))).scalar()
    return FILE_VERSION if found is None else found


def current(engine: Engine, path: Path) -> RuleSet:
    """The rules in effect: the highest version saved, else the rules file."""
    stmt = select(RuleSetRow).order_by(RuleSetRow.version.desc()).limit(1)
    with Session(engine) as session:
        row = session.scalars(stmt).first()
        return from_file(path) if row is None else from_row(row)


def get_version(engine: Engine, version: int) -> RuleSet | None:
    with Session(engine) as session:
        row = session.get(RuleSetRow, version)
        return None if row is None else from_row(row)


def history(engine: Engine, limit: int = 50) -> list[RuleSet]:
    """Saved versions, newest first."""
    stmt = select(RuleSetRow).order_by(RuleSetRow.version.desc()).limit(limit)
    with Session(engine) as session:
        return [from_row(row) for row in session.scalars(stmt)]


def save(engine: Engine, document: RulesFile | dict, actor: str, comment: str = "") -> RuleSet:
    """Validate ``document`` (ValidationError if it is not a rules file, ValueError if PostgreSQL
    could not hold it: see ``document_of``) and save it as the next version, with its audit
    entry, in one transaction.

    The table lock serialises writers (two saves never take the same number) and leaves readers
    alone: workers asking for the version in effect do not wait."""
    rules = document if isinstance(document, RulesFile) else RulesFile.model_validate(document)
    with Session(engine) as session, session.begin():
        session.execute(text("LOCK TABLE rule_sets IN EXCLUSIVE MODE"))
        previous = session.execute(select(func.max(RuleSetRow.version))).scalar()
        row = RuleSetRow(
            version=(previous or FILE_VERSION) + 1,
            document=document_of(rules),
            changed_by=actor,
            changed_at=datetime.now(UTC),
            comment=comment,
        )
        session.add(row)
        audit.record(
            session, actor, "rules.update", AUDIT_TARGET, version=row.version, comment=comment
        )
        session.flush()
        return RuleSet(
            version=row.version,
            rules=rules,
            changed_by=actor,
            changed_at=row.changed_at,
            comment=comment,
        )


def for_camera(rules: RulesFile, camera_id: str) -> RulesFile:
    """What applies to one camera: its rules, its inspection entry (the first that names it,
    as the workers choose) and its detect rules."""
    config = config_for(rules.inspection, camera_id)
    return RulesFile.model_construct(
        rules=[r for r in rules.rules if r.applies_to(camera_id)],
        inspection=[] if config is None else [config],
        detect=[r for r in rules.detect if r.applies_to(camera_id)],
    )


class RulesWatcher:
    """A worker's rules, kept current: ``poll()`` at the start of each batch or frame.

    ``version`` answers the version in effect cheaply, ``load`` the rules in effect (see
    ``watch``, which gives both from the database)."""

    def __init__(
        self,
        version: Callable[[], int],
        load: Callable[[], RuleSet],
        refresh_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.version, self.load, self.refresh_s, self.clock = version, load, refresh_s, clock
        self.current = load()  # a failure here stops the worker: it has no rules yet
        self.checked = clock()
        log.info("rules version %d (%s)", self.current.version, self.current.source)

    def poll(self) -> RuleSet | None:
        """The new rules if the version in effect changed since the last look, else None.
        Looks at most every ``refresh_s``; a failure keeps the rules in hand."""
        now = self.clock()
        if now - self.checked < self.refresh_s:
            return None
        self.checked = now
        try:
            if self.version() == self.current.version:
                return None
            fresh = self.load()
        except Exception as exc:  # noqa: BLE001 - any failure: keep applying the last rules
            log.warning("rules not refreshed, version %d kept: %s", self.current.version, exc)
            return None
        log.info("rules version %d -> %d (%s)", self.current.version, fresh.version, fresh.source)
        self.current = fresh
        return fresh


def watch(engine: Engine, path: Path, refresh_s: float) -> RulesWatcher:
    """A watcher on ``rule_sets``, with ``path`` as the rules while no version is saved."""
    return RulesWatcher(partial(latest_version, engine), partial(current, engine, path), refresh_s)
