"""The two ways to run the model: Triton over gRPC, and ONNX Runtime in this process."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from tritonclient.grpc import InferInput, InferRequestedOutput
from tritonclient.grpc.aio import InferenceServerClient
from tritonclient.utils import InferenceServerException, np_to_triton_dtype

from services.inference.logic import Backend
from visionline.models.local import LocalModel
from visionline.models.spec import INPUT_NAME, OUTPUT_NAME
from visionline.resilience import BackendUnavailable


def loop_client(url: str) -> Callable[[], InferenceServerClient]:
    """A Triton gRPC aio client for the running event loop (a channel belongs to the loop it
    was made in), made once per loop."""
    clients: dict[asyncio.AbstractEventLoop, InferenceServerClient] = {}

    def client() -> InferenceServerClient:
        loop = asyncio.get_running_loop()
        return clients.get(loop) or clients.setdefault(loop, InferenceServerClient(url))

    return client


async def triton_infer(
    client: InferenceServerClient,
    model: str,
    version: str,
    inputs: dict[str, np.ndarray],
    outputs: Sequence[str],
    timeout_s: float,
) -> tuple[dict[str, np.ndarray], str]:
    """One request: named outputs and the version that served it; BackendUnavailable on any
    Triton error (down, restarting, overloaded, model not loaded, timeout)."""
    tensors = []
    for name, array in inputs.items():
        tensor = InferInput(name, list(array.shape), np_to_triton_dtype(array.dtype))
        tensor.set_data_from_numpy(array)
        tensors.append(tensor)
    try:
        response = await client.infer(
            model,
            tensors,
            model_version=version,
            outputs=[InferRequestedOutput(name) for name in outputs],
            client_timeout=timeout_s,
        )
    except InferenceServerException as exc:
        raise BackendUnavailable(f"{model}: {exc.status()}: {exc.message()}") from exc
    found = {name: response.as_numpy(name) for name in outputs}
    return found, response.get_response().model_version


def triton_backend(url: str, model: str, version: str, timeout_s: float) -> Backend:
    client = loop_client(url)

    async def infer(batch: np.ndarray) -> tuple[np.ndarray, str]:
        found, served = await triton_infer(
            client(), model, version, {INPUT_NAME: batch}, [OUTPUT_NAME], timeout_s
        )
        return found[OUTPUT_NAME], served

    return infer


def local_backend(repository: Path, model: str, version: str, threads: int) -> Backend:
    local = LocalModel(repository, model, int(version) if version else None, threads)

    async def infer(batch: np.ndarray) -> tuple[np.ndarray, str]:
        # In a thread, so the consumer keeps heartbeating during a slow CPU batch.
        logits = await asyncio.to_thread(local.infer, batch)
        return logits, str(local.version)

    return infer
