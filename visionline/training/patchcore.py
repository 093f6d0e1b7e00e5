"""PatchCore (Roth et al., 2022): a memory bank of good-part patch features, coreset-subsampled.

A crop's patch features are the stride-8 and stride-16 levels on the stride-8 grid, averaged
over 3x3 neighbours; a patch's anomaly is its distance to the nearest patch in the bank, and
the image score is the largest patch anomaly after a small blur. Both are calibrated to 0.5 at
the threshold that best separates held-out good and defective parts, so consumers never need
the raw distance scale.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from visionline.training.backbone import Backbone


def patch_features(f8: torch.Tensor, f16: torch.Tensor) -> torch.Tensor:
    up = nn.functional.interpolate(f16, size=f8.shape[-2:], mode="bilinear", align_corners=False)
    features = torch.cat([f8, up], dim=1)
    return nn.functional.avg_pool2d(features, 3, stride=1, padding=1, count_include_pad=False)


def coreset(patches: torch.Tensor, size: int, seed: int, project: int = 64) -> torch.Tensor:
    """Greedy k-centre selection (on a random projection, as the paper does): indices."""
    generator = torch.Generator().manual_seed(seed)
    if len(patches) <= size:
        return torch.arange(len(patches))
    matrix = torch.randn(patches.shape[1], project, generator=generator) / project**0.5
    reduced = patches @ matrix
    chosen = [int(torch.randint(len(reduced), (1,), generator=generator))]
    nearest = torch.linalg.norm(reduced - reduced[chosen[0]], dim=1)
    for _ in range(size - 1):
        k = int(torch.argmax(nearest))
        chosen.append(k)
        nearest = torch.minimum(nearest, torch.linalg.norm(reduced - reduced[k], dim=1))
    return torch.tensor(chosen)


class PatchCore(nn.Module):
    """uint8 NHWC crops -> (calibrated anomaly map [N, H/8, W/8], calibrated score [N])."""

    # The buffers registered below.
    bank: torch.Tensor
    bank_sq: torch.Tensor
    blur: torch.Tensor
    threshold: torch.Tensor
    scale: torch.Tensor

    def __init__(self, backbone: Backbone, bank: torch.Tensor) -> None:
        super().__init__()
        self.backbone = backbone
        self.register_buffer("bank", bank.to(torch.float32))
        self.register_buffer("bank_sq", (bank.to(torch.float32) ** 2).sum(1))
        kernel = torch.tensor([[1.0, 2.0, 1.0], [2.0, 4.0, 2.0], [1.0, 2.0, 1.0]]) / 16
        self.register_buffer("blur", kernel.view(1, 1, 3, 3))
        self.register_buffer("threshold", torch.tensor(1.0))
        self.register_buffer("scale", torch.tensor(1.0))

    def distances(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Raw (map, score): nearest-neighbour distance per patch, and the blurred max."""
        _, f8, f16 = self.backbone(image)
        return self.raw_from_features(f8, f16)

    def raw_from_features(
        self, f8: torch.Tensor, f16: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``distances`` from the backbone's stride-8 and stride-16 features."""
        features = patch_features(f8, f16)
        n, d, h, w = features.shape
        q = features.permute(0, 2, 3, 1).reshape(n, h * w, d)
        # |q - b|^2 = |q|^2 - (2 q.b - |b|^2): the bank's norms ride in the matrix product as an
        # extra column (q gets a 1), so the only pass over the [patches x bank] scores is the
        # max; |q|^2 is added after it. Same distances, a third less time (`make bench`).
        folded = torch.cat([2 * self.bank, -self.bank_sq[:, None]], dim=1)
        ones = torch.ones_like(q[..., :1])
        best = (torch.cat([q, ones], dim=-1) @ folded.T).max(-1).values
        d2 = (q * q).sum(-1) - best
        raw = d2.clamp_min(0).sqrt().reshape(n, 1, h, w)
        smooth = nn.functional.conv2d(
            nn.functional.pad(raw, (1, 1, 1, 1), mode="replicate"), self.blur
        )[:, 0]
        return smooth, smooth.amax(dim=(1, 2))

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, ...]:
        # ``...``: a subclass may answer more outputs (``anomaly_job.AnomalyNet``'s logits).
        _, f8, f16 = self.backbone(image)
        return self.from_features(f8, f16)

    def from_features(
        self, f8: torch.Tensor, f16: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Calibrated (map, score) from the backbone's features (``part_crops`` shares them)."""
        smooth, score = self.raw_from_features(f8, f16)
        calibrate = lambda v: torch.sigmoid((v - self.threshold) / self.scale)  # noqa: E731
        return calibrate(smooth), calibrate(score)

    def calibrate(self, good: np.ndarray, bad: np.ndarray) -> dict[str, float]:
        """Threshold at the best Youden J of held-out raw scores; scale from the good spread."""
        candidates = np.unique(np.concatenate([good, bad]))
        j = [(bad >= t).mean() - (good >= t).mean() for t in candidates]
        threshold = float(candidates[int(np.argmax(j))])
        scale = float(max(np.std(good), 1e-3) / 2)
        self.threshold.fill_(threshold)
        self.scale.fill_(scale)
        return {"threshold": threshold, "scale": scale, "youden_j": float(max(j))}


def fit_bank(
    backbone: Backbone,
    crops: np.ndarray,
    size: int,
    seed: int,
    sample: int,
    rng: np.random.Generator,
    batch: int = 16,
) -> torch.Tensor:
    """Patches of good crops (``sample`` random ones per crop), coreset-subsampled to ``size``."""
    all_patches = sample_patches(backbone, crops, sample, rng, batch)
    return all_patches[coreset(all_patches, size, seed)].clone()


def sample_patches(
    backbone: Backbone,
    crops: np.ndarray,
    sample: int,
    rng: np.random.Generator,
    batch: int = 16,
    advance: Callable[[int], None] | None = None,
) -> torch.Tensor:
    """``sample`` random patch features of each crop (all of them when it has fewer)."""
    patches = []
    with torch.inference_mode():
        for start in range(0, len(crops), batch):
            x = torch.from_numpy(np.ascontiguousarray(crops[start : start + batch]))
            _, f8, f16 = backbone(x)
            f = patch_features(f8, f16)
            for one in f.permute(0, 2, 3, 1).reshape(len(x), -1, f.shape[1]):
                keep = rng.choice(len(one), min(sample, len(one)), replace=False)
                patches.append(one[torch.from_numpy(keep)])
            if advance is not None:
                advance(len(x))
    return torch.cat(patches)


def raw_scores(
    model: PatchCore, crops: np.ndarray, batch: int = 16
) -> tuple[np.ndarray, np.ndarray]:
    maps, scores = [], []
    with torch.inference_mode():
        for start in range(0, len(crops), batch):
            x = torch.from_numpy(np.ascontiguousarray(crops[start : start + batch]))
            m, s = model.distances(x)
            maps.append(m.numpy())
            scores.append(s.numpy())
    return np.concatenate(maps), np.concatenate(scores)
