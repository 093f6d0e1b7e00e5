"""The real steps of a retraining job (``visionline.retrain.jobs.JobSteps``).

- dataset, for the defect detector after a drift on a camera (``traffic``): that camera's
  frames from the drift window on, replayed from Kafka offsets, with the labels that arrived for
  them (``visionline.labels``), and the other cameras' of the same time; each camera's last
  frames are held out for the shadow run (``traffic.split_by_time``); the job waits for
  enough labelled frames. Otherwise (a schedule, an operator, other models), a seeded
  generator dataset (``policy.dataset_plan``) whose conditions add the drift window's
  nuisances. The description is the job's ``dataset`` JSON (offsets or seed and conditions).
- train: on traffic, the serving defect detector fine-tuned on the training crops plus a few
  generator frames of every condition (so it keeps what it knew); else the part or defect
  detector fitted anew on the generator dataset (``fit.fit_part_detector`` /
  ``fit.fit_defect_detector``), the anomaly model through ``train_all(only={part_anomaly})``.
  Installed as the next version folder; the config keeps (or first gets) the serving version
  pinned, so the new version is only a candidate.
- evaluate: candidate and serving version on the same held-out frames (``visionline eval``'s
  conditions and seeds, plus the drift's nuisances at 0.7), the two other models being the
  versions serving; on traffic also the shadow run (``visionline.retrain.shadow``): each
  camera's held-out recent frames through both versions, the line's tracker and rules, scored
  per part as its alerts would have been. The drifting camera's decides, while the other
  cameras' and the generator frames guard against forgetting (``max_regression``).
- promote: ``visionline.model_registry.promotion.promote`` with the job (Triton switches versions).

torch, onnxruntime and the generator are imported inside the steps: the worker starts light.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from visionline.datasets.labelled_frames import LabelledFrame, store_labelled_frames
from visionline.datasets.store import DatasetStore
from visionline.inspection.config import config_for
from visionline.inspection.metrics import EVALUATION_KEYS
from visionline.labels import labelled_cameras, labelled_frames
from visionline.messages import Topic
from visionline.model_registry import version_policy
from visionline.model_registry.promotion import promote, triton_control
from visionline.model_registry.versions import next_version, pinned_versions, serving_version
from visionline.replay import replay_frames
from visionline.retrain.jobs import Evaluation, Job, JobSteps
from visionline.retrain.policy import (
    DEFECT_DETECTOR,
    MODELS,
    PART_ANOMALY,
    PART_DETECTOR,
    dataset_plan,
    decide_promotion,
)
from visionline.rulesets import current
from visionline.settings import RetrainSettings

log = logging.getLogger(__name__)
# Drift signals of the light on the scene: their jobs also train on the camera's frames from
# before the drift, relit to the drift's histogram (``traffic.relighting``).
LIGHTING_SIGNALS = ("brightness", "contrast", "saturation", "embedding_distance")
EVAL_SEED = 9001  # visionline eval's held-out seeds; training seeds are 100 + job id
EVAL_STRENGTH = 0.5
DRIFT_EVAL_STRENGTH = 0.7


def cv2_decode(data: bytes):
    """A camera's encoded frame as BGR, or None when it does not decode."""
    import cv2
    import numpy as np

    return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)


