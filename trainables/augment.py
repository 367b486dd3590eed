"""Random crop (zero padding) and horizontal flip as batched tensor ops.

The random draws come from the trial's CPU generator once per epoch (so they
are reproducible and checkpointed with it); the crop itself is one gather on
the device, whatever the batch size: no per-sample Python.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def pad_for(size: int) -> int:
    """4 pixels for 32x32 (the CIFAR-10 convention), 12 for STL-10's 96x96."""
    return max(1, size // 8)


def draw(n: int, size: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample (dy, dx) offsets into the padded image, and flip flags."""
    pad = pad_for(size)
    shifts = torch.randint(0, 2 * pad + 1, (n, 2), generator=generator)
    flips = torch.rand(n, generator=generator) < 0.5
    return shifts, flips


def apply(x: torch.Tensor, shifts: torch.Tensor, flips: torch.Tensor) -> torch.Tensor:
    """Crop each image of x (B, C, H, W) at its offset in the zero-padded batch, flipping where asked."""
    b, c, h, w = x.shape
    pad = pad_for(w)
    padded = F.pad(x, (pad, pad, pad, pad))
    rows = torch.arange(h, device=x.device)[None, :] + shifts[:, :1]
    cols = torch.arange(w, device=x.device)[None, :] + shifts[:, 1:]
    cols = torch.where(flips[:, None], cols.flip(1), cols)
    batch = torch.arange(b, device=x.device)[:, None, None, None]
    channel = torch.arange(c, device=x.device)[None, :, None, None]
    return padded[batch, channel, rows[:, None, :, None], cols[:, None, None, :]]
