"""The shadow run decides a line's labelled frames as the stack would: the repository's trained
models through the inspect worker's ``Inspector`` and the parts worker's tracker, scored per part
against labels. Checked against the acceptance replay, which scores the same models and tracker
against the generator's own truth by other code (``acceptance.score``)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from visionline.acceptance.replay import Observed, replay_score
from visionline.acceptance.run import plan
from visionline.inspection.config import config_for, load_inspection
from visionline.labels.truth import feedback_from_truth
from visionline.retrain.shadow import load_versions, observe_frames, shadow_run
from visionline.settings import REPO_ROOT

pytestmark = pytest.mark.integration

REPOSITORY = REPO_ROOT / "triton_models"
# 150 frames: about 47 parts, a dozen defective. At 60 (17 parts, 3 defective on seed 31) two
# false alerts took F1 to 0.75: the floor below judged three parts, not the models.
FRAMES = 150


def latest(model: str) -> int:
    return max(
        int(p.name) for p in (REPOSITORY / model).glob("[0-9]*") if (p / "model.onnx").is_file()
    )


def test_the_shadow_run_scores_a_line_as_the_inspection_replay_does() -> None:
    config = config_for(load_inspection(REPO_ROOT / "infra" / "rules.yaml"), "line-1")
    assert config is not None
    run = plan(1, 0, config.fps, seed=31)[0]
    frames = []
    for index in range(FRAMES):
        data, truth = run.render_with_truth(index)
        bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        label = feedback_from_truth(run.camera, run.frame_id(index), index / config.fps, truth)
        frames.append((cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), label))
    versions = {m: latest(m) for m in ("part_detector", "part_anomaly", "defect_detector")}
    models = load_versions(REPOSITORY, versions, threads=2)

    shadow = shadow_run(frames, models, versions, config)
    replayed = replay_score([Observed(run, observe_frames(frames, models, versions))], config)

    assert shadow["frames"] == FRAMES and shadow["versions"] == versions
    assert shadow["parts"] == replayed["parts"] > 10
    assert shadow["defective_parts"] == replayed["defective"] > 0
    assert shadow["recall"] == pytest.approx(replayed["recall"], abs=1e-3)
    assert shadow["precision"] == pytest.approx(replayed["precision"], abs=1e-3)
    assert shadow["f1"] >= 0.8  # line-1's mix, the models trained for it
