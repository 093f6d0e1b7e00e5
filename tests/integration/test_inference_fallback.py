"""The inference worker's model: real Triton when it answers, in-process ONNX Runtime when not."""

from __future__ import annotations

import asyncio

import cv2
import numpy as np
from skimage import data as skdata

from services.inference.backends import local_backend, triton_backend
from services.inference.logic import ResilientModel
from tests.integration.pipeline import free_port
from visionline.models.local import load_labels
from visionline.models.preprocessing import resize_center_crop
from visionline.resilience import RetryPolicy
from visionline.settings import REPO_ROOT

REPOSITORY = REPO_ROOT / "triton_models"
MODEL = "efficientnet_lite0"
CATS = {"tabby", "tiger cat", "Egyptian cat"}


def chelsea_batch(n: int = 3) -> np.ndarray:
    image = resize_center_crop(skdata.chelsea(), 224)
    return np.stack([image, cv2.flip(image, 1), image][:n])


def model(triton_url: str) -> ResilientModel:
    return ResilientModel(
        MODEL,
        triton_backend(triton_url, MODEL, "", timeout_s=5.0),
        lambda: local_backend(REPOSITORY, MODEL, "", threads=1),
        RetryPolicy(attempts=2, backoff_s=0.05, probe_after_s=30.0),
    )


def top1(logits: np.ndarray) -> list[str]:
    labels = load_labels(REPOSITORY, MODEL)
    return [labels[i] for i in logits.argmax(axis=1)]


def test_triton_serves_when_up(stack):
    logits, ref = asyncio.run(model(stack.triton_grpc_url).infer(chelsea_batch()))
    assert ref.served_by == "triton" and ref.version == "1"
    assert set(top1(logits)) <= CATS


def test_falls_back_to_the_same_model_when_triton_is_unreachable():
    resilient = model(f"127.0.0.1:{free_port()}")  # nothing listens there
    logits, ref = asyncio.run(resilient.infer(chelsea_batch()))
    assert ref.served_by == "local-onnxruntime" and ref.version == "1"
    assert set(top1(logits)) <= CATS
    assert resilient.on_fallback


def test_fallback_gives_the_same_logits_as_triton(stack):
    batch = chelsea_batch()
    served, _ = asyncio.run(model(stack.triton_grpc_url).infer(batch))
    local, _ = asyncio.run(model(f"127.0.0.1:{free_port()}").infer(batch))
    assert np.abs(served - local).max() < 1e-3
