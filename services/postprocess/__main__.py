"""python -m services.postprocess: logits in, public JSON predictions out (the handler:
``services/postprocess/handlers.py``)."""

from __future__ import annotations

from services.postprocess.handlers import PostprocessHandlers
from visionline.messages import Topic
from visionline.models.classifiers import model_labels
from visionline.settings import CommonSettings, PostprocessSettings
from visionline.worker import Worker, configure_logging


def main() -> None:
    common, settings = CommonSettings(), PostprocessSettings()
    configure_logging(common, "postprocess")
    labels = model_labels(common.model_repository)
    labels(common.model_name, "")  # the default model's labels, checked at start
    postprocess = PostprocessHandlers(settings, labels)
    worker = Worker("postprocess", common)
    worker.each(Topic.INFERENCE, Topic.PREDICTIONS, postprocess.handle)
    worker.run()


if __name__ == "__main__":
    main()
