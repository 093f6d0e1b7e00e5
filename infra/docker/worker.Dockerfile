# One image for every visionline worker; docker-compose picks the service by its command.
FROM python:3.11-slim
WORKDIR /app
ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
COPY requirements.lock pyproject.toml ./
RUN pip install -r requirements.lock
COPY visionline ./visionline
COPY services ./services
COPY infra ./infra
RUN pip install --no-deps .
USER 65534
