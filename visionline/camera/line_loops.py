"""Pre-rendered loops of the simulated conveyor lines' frames (``visionline camera lines
--loop-s``, and the demo).

The line generator costs about 32 ms of CPU per 1280x720 frame: two 10-fps lines rendered live
take a third of a 2-core machine, a cost a real camera never puts on the pipeline's machine, and
the simulator then falls behind (it skips late frames: 4 frames/s a line instead of 10). A loop
renders each line's first frames once, caches them on disk keyed by everything that shapes them
(the generator's source included), and the line replays them on the wall clock with fresh
capture times and ids. A part in view when the loop wraps is cut short there, as by a camera
restart: a loop a little longer than a run never wraps.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

from visionline.settings import REPO_ROOT

LOOP_CACHE = REPO_ROOT / ".state" / "line-frames"
_COMPLETE = "complete.json"  # written last: a folder without it is an interrupted render


@functools.cache  # every key asks; the source does not change under a running process
def generator_digest() -> str:
    """The sha256 of the line generator's source: other code, other frames."""
    import visionline.synthetic as synthetic

    digest = hashlib.sha256()
    for path in sorted(Path(synthetic.__file__).parent.glob("*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


@dataclass(frozen=True)
class LineLoop:
    """The first ``frames`` frames of one simulated line, as ``ConveyorSource`` renders them."""

    camera: str
    seed: int
    fps: float
    frames: int
    nuisances: dict[str, float] = field(default_factory=dict)
    resolution: tuple[int, int] = (1280, 720)
    jpeg_quality: int = 90

    def __post_init__(self) -> None:
        if self.frames < 1:
            raise ValueError(f"a loop needs at least one frame, not {self.frames}")

    def key(self) -> str:
        shape = {**asdict(self), "generator": generator_digest()}
        return hashlib.sha256(json.dumps(shape, sort_keys=True).encode()).hexdigest()[:16]

    def folder(self, cache: Path) -> Path:
        return cache / f"{self.camera}-{self.key()}"

    def cached(self, cache: Path) -> bool:
        return (self.folder(cache) / _COMPLETE).is_file()

    def render(self, cache: Path) -> Path:
        """Render the loop into the cache unless it is there; its folder."""
        from visionline.synthetic.generator import LineGenerator

        target = self.folder(cache)
        if self.cached(cache):
            return target
        cache.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(dir=cache, prefix=f".{self.camera}-"))
        try:
            generator = LineGenerator(
                self.seed,
                self.resolution,
                jpeg_base=self.jpeg_quality,
                camera=self.camera,
                fps=self.fps,
                nuisances=self.nuisances,
            )
            for index in range(self.frames):
                (work / f"{index:06d}.jpg").write_bytes(generator.encode(index)[0])
            (work / _COMPLETE).write_text(json.dumps(asdict(self)))
            shutil.rmtree(target, ignore_errors=True)  # an interrupted render's leftovers
            os.replace(work, target)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        return target

    def load(self, cache: Path) -> list[bytes]:
        """The loop's JPEG frames, in order; FileNotFoundError when it is not rendered."""
        folder = self.folder(cache)
        if not self.cached(cache):
            raise FileNotFoundError(f"{folder}: loop not rendered")
        return [(folder / f"{index:06d}.jpg").read_bytes() for index in range(self.frames)]


def loops_of_lines(ids: list[str], fps: float, seed: int, loop_s: float) -> list[LineLoop]:
    """The loops of ``visionline camera lines --loop-s``: the k-th line's seed and nuisance mix
    as ``ConveyorSource`` renders it live (``camera/cli.py``)."""
    from visionline.synthetic.schedule import CAMERA_MIXES

    frames = max(1, round(loop_s * fps))
    return [
        LineLoop(cid, seed + k, fps, frames, dict(CAMERA_MIXES.get(f"line-{k + 1}", {})))
        for k, cid in enumerate(ids)
    ]


def ensure_loops(
    loops: list[LineLoop],
    cache: Path = LOOP_CACHE,
    announce: Callable[[list[LineLoop]], None] | None = None,
) -> list[Path]:
    """Each loop rendered (those not cached yet in parallel, one process per line, told to
    ``announce`` first); their folders."""
    missing = [loop for loop in loops if not loop.cached(cache)]
    if missing and announce is not None:
        announce(missing)
    if len(missing) > 1:
        with ProcessPoolExecutor(max_workers=min(len(missing), os.cpu_count() or 1)) as pool:
            list(pool.map(_render, missing, [cache] * len(missing)))
    return [loop.render(cache) for loop in loops]


def _render(loop: LineLoop, cache: Path) -> Path:
    return loop.render(cache)
