"""The inspection models on Triton over gRPC (no in-process fallback: a frame waits instead)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from tritonclient.utils import InferenceServerException

from services.inference.backends import loop_client, triton_infer
from visionline.inspection.inspector import Infer, ServedVersion
from visionline.inspection.vision import PART_CROPS
from visionline.resilience import BackendUnavailable


def triton_models(url: str, version: str, timeout_s: float) -> tuple[Infer, ServedVersion]:
    """``infer`` for any of the models, and the version Triton serves of one (``version``
    when one is pinned, else the newest it has loaded)."""
    client = loop_client(url)

    async def infer(
        model: str, input_name: str, batch: np.ndarray, outputs: Sequence[str]
    ) -> tuple[dict[str, np.ndarray], str]:
        # part_crops has its own version numbers; a pinned version is the crop models'.
        pinned = "" if model == PART_CROPS else version
        return await triton_infer(client(), model, pinned, {input_name: batch}, outputs, timeout_s)

    async def served_version(model: str) -> str:
        if version:
            return version
        try:
            metadata = await client().get_model_metadata(model, client_timeout=timeout_s)
        except InferenceServerException as exc:
            raise BackendUnavailable(f"{model}: {exc.status()}: {exc.message()}") from exc
        if not metadata.versions:
            raise BackendUnavailable(f"{model}: no version loaded")
        return max(metadata.versions, key=int)

    return infer, served_version
