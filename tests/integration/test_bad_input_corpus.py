"""The bad-input corpus through both entries and both paths of the real stack (issue 15).

Every kind of ``tests.fuzz.corpus.KINDS`` is sent to four cameras of their own: over Kafka and
over the HTTP upload service, to a classify camera and to an inspection camera, all at once;
then the test waits once. Each input must come out as its table says: processed (a prediction,
or a part observation on the inspection path) or dead-lettered with its reason (and a message),
or, over HTTP, answered at once with its status. After the corpus, each camera's good frame
passes, and no worker (nor the upload service) has restarted.
"""

from __future__ import annotations

import base64
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field

import httpx
import pytest

from tests.fuzz.corpus import (
    KINDS,
    PROCESSED,
    Kind,
    Refused,
    http_content_type,
    kafka_headers,
)
from tests.integration.pipeline import TopicReader, chelsea_jpeg
from visionline.camera_registry import CameraSpec, upsert_cameras
from visionline.kafka import producer
from visionline.messages import Topic
from visionline.settings import UploadSettings
from visionline.stack.config import PIPELINE_SERVICES
from visionline.synthetic import LineGenerator

pytestmark = pytest.mark.integration

COMBOS = [(entry, path) for entry in ("kafka", "http") for path in ("classify", "inspect")]
RESTARTABLE = (*PIPELINE_SERVICES, "upload")
WAIT_S = 240.0
GOOD = "good-after"


@dataclass
class Sent:
    """One input as sent, and how to recognise what became of it."""

    name: str
    frame_id: str | None  # the id the pipeline knows it by (None: one ingest makes)
    body: bytes | None
    coordinates: tuple[int, int] | None = None  # Kafka: (partition, offset) on the raw topic
    answer: Refused | None = None  # HTTP: an answer other than 202


@dataclass
class Run:
    entry: str
    path: str
    camera_id: str
    sent: dict[str, Sent] = field(default_factory=dict)


@dataclass
class Seen:
    """What the topics said, indexed for matching."""

    letters_at: dict[tuple[int, int], list[dict]]
    letters_of: dict[tuple[str | None, str | None], list[dict]]
    processed: set[tuple[str, str]]  # (camera, frame id)


def applies(kind: Kind, entry: str) -> bool:
    return (kind.kafka if entry == "kafka" else kind.http) is not None


def expected(kind: Kind, entry: str) -> str | Refused:
    return kind.kafka if entry == "kafka" else kind.http


# Sending --------------------------------------------------------------------------------------


def register(engine, path: str, tag: str) -> tuple[str, str]:
    """A camera of the path, with an upload key; (camera id, key)."""
    camera_id, key = f"corpus-{path[:4]}-{tag}", uuid.uuid4().hex
    spec = CameraSpec(camera_id=camera_id, max_fps=200.0, pipeline=path, upload_key=key)
    upsert_cameras(engine, [spec], UploadSettings().key_pepper)
    return camera_id, key


def good_frame(path: str) -> bytes:
    return chelsea_jpeg(640, 480) if path == "classify" else LineGenerator(seed=3).encode(0)[0]


def kinds_for(entry: str, path: str) -> list[Kind]:
    """The corpus of an entry, then the good frame that must pass after it."""
    good = Kind(GOOD, lambda: good_frame(path), PROCESSED, PROCESSED)
    return [kind for kind in KINDS if applies(kind, entry)] + [good]


def send_kafka(bootstrap: str, run: Run, tag: str) -> None:
    out = producer(bootstrap)
    keys = {
        "camera": run.camera_id.encode(),
        "none": None,
        "unknown": f"ghost-{tag}".encode(),
        "not-utf8": b"\xff\xfe-" + tag.encode(),
    }
    now_ms = int(time.time() * 1000)
    for kind in kinds_for("kafka", run.path):
        frame_id, body = kind.frame_id or kind.name, kind.body()
        headers = kafka_headers(kind, frame_id, now_ms)
        known = dict(headers).get("frame-id") == frame_id.encode()
        sent = run.sent[kind.name] = Sent(kind.name, frame_id if known else None, body)

        def delivered(err, msg, sent=sent) -> None:
            assert err is None, err
            sent.coordinates = (msg.partition(), msg.offset())

        topic, key = str(Topic.RAW_FRAMES), keys[kind.key]
        out.produce(topic, value=body, key=key, headers=headers, on_delivery=delivered)
        out.poll(0)
    assert out.flush(60) == 0, "corpus not delivered to the broker"


