"""``LineGenerator``: conveyor-camera frames with ground truth, a pure function of the frame index.

The belt moves left to right. Part ``k`` enters at a seeded time and crosses the frame in about
``frames_per_part`` frames. Each part is rendered once (texture, defects, pose) from its own
seeded streams and cached; a frame pastes the parts at their positions, then applies the
scene, geometry, lighting and camera nuisances in the order a real camera sees them.
"""

from __future__ import annotations

import functools
import math
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from visionline.camera.frames import encode_jpeg
from visionline.synthetic import nuisance as nz
from visionline.synthetic.defects import DEFECT_CLASSES, apply_defects, choose_defects
from visionline.synthetic.parts import (
    PART_KINDS,
    RAIL,
    PartSpec,
    PosedPart,
    belt_tile,
    canvas_side,
    draw_part,
    draw_rails,
    finish_edges,
    pose,
)
from visionline.synthetic.schedule import Schedule
from visionline.synthetic.truth import (
    DefectTruth,
    FrameTruth,
    PartLabel,
    PartTruth,
    RoiMask,
    tight,
)

# Independent random streams per part, so that e.g. turning defects off changes nothing else.
SPEC, DEFECT_CHOICE, TEXTURE, DEFECT_SHAPE, OCCLUDER = range(1, 6)
TINTS = ((1.0, 1.0, 1.0), (0.62, 0.88, 1.12), (1.08, 1.0, 0.9), (0.8, 0.9, 1.05))  # BGR


@dataclass
class Placed:
    """A part in one frame: its masks in frame coordinates, possibly sticking out of it."""

    part_id: int
    kind: str
    mask: RoiMask
    defects: list[tuple[str, RoiMask]]
    area: int  # its pixel count, inside the frame or not


