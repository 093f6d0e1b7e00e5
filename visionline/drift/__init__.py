"""Drift detection: per-camera River detectors on input statistics and model outputs.

``signals`` takes a frame's values from a ``Prediction`` or ``PartObservations``; ``detectors``
says which River detector watches which signal (``infra/drift.yaml``); ``tracker`` holds one
signal's reference window, detector and confirmation policy; ``bank`` holds a camera's trackers
and checkpoints them (the restart guarantee is in its docstring); ``store`` writes PostgreSQL.
The worker is ``services/drift``.
"""
