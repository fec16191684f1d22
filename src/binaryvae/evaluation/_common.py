"""Small helpers shared by the evaluation modules (devices, eval mode, Bernoulli log-mass)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

__all__ = [
    "model_device",
    "eval_mode",
    "seeded",
    "to_model",
    "is_binary",
    "prior_logits",
]


def model_device(model: torch.nn.Module) -> torch.device:
    """The device of the model's first parameter or buffer (cpu for a parameter-free model)."""
    for t in model.parameters():
        return t.device
    for t in model.buffers():
        return t.device
    return torch.device("cpu")


def to_model(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """x as float32 on the model's device (images arrive as float32 [B, D] in [0, 1])."""
    return x.to(device=model_device(model), dtype=torch.float32)


@contextlib.contextmanager
def eval_mode(model: torch.nn.Module) -> Iterator[None]:
    """Put the model in eval mode for the block and restore its previous mode afterwards."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


@contextlib.contextmanager
def seeded(seed: int | None, device: torch.device | None = None) -> Iterator[None]:
    """Run the block under a fixed global RNG seed without disturbing the caller's RNG stream.

    Evaluation during training must not move the training's random stream (a resumed run has to
    draw the same batches as an uninterrupted one), so the global generators are forked.
    `seed=None` leaves the global stream alone (and advances it).
    """
    if seed is None:
        yield
        return
    devices = [device] if device is not None and device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


def is_binary(model: torch.nn.Module) -> bool:
    """True when the model's family stands for a Bernoulli-latent (discrete) model."""
    family = getattr(model, "family", None)
    return bool(getattr(family, "binary", False))


def prior_logits(model: torch.nn.Module, n: int, device: torch.device) -> torch.Tensor:
    """Bernoulli prior logits [n] of the discrete model (zeros = Bernoulli(1/2))."""
    fn = getattr(model, "prior_bit_logits", None)
    logits = fn() if fn is not None else torch.zeros(n)
    return logits.to(device=device, dtype=torch.float32).expand(n)
