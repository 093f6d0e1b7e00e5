"""The model contract shared by Triton's model, the local fallback and the workers."""

from pathlib import Path

DEFAULT_REPOSITORY = Path("triton_models")
# The released inspection models (`visionline models assemble` builds them into the repository).
DEFAULT_RELEASE = Path("models/release")
MODEL_NAME = "efficientnet_lite0"
INPUT_NAME = "image"  # uint8 RGB, NHWC [batch, 224, 224, 3]
OUTPUT_NAME = "logits"  # float32 [batch, 1000], ImageNet-1k class order
IMAGE_SIZE = 224
NUM_CLASSES = 1000
MODEL_FILENAME = "model.onnx"
LABELS_FILENAME = "labels.txt"
METADATA_FILENAME = "metadata.json"  # beside each version: training settings, figures, lineage
# What training learned, beside the ONNX graph: the module's state without the frozen backbone
# (a head's weights, or PatchCore's memory bank and calibration). `visionline models release`
# collects these; `make models` rebuilds the ONNX graphs from them.
LEARNED = "learned.npz"
# The Python-backend model Triton runs for every ONNX model here (copied in as <version>/model.py).
TRITON_MODEL_PY = Path(__file__).with_name("triton_onnx_model.py")
