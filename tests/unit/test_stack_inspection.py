import logging
import sys

import pytest

from visionline.stack.components import _triton_options
from visionline.stack.config import INSPECTION_MODELS, default_workers, free_port_settings
from visionline.stack.state import StatePaths
from visionline.stack.triton import model_built, served_models


def model(repository, name, files=("model.py", "model.onnx"), version="1"):
    folder = repository / name
    (folder / version).mkdir(parents=True)
    (folder / "config.pbtxt").write_text(f'name: "{name}"\n')
    for file in files:
        (folder / version / file).write_bytes(b"x")
    return folder


def test_a_model_is_built_once_its_newest_version_has_its_onnx(tmp_path):
    assert model_built(model(tmp_path, "a"))
    assert not model_built(model(tmp_path, "b", files=("model.py",)))  # export pending
    assert not model_built(tmp_path / "missing")
    folder = model(tmp_path, "c")
    (folder / "2").mkdir()
    assert not model_built(folder)  # version 2 is being written


def test_triton_loads_the_inspection_models_that_are_built(tmp_path, caplog):
    repository = tmp_path / "models"
    model(repository, "efficientnet_lite0")
    model(repository, "part_detector")
    model(repository, "part_anomaly", files=("model.py",))
    s = free_port_settings(tmp_path, model_repository=repository)
    with caplog.at_level(logging.WARNING):
        assert served_models(s) == ["efficientnet_lite0", "part_detector"]
    assert "part_anomaly is not built" in caplog.text
    assert "defect_detector is not built" in caplog.text
    options = _triton_options(s, StatePaths(tmp_path))
    loads = [o for o in options if o.startswith("--load-model=")]
    assert loads == ["--load-model=efficientnet_lite0", "--load-model=part_detector"]


def test_all_three_load_once_built(tmp_path):
    repository = tmp_path / "models"
    for name in ("efficientnet_lite0", *INSPECTION_MODELS):
        model(repository, name)
    s = free_port_settings(tmp_path, model_repository=repository)
    assert served_models(s) == ["efficientnet_lite0", *INSPECTION_MODELS]


def test_inspect_and_parts_workers_run_with_the_pipeline(tmp_path):
    s = free_port_settings(tmp_path, inspect_replicas=2)
    workers = {w.name: w for w in default_workers(s)}
    assert workers["inspect"].argv == (sys.executable, "-m", "services.inspect")
    assert workers["parts"].argv == (sys.executable, "-m", "services.parts")
    assert workers["inspect"].replicas == 2
    snapshots = workers["inspect"].env["VISIONLINE_INSPECT_SNAPSHOT_DIR"]
    assert snapshots == str(tmp_path.absolute() / "snapshots")


def test_conveyor_lines_run_as_a_camera_process_only_when_asked(tmp_path):
    assert "lines" not in {w.name for w in default_workers(free_port_settings(tmp_path))}
    s = free_port_settings(tmp_path, line_cameras=2, line_fps=10)
    lines = {w.name: w for w in default_workers(s)}["lines"]
    expected = ("-m", "visionline.camera", "lines", "--count", "2", "--fps", "10.0")
    assert lines.argv[1:] == (*expected, "--prefix", "line")
    assert lines.stage == 1
    demo = free_port_settings(tmp_path, line_cameras=1, line_fps=5, line_prefix="demo-line")
    argv = {w.name: w for w in default_workers(demo)}["lines"].argv
    assert argv[-4:] == ("--fps", "5.0", "--prefix", "demo-line")
    replayed = free_port_settings(tmp_path, line_cameras=2, line_loop_s=65)
    argv = {w.name: w for w in default_workers(replayed)}["lines"].argv
    assert argv[-2:] == ("--loop-s", "65.0")
    with pytest.raises(ValueError, match="line_prefix"):
        free_port_settings(tmp_path, line_prefix="Line 1")
