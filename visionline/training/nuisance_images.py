"""The project's nuisance factors (``visionline.synthetic.nuisance``) applied to the user's
own photographs: for training augmentation and for the robustness card.

Each factor is ``apply(image, strength, rng, profile) -> image`` on RGB uint8 images [H, W, 3]
(the model's input contract); strength 0 is the identity and 1 the strongest the project's
generator uses. The ``CameraProfile`` gives a factor its direction (warm or cool, where the
shadow falls, how the frame tilts), as it does for a camera of the generator.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import cv2
import numpy as np

from visionline.synthetic import nuisance as nz

Factor = Callable[[np.ndarray, float, np.random.Generator, nz.CameraProfile], np.ndarray]
STRENGTHS: tuple[float, ...] = (0.25, 0.5, 1.0)  # the robustness card's three strengths


def _on_float_bgr(image: np.ndarray, change: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """Run a camera factor (float32 BGR, 0..255) on an RGB uint8 image."""
    bgr = image[..., ::-1].astype(np.float32)
    out = change(bgr)
    return np.ascontiguousarray(np.clip(out, 0, 255).astype(np.uint8)[..., ::-1])


def _size(image: np.ndarray) -> tuple[int, int]:
    return image.shape[1], image.shape[0]


def brightness(image, strength, rng, profile):
    return _on_float_bgr(image, lambda x: x * nz.brightness_gain(strength))


def colour_temperature(image, strength, rng, profile):
    return _on_float_bgr(image, lambda x: x * nz.colour_gain(strength, profile.warm))


def white_balance(image, strength, rng, profile):
    return _on_float_bgr(image, lambda x: x * nz.white_balance_gain(strength, profile.wb_gains))


def gradient(image, strength, rng, profile):
    gain = nz.gradient_gain(_size(image), strength, profile.gradient_angle)
    return _on_float_bgr(image, lambda x: x * gain[..., None])


def shadow(image, strength, rng, profile):
    gain = nz.shadow_gain(_size(image), strength, profile)
    return _on_float_bgr(image, lambda x: x * gain[..., None])


def glare(image, strength, rng, profile):
    return _on_float_bgr(image, lambda x: nz.veiling_glare(x, strength))


def resolution(image, strength, rng, profile):
    return _on_float_bgr(image, lambda x: nz.resolution(x, strength))


def blur(image, strength, rng, profile):
    return _on_float_bgr(image, lambda x: nz.lens_blur(x, strength))


def motion_blur(image, strength, rng, profile):
    # The generator's travel is a belt's per frame; here a frame's width at full strength.
    return nz.motion_blur(image, strength, travel_px=image.shape[1])


def noise(image, strength, rng, profile):
    field = nz.noise_field(image.shape, int(rng.integers(1 << 31)))
    return _on_float_bgr(image, lambda x: nz.sensor_noise(x, strength, field, rng))


def jpeg(image, strength, rng, profile):
    if strength <= 0:
        return image
    quality = nz.jpeg_quality(strength)
    ok, data = cv2.imencode(".jpg", image[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    return np.ascontiguousarray(cv2.imdecode(data, cv2.IMREAD_COLOR)[..., ::-1])


def perspective(image, strength, rng, profile):
    matrix = nz.perspective(_size(image), strength, profile)
    return nz.warp(image, matrix)


def occlusion(image, strength, rng, profile):
    """A foreign object (glove, rag, cable offcut) in front of the subject, growing with the
    strength to about a third of the image's short side across."""
    if strength <= 0:
        return image
    height, width = image.shape[:2]
    points, colour = nz.foreign_object(rng, strength * 0.6 * min(height, width))
    centre = np.array([width * rng.uniform(0.25, 0.75), height * rng.uniform(0.25, 0.75)])
    out = image.copy()
    polygon = np.round(points + centre).astype(np.int32)
    cv2.fillPoly(out, [polygon], tuple(int(c) for c in colour[::-1]), cv2.LINE_AA)
    return out


FACTORS: dict[str, Factor] = {  # in the order a camera sees them: scene, light, sensor
    "occlusion": occlusion,
    "perspective": perspective,
    "motion_blur": motion_blur,
    "brightness": brightness,
    "colour_temperature": colour_temperature,
    "white_balance": white_balance,
    "gradient": gradient,
    "shadow": shadow,
    "glare": glare,
    "resolution": resolution,
    "blur": blur,
    "noise": noise,
    "jpeg": jpeg,
}


def profile_for(seed: int) -> nz.CameraProfile:
    return nz.CameraProfile.seeded(np.random.default_rng([seed, 0xCA3]))


def apply(name: str, image: np.ndarray, strength: float, seed: int) -> np.ndarray:
    """Factor ``name`` at ``strength``, reproducibly: the same seed, the same image."""
    rng = np.random.default_rng([seed, 0xF0C])
    return FACTORS[name](image, strength, rng, profile_for(seed))


def augment(
    image: np.ndarray,
    rng: np.random.Generator,
    rate: float = 0.35,
    factors: Sequence[str] | None = None,
) -> np.ndarray:
    """A training copy: each factor (of ``factors``, default all) with probability ``rate`` at
    a strength drawn in [0, 1], in a camera profile of its own (the direction of light and tilt
    varies by camera). At least one factor applies, so no copy is the clean image again."""
    profile = nz.CameraProfile.seeded(rng)
    pool = list(FACTORS) if factors is None else list(factors)
    names = [name for name in pool if rng.random() < rate]
    if not names:
        names = [pool[int(rng.integers(len(pool)))]]
    out = image
    for name in names:
        out = FACTORS[name](out, float(rng.uniform(0.1, 1.0)), rng, profile)
    return out


def factor_card(
    cell: Callable[[str, float], dict],
    rank: Callable[[dict, str], tuple],
    advance: Callable[[int], None] | None = None,
) -> dict:
    """A robustness card: ``robustness`` (factor -> strength -> ``cell(factor, strength)``),
    ``strengths``, ``worst_factor`` (the lowest ``rank`` at the strongest strength) and
    ``worst`` (its cell there); ``advance(1)`` after each cell."""
    card: dict = {}
    for factor in FACTORS:
        card[factor] = {}
        for strength in STRENGTHS:
            card[factor][str(strength)] = cell(factor, strength)
            if advance is not None:
                advance(1)
    strongest = str(STRENGTHS[-1])
    worst = min(card, key=lambda f: rank(card[f][strongest], f))
    return {
        "robustness": card,
        "strengths": list(STRENGTHS),
        "worst_factor": worst,
        "worst": {"factor": worst, "strength": float(strongest), **card[worst][strongest]},
    }
