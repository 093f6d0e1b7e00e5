"""The image preparation the model was trained with: short side to 224, centre crop."""

import cv2
import numpy as np


def resize_center_crop(image: np.ndarray, size: int = 224) -> np.ndarray:
    """Resize an RGB uint8 image [H, W, 3] so its short side is `size`, then centre-crop.

    INTER_AREA because frames are almost always downscaled; it avoids the aliasing that
    bilinear resizing gives on large reductions.
    """
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an RGB image [H, W, 3], got shape {image.shape}")
    height, width = image.shape[:2]
    scale = size / min(height, width)
    new_w, new_h = max(size, round(width * scale)), max(size, round(height * scale))
    resized = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_AREA)
    top, left = (new_h - size) // 2, (new_w - size) // 2
    return np.ascontiguousarray(resized[top : top + size, left : left + size])
