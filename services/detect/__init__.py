"""The detect worker: detect cameras ' frames through their detectors on Triton."""
