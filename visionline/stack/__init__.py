"""The local stack: real servers (Apache Kafka, PostgreSQL, Redis, Triton) and the workers,
no Docker.

``visionline stack up|down|status|logs`` on the command line; ``LocalStack`` from Python.
"""

from visionline.stack.api import LocalStack, StackAlreadyRunning, StackError
from visionline.stack.config import StackSettings, WorkerSpec, free_port_settings
from visionline.stack.state import StackStatus

__all__ = [
    "LocalStack",
    "StackAlreadyRunning",
    "StackError",
    "StackSettings",
    "StackStatus",
    "WorkerSpec",
    "free_port_settings",
]
