"""Write a generator's frames and ground truth to a folder.

Layout (frame numbers zero-padded to 6 digits)::

    out_dir/
      meta.json               generator settings: seed, camera, resolution, fps, frames
      parts.json              one PartLabel per physical part seen (the per-part decision)
      frames/000000.jpg       the frame, JPEG at the quality in its truth file
      truth/000000.json       its FrameTruth: parts, boxes, defects with RLE masks, strengths

Boxes are ``[x0, y0, x1, y1]`` in pixels, end exclusive; masks are row-major run lengths over
their box, starting with a run of zeros (``RleMask.decode``).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from visionline.synthetic.generator import LineGenerator
from visionline.synthetic.truth import FrameTruth, PartLabel


def write_dataset(generator: LineGenerator, out_dir: Path, frames: int | Iterable[int]) -> int:
    """Write ``frames`` (a count from 0, or indices); returns how many were written."""
    indices = list(range(frames) if isinstance(frames, int) else frames)
    (out_dir / "frames").mkdir(parents=True, exist_ok=True)
    (out_dir / "truth").mkdir(exist_ok=True)
    for index in indices:
        data, truth = generator.encode(index)
        (out_dir / "frames" / f"{index:06d}.jpg").write_bytes(data)
        (out_dir / "truth" / f"{index:06d}.json").write_text(truth.model_dump_json())
    labels = generator.part_truth(max(indices) + 1, min(indices)) if indices else []
    parts = [label.model_dump(mode="json") for label in labels]
    (out_dir / "parts.json").write_text(json.dumps(parts, indent=1))
    (out_dir / "meta.json").write_text(json.dumps(_meta(generator, len(indices)), indent=1))
    return len(indices)


def _meta(generator: LineGenerator, count: int) -> dict[str, object]:
    return {
        "seed": generator.seed,
        "camera": generator.camera,
        "resolution": list(generator.resolution),
        "fps": generator.fps,
        "frames": count,
        "defect_rate": generator.defect_rate,
    }


def read_truth(out_dir: Path, index: int) -> FrameTruth:
    return FrameTruth.model_validate_json((out_dir / "truth" / f"{index:06d}.json").read_text())


def read_parts(out_dir: Path) -> list[PartLabel]:
    return [PartLabel.model_validate(p) for p in json.loads((out_dir / "parts.json").read_text())]
