"""Triton Python-backend model: runs the model.onnx beside it with ONNX Runtime.

Generic over inputs and outputs: names, types and dims come from config.pbtxt and match the
ONNX graph's. `visionline models build` and `visionline train` copy this file into each version
folder as model.py. It runs in Triton's stub process (.venv-triton, numpy<2) and must not import
visionline.
"""

from __future__ import annotations  # the Python of older Triton containers is 3.8-3.10

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args: dict) -> None:
        config = json.loads(args["model_config"])
        self.inputs = [
            (
                i["name"],
                pb_utils.triton_string_to_numpy(i["data_type"]),
                tuple(int(d) for d in i["dims"]),
            )
            for i in config["input"]
        ]
        self.outputs = [
            (o["name"], pb_utils.triton_string_to_numpy(o["data_type"])) for o in config["output"]
        ]
        params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(params.get("intra_op_thread_count", "0"))
        options.inter_op_num_threads = int(params.get("inter_op_thread_count", "1"))
        path = Path(args["model_repository"]) / args["model_version"] / "model.onnx"
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def execute(self, requests: list) -> list:
        """One ONNX Runtime call for all the requests the dynamic batcher handed over."""
        responses: list = [None] * len(requests)
        good: list[tuple[int, dict]] = []
        for i, request in enumerate(requests):
            feeds, error = self._read(request)
            if feeds is None:  # then there is an error
                responses[i] = pb_utils.InferenceResponse(error=pb_utils.TritonError(error))
            else:
                good.append((i, feeds))
        if not good:
            return responses
        try:
            feeds = {name: np.concatenate([f[name] for _, f in good]) for name, _, _ in self.inputs}
            results = self.session.run([name for name, _ in self.outputs], feeds)
        except Exception as exc:  # a bad batch must fail its requests, not the model
            for i, _ in good:
                error = pb_utils.TritonError(f"inference failed: {exc}")
                responses[i] = pb_utils.InferenceResponse(error=error)
            return responses
        start = 0
        for i, f in good:
            end = start + len(next(iter(f.values())))
            tensors = [
                pb_utils.Tensor(name, np.ascontiguousarray(r[start:end].astype(dtype)))
                # no strict=: the Python of older Triton containers is 3.8
                for (name, dtype), r in zip(self.outputs, results)  # noqa: B905
            ]
            responses[i] = pb_utils.InferenceResponse(output_tensors=tensors)
            start = end
        return responses

    def _read(self, request) -> tuple[dict | None, str | None]:
        feeds = {}
        for name, dtype, dims in self.inputs:
            tensor = pb_utils.get_input_tensor_by_name(request, name)
            if tensor is None:
                return None, f"missing input '{name}'"
            array = tensor.as_numpy()
            if array.dtype != dtype:
                return None, f"'{name}' must be {dtype.__name__}, got {array.dtype}"
            if array.shape[1:] != dims:
                return (
                    None,
                    f"'{name}' must be [N, {', '.join(map(str, dims))}], got {list(array.shape)}",
                )
            feeds[name] = array
        return feeds, None

    def finalize(self) -> None:
        self.session = None
