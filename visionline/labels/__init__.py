"""True labels of frames, arriving late on ``visionline.labels.feedback``, joined to what the
models predicted: accuracy per camera, model version and kind of decision.

``truth`` turns the line generator's ground truth into a ``LabelFeedback``; ``delayed`` holds
labels back like real ones (``visionline camera lines --labels-delay``); ``join`` matches a
frame's observed parts (or a tracked part's verdict) to its labelled parts, pure functions;
``store`` keeps labels, predictions and outcomes in PostgreSQL (idempotent) and answers the
accuracy and dataset queries. The worker is ``services/labels``.
"""

from visionline.labels.store import (
    accuracy,
    labelled_cameras,
    labelled_frames,
    labels_for_frames,
)

__all__ = ["accuracy", "labelled_cameras", "labelled_frames", "labels_for_frames"]