def send_http(upload_url: str, run: Run, key: str) -> None:
    now_ms = int(time.time() * 1000)
    with httpx.Client(base_url=upload_url, timeout=60) as client:
        for kind in kinds_for("http", run.path):
            frame_id, body = kind.frame_id or kind.name, kind.body()
            headers = {
                "X-Camera-Key": key,
                "Content-Type": http_content_type(kind, body),
                "X-Frame-Id": frame_id,
                "X-Captured-At": str(now_ms),
                **(kind.http_headers(now_ms) if kind.http_headers else {}),
            }
            url = f"/v1/cameras/{kind.http_path or run.camera_id}/frames"
            answer = client.post(url, content=body, headers=headers)
            sent = run.sent[kind.name] = Sent(kind.name, frame_id, body)
            if answer.status_code == 202:
                sent.frame_id = answer.json()["frame_id"]
            else:
                sent.answer = Refused(answer.status_code, detail_of(answer))


def detail_of(answer: httpx.Response) -> str:
    try:
        return str(answer.json()["detail"])
    except (ValueError, KeyError, TypeError):  # not a JSON detail: a server error's text
        return answer.text[:200]


# Matching -------------------------------------------------------------------------------------


def index(letters: list[dict], predictions: list[dict], observations: list[dict]) -> Seen:
    at, of = defaultdict(list), defaultdict(list)
    for letter in letters:
        source = letter.get("source") or {}
        if source.get("topic") == str(Topic.RAW_FRAMES):
            at[(source["partition"], source["offset"])].append(letter)
        of[(letter.get("camera_id"), letter.get("frame_id"))].append(letter)
    processed = {(p["camera_id"], p["frame_id"]) for p in predictions}
    processed |= {(m["frame"]["camera_id"], m["frame"]["frame_id"]) for m in observations}
    return Seen(at, of, processed)


def outcome(run: Run, sent: Sent, seen: Seen) -> str | Refused | None:
    """What became of one input: its HTTP answer, its dead letter's reason, PROCESSED, or None
    while nothing is known yet."""
    if sent.answer is not None:
        return sent.answer
    letters = letters_of(run, sent, seen)
    if letters:
        told = [d["error_type"] + ("" if d["error_message"] else "(no message)") for d in letters]
        return "+".join(sorted(told))
    if sent.frame_id is not None:
        return PROCESSED if (run.camera_id, sent.frame_id) in seen.processed else None
    partition, offset = sent.coordinates
    prefix = f"auto-{partition}-{offset}-"
    made = any(c == run.camera_id and f.startswith(prefix) for c, f in seen.processed)
    return PROCESSED if made else None


def letters_of(run: Run, sent: Sent, seen: Seen) -> list[dict]:
    if run.entry == "kafka":
        return seen.letters_at.get(sent.coordinates, [])
    letters = seen.letters_of.get((run.camera_id, sent.frame_id), [])
    sharing = [s for s in run.sent.values() if s.frame_id == sent.frame_id and s is not sent]
    if sharing:  # duplicates: told apart by the bytes the dead letter keeps
        body = base64.b64encode(sent.body or b"").decode()
        letters = [d for d in letters if d.get("value_b64") == body]
    return letters


# The run --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def observations(stack):
    reader = TopicReader(stack.kafka_bootstrap, Topic.PART_OBSERVATIONS)
    yield reader
    reader.close()


@dataclass
class Corpus:
    runs: dict[tuple[str, str], Run]
    seen: Seen
    restarted: dict[str, tuple[list[int], list[int]]]
    seconds: float


