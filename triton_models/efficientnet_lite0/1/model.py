"""Triton Python-backend model: runs model.onnx (beside this file) with ONNX Runtime.

Runs in Triton's stub process, in the environment whose python3 is first on tritonserver's
PATH (.venv-triton: numpy<2 and onnxruntime). It must not import visionline.
"""

from __future__ import annotations  # the Python of older Triton containers is 3.8-3.10

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils

INPUT_NAME = "image"
OUTPUT_NAME = "logits"


class TritonPythonModel:
    def initialize(self, args: dict) -> None:
        config = json.loads(args["model_config"])
        input_config = pb_utils.get_input_config_by_name(config, INPUT_NAME)
        output_config = pb_utils.get_output_config_by_name(config, OUTPUT_NAME)
        self.input_dtype = pb_utils.triton_string_to_numpy(input_config["data_type"])
        self.output_dtype = pb_utils.triton_string_to_numpy(output_config["data_type"])
        self.input_dims = tuple(int(d) for d in input_config["dims"])

        params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(params.get("intra_op_thread_count", "0"))
        options.inter_op_num_threads = int(params.get("inter_op_thread_count", "1"))
        # model_repository is this model's folder; the version folder holds model.onnx.
        path = Path(args["model_repository"]) / args["model_version"] / "model.onnx"
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.onnx_input = self.session.get_inputs()[0].name
        self.onnx_output = self.session.get_outputs()[0].name

    def execute(self, requests: list) -> list:
        """One ONNX Runtime call for all the requests the dynamic batcher handed over."""
        responses: list = [None] * len(requests)
        batches: list[tuple[int, np.ndarray]] = []
        for i, request in enumerate(requests):
            images, error = self._read_input(request)
            if error is not None:
                responses[i] = pb_utils.InferenceResponse(error=pb_utils.TritonError(error))
            else:
                batches.append((i, images))
        if batches:
            self._run(batches, responses)
        return responses

    def _read_input(self, request) -> tuple[np.ndarray | None, str | None]:
        tensor = pb_utils.get_input_tensor_by_name(request, INPUT_NAME)
        if tensor is None:
            return None, f"missing input '{INPUT_NAME}'"
        images = tensor.as_numpy()
        if images.dtype != self.input_dtype:
            return None, f"'{INPUT_NAME}' must be {self.input_dtype.__name__}, got {images.dtype}"
        if images.ndim != len(self.input_dims) + 1 or images.shape[1:] != self.input_dims:
            dims = ", ".join(map(str, self.input_dims))
            return None, f"'{INPUT_NAME}' must be [N, {dims}], got {list(images.shape)}"
        return images, None

    def _run(self, batches: list[tuple[int, np.ndarray]], responses: list) -> None:
        try:
            images = np.concatenate([images for _, images in batches])
            (logits,) = self.session.run([self.onnx_output], {self.onnx_input: images})
        except Exception as exc:  # a bad batch must fail its requests, not the model
            for i, _ in batches:
                error = pb_utils.TritonError(f"inference failed: {exc}")
                responses[i] = pb_utils.InferenceResponse(error=error)
            return
        logits = logits.astype(self.output_dtype, copy=False)
        start = 0
        for i, images in batches:
            end = start + len(images)
            output = pb_utils.Tensor(OUTPUT_NAME, np.ascontiguousarray(logits[start:end]))
            responses[i] = pb_utils.InferenceResponse(output_tensors=[output])
            start = end

    def finalize(self) -> None:
        self.session = None
