"""Startup time and memory of the stack's Apache Kafka node, as the stack starts it.

    PYTHONPATH=. .venv/bin/python infra/kafka/measure.py [--heap-mb 512]

In a temporary state folder: the first start (storage formatted), a start after a clean stop,
one after ``kill -9``. For each: the seconds of ``prepare_node`` (the format), from the JVM's
start to the first answered metadata request (``health.kafka_metadata``, the stack's check) and
to the pipeline's topics created (``create_topics``), and the resident memory then.
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from visionline.kafka import create_topics
from visionline.stack import health, kafka_server
from visionline.stack.config import free_ports


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def start(node: kafka_server.KafkaNode, heap_mb: int, log: Path) -> subprocess.Popen:
    """Prepare (format on the first start), start, and print the times and memory."""
    java = kafka_server.java_bin()
    began = time.monotonic()
    kafka_server.prepare_node(node, [node], java)
    prepared = time.monotonic()
    with log.open("a") as out:
        argv = kafka_server.server_argv(node, heap_mb, java)
        process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
    while True:
        try:
            health.kafka_metadata(node.address)
            break
        except health.Unhealthy:
            if process.poll() is not None:
                raise SystemExit(f"the broker exited ({process.returncode}); see {log}") from None
            time.sleep(0.05)
    healthy = time.monotonic()
    create_topics(node.address, 4)
    done = time.monotonic()
    print(
        f"  prepare {prepared - began:.1f} s, JVM start to metadata answered"
        f" {healthy - prepared:.1f} s, to topics created {done - prepared:.1f} s,"
        f" {rss_mb(process.pid):.0f} MB resident"
    )
    return process


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--heap-mb", type=int, default=512)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="kafka-measure-"))
    port, controller_port = free_ports(2)
    node = kafka_server.cluster_nodes("127.0.0.1", [(port, controller_port)], root)[0]
    log = root / "broker.log"
    for what, stop in (
        ("first start (storage formatted)", signal.SIGTERM),
        ("start after a clean stop (SIGTERM)", signal.SIGKILL),
        ("start after kill -9", signal.SIGTERM),
    ):
        print(what)
        process = start(node, args.heap_mb, log)
        process.send_signal(stop)
        process.wait(60)
    print(f"logs in {root}")


if __name__ == "__main__":
    main()
