"""Every service of ``services/`` in one table: its settings, command, metrics port, topics.

``SERVICES`` is in start order. The local stack (``visionline/stack/config.py``) and
``visionline stack services`` derive from it; ``tests/unit/test_services_table.py`` checks
``docker-compose.yml``, ``infra/prometheus/*.yml``, ``StackSettings`` and ``services/``
against it. A new service is a row here first: the test then says what else is missing.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic_settings import BaseSettings

from visionline.messages import Topic
from visionline.settings import (
    ApiSettings,
    DetectSettings,
    DriftSettings,
    InferenceSettings,
    IngestSettings,
    InspectSettings,
    LabelsSettings,
    ObjectsSettings,
    PartsSettings,
    PostprocessSettings,
    PreprocessSettings,
    RetrainSettings,
    RulesSettings,
    UploadSettings,
    WebhookSettings,
)

# Where a stream worker serves /metrics in a container (VISIONLINE_METRICS_PORT in
# docker-compose.yml, scraped by infra/prometheus/prometheus.yml). The local stack gives each
# replica a port of its own instead (StackSettings.worker_metrics_port).
METRICS_PORT = 9100


@dataclass(frozen=True)
class ServiceSpec:
    """One process of ``services/<name>``: how it is configured, run, scraped and scaled."""

    name: str
    settings: type[BaseSettings]  # its own settings, env prefix VISIONLINE_<NAME>_
    consumes: tuple[Topic, ...] = ()
    produces: tuple[Topic, ...] = ()  # besides the dead-letter topic, which every worker has
    metrics_port: int | None = METRICS_PORT  # None: no Prometheus endpoint
    http: bool = False  # an HTTP server on its settings' host and port, healthy on /healthz
    needs_triton: bool = False  # starts once Triton is ready
    # The local stack runs StackSettings.<name>_replicas copies; False: always one.
    scalable: bool = True
    opt_in: str | None = None  # the StackSettings switch without which the local stack skips it

    @property
    def module(self) -> str:
        return f"services.{self.name}"

    @property
    def command(self) -> tuple[str, ...]:
        """Its command in a container; the local stack runs the module with its own Python."""
        return ("python", "-m", self.module)

    @property
    def topics(self) -> tuple[tuple[Topic, ...], tuple[Topic, ...]]:
        return self.consumes, self.produces


SERVICES: tuple[ServiceSpec, ...] = (
    ServiceSpec(
        "ingest",
        IngestSettings,
        consumes=(Topic.RAW_FRAMES,),
        produces=(Topic.VALID_FRAMES, Topic.INSPECTION_FRAMES, Topic.DETECTION_FRAMES),
    ),
    ServiceSpec(
        "preprocess",
        PreprocessSettings,
        consumes=(Topic.VALID_FRAMES,),
        produces=(Topic.PREPROCESSED,),
    ),
    ServiceSpec(
        "inference",
        InferenceSettings,
        consumes=(Topic.PREPROCESSED,),
        produces=(Topic.INFERENCE,),
        needs_triton=True,
    ),
    ServiceSpec(
        "postprocess",
        PostprocessSettings,
        consumes=(Topic.INFERENCE,),
        produces=(Topic.PREDICTIONS,),
    ),
    ServiceSpec(
        "rules",
        RulesSettings,
        consumes=(Topic.PREDICTIONS, Topic.PART_DECISIONS, Topic.OBJECT_EVENTS),
        produces=(Topic.ALERTS,),
    ),
    ServiceSpec(  # inspection cameras: parts and defects (three Triton models)
        "inspect",
        InspectSettings,
        consumes=(Topic.INSPECTION_FRAMES,),
        produces=(Topic.PART_OBSERVATIONS,),
        needs_triton=True,
    ),
    ServiceSpec(  # inspection cameras: tracking, one decision per part
        "parts",
        PartsSettings,
        consumes=(Topic.PART_OBSERVATIONS,),
        produces=(Topic.PART_DECISIONS,),
    ),
    ServiceSpec(  # detect cameras: the camera's detector on each frame
        "detect",
        DetectSettings,
        consumes=(Topic.DETECTION_FRAMES,),
        produces=(Topic.DETECTIONS,),
        needs_triton=True,
    ),
    ServiceSpec(  # detect cameras: tracking, zone/line/count rules, one event per object
        "objects",
        ObjectsSettings,
        consumes=(Topic.DETECTIONS,),
        produces=(Topic.OBJECT_EVENTS,),
    ),
    ServiceSpec(  # drift of every path's inputs and outputs
        "drift",
        DriftSettings,
        consumes=(Topic.PREDICTIONS, Topic.PART_OBSERVATIONS, Topic.DETECTIONS),
        produces=(Topic.DRIFT_EVENTS,),
    ),
    ServiceSpec(  # late true labels joined to predictions: accuracy per model version
        "labels",
        LabelsSettings,
        consumes=(
            Topic.LABELS_FEEDBACK,
            Topic.PART_OBSERVATIONS,
            Topic.PART_DECISIONS,
            Topic.DETECTIONS,
        ),
    ),
    ServiceSpec(  # alerts POSTed to the API's webhook subscribers, signed and retried
        "webhooks",
        WebhookSettings,
        consumes=(Topic.ALERTS,),
    ),
    ServiceSpec(  # one replica: at start it fails the jobs it finds running
        "retrain",
        RetrainSettings,
        consumes=(Topic.DRIFT_EVENTS, Topic.RETRAIN_REQUESTS),
        produces=(Topic.RETRAIN_REQUESTS,),
        scalable=False,
        opt_in="with_retrain",  # its jobs train on this machine's CPU
    ),
    ServiceSpec(  # frames over HTTP, a second entry to the raw frames topic
        "upload",
        UploadSettings,
        produces=(Topic.RAW_FRAMES,),
        metrics_port=None,
        http=True,
        scalable=False,
    ),
    ServiceSpec(  # operator API and dashboard
        "api",
        ApiSettings,
        consumes=(Topic.ALERTS,),
        produces=(Topic.LABELS_FEEDBACK, Topic.RETRAIN_REQUESTS),
        metrics_port=None,
        http=True,
        scalable=False,
    ),
)


def service(name: str) -> ServiceSpec:
    """The row of ``name``; KeyError when no service has it."""
    for spec in SERVICES:
        if spec.name == name:
            return spec
    raise KeyError(name)
