"""Drift: per-camera River detectors on quality, confidence, scores, class mix and colour."""
