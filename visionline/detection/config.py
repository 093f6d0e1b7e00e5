"""Object rules of the rules document for cameras with ``pipeline: detect``.

Each rule is one of four kinds, told apart by ``kind``:

- ``dwell``: a tracked object stays in a zone for more than ``seconds``;
- ``line``: a tracked object crosses a line segment, with a direction;
- ``count``: the number of tracked objects in a zone (or the frame) goes above ``more_than``
  or below ``fewer_than``;
- ``seen``: an object is tracked in at least ``min_frames`` frames.

Zones and lines are in fractions of the frame's width and height (x right, y down), so one rule
fits every resolution. An object is where its box's anchor is: the bottom-centre
``((x0 + x1) / 2, y1)``, the point on the ground, as supervision's zones use by default.
"""

from __future__ import annotations

import fnmatch
from typing import Annotated, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, field_validator, model_validator

from visionline.rule_names import RuleName

Fraction = Annotated[float, Field(ge=0, le=1)]
Point = tuple[Fraction, Fraction]  # x, y as fractions of the frame's width, height
Polygon = tuple[Point, ...]  # tuples: a rule's geometry is hashable


def polygon_area(points: Polygon) -> float:
    """Shoelace area; zero for a polygon whose points are all on one line."""
    n = len(points)
    twice = sum(
        points[i][0] * points[(i + 1) % n][1] - points[(i + 1) % n][0] * points[i][1]
        for i in range(n)
    )
    return abs(twice) / 2


def check_polygon(points: Polygon | None) -> Polygon | None:
    if points is None:
        return None
    if len(points) < 3:
        raise ValueError("a zone needs at least 3 points")
    if polygon_area(points) <= 0:
        raise ValueError("a zone must enclose an area (its points are on one line)")
    return points


class ObjectRule(BaseModel):
    """Fields every kind shares."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: RuleName
    cameras: list[str] = Field(default_factory=lambda: ["*"])  # ids or fnmatch globs
    classes: list[str] = Field(min_length=1)  # the detector's class names; ["*"]: any class
    min_confidence: float = Field(0.3, ge=0, le=1)
    severity: Literal["info", "warning", "critical"] = "warning"

    @field_validator("classes")
    @classmethod
    def _star_alone(cls, value: list[str]) -> list[str]:
        if "*" in value and len(value) > 1:
            raise ValueError("'*' (any class) must be the only class")
        return value

    def applies_to(self, camera_id: str) -> bool:
        return any(fnmatch.fnmatchcase(camera_id, pattern) for pattern in self.cameras)

    def matches(self, class_name: str) -> bool:
        return self.classes == ["*"] or class_name in self.classes


class DwellRule(ObjectRule):
    """An object of the classes whose anchor stays in ``zone`` for more than ``seconds`` of
    capture time: one event per track."""

    kind: Literal["dwell"]
    zone: Polygon
    seconds: float = Field(gt=0)

    @field_validator("zone")
    @classmethod
    def _zone(cls, value: Polygon) -> Polygon | None:
        return check_polygon(value)


class LineRule(ObjectRule):
    """An object's anchor crossing the segment ``line`` (p1, p2): one event per crossing.

    Side of a point a: ``cross = (x2 - x1) * (ay - y1) - (y2 - y1) * (ax - x1)`` in pixels,
    y down. ``cross > 0`` is the right-hand side of p1 -> p2 as the image is shown (walking
    from p1 to p2 on the screen); ``direction="in"`` is a move from ``cross < 0`` to
    ``cross > 0``, ``"out"`` the reverse. For a line drawn bottom to top, left to right is in.
    """

    kind: Literal["line"]
    line: tuple[Point, Point]

    @field_validator("line")
    @classmethod
    def _distinct(cls, value: tuple[Point, Point]) -> tuple[Point, Point]:
        if value[0] == value[1]:
            raise ValueError("a line needs two distinct points")
        return value


class CountRule(ObjectRule):
    """The number of tracked objects of the classes with their anchor in ``zone`` (the whole
    frame when None) goes above ``more_than`` or below ``fewer_than`` and holds for
    ``seconds``: one event; it re-arms once the condition stops holding."""

    kind: Literal["count"]
    zone: Polygon | None = None
    more_than: int | None = Field(None, ge=0)
    fewer_than: int | None = Field(None, ge=1)
    seconds: float = Field(0.0, ge=0)

    @field_validator("zone")
    @classmethod
    def _zone(cls, value: Polygon | None) -> Polygon | None:
        return check_polygon(value)

    @model_validator(mode="after")
    def _one_threshold(self) -> Self:
        if (self.more_than is None) == (self.fewer_than is None):
            raise ValueError("a count rule needs exactly one of more_than and fewer_than")
        return self

    def holds(self, count: int) -> bool:
        if self.more_than is not None:
            return count > self.more_than
        return self.fewer_than is not None and count < self.fewer_than


class SeenRule(ObjectRule):
    """An object of the classes tracked in at least ``min_frames`` frames: one event per
    track."""

    kind: Literal["seen"]
    min_frames: int = Field(2, ge=1)


DetectRule = Annotated[DwellRule | LineRule | CountRule | SeenRule, Field(discriminator="kind")]
_RULE = TypeAdapter(DetectRule)


def parse_rule(data: object) -> DetectRule:
    """One rule from its parsed YAML/JSON form; pydantic's ValidationError when invalid."""
    return _RULE.validate_python(data)


def check_unique_names(rules: list[DetectRule]) -> list[DetectRule]:
    names = [r.name for r in rules]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"duplicate detect rule names: {', '.join(duplicates)}")
    return rules


def rules_for(camera_id: str, rules: list[DetectRule]) -> list[DetectRule]:
    """The rules that apply to the camera, in document order."""
    return [r for r in rules if r.applies_to(camera_id)]


class DetectRules(BaseModel):
    """A document's detect rules, names unique."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    rules: list[DetectRule] = Field(default_factory=list)

    @field_validator("rules")
    @classmethod
    def _unique(cls, rules: list[DetectRule]) -> list[DetectRule]:
        return check_unique_names(rules)

    @staticmethod
    def check_unique_names(rules: list[DetectRule]) -> list[DetectRule]:
        return check_unique_names(rules)

    @staticmethod
    def rules_for(camera_id: str, rules: list[DetectRule]) -> list[DetectRule]:
        return rules_for(camera_id, rules)

    def for_camera(self, camera_id: str) -> list[DetectRule]:
        return rules_for(camera_id, self.rules)
