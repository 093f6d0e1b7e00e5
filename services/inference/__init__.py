"""Inference: micro-batches tensors to Triton over gRPC; falls back to in-process ONNX Runtime."""