@dataclass(frozen=True)
class RealSteps:
    engine: Engine
    repository: Path
    settings: RetrainSettings
    triton_grpc_url: str
    bootstrap: str | None = None  # the broker to replay recent frames from (traffic datasets)
    # Where a traffic job keeps the labelled frames it trains on as a dataset version (None:
    # not kept; `visionline retrain run` keeps them in the dataset store).
    datasets: DatasetStore | None = None
    # A job's traffic data between its steps (one process runs a job from start to end):
    # training crops, and the frames held out for the shadow run, per camera.
    _held: dict[int, dict[str, Any]] = field(default_factory=dict, compare=False)

    def uses_traffic(self, job: Job) -> bool:
        drift = job.dataset.get("drift") or {}
        return bool(
            job.model == DEFECT_DETECTOR
            and drift.get("camera_id")
            and self.bootstrap
            and self.settings.traffic_min_frames > 0
        )

    def build_dataset(self, job: Job) -> tuple[dict[str, Any], int | None]:
        if self.uses_traffic(job):
            return self._traffic_dataset(job), serving_version(
                self.engine, self.repository, job.model
            )
        signal = (job.dataset.get("drift") or {}).get("signal")
        plan = dataset_plan(
            100 + job.id,
            self.settings.train_conditions,
            self.settings.train_frames_per_condition,
            self.settings.drift_conditions,
            signal,
        )
        plan["eval"] = {
            "seed": EVAL_SEED,
            "strength": EVAL_STRENGTH,
            "frames_per_condition": self.settings.eval_frames_per_condition,
            "drift_strength": DRIFT_EVAL_STRENGTH,
        }
        return plan, serving_version(self.engine, self.repository, job.model)

    def _traffic_dataset(self, job: Job) -> dict[str, Any]:
        """Wait for ``traffic_min_frames`` labelled frames of the drifting camera from the drift
        window's start; replay them, the other cameras' labelled frames of the same time and,
        for a lighting drift, the camera's last ``relight_frames`` from before it, from Kafka;
        hold each camera's last frames out and crop the rest."""
        from visionline.retrain.traffic import split_by_time

        s, drift, say = self.settings, job.dataset["drift"], _logger(job)
        camera, start = drift["camera_id"], float(drift["window"]["first_captured_at"])
        labels = self._labels_since(camera, start, say)
        first, last = labels[0].captured_at, labels[-1].captured_at
        others = self._other_cameras(camera, first, last)
        before = self._before_drift(camera, start, drift.get("signal"))
        since = before[0].captured_at if before else first
        frames, offsets, raw = self._replay([labels, *others.values(), before], since)
        earlier = [f for f in frames.get(camera, []) if f[1].captured_at < start]
        frames[camera] = [f for f in frames.get(camera, []) if f[1].captured_at >= start]
        split = {c: split_by_time(f, s.traffic_held_out) for c, f in frames.items() if f}
        train_frames, shadow = split.get(camera, ([], []))
        if not train_frames or not shadow:
            why = f"{len(frames[camera])} frames of {camera} since the drift: none to train on"
            raise RuntimeError(f"{why} or to hold out")
        other_frames = [f for c in others for f in split.get(c, ([], []))[0]]
        train, relit, other_train, cut_by = self._traffic_crops(
            train_frames, other_frames, earlier, seed=100 + job.id
        )
        if not train:
            raise RuntimeError(f"no part crops in {len(train_frames)} frames of {camera}")
        shadow_others = {c: split[c][1] for c in others if c in split}
        held = {"train": train + relit + other_train, "shadow": shadow}
        self._held[job.id] = held | {"shadow_others": shadow_others}
        say(
            f"{sum(map(len, frames.values())) + len(earlier)} labelled frames replayed: "
            f"{len(train)} + {len(relit)} relit + {len(other_train)} training crops "
            f"({camera}, its {len(earlier)} frames from before the drift relit, "
            f"other cameras; cut by {cut_by}), the last {len(shadow)} frames of each camera "
            "held out for the shadow run"
        )
        return {
            "source": "traffic",
            "camera_id": camera,
            "other_cameras": sorted(others),
            "topic": str(Topic.RAW_FRAMES),
            "offsets": {str(p): list(span) for p, span in sorted(offsets.items())},
            "captured_from": first,
            "captured_to": last,
            "labelled_frames": {camera: len(labels), **{c: len(x) for c, x in others.items()}},
            "frames": sum(map(len, frames.values())) + len(earlier),
            "train_crops": len(train),
            "other_train_crops": len(other_train),
            "relit_frames": len(earlier),
            "relit_crops": len(relit),
            "crops_cut_by": cut_by,
            "shadow_frames": {c: len(f) for c, f in [(camera, shadow), *shadow_others.items()]},
            "shadow_from": shadow[0][1].captured_at,
            "defective_train_crops": sum(c.defective for c in train),
            "seed": 100 + job.id,
            "dataset_version": self._keep_as_dataset(job, raw, since, last),
        }

    def _labels_since(self, camera: str, start: float, say) -> list:
        """The camera's labelled frames since ``start``, waiting up to ``traffic_wait_s`` for
        ``traffic_min_frames`` of them; at most ``traffic_max_frames``, in capture order."""
        s = self.settings
        deadline = time.monotonic() + s.traffic_wait_s
        while True:
            labels = labelled_frames(self.engine, camera, start, time.time() + 3600)
            if len(labels) >= s.traffic_min_frames or time.monotonic() > deadline:
                break
            say(f"{len(labels)}/{s.traffic_min_frames} labelled frames of {camera} so far")
            time.sleep(5)
        if len(labels) < s.traffic_min_frames:
            raise RuntimeError(
                f"only {len(labels)} labelled frames of {camera} since the drift after "
                f"{s.traffic_wait_s:.0f} s (need {s.traffic_min_frames})"
            )
        return labels[: s.traffic_max_frames]

    def _other_cameras(self, camera: str, first: float, last: float) -> dict[str, list]:
        """The other cameras' labelled frames captured from ``first`` to ``last``."""
        cameras = [c for c in labelled_cameras(self.engine, first, last) if c != camera]
        cap = self.settings.traffic_max_frames
        return {c: labelled_frames(self.engine, c, first, last)[:cap] for c in cameras}

    def _before_drift(self, camera: str, start: float, signal: str | None) -> list:
        """For a lighting drift, the camera's last ``relight_frames`` labelled frames before
        it (to be relit); else none."""
        n = self.settings.relight_frames
        if not n or signal not in LIGHTING_SIGNALS:
            return []
        return labelled_frames(self.engine, camera, start - 86400, start)[-n:]

    def _traffic_crops(self, train_frames: list, other_frames: list, earlier: list, seed: int):
        """Training crops: the drifting camera's, its frames from before the drift relit to
        the drift's light, and the other cameras' (at most as many as the camera's own); and
        what cut them."""
        import numpy as np

        from visionline.retrain.traffic import labelled_crops, relight, relighting

        rng = np.random.default_rng(seed)
        detect, cut_by = self._part_boxes()
        train = labelled_crops(train_frames, rng, detect=detect)
        other_train = labelled_crops(other_frames, rng, detect=detect)
        if len(other_train) > len(train):  # the drifting camera keeps half of the training
            keep = np.sort(rng.choice(len(other_train), len(train), replace=False))
            other_train = [other_train[k] for k in keep]
        relit = []
        if earlier:  # the drift's light on the camera's earlier frames: more of the new condition
            table = relighting(
                [f for f, _ in earlier[:: max(1, len(earlier) // 30)]],
                [f for f, _ in train_frames[-30:]],
            )
            relabelled = ((relight(f, table), label) for f, label in earlier)
            relit = labelled_crops(relabelled, rng, detect=detect)
        return train, relit, other_train, cut_by

    def _part_boxes(self):
        """The serving part detector, to cut training crops as the inspect worker does, and
        what cut them; None (the labels' boxes) where no part detector is installed."""
        from visionline.retrain.traffic import part_detector
        from visionline.training.serving import OnnxModel

        version = serving_version(self.engine, self.repository, PART_DETECTOR)
        if version is None:
            return None, "the labels' boxes"
        path = self.repository / PART_DETECTOR / str(version) / "model.onnx"
        return part_detector(OnnxModel(path, self.settings.threads)), f"part_detector v{version}"

    def _replay(self, label_lists, first: float) -> tuple[dict[str, list], dict, list]:
        """The labelled frames' images from Kafka, decoded to RGB, per camera, with the offset
        span read per partition, and as they came (label, bytes, content type). A frame reaches
        the broker after its capture (late when its camera lags): from a minute before the
        first capture time to now."""
        assert self.bootstrap is not None  # replayed only when uses_traffic
        wanted = {x.frame_id: x for labels in label_lists for x in labels}
        cameras = sorted({x.camera_id for x in wanted.values()})
        frames: dict[str, list] = defaultdict(list)
        offsets: dict[int, tuple[int, int]] = {}
        raw: list[LabelledFrame] = []
        for f in replay_frames(
            self.bootstrap,
            str(Topic.RAW_FRAMES),
            cameras,
            int((first - 60) * 1000),
            int(time.time() * 1000),
        ):
            label = wanted.get(f.frame_id)
            bgr = cv2_decode(f.data) if label is not None else None
            if label is None or bgr is None:
                continue
            frames[f.camera_id].append((bgr[..., ::-1].copy(), label))
            raw.append((label, f.data, f.content_type))
            low, high = offsets.get(f.partition, (f.offset, f.offset))
            offsets[f.partition] = (min(low, f.offset), max(high, f.offset))
        return frames, offsets, raw

    def _keep_as_dataset(
        self, job: Job, raw: list[LabelledFrame], first: float, last: float
    ) -> dict[str, str] | None:
        """The job's labelled frames as a version of dataset ``retrain-<model>-<camera>``
        (lineage: the new model version's data is a dataset version like any other)."""
        if self.datasets is None:
            return None
        camera = job.dataset["drift"]["camera_id"]
        cameras = sorted({label.camera_id for label, _, _ in raw})
        name = f"retrain-{job.model}-{camera}"
        name = "".join(c if c.isalnum() or c in "._-" else "_" for c in name)[:100]
        source = (
            f"retraining job {job.id}: labelled frames of {', '.join(cameras)} captured "
            f"{first:.0f} to {last:.0f} (epoch s), replayed from {Topic.RAW_FRAMES}"
        )
        labels = [label for label, _, _ in raw]
        kept = store_labelled_frames(
            raw, labels, name, source, self.engine, self.datasets, created_by="retrain"
        )
        _logger(job)(f"its labelled frames are dataset version {kept.name}@{kept.version[:12]}")
        return {"name": kept.name, "version": kept.version}

    def train(self, job: Job) -> int:
        import torch

        from visionline.training import fit
        from visionline.training.backbone import Backbone
        from visionline.training.data import render

        model_dir = self.repository / job.model
        self._pin_serving(model_dir, job.parent_version)
        version = next_version(model_dir)
        s = self.settings
        config = replace(
            fit.TrainConfig(),
            seed=100 + job.id,
            threads=s.threads,
            part_epochs=s.train_epochs,
            defect_epochs=s.train_epochs,
            conditions=s.train_conditions,
            frames_per_condition=s.train_frames_per_condition,
        )
        say = _logger(job)
        if job.model == PART_ANOMALY:
            fit.train_all(self.repository, version, config, say, only={PART_ANOMALY})
            return version
        torch.set_num_threads(s.threads)
        if job.id in self._held:
            return self._fine_tune(job, version, config, say)
        conditions = [(name, dict(factors)) for name, factors in job.dataset["conditions"]]
        data = render(
            job.dataset["seed"],
            conditions,
            job.dataset["frames_per_condition"],
            config.defect_rate,
            config.jitter,
        )
        fitter = fit.fit_part_detector if job.model == PART_DETECTOR else fit.fit_defect_detector
        fitter(Backbone(), data, self.repository, version, config, say)
        return version

    def _fine_tune(self, job: Job, version: int, config, say) -> int:
        """The serving detector trained further on the traffic crops, with generator crops of
        every ``visionline eval`` condition beside them (rehearsal: the other cameras' world)."""
        from visionline.training import fit
        from visionline.training.backbone import Backbone
        from visionline.training.data import eval_conditions, render

        rehearsal = render(
            job.dataset["seed"],
            list(eval_conditions(0.4)),
            self.settings.rehearsal_frames_per_condition,
            config.defect_rate,
            config.jitter,
        ).crops
        crops = self._held[job.id]["train"] + rehearsal
        parent = self.repository / job.model / str(job.parent_version) / "model.onnx"
        say(
            f"fine-tuning version {job.parent_version} on {len(crops)} crops "
            f"({len(rehearsal)} rehearsal)"
        )
        epochs = self.settings.fine_tune_epochs
        fit.fine_tune_defect_detector(
            Backbone(), crops, parent, self.repository, version, config, say, epochs=epochs
        )
        return version

    def _pin_serving(self, model_dir: Path, parent: int | None) -> None:
        """Without a pinned policy Triton serves the newest folder on its next load: pin the
        version serving now, so the version trained next is only a candidate."""
        if parent is not None and (model_dir / version_policy.CONFIG).is_file():
            if pinned_versions(model_dir) is None:
                version_policy.write_versions(model_dir, [parent])

    def evaluate(self, job: Job, candidate: int) -> Evaluation:
        serving = {m: serving_version(self.engine, self.repository, m) for m in MODELS}
        serving[job.model] = job.parent_version
        known = {m: v for m, v in serving.items() if v is not None}
        if len(known) < len(serving):
            missing = [m for m, v in serving.items() if v is None]
            raise RuntimeError(f"no serving version of {', '.join(missing)} to evaluate against")
        drift = job.dataset.get("drift_nuisances") or []
        results = evaluate_versions(
            self.repository,
            [known, {**known, job.model: candidate}],
            job.dataset.get("eval", {}),
            drift,
            self.settings.threads,
            _logger(job),
        )
        held = self._held.pop(job.id, {})
        if held.get("shadow"):
            for result in results:
                result.update(self._shadow_runs(result["versions"], held, _logger(job)))
        return Evaluation(
            candidate=results[1], serving=results[0], serving_version=job.parent_version
        )

    def _shadow_runs(self, versions: dict[str, int], held: dict[str, Any], say) -> dict:
        """The held-out recent frames through ``versions`` and each camera's tracker and
        rules, as the stack would have decided them: the drifting camera's (``shadow``), and
        the other cameras' pooled (``shadow_others``, what the candidate must not forget)."""
        from visionline.retrain.shadow import load_versions, pooled, shadow_run

        inspection = current(self.engine, self.settings.rules_file).rules.inspection
        models = load_versions(self.repository, versions, self.settings.threads)

        def run(frames: list) -> dict | None:
            config = config_for(inspection, frames[0][1].camera_id)
            return None if config is None else shadow_run(frames, models, versions, config)

        shadow = run(held["shadow"])
        if shadow is None:
            raise RuntimeError(
                f"no inspection rules name {held['shadow'][0][1].camera_id}: "
                "its frames cannot be decided in a shadow run"
            )
        out = {"shadow": shadow}
        # the other cameras with inspection rules (labels of others cannot be decided here)
        others = [r for r in map(run, held["shadow_others"].values()) if r is not None]
        if others:
            out["shadow_others"] = pooled(others)
        say(
            f"shadow run of {versions}: F1 {out['shadow']['f1']} on {out['shadow']['parts']} "
            f"parts" + (f", others {out['shadow_others']['f1']}" if others else "")
        )
        return out

    def decide(self, candidate: dict, serving: dict) -> tuple[bool, str]:
        s = self.settings
        if "shadow" not in candidate:
            return decide_promotion(candidate, serving, s.metric, s.margin)
        guards = [(s.metric, s.max_regression), ("shadow_others.f1", s.others_max_regression)]
        return decide_promotion(candidate, serving, s.traffic_metric, s.margin, guards)

    def promote(self, job: Job, candidate: int, metrics: dict, reason: str) -> None:
        control = triton_control(self.triton_grpc_url)
        promote(
            self.engine,
            control,
            self.repository,
            job.model,
            candidate,
            job_id=job.id,
            metrics=metrics,
            promoted_by="retrain",
            reason=reason,
            timeout_s=self.settings.promote_timeout_s,
        )
        if job.model in (PART_ANOMALY, DEFECT_DETECTOR):
            from visionline.training.crop_models import refresh_part_crops

            try:  # until it is, the inspect worker asks the two models apart
                refresh_part_crops(control, self.repository)
            except Exception:  # noqa: BLE001 - the promotion stands; only the shortcut waits
                log.exception("part_crops not rebuilt after promoting %s", job.model)

    def steps(self) -> JobSteps:
        return JobSteps(self.build_dataset, self.train, self.evaluate, self.decide, self.promote)


def evaluate_versions(
    repository: Path,
    version_sets: list[dict[str, int]],
    eval_plan: dict[str, Any],
    drift_nuisances: list[str],
    threads: int = 2,
    say=print,
) -> list[dict[str, Any]]:
    """Each set of versions ({model: version folder}) scored on the same held-out frames:
    ``visionline eval``'s conditions (each rendered once) plus the drift's nuisances."""
    from visionline.training.data import eval_conditions, render
    from visionline.training.evaluate import evaluate_condition
    from visionline.training.serving import OnnxModel

    started = time.perf_counter()
    conditions = list(eval_conditions(eval_plan.get("strength", EVAL_STRENGTH)))
    strength = eval_plan.get("drift_strength", DRIFT_EVAL_STRENGTH)
    conditions += [(f"drift:{n}", {n: strength}) for n in dict.fromkeys(drift_nuisances)]
    models = [
        {m: OnnxModel(repository / m / str(v) / "model.onnx", threads) for m, v in versions.items()}
        for versions in version_sets
    ]
    rows: list[dict[str, dict]] = [{} for _ in version_sets]
    seed, frames = eval_plan.get("seed", EVAL_SEED), eval_plan.get("frames_per_condition", 12)
    for k, (name, nuisances) in enumerate(conditions):
        data = render(seed + k, [(name, nuisances)], frames, 0.4)
        for i, loaded in enumerate(models):
            rows[i][name] = evaluate_condition(loaded, data)
        say(f"evaluated {name} ({time.perf_counter() - started:.0f} s)")
    return [
        {"versions": dict(v), "conditions": r, "summary": summarise(r)}
        for v, r in zip(version_sets, rows, strict=True)
    ]


def summarise(rows: dict[str, dict]) -> dict[str, dict]:
    """Per metric: clean, and the min and mean over the nuisance conditions (as ``visionline
    eval``), and the mean over the drift conditions alone."""
    import numpy as np

    out: dict[str, dict] = {"clean": {k: rows.get("clean", {}).get(k) for k in EVALUATION_KEYS}}
    groups = {
        "nuisance": [r for n, r in rows.items() if n != "clean"],
        "drift": [r for n, r in rows.items() if n.startswith("drift:")],
    }
    for group, members in groups.items():
        for key in EVALUATION_KEYS:
            values = [r[key] for r in members if r.get(key) is not None]
            mean = round(float(np.mean(values)), 4) if values else None
            out.setdefault(f"{group}_mean", {})[key] = mean
            if group == "nuisance":
                out.setdefault("nuisance_min", {})[key] = min(values) if values else None
    return out


def _logger(job: Job):
    def say(message: str) -> None:
        log.info("job %s (%s): %s", job.id, job.model, message)

    return say
