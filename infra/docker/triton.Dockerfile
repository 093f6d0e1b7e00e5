# NVIDIA Triton (GPU) with ONNX Runtime for the Python-backend models of triton_models/.
FROM nvcr.io/nvidia/tritonserver:24.08-py3
RUN pip install --no-cache-dir "numpy<2" onnxruntime-gpu==1.19.2
