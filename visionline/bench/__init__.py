"""`visionline bench`: the whole pipeline against a bare single-process loop, same frames, same run.

Phases, all on one pool of pre-encoded 720p JPEGs (real photos, the chelsea cat among them):

1. **bare**: this process decodes, preprocesses, runs ONNX Runtime (as many threads as Triton's
   model instance uses) and applies the alert threshold, frame after frame; run once before the
   stack starts and once after it stops, so machine noise shows as a spread.
2. **saturation**: a fresh local stack; N cameras offer more frames than it can take, with at most
   ``in_flight`` frames between publish and prediction (a congested camera drops the rest), so the
   pipeline is kept saturated without building a backlog that would outlast the run. The figure is
   the completion rate: predictions whose postprocessed stamp falls in the measurement window.
3. **half load**: the same stack at half that rate; capture-to-prediction and capture-to-alert
   latency, per-stage latency and who served the model.
4. **idle**: the same stack with no frame coming, for its fixed cost (polling, heartbeats).

The stack is the one ``visionline stack up`` would start, tuned by the usual environment
(``VISIONLINE_INFERENCE_MAX_BATCH``, ``VISIONLINE_STACK_PREPROCESS_REPLICAS``, ...): the results
record the ``VISIONLINE_*`` variables that were set.

Triton's batch sizes come from its Prometheus counters (deltas over each window); CPU and peak
memory from sampling every process of each component (with its descendants) every 0.5 s.

The figure functions are pure and unit-tested; the targets are reported, never asserted.
"""

from visionline.bench.cli import bench_command

__all__ = ["bench_command"]
