"""Per-camera inspection settings: the ``inspection:`` list of ``infra/rules.yaml``.

Each entry names cameras (ids or glob patterns; the first entry that matches a camera wins) and
gives how its parts are tracked (belt speed, inspection zone, exit line, frames), when a part is
rejected (defect thresholds) and how a rejected part alerts (rule name, severity).

Belt speed is in pixels per second of capture time (``belt_px_per_s``), so a dropped frame does
not break tracking. ``belt_px_per_frame`` is accepted instead and multiplied by ``fps``: the
synthetic line (``LineGenerator`` at 1280x720, ``frames_per_part=9``) moves its parts
``LineGenerator(...).travel`` = 184.9 px per frame, whatever rate the simulated camera pushes at,
so its belt speed in px/s is that times the camera's fps.
"""

from __future__ import annotations

import fnmatch
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from visionline.rule_names import RuleName

if TYPE_CHECKING:  # the rules worker reads this file too, without the tracking stack
    from visionline.inspection.tracking import DecisionRules, TrackerConfig


class InspectionConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: RuleName = "part-defect"  # the alert rule name: alert id = "<decision id>:<name>"
    cameras: list[str] = Field(min_length=1)  # ids or glob patterns
    fps: float = Field(10.0, gt=0)  # the camera's nominal frame rate (ByteTrack's clock)
    belt_px_per_s: float | None = Field(None, ge=0)
    belt_px_per_frame: float | None = Field(None, ge=0)  # alternative: times fps
    zone: list[tuple[float, float]] | None = None  # inspection polygon in pixels; None: frame
    line_x: float = Field(0.8, gt=0, lt=1)  # exit line, as a fraction of the width
    # A part whose box comes this close to the frame's edge (a fraction of the width or height)
    # is only partly in view: the frame counts toward min_frames, its scores are judged only
    # when the part is never seen whole. 0: every frame is judged.
    edge_margin: float = Field(0.01, ge=0, lt=0.5)
    min_frames: int = Field(3, ge=1)  # frames in the zone before a part is decided
    lost_frames: int = Field(2, ge=0)  # frames a track may be missed before it is decided
    min_score: float = Field(0.5, ge=0, le=1)  # of a defect, to count
    min_area: float = Field(0.0, ge=0)  # pixels, of a defect, to count
    classes: list[str] | None = None  # defect classes that reject; None: all
    # A part is rejected when either rule that is on (not null) holds; see DecisionRules.
    min_defect_frames: int | None = Field(1, ge=1)  # frames with a counting defect
    min_mean_score: float | None = Field(None, gt=0, le=1)  # a class's peak, averaged over frames
    alert: bool = True  # raise an alert for each rejected part
    severity: Literal["info", "warning", "critical"] = "warning"

    @field_validator("zone")
    @classmethod
    def _polygon(cls, value: list[tuple[float, float]] | None):
        if value is not None and len(value) < 3:
            raise ValueError("zone needs at least 3 points")
        return value

    @model_validator(mode="after")
    def _one_speed(self) -> InspectionConfig:
        if (self.belt_px_per_s is None) == (self.belt_px_per_frame is None):
            raise ValueError("give exactly one of belt_px_per_s and belt_px_per_frame")
        return self

    @model_validator(mode="after")
    def _some_rule(self) -> InspectionConfig:
        if self.min_defect_frames is None and self.min_mean_score is None:
            raise ValueError("no part could be rejected: set min_defect_frames or min_mean_score")
        return self

    @property
    def speed_px_per_s(self) -> float:
        if self.belt_px_per_s is not None:
            return self.belt_px_per_s
        return (self.belt_px_per_frame or 0.0) * self.fps

    def applies_to(self, camera_id: str) -> bool:
        return any(fnmatch.fnmatchcase(camera_id, pattern) for pattern in self.cameras)

    def tracker_config(self) -> TrackerConfig:
        # The tracker imports supervision (seconds): the API and rules worker read this file only.
        from visionline.inspection.tracking import TrackerConfig

        return TrackerConfig(
            fps=self.fps,
            lost_frames=self.lost_frames,
            belt_px_per_frame=self.speed_px_per_s / self.fps,  # used only without capture times
            line_x=self.line_x,
            zone=self.zone,
            edge_margin=self.edge_margin,
        )

    def decision_rules(self) -> DecisionRules:
        from visionline.inspection.tracking import DecisionRules

        return DecisionRules(
            min_score=self.min_score,
            min_area=self.min_area,
            classes=self.classes,
            min_frames=self.min_frames,
            min_defect_frames=self.min_defect_frames,
            min_mean_score=self.min_mean_score,
        )


def check_unique_names(configs: list[InspectionConfig]) -> list[InspectionConfig]:
    names = [c.name for c in configs]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"duplicate inspection names: {', '.join(duplicates)}")
    return configs


def parse_inspection(document: dict | None) -> list[InspectionConfig]:
    """The ``inspection:`` list of a parsed rules file (other keys are the rules worker's)."""
    entries = (document or {}).get("inspection") or []
    if not isinstance(entries, list):
        raise ValueError("inspection: must be a list")
    return check_unique_names([InspectionConfig.model_validate(e) for e in entries])


def load_inspection(path: Path) -> list[InspectionConfig]:
    return parse_inspection(yaml.safe_load(path.read_text()))


def config_for(configs: list[InspectionConfig], camera_id: str) -> InspectionConfig | None:
    """The first entry that names the camera, if any."""
    return next((c for c in configs if c.applies_to(camera_id)), None)
