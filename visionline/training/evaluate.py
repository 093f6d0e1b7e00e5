"""``visionline eval``: the installed inspection models on held-out frames, per nuisance condition.

Each condition renders frames from seeds training never used: clean, then every nuisance
factor alone at one strength (medium, 0.5, by default). Reported per condition:

- part detector: AP@0.5 of part boxes on whole frames;
- anomaly model: image AUROC on part crops (good vs defective), pixel AUROC of its map;
- defect detector: mAP@0.5 over the five classes and a class confusion matrix;
- masks: mean IoU of the predicted defect mask with the truth, on defective crops;
- part score (what verdicts and snapshots carry, max of both models): AUROC;
- defect detector as an image classifier: AUROC of its strongest class peak on the crop, the
  score the part rule (``min_mean_score``) averages over a part's frames.

Crops are cut around the true part boxes, so each model is judged on its own; the end-to-end
per-part figures come from ``visionline acceptance run`` through the real stack.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from visionline.inspection import metrics
from visionline.inspection.metrics import EVALUATION_KEYS
from visionline.inspection.vision import (
    CROP,
    DEFECT_CLASSES,
    DEFECT_DETECTOR,
    PART_ANOMALY,
    PART_DETECTOR,
    Crop,
    CropDecoding,
    Letterbox,
    decode_crop,
    decode_parts,
    upsample,
)
from visionline.training.data import CropSample, Samples, eval_conditions, render
from visionline.training.serving import OnnxModel, latest

IDENTITY = Crop(0.0, 0.0, float(CROP))  # decode in crop pixels
ALL_DETECTIONS = CropDecoding(min_defect_score=0.03)  # AP needs the low-score tail too


@dataclass(frozen=True)
class EvalConfig:
    seed: int = 9001
    strength: float = 0.5
    frames_per_condition: int = 24
    defect_rate: float = 0.4
    threads: int = 2


def load_models(repository: Path, threads: int) -> tuple[dict[str, OnnxModel], dict[str, int]]:
    models, versions = {}, {}
    for name in (PART_DETECTOR, PART_ANOMALY, DEFECT_DETECTOR):
        versions[name], folder = latest(repository / name)
        models[name] = OnnxModel(folder / "model.onnx", threads)
    return models, versions


def evaluate(repository: Path, config: EvalConfig = EvalConfig(), log=print) -> dict:
    started = time.perf_counter()
    models, versions = load_models(repository, config.threads)
    rows = {}
    for k, (name, nuisances) in enumerate(eval_conditions(config.strength)):
        t = time.perf_counter()
        data = render(
            config.seed + k, [(name, nuisances)], config.frames_per_condition, config.defect_rate
        )
        rows[name] = evaluate_condition(models, data)
        log(f"{name}: {_short(rows[name])} ({time.perf_counter() - t:.0f} s)")
    summary = _summary(rows)
    return {
        "versions": versions,
        "config": config.__dict__,
        "conditions": rows,
        "summary": summary,
        "seconds": round(time.perf_counter() - started, 1),
    }


def evaluate_condition(models: dict[str, OnnxModel], data: Samples) -> dict:
    frames = np.stack([f.image for f in data.frames])
    part_out = models[PART_DETECTOR].run(frames, batch=8)
    letterbox = Letterbox(1.0, frames.shape[2], frames.shape[1])  # boxes stay in input pixels
    part_dets, part_truth = [], []
    for i, frame in enumerate(data.frames):
        found = decode_parts({n: v[i] for n, v in part_out.items()}, letterbox, min_score=0.05)
        part_dets.append([("part", box, score) for box, score in found])
        part_truth.append([("part", tuple(b)) for b in frame.boxes])
    crops = data.crops
    images = np.stack([c.image for c in crops])
    anomaly = models[PART_ANOMALY].run(images)
    defects = models[DEFECT_DETECTOR].run(images)
    bad = np.array([c.defective for c in crops])
    dets, truths, part_scores, ious = [], [], [], []
    for i, crop in enumerate(crops):
        detected, score = decode_crop(
            IDENTITY,
            anomaly["anomaly_map"][i],
            float(anomaly["anomaly_score"][i]),
            defects["defect_heatmap"][i],
            defects["defect_size"][i],
            defects["defect_mask"][i],
            ALL_DETECTIONS,
        )
        part_scores.append(score)
        classed = [d for d in detected if d.defect_class in DEFECT_CLASSES]
        dets.append([(d.defect_class, d.box, d.score) for d in classed])
        truths.append(_truth(crop))
        if crop.defective:
            ious.append(metrics.mask_iou(upsample(defects["defect_mask"][i]) >= 0.5, crop.mask))
    maps = [upsample(m) for m in anomaly["anomaly_map"]]
    return {
        "frames": len(frames),
        "crops": len(crops),
        "defective_crops": int(bad.sum()),
        "part_ap50": _round(metrics.average_precision(part_dets, part_truth).get("part")),
        "image_auroc": _round(_auroc(anomaly["anomaly_score"], bad)),
        "pixel_auroc": _round(metrics.pixel_auroc(maps, [c.mask for c in crops])),
        "part_score_auroc": _round(_auroc(np.array(part_scores), bad)),
        "detector_auroc": _round(_auroc(defects["defect_heatmap"].max(axis=(1, 2, 3)), bad)),
        "defect_map50": _round(metrics.mean_average_precision(dets, truths)),
        "defect_ap50": {c: _round(v) for c, v in metrics.average_precision(dets, truths).items()},
        "mask_iou": _round(float(np.mean(ious))) if ious else None,
        "confusion": _confusion(dets, truths),
    }


def _confusion(dets: list, truths: list) -> dict:
    """Rows: true class (then "background": false detections); columns: predicted class
    (then "background": missed), at the decision threshold."""
    found = metrics.class_confusion(dets, truths, list(DEFECT_CLASSES), min_score=0.3)
    return {"labels": found["labels"], "matrix": np.asarray(found["matrix"]).tolist()}


def _truth(crop: CropSample) -> list[tuple[str, tuple]]:
    return [(DEFECT_CLASSES[c], tuple(b)) for c, b in zip(crop.classes, crop.boxes, strict=True)]


def _auroc(scores: np.ndarray, labels: np.ndarray) -> float | None:
    return metrics.roc_auc(scores, labels) if 0 < labels.sum() < len(labels) else None


def _round(value: float | None) -> float | None:
    return None if value is None or np.isnan(value) else round(float(value), 4)


KEYS = EVALUATION_KEYS


def _short(row: dict) -> str:
    return ", ".join(f"{k} {row[k]}" for k in KEYS)


def _summary(rows: dict[str, dict]) -> dict:
    nuisance = {k: v for k, v in rows.items() if k != "clean"}
    out = {"clean": {k: rows["clean"][k] for k in KEYS}}
    for key in KEYS:
        values = [v[key] for v in nuisance.values() if v[key] is not None]
        out.setdefault("nuisance_min", {})[key] = min(values) if values else None
        out.setdefault("nuisance_mean", {})[key] = (
            round(float(np.mean(values)), 4) if values else None
        )
    return out
