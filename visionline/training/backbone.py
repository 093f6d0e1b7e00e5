"""Frozen ImageNet EfficientNet-Lite0 features at strides 4, 8 and 16, from uint8 NHWC images.

Block 2 (24 ch, stride 4), block 4 (40 ch, stride 8) and block 10 (112 ch, stride 16) are the
mid-level features PatchCore and small detection heads use: local enough to see a scratch,
deep enough to be invariant to lighting and noise.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from visionline.models.export import load_pretrained

STRIDE4_BLOCK, STRIDE8_BLOCK, STRIDE16_BLOCK = 2, 4, 10
CHANNELS = {4: 24, 8: 40, 16: 112}


class Backbone(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        net: Any = load_pretrained().net  # efficientnet_lite_pytorch's EfficientNet, untyped
        self.stem = nn.Sequential(net._conv_stem, net._bn0, net._swish)
        self.blocks = nn.ModuleList(net._blocks[: STRIDE16_BLOCK + 1])
        for p in self.parameters():
            p.requires_grad_(False)
        self.eval()

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        # The normalisation the TF-Lite weights were trained with.
        x = self.stem((image.permute(0, 3, 1, 2).to(torch.float32) - 127.0) / 128.0)
        out = []
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i in (STRIDE4_BLOCK, STRIDE8_BLOCK, STRIDE16_BLOCK):
                out.append(x)
        return out[0], out[1], out[2]


def stride8(f4: torch.Tensor, f8: torch.Tensor, f16: torch.Tensor) -> torch.Tensor:
    """The three levels on the stride-8 grid: [N, 176, H/8, W/8]."""
    down = nn.functional.avg_pool2d(f4, 2)
    up = nn.functional.interpolate(f16, size=f8.shape[-2:], mode="bilinear", align_corners=False)
    return torch.cat([down, f8, up], dim=1)


def extract(backbone: Backbone, images, batch: int = 16) -> torch.Tensor:
    """Stride-8 features of uint8 NHWC images (numpy), as float16 to halve the cache."""
    import numpy as np

    out = []
    with torch.inference_mode():
        for start in range(0, len(images), batch):
            chunk = torch.from_numpy(np.ascontiguousarray(images[start : start + batch]))
            out.append(stride8(*backbone(chunk)).to(torch.float16))
    return torch.cat(out)