def pids(stack) -> dict[str, list[int]]:
    return {name: sorted(stack.pids(name)) for name in RESTARTABLE}


@pytest.fixture(scope="module")
def corpus(stack, engine, predictions, dead_letters, observations) -> Corpus:
    before, start = pids(stack), time.monotonic()
    tag = uuid.uuid4().hex[:6]
    runs = {}
    for entry, path in COMBOS:
        camera_id, key = register(engine, path, f"{entry}-{tag}")
        run = runs[(entry, path)] = Run(entry, path, camera_id)
        if entry == "kafka":
            send_kafka(stack.kafka_bootstrap, run, tag)
        else:
            send_http(stack.upload_url, run, key)
    readers = (dead_letters, predictions, observations)
    seen = wait_for_outcomes(runs, readers, time.monotonic() + WAIT_S)
    after = pids(stack)
    restarted = {
        name: (before[name], after[name]) for name in before if before[name] != after[name]
    }
    return Corpus(runs, seen, restarted, time.monotonic() - start)


def wait_for_outcomes(runs: dict, readers, deadline: float) -> Seen:
    while True:
        for reader in readers:
            read_for(reader, 0.5)
        seen = index(*(reader.seen for reader in readers))
        pending = [
            (run.entry, run.path, sent.name)
            for run in runs.values()
            for sent in run.sent.values()
            if outcome(run, sent, seen) is None
        ]
        if not pending or time.monotonic() > deadline:
            return seen


def read_for(reader: TopicReader, seconds: float) -> None:
    """Whatever the topic brings within ``seconds`` (about a second when it is idle)."""
    end = time.monotonic() + seconds
    reader.wait_for(lambda _: time.monotonic() >= end, timeout=seconds + 30)


# The tests ------------------------------------------------------------------------------------


def case(entry: str, path: str, kind: Kind):
    bug = kind.http_open if entry == "http" else None
    marks = [pytest.mark.xfail(strict=True, reason=bug)] if bug else []
    return pytest.param(entry, path, kind, id=f"{entry}-{path}-{kind.name}", marks=marks)


CASES = [
    case(entry, path, kind) for entry, path in COMBOS for kind in KINDS if applies(kind, entry)
]


@pytest.mark.parametrize(("entry", "path", "kind"), CASES)
def test_each_input_is_processed_dead_lettered_or_refused(corpus, entry, path, kind):
    run = corpus.runs[(entry, path)]
    sent = run.sent[kind.name]
    got, want = outcome(run, sent, corpus.seen), expected(kind, entry)
    if isinstance(want, Refused):
        assert isinstance(got, Refused), f"{kind.name}: expected {want}, got {got}"
        assert got.status == want.status and want.detail in got.detail, (got, want)
    else:
        assert got == want, f"{kind.name} on {entry}/{path}: expected {want}, got {got}"


@pytest.mark.parametrize(("entry", "path"), COMBOS, ids=[f"{e}-{p}" for e, p in COMBOS])
def test_the_good_frame_after_the_corpus_passes(corpus, entry, path):
    run = corpus.runs[(entry, path)]
    assert outcome(run, run.sent[GOOD], corpus.seen) == PROCESSED


def test_no_worker_restarted_and_each_input_had_one_outcome(corpus):
    for (entry, path), run in corpus.runs.items():  # the figures of docs/fuzzing.md (pytest -s)
        told = Counter(str(outcome(run, sent, corpus.seen)) for sent in run.sent.values())
        print(f"{entry}/{path}: {len(run.sent)} inputs, {dict(sorted(told.items()))}")
    print(f"sent and decided in {corpus.seconds:.1f}s")
    assert corpus.restarted == {}
    for run in corpus.runs.values():
        for sent in run.sent.values():
            if sent.answer is None and sent.frame_id not in (None, "twice"):
                letters = letters_of(run, sent, corpus.seen)
                made = (run.camera_id, sent.frame_id) in corpus.seen.processed
                assert not (letters and made), f"{sent.name}: both processed and {letters}"
