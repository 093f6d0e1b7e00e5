"""Small labelled datasets made from scikit-image's bundled photographs, written by hand in
the layouts people bring (not through visionline's own writers), for the dataset tests.

Classification: crops of four photographs (astronaut, coffee, chelsea the cat, rocket) at
several places and scales, a class folder each, split into train/ and val/. Detection: crops
of those photographs' subjects pasted at known places onto crops of other photographs (brick,
grass, gravel), so every box is known to the pixel; written as COCO. Anomalies: crops of the
brick photograph (good) and the same kind of crops with the coffee cup pasted in (defect).
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
from skimage import data

CLASSES = ("astronaut", "chelsea", "coffee", "rocket")
# Each subject's region in its photograph (x0, y0, x1, y1): a face, a cat's head, a cup, a rocket.
SUBJECTS = {
    "astronaut": (data.astronaut, (160, 20, 300, 200)),
    "chelsea": (data.chelsea, (80, 20, 300, 250)),
    "coffee": (data.coffee, (100, 40, 480, 300)),
    "rocket": (data.rocket, (300, 30, 420, 400)),
}
BACKGROUNDS = (data.brick, data.grass, data.gravel)
DETECTION_SIZE = (160, 120)


def _bgr(image: np.ndarray) -> np.ndarray:
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    return cv2.cvtColor(image[..., :3], cv2.COLOR_RGB2BGR)


def _save(path: Path, image: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    params = [cv2.IMWRITE_JPEG_QUALITY, 90] if path.suffix == ".jpg" else []
    assert cv2.imwrite(str(path), image, params)


def classification_folders(out: Path, per_class: int = 6, val_every: int = 3) -> Path:
    """``out/{train,val}/<class>/<n>.jpg``: ``per_class`` crops of each photograph."""
    for label in CLASSES:
        photo = _bgr(getattr(data, label)())
        height, width = photo.shape[:2]
        for n in range(per_class):
            side = int(min(width, height) * (0.55 + 0.07 * n))
            x0 = (width - side) * n // max(1, per_class - 1)
            y0 = (height - side) * (per_class - 1 - n) // max(1, per_class - 1)
            crop = cv2.resize(photo[y0 : y0 + side, x0 : x0 + side], (64, 64))
            split = "val" if n % val_every == val_every - 1 else "train"
            suffix = ".png" if n == 0 else ".jpg"
            _save(out / split / label / f"{label}-{n}{suffix}", crop)
    return out


def detection_scene(index: int) -> tuple[np.ndarray, list[tuple[str, tuple[int, ...]]]]:
    """One frame: a background crop with one to three subjects pasted at known boxes."""
    width, height = DETECTION_SIZE
    background = _bgr(BACKGROUNDS[index % len(BACKGROUNDS)]())
    x, y = (
        (index * 23) % (background.shape[1] - width),
        (index * 17) % (background.shape[0] - height),
    )
    frame = background[y : y + height, x : x + width].copy()
    objects = []
    for k in range(1 + index % 3):
        label = CLASSES[(index + k) % len(CLASSES)]
        loader, (sx0, sy0, sx1, sy1) = SUBJECTS[label]
        w, h = 30 + (index * 7 + k * 11) % 20, 28 + (index * 5 + k * 13) % 18
        x0, y0 = 4 + k * 52, 6 + (index * 13 + k * 29) % (height - h - 8)
        subject = _bgr(loader())[sy0:sy1, sx0:sx1]
        frame[y0 : y0 + h, x0 : x0 + w] = cv2.resize(subject, (w, h))
        objects.append((label, (x0, y0, x0 + w, y0 + h)))
    return frame, objects


def detection_coco(out: Path, frames: int = 24, val_every: int = 4) -> Path:
    """``out/{train,val}/images/`` and ``annotations.json`` (category ids from 1)."""
    categories = [{"id": i + 1, "name": name} for i, name in enumerate(CLASSES)]
    documents = {
        split: {"images": [], "annotations": [], "categories": categories}
        for split in ("train", "val")
    }
    for index in range(frames):
        split = "val" if index % val_every == val_every - 1 else "train"
        frame, objects = detection_scene(index)
        name = f"frame-{index:03d}.jpg"
        _save(out / split / "images" / name, frame)
        document = documents[split]
        image_id = len(document["images"]) + 1
        document["images"].append(
            {"id": image_id, "file_name": name, "width": frame.shape[1], "height": frame.shape[0]}
        )
        for label, (x0, y0, x1, y1) in objects:
            document["annotations"].append(
                {
                    "id": len(document["annotations"]) + 1,
                    "image_id": image_id,
                    "category_id": CLASSES.index(label) + 1,
                    "bbox": [x0, y0, x1 - x0, y1 - y0],
                    "area": (x1 - x0) * (y1 - y0),
                    "iscrowd": 0,
                }
            )
    for split, document in documents.items():
        (out / split / "annotations.json").write_text(json.dumps(document))
    return out


def classification_crops(out: Path, per_class: int = 50, seed: int = 0, size: int = 128) -> Path:
    """``out/<class>/<n>.jpg`` with no split folders: ``per_class`` seeded random crops (a
    third to four fifths of the short side, anywhere) of six photographs: the four subjects
    and two textures (brick, gravel), for a dataset of a few hundred images."""
    rng = np.random.default_rng(seed)
    for label in (*CLASSES, "brick", "gravel"):
        photo = _bgr(getattr(data, label)())
        height, width = photo.shape[:2]
        for n in range(per_class):
            side = int(min(width, height) * rng.uniform(0.33, 0.8))
            x0, y0 = rng.integers(0, width - side + 1), rng.integers(0, height - side + 1)
            crop = cv2.resize(photo[y0 : y0 + side, x0 : x0 + side], (size, size))
            _save(out / label / f"{label}-{n}.jpg", crop)
    return out


def anomaly_folders(
    out: Path, good: int = 40, defects: int = 12, seed: int = 0, size: int = 128
) -> dict[str, tuple[int, int, int, int]]:
    """``out/good/<n>.jpg`` and ``out/defect/<n>.jpg``, no split folders: seeded crops of the
    brick photograph (a third to a half of its side, anywhere) and, for the defects, the same
    kind of crop with the coffee photograph's cup pasted in (18 to 32 % of the side, anywhere).
    Returns each defect file's pasted box (x0, y0, x1, y1) in its pixels."""
    rng = np.random.default_rng(seed)
    brick = _bgr(data.brick())
    loader, (cx0, cy0, cx1, cy1) = SUBJECTS["coffee"]
    cup = _bgr(loader())[cy0:cy1, cx0:cx1]
    boxes = {}
    for n in range(good + defects):
        side = int(brick.shape[0] * rng.uniform(0.33, 0.5))
        x0, y0 = (
            rng.integers(0, brick.shape[1] - side + 1),
            rng.integers(0, brick.shape[0] - side + 1),
        )
        crop = cv2.resize(brick[y0 : y0 + side, x0 : x0 + side], (size, size))
        if n < good:
            _save(out / "good" / f"good-{n}.jpg", crop)
            continue
        w, h = (int(size * rng.uniform(0.18, 0.32)) for _ in range(2))
        px, py = int(rng.integers(0, size - w + 1)), int(rng.integers(0, size - h + 1))
        crop[py : py + h, px : px + w] = cv2.resize(cup, (w, h))
        name = f"defect-{n - good}.jpg"
        _save(out / "defect" / name, crop)
        boxes[name] = (px, py, px + w, py + h)
    return boxes
