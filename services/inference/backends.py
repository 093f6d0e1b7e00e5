"""The two ways to run the model: Triton over gRPC, and ONNX Runtime in this process."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
from tritonclient.grpc import InferInput, InferRequestedOutput
from tritonclient.grpc.aio import InferenceServerClient
from tritonclient.utils import InferenceServerException

from services.inference.logic import Backend, BackendUnavailable
from visionline.models.local import LocalModel
from visionline.models.spec import INPUT_NAME, OUTPUT_NAME


def triton_backend(url: str, model: str, version: str, timeout_s: float) -> Backend:
    clients: dict[asyncio.AbstractEventLoop, InferenceServerClient] = {}

    async def infer(batch: np.ndarray) -> tuple[np.ndarray, str]:
        # A gRPC aio channel belongs to the event loop it was made in: make it in the running one.
        loop = asyncio.get_running_loop()
        client = clients.get(loop) or clients.setdefault(loop, InferenceServerClient(url))
        image = InferInput(INPUT_NAME, list(batch.shape), "UINT8")
        image.set_data_from_numpy(batch)
        try:
            response = await client.infer(
                model,
                [image],
                model_version=version,
                outputs=[InferRequestedOutput(OUTPUT_NAME)],
                client_timeout=timeout_s,
            )
        except InferenceServerException as exc:
            raise BackendUnavailable(f"{exc.status()}: {exc.message()}") from exc
        return response.as_numpy(OUTPUT_NAME), response.get_response().model_version

    return infer


def local_backend(repository: Path, model: str, version: str, threads: int) -> Backend:
    local = LocalModel(repository, model, int(version) if version else None, threads)

    async def infer(batch: np.ndarray) -> tuple[np.ndarray, str]:
        # In a thread, so the consumer keeps heartbeating during a slow CPU batch.
        logits = await asyncio.to_thread(local.infer, batch)
        return logits, str(local.version)

    return infer
