"""The size of the model a configuration builds, counted without allocating it."""

from __future__ import annotations

from typing import Any

import torch

from binaryvae.models import build_model

__all__ = ["count_model"]


def count_model(
    config: Any, data_dim: int, image_shape: tuple[int, int] | None, data_kind: str
) -> tuple[int, int, int, int]:
    """``(parameters, buffers, summed layer output widths, bytes per element)`` of the model
    ``config`` builds, counted on the meta device (no storage is allocated)."""
    with torch.device("meta"):
        model = build_model(config, data_dim=data_dim, image_shape=image_shape,
                            data_kind=data_kind)  # fmt: skip
    params = list(model.parameters())
    parameters = sum(p.numel() for p in params)
    buffers = sum(b.numel() for b in model.buffers())
    widths = 0
    for module in model.modules():
        if isinstance(module, torch.nn.Linear):
            widths += module.out_features
        elif isinstance(module, torch.nn.Conv2d | torch.nn.ConvTranspose2d):
            widths += module.out_channels * data_dim  # at most the image's area per channel
    element = params[0].element_size() if params else 4
    return parameters, buffers, widths, element
