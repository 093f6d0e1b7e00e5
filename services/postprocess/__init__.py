"""Postprocess: softmax, top-k, label names and threshold; publishes predictions."""