class LineGenerator:
    def __init__(
        self,
        seed: int = 0,
        resolution: tuple[int, int] = (1280, 720),
        fps: float = 10.0,
        kinds: Sequence[str] = PART_KINDS,
        defect_rate: float = 0.3,
        defect_classes: Sequence[str] = DEFECT_CLASSES,
        schedule: Schedule | None = None,
        nuisances: Mapping[str, float] | None = None,
        camera: str = "line-1",
        frames_per_part: float = 9.0,
        parts_in_view: float = 3.0,
        jpeg_base: int = 90,
    ) -> None:
        if schedule is not None and nuisances:
            raise ValueError("give constant nuisances or a schedule, not both")
        if unknown := set(kinds) - set(PART_KINDS) or set(defect_classes) - set(DEFECT_CLASSES):
            raise ValueError(f"unknown part kinds or defect classes: {sorted(unknown)}")
        self.seed, self.resolution, self.fps, self.camera = seed, resolution, fps, camera
        self.kinds, self.defect_classes = tuple(kinds), tuple(defect_classes)
        self.defect_rate, self.jpeg_base = defect_rate, jpeg_base
        self.schedule = schedule or Schedule(dict(nuisances or {}))
        width, height = resolution
        self.rail = max(2, round(height * RAIL))
        self.max_extent = math.ceil(canvas_side(0.34 * height) * 1.42)
        self.travel = (width + self.max_extent) / frames_per_part  # belt pixels per frame
        self.spacing = frames_per_part / parts_in_view  # frames between part arrivals
        self.lead = math.ceil(frames_per_part / self.spacing) + 1  # parts already on at frame 0
        self.frames_per_part = frames_per_part
        self.profile = nz.CameraProfile.seeded(
            np.random.default_rng([seed, zlib.crc32(camera.encode())])
        )
        self._belt = belt_tile(resolution, seed)
        self._noise: np.ndarray | None = None  # made on first use, shared by all frames
        self.posed = functools.lru_cache(maxsize=64)(self._pose_part)

    # Parts ------------------------------------------------------------------------------------

    def spec(self, part_id: int) -> PartSpec:
        rng = np.random.default_rng([self.seed, part_id, SPEC])
        tint = np.array(TINTS[rng.integers(len(TINTS))]) * rng.uniform(0.95, 1.05, 3)
        return PartSpec(
            part_id=part_id,
            kind=self.kinds[rng.integers(len(self.kinds))],
            size=self.resolution[1] * rng.uniform(0.24, 0.34),
            angle=float(rng.uniform(0, 360)),
            lane=float(rng.uniform(0, 1)),
            tint=tuple(float(v) for v in tint),  # type: ignore[arg-type]
            shade=float(rng.uniform(120, 185)),
            enter_frame=(part_id - self.lead + rng.uniform(0, 0.35)) * self.spacing,
        )

    def defect_classes_of(self, part_id: int) -> list[str]:
        rng = np.random.default_rng([self.seed, part_id, DEFECT_CHOICE])
        return choose_defects(rng, self.defect_rate, self.defect_classes)

    def _pose_part(self, part_id: int, clean: bool) -> PosedPart:
        spec = self.spec(part_id)
        canvas = draw_part(spec, np.random.default_rng([self.seed, part_id, TEXTURE]))
        classes = [] if clean else self.defect_classes_of(part_id)
        outline = canvas.silhouette.copy()
        shape_rng = np.random.default_rng([self.seed, part_id, DEFECT_SHAPE])
        defects = apply_defects(canvas, classes, shape_rng)
        finish_edges(canvas)
        return pose(canvas, spec.angle, [(c, m) for c, m in defects if m.any()], outline)

    def position(self, part_id: int, index: int) -> tuple[int, int]:
        """Top-left corner of the posed part in frame ``index``."""
        spec, posed = self.spec(part_id), self.posed(part_id, True)
        h, w = posed.mask.shape
        x = round(-w + (index - spec.enter_frame) * self.travel)
        belt_h = self.resolution[1] - 2 * self.rail
        return x, round(self.rail + spec.lane * max(0, belt_h - h))

    def in_frame(self, part_id: int, index: int) -> bool:
        """Whether some pixel of the part (as defects left it) is inside the frame."""
        x, y = self.position(part_id, index)
        return RoiMask(x, y, self.posed(part_id, False).mask).clip(self.resolution) is not None

    def candidates(self, index: int) -> range:
        """Part ids that may overlap frame ``index`` (a superset)."""
        low = math.floor((index - self.frames_per_part - 1) / self.spacing) + self.lead - 1
        return range(max(0, low), math.floor(index / self.spacing) + self.lead + 2)

    def visible_parts(self, index: int) -> list[int]:
        return [k for k in self.candidates(index) if self.in_frame(k, index)]

    def part_truth(self, stop: int, start: int = 0) -> list[PartLabel]:
        """The decision per physical part seen in frames ``[start, stop)``."""
        seen: dict[int, list[int]] = {}
        for index in range(start, stop):
            for part_id in self.visible_parts(index):
                seen.setdefault(part_id, []).append(index)
        labels = []
        for part_id, frames in sorted(seen.items()):
            classes = [c for c, _ in self.posed(part_id, False).defects]
            labels.append(
                PartLabel(
                    part_id=part_id,
                    kind=self.spec(part_id).kind,
                    defective=bool(classes),
                    classes=classes,  # type: ignore[arg-type]
                    first_frame=frames[0],
                    last_frame=frames[-1],
                )
            )
        return labels

    # Frames -----------------------------------------------------------------------------------

    def strengths(self, index: int) -> dict[str, float]:
        return self.schedule.strengths_at(index / self.fps, self.camera)

    def frame(self, index: int, clean: bool = False) -> tuple[np.ndarray, FrameTruth]:
        """Frame ``index`` (BGR uint8) and its truth; ``clean`` renders every part defect-free."""
        strengths = self.strengths(index)
        image = self._belt_at(index)
        placed = [self._paste(image, k, index, clean) for k in self.visible_parts(index)]
        occluder = self._occlude(image, [p.part_id for p in placed], index, strengths["occlusion"])
        draw_rails(image)
        image = nz.motion_blur(image, strengths["motion_blur"], self.travel)
        if strengths["perspective"] > 0:
            matrix = nz.perspective(self.resolution, strengths["perspective"], self.profile)
            image = nz.warp(image, matrix)
            placed = [self._warp_placed(p, matrix) for p in placed]
            occluder = None if occluder is None else nz.warp(occluder, matrix, nearest=True)
        image = self._light_and_camera(image, strengths, index)
        return image, self._truth(index, strengths, placed, occluder)

    def encode(self, index: int) -> tuple[bytes, FrameTruth]:
        """Frame ``index`` as JPEG at the quality its schedule gives, and its truth."""
        image, truth = self.frame(index)
        return encode_jpeg(image, truth.jpeg_quality), truth

    def _belt_at(self, index: int) -> np.ndarray:
        shift = round(index * self.travel) % self.resolution[0]
        return np.roll(self._belt, shift, axis=1)

    def _paste(self, image: np.ndarray, part_id: int, index: int, clean: bool) -> Placed:
        posed = self.posed(part_id, clean)
        x, y = self.position(part_id, index)
        mask = RoiMask(x, y, posed.mask)
        clipped = RoiMask(x, y, posed.alpha).clip(self.resolution)
        if clipped is not None:  # alpha-blend the part over the belt, inside the frame only
            h, w = clipped.array.shape
            dx, dy = clipped.x0 - x, clipped.y0 - y
            roi = image[clipped.y0 : clipped.y0 + h, clipped.x0 : clipped.x0 + w]
            alpha = posed.alpha[dy : dy + h, dx : dx + w, None]
            src = posed.image[dy : dy + h, dx : dx + w]
            roi[:] = (src * alpha + roi * (1 - alpha)).astype(np.uint8)
        defects = [(cls, RoiMask(x, y, m)) for cls, m in posed.defects]
        kind = self.spec(part_id).kind
        return Placed(part_id, kind, mask, defects, int(posed.mask.sum()))

    def _occlude(
        self, image: np.ndarray, part_ids: list[int], index: int, strength: float
    ) -> np.ndarray | None:
        """Foreign objects lying on some parts (more parts as strength grows); their mask."""
        occluder = np.zeros(image.shape[:2], np.uint8)
        for part_id in part_ids:
            rng = np.random.default_rng([self.seed, part_id, OCCLUDER])
            if rng.random() >= 0.6 * strength:
                continue
            posed, (x, y) = self.posed(part_id, True), self.position(part_id, index)
            h, w = posed.mask.shape
            points, colour = nz.foreign_object(rng, min(h, w))
            centre = np.array([x + w * rng.uniform(0.2, 0.8), y + h * rng.uniform(0.2, 0.8)])
            polygon = np.round(points + centre).astype(np.int32)
            cv2.fillPoly(image, [polygon], colour, cv2.LINE_AA)
            cv2.fillPoly(occluder, [polygon], 1)
        return occluder if occluder.any() else None

    def _warp_placed(self, placed: Placed, matrix: np.ndarray) -> Placed:
        def move(mask: RoiMask) -> RoiMask:
            full = nz.warp(mask.full(self.resolution).astype(np.uint8), matrix, nearest=True)
            return tight(full.astype(bool)) or RoiMask(0, 0, np.zeros((0, 0), bool))

        defects = [(cls, move(m)) for cls, m in placed.defects]
        return Placed(placed.part_id, placed.kind, move(placed.mask), defects, placed.area)

    def _light_and_camera(self, image: np.ndarray, s: dict[str, float], index: int) -> np.ndarray:
        p, out = self.profile, image.astype(np.float32)
        out = nz.lighting(out, s, p, index / self.fps)
        out = nz.veiling_glare(out, s.get("glare", 0.0))
        out = nz.resolution(out, s["resolution"])
        out = nz.lens_blur(out, s["lens_blur"])
        noise_rng = np.random.default_rng([self.seed, zlib.crc32(self.camera.encode()), index])
        if s["sensor_noise"] > 0:  # (sensor_noise leaves the image as it is otherwise)
            if self._noise is None:
                self._noise = nz.noise_field(out.shape, self.seed)
            out = nz.sensor_noise(out, s["sensor_noise"], self._noise, noise_rng)
        return np.clip(out, 0, 255).astype(np.uint8)

    # Truth ------------------------------------------------------------------------------------

    def _truth(
        self, index: int, s: dict[str, float], placed: list[Placed], occluder: np.ndarray | None
    ) -> FrameTruth:
        parts = [t for p in placed if (t := self._part_truth(p, occluder)) is not None]
        return FrameTruth(
            frame_index=index,
            t_s=index / self.fps,
            seed=self.seed,
            camera=self.camera,
            resolution=self.resolution,
            strengths=s,
            jpeg_quality=nz.jpeg_quality(s["jpeg"], self.jpeg_base),
            parts=parts,
        )

    def _part_truth(self, placed: Placed, occluder: np.ndarray | None) -> PartTruth | None:
        mask = placed.mask.clip(self.resolution)
        if mask is None:
            return None
        defects = []
        for cls, roi in placed.defects:
            if (clipped := roi.clip(self.resolution)) is not None:
                defects.append(
                    DefectTruth(
                        defect_class=cls,
                        box=clipped.box,
                        mask=clipped.rle(),  # type: ignore[arg-type]
                        occluded_fraction=_occluded(clipped, occluder),
                    )
                )
        return PartTruth(
            part_id=placed.part_id,
            kind=placed.kind,
            box=mask.box,
            mask=mask.rle(),
            visible_fraction=round(min(1.0, int(mask.array.sum()) / max(1, placed.area)), 4),
            occluded_fraction=_occluded(mask, occluder),
            defective=bool(placed.defects),
            defects=defects,
        )


def _occluded(mask: RoiMask, occluder: np.ndarray | None) -> float:
    if occluder is None:
        return 0.0
    x0, y0, x1, y1 = mask.box
    hidden = occluder[y0:y1, x0:x1].astype(bool) & mask.array
    return round(float(hidden.sum()) / max(1, int(mask.array.sum())), 4)
