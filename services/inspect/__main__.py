"""python -m services.inspect: inspection frames in, parts and their defects out."""

from __future__ import annotations

import asyncio

import cv2

from services.inspect.backends import triton_models
from services.inspect.logic import decode_frame, observations, store_snapshot
from visionline.imaging import FrameRejected
from visionline.inspection.inspector import Inspector
from visionline.inspection.samples import SampleStore, reasons_for
from visionline.inspection.sampling import LabelSampler, LabelSampling
from visionline.inspection.snapshots import SnapshotStore
from visionline.messages import FrameMeta, Topic, to_json
from visionline.resilience import RetryPolicy
from visionline.settings import CommonSettings, InspectSettings
from visionline.worker import Worker, configure_logging, decode_message


def build_inspector(common: CommonSettings, settings: InspectSettings) -> Inspector:
    infer, served_version = triton_models(
        common.triton_grpc_url, settings.model_version, settings.triton_timeout_s
    )
    return Inspector(
        infer,
        served_version,
        RetryPolicy(settings.retry_attempts, settings.retry_backoff_s),
        min_part_score=settings.min_part_score,
        max_parts=settings.max_parts,
        max_crop_batch=settings.max_crop_batch,
    )


def main() -> None:
    common, settings = CommonSettings(), InspectSettings()
    configure_logging(common, "inspect")
    inspector = build_inspector(common, settings)
    store = SnapshotStore(
        settings.snapshot_dir, settings.snapshot_max_age_s, settings.snapshot_max_bytes
    )
    samples = SampleStore(settings.sample_dir, settings.sample_max_age_s, settings.sample_max_bytes)
    sampler = LabelSampler(
        LabelSampling(max_per_camera_per_minute=settings.samples_per_camera_per_minute)
    )
    worker = Worker("inspect", common)

    def keep_sample(message, jpeg: bytes) -> None:
        reasons = reasons_for(message, sampler, settings.snapshot_threshold)
        if not reasons:
            return
        try:
            samples.keep(message, jpeg, reasons)
        except OSError as exc:  # as for snapshots: the line goes on without the sample
            worker.log.error("sample %s not kept: %s", message.frame.frame_id, exc)

    def snapshot(meta, bgr, parts) -> str | None:
        try:
            return store_snapshot(
                store, meta, bgr, parts, settings.snapshot_threshold, settings.snapshot_jpeg_quality
            )
        except OSError as exc:  # a full disk must not stop the line: publish without evidence
            worker.log.error("snapshot of %s/%s not stored: %s", meta.camera_id, meta.frame_id, exc)
            return None

    async def inspect(event) -> tuple[bytes, bytes]:
        meta, image = decode_message(event.message.value, FrameMeta)
        try:
            bgr, quality = decode_frame(meta, bytes(image))
        except FrameRejected as rejected:
            raise rejected.of(meta) from None
        parts, models = await inspector.inspect(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
        ref = await asyncio.to_thread(snapshot, meta, bgr, parts)
        worker.model_in_use(*models)
        message = observations(meta, quality, parts, models, ref)
        await asyncio.to_thread(keep_sample, message, bytes(image))
        return meta.camera_id.encode(), to_json(message)

    # Triton down: the worker waits for it; any other error crashes it, counted against the frame.
    worker.each(Topic.INSPECTION_FRAMES, Topic.PART_OBSERVATIONS, inspect)

    @worker.app.timer(interval=settings.snapshot_prune_s)
    async def prune_snapshots():
        removed = await asyncio.to_thread(store.prune)
        removed_samples = await asyncio.to_thread(samples.prune)
        if removed or removed_samples:
            worker.log.info("pruned %d old snapshots, %d samples", removed, removed_samples)

    worker.run()


if __name__ == "__main__":
    main()
