"""Pre-rendered loops of the simulated lines (visionline/camera/line_loops.py): the same frames
the live generator renders, cached by what shapes them, replayed on the belt's clock."""

from __future__ import annotations

import itertools
import json

import pytest

from visionline.camera.conveyor import ConveyorSource
from visionline.camera.line_loops import LineLoop, ensure_loops, loops_of_lines
from visionline.synthetic.schedule import CAMERA_MIXES

SMALL = (320, 180)
MIX = {"sensor_noise": 0.5, "occlusion": 0.8}


def _loop(**changes) -> LineLoop:
    shape = dict(camera="line-1", seed=3, fps=10.0, frames=4, nuisances=MIX, resolution=SMALL)
    return LineLoop(**{**shape, **changes})  # type: ignore[arg-type]


def test_a_loop_holds_the_frames_the_live_line_renders(tmp_path):
    loop = _loop()
    loop.render(tmp_path)
    live = ConveyorSource(SMALL, seed=3, camera="line-1", fps=10.0, nuisances=MIX)
    assert loop.load(tmp_path) == [f.data for f in itertools.islice(live, 4)]


def test_a_rendered_loop_is_kept_and_anything_that_shapes_it_is_another(tmp_path):
    loop = _loop()
    folder = loop.render(tmp_path)
    first = (folder / "000000.jpg").stat().st_mtime_ns
    told = []
    assert ensure_loops([loop], tmp_path, told.append) == [folder]
    assert told == []  # nothing to render: nothing announced
    ensure_loops([loop, _loop(seed=9)], tmp_path, told.append)
    assert [[lp.seed for lp in missing] for missing in told] == [[9]]
    assert (folder / "000000.jpg").stat().st_mtime_ns == first  # not rendered again
    others = [_loop(seed=4), _loop(fps=5.0), _loop(frames=5), _loop(nuisances={})]
    assert len({o.folder(tmp_path) for o in others} | {folder}) == 5


def test_an_interrupted_render_is_not_taken_for_a_loop(tmp_path):
    loop = _loop(frames=2)
    folder = loop.render(tmp_path)
    (folder / "complete.json").unlink()  # as if the render stopped before its end
    assert not loop.cached(tmp_path)
    with pytest.raises(FileNotFoundError):
        loop.load(tmp_path)
    loop.render(tmp_path)
    assert json.loads((folder / "complete.json").read_text())["frames"] == 2
    assert len(loop.load(tmp_path)) == 2


def test_two_loops_render_in_parallel_to_the_same_frames(tmp_path):
    loops = [_loop(camera="line-1"), _loop(camera="line-2", seed=4)]
    ensure_loops(loops, tmp_path)
    alone = tmp_path / "alone"
    assert [lp.load(tmp_path) for lp in loops] == [
        lp.render(alone) and lp.load(alone) for lp in loops
    ]


def test_a_replayed_line_wraps_around_its_loop_on_the_belts_clock():
    now = [1000.0]
    loop = [b"a", b"b", b"c"]
    source = ConveyorSource(SMALL, seed=1, realtime_fps=10, clock=lambda: now[0], loop=loop)
    frames = iter(source)
    assert next(frames).data == b"a"
    now[0] += 0.35  # frames 1 and 2 were due while the machine was busy: skipped, as live
    third = next(frames)
    assert (third.data, third.captured_at_ms) == (b"a", 1_000_300)  # index 3: the loop again
    assert next(frames).data == b"b"


def test_a_loop_needs_frames_and_has_no_truth_to_label():
    with pytest.raises(ValueError, match="loop"):
        ConveyorSource(SMALL, loop=[])
    with pytest.raises(ValueError, match="truth"):
        ConveyorSource(SMALL, loop=[b"a"], labels=object(), label_producer=object())  # type: ignore[arg-type]


def test_the_lines_loops_follow_the_live_lines_seeds_and_mixes():
    loops = loops_of_lines(["demo-line-1", "demo-line-2"], 10.0, 7, 2.5)
    assert [(lp.camera, lp.seed, lp.frames) for lp in loops] == [
        ("demo-line-1", 7, 25),
        ("demo-line-2", 8, 25),
    ]
    assert loops[1].nuisances == CAMERA_MIXES["line-2"]
