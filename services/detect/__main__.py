"""python -m services.detect: detect cameras' frames in, the objects their detectors found out
(the handlers: ``services/detect/handlers.py``)."""

from __future__ import annotations

from services.detect.handlers import DetectHandlers, TritonDetectors
from visionline.messages import Topic
from visionline.models.classifiers import model_labels
from visionline.settings import CommonSettings, DetectSettings
from visionline.worker import Worker, configure_logging


def main() -> None:
    common, settings = CommonSettings(), DetectSettings()
    configure_logging(common, "detect")
    worker = Worker("detect", common)
    detectors = TritonDetectors(common, settings)
    labels = model_labels(common.model_repository)
    detect = DetectHandlers(detectors, labels, settings, worker.model_in_use)
    # Triton down: the worker waits for it; any other error crashes it, counted against the frame.
    worker.each(Topic.DETECTION_FRAMES, Topic.DETECTIONS, detect.detect)
    worker.every(settings.snapshot_prune_s, detect.prune, "prune")
    worker.run()


if __name__ == "__main__":
    main()
