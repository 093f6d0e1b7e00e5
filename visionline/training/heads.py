"""CenterNet-style heads on frozen stride-8 features: part boxes, defect boxes and masks.

A head is two 3x3 convolutions over a 1x1 reduction; the outputs are a per-class centre
heatmap (focal loss, as in CenterNet), box size as log(size / stride) at the centre cell
(L1), an optional sub-cell centre offset, and an optional defect mask (BCE). Only the head
trains: the backbone's features are computed once and cached, so an epoch is seconds.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from visionline.inspection.vision import STRIDE

FEATURES = 176  # 24 + 40 + 112, see backbone.stride8
NEAR = 0.6  # heatmap level down to which a cell learns the box size too


class Head(nn.Module):
    """``dilations``: one 3x3 convolution each; growing dilations see the whole part, which
    a missing hole needs (only the pattern of the other holes says one is missing)."""

    def __init__(
        self,
        classes: int,
        offset: bool,
        mask: bool,
        width: int = 64,
        dilations: Sequence[int] = (1, 1),
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(FEATURES, width, 1), nn.ReLU()]
        for d in dilations:
            layers += [nn.Conv2d(width, width, 3, padding=d, dilation=d), nn.ReLU()]
        self.trunk = nn.Sequential(*layers)
        self.heatmap = nn.Conv2d(width, classes, 1)
        assert self.heatmap.bias is not None  # a Conv2d has one unless told not to
        nn.init.constant_(self.heatmap.bias, -math.log((1 - 0.1) / 0.1))  # CenterNet's prior
        self.size = nn.Conv2d(width, 2, 1)
        self.offset = nn.Conv2d(width, 2, 1) if offset else None
        self.mask = nn.Conv2d(width, 1, 1) if mask else None

    def forward(self, features: torch.Tensor) -> list[torch.Tensor]:
        x = self.trunk(features.to(torch.float32))
        out = [torch.sigmoid(self.heatmap(x)), self.size(x)]
        if self.offset is not None:
            out.append(self.offset(x))
        if self.mask is not None:
            out.append(torch.sigmoid(self.mask(x))[:, 0])
        return out


@dataclass
class Targets:
    heatmap: torch.Tensor  # [N, C, H, W]
    size: torch.Tensor  # [N, 2, H, W], valid where centre
    offset: torch.Tensor  # [N, 2, H, W]
    centre: torch.Tensor  # bool [N, H, W]
    near: torch.Tensor  # bool [N, H, W]: cells close to a centre also learn its size
    mask: torch.Tensor | None  # [N, H, W] in {0, 1}


def build_targets(
    boxes: Sequence[np.ndarray],
    classes: Sequence[Sequence[int]],
    num_classes: int,
    grid: tuple[int, int],
    masks: Sequence[np.ndarray] | None = None,
) -> Targets:
    n, (h, w) = len(boxes), grid
    heat = np.zeros((n, num_classes, h, w), np.float32)
    size, offset = np.zeros((n, 2, h, w), np.float32), np.zeros((n, 2, h, w), np.float32)
    centre = np.zeros((n, h, w), bool)
    weight = np.zeros((n, h, w), np.float32)  # the blob that owns a cell's size target
    ys, xs = np.mgrid[0:h, 0:w]
    for i, (image_boxes, image_classes) in enumerate(zip(boxes, classes, strict=True)):
        for box, cls in zip(image_boxes, image_classes, strict=True):
            bw, bh = max(box[2] - box[0], 1.0), max(box[3] - box[1], 1.0)
            cx, cy = (box[0] + box[2]) / 2 / STRIDE, (box[1] + box[3]) / 2 / STRIDE
            gx, gy = min(w - 1, int(cx)), min(h - 1, int(cy))
            sigma = max(0.6, min(bw, bh) / STRIDE / 4)
            blob = np.exp(-((xs - gx) ** 2 + (ys - gy) ** 2) / (2 * sigma**2))
            heat[i, cls] = np.maximum(heat[i, cls], blob)
            heat[i, cls, gy, gx] = 1.0
            owned = (blob >= NEAR) & (blob > weight[i])
            weight[i][owned] = blob[owned]
            size[i, 0][owned], size[i, 1][owned] = np.log(bw / STRIDE), np.log(bh / STRIDE)
            size[i, :, gy, gx] = np.log(bw / STRIDE), np.log(bh / STRIDE)
            offset[i, :, gy, gx] = cx - gx, cy - gy
            centre[i, gy, gx] = True
    mask = None
    if masks is not None:  # a cell is defect if any of its pixels is: thin scratches count
        pooled = [m.reshape(h, STRIDE, w, STRIDE).any(axis=(1, 3)) for m in masks]
        mask = torch.from_numpy(np.stack(pooled).astype(np.float32))
    return Targets(
        torch.from_numpy(heat),
        torch.from_numpy(size),
        torch.from_numpy(offset),
        torch.from_numpy(centre),
        torch.from_numpy(weight >= NEAR),
        mask,
    )


def focal_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    pred = pred.clamp(1e-4, 1 - 1e-4)
    pos = target.eq(1).float()
    pos_loss = -(torch.log(pred) * (1 - pred) ** 2 * pos).sum()
    neg_loss = -(torch.log(1 - pred) * pred**2 * (1 - target) ** 4 * (1 - pos)).sum()
    return (pos_loss + neg_loss) / pos.sum().clamp_min(1)


def loss_of(
    outputs: list[torch.Tensor], t: Targets, index: torch.Tensor, head: Head
) -> torch.Tensor:
    heat, size = outputs[0], outputs[1]
    centre = t.centre[index]
    loss = focal_loss(heat, t.heatmap[index])
    cells = centre.unsqueeze(1).expand_as(size)
    near = t.near[index].unsqueeze(1).expand_as(size)
    if centre.any():
        loss = loss + 0.5 * (size[near] - t.size[index][near]).abs().mean()
    k = 2
    if head.offset is not None:
        if centre.any():
            loss = loss + (outputs[k][cells] - t.offset[index][cells]).abs().mean()
        k += 1
    if head.mask is not None and t.mask is not None:
        target = t.mask[index]
        weight = 1 + 9 * target  # defect cells are rare
        loss = loss + nn.functional.binary_cross_entropy(outputs[k], target, weight=weight)
    return loss


def train_head(
    head: Head,
    features: torch.Tensor,
    targets: Targets,
    epochs: int,
    seed: int,
    batch: int = 32,
    lr: float = 2e-3,
    log=print,
) -> list[float]:
    """Adam with cosine decay; returns the mean loss per epoch."""
    torch.manual_seed(seed)
    optimiser = torch.optim.Adam(head.parameters(), lr=lr, weight_decay=1e-5)
    steps = epochs * math.ceil(len(features) / batch)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, lr, total_steps=steps)
    generator = torch.Generator().manual_seed(seed)
    history = []
    head.train()
    for epoch in range(epochs):
        started, total = time.perf_counter(), 0.0
        order = torch.randperm(len(features), generator=generator)
        for start in range(0, len(order), batch):
            index = order[start : start + batch]
            x = features[index].to(torch.float32)
            loss = loss_of(head(x), targets, index, head)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            schedule.step()
            total += loss.item() * len(index)
        history.append(total / len(features))
        log(
            f"  epoch {epoch + 1}/{epochs}: loss {history[-1]:.4f} "
            f"({time.perf_counter() - started:.1f} s)"
        )
    head.eval()
    return history
