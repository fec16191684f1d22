"""Supervised fitting of a small classifier (the feature network of the sample Fréchet distance).

It lives here because training is the only layer that calls ``backward()``/``step()``; the
evaluation layer owns the network and the protocol (`binaryvae.evaluation.fid`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["fit_classifier"]


def fit_classifier(
    classifier: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    epochs: int,
    batch_size: int = 128,
    lr: float = 1e-3,
    seed: int = 0,
) -> nn.Module:
    """Minimise the cross-entropy of ``classifier(x)`` against labels with Adam, in place.

    Args:
        classifier: maps float ``[B, D]`` to logits ``[B, C]``.
        x: float32 ``[N, D]`` inputs; y: int64 ``[N]`` labels in ``[0, C)``.
        epochs: passes over the data, each in a fresh order drawn from ``seed``.

    Deterministic for a given seed and initial classifier (one generator drives the shuffles).
    Returns the classifier in eval mode.
    """
    opt = torch.optim.Adam(classifier.parameters(), lr=lr)
    g = torch.Generator().manual_seed(seed)
    classifier.train()
    with torch.enable_grad():  # callers are usually under torch.no_grad()
        for _ in range(epochs):
            for idx in torch.randperm(len(x), generator=g).split(batch_size):
                loss = F.cross_entropy(classifier(x[idx]), y[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
    return classifier.eval()
