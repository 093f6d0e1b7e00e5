"""The short run of the decoder fuzzing (the campaign: ``python -m tests.fuzz.campaign``,
docs/fuzzing.md), and the Kafka records of the bad-input corpus through the decoders alone."""

import time

import pytest
from hypothesis import HealthCheck, given, settings

from services.ingest.logic import Limits
from tests.fuzz.corpus import KINDS, PROCESSED, kafka_headers
from tests.fuzz.decoders import SOURCE, RawFrame, check, raw_frames

# The reasons only the stateful checks give (registry, Redis): the decoders pass such frames.
STATEFUL = {"unknown_camera", "duplicate_frame"}
KEYS = {"camera": b"cam-1", "none": None, "unknown": b"ghost-1", "not-utf8": b"\xff\xfe-1"}


@settings(
    max_examples=300,
    deadline=None,
    database=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(raw_frames())
def test_decoders_give_a_frame_or_a_rejection_never_an_error(raw):
    """Mutated photographs and arbitrary bytes: each decoder returns a valid result or raises
    FrameRejected with a documented reason, within the pixel cap (tests.fuzz.decoders)."""
    check(raw)


@pytest.mark.parametrize("kind", [k for k in KINDS if k.kafka is not None], ids=lambda k: k.name)
def test_the_corpus_through_the_decoders(kind):
    now = time.time()
    frame_id = kind.frame_id or kind.name
    headers = kafka_headers(kind, frame_id, int(now * 1000))
    raw = RawFrame(KEYS[kind.key], kind.body(), headers, SOURCE, now)
    outcome = check(raw, Limits(max_bytes=8 << 20, max_pixels=40_000_000))
    got = PROCESSED if outcome.stage == "passed" else outcome.reason
    assert got == (PROCESSED if kind.kafka in STATEFUL else kind.kafka)
