"""Random draws from an optional generator: the one place the package's noise comes from.

``generator`` is None (torch's global generator), a ``torch.Generator``, or any object with a
``draw(fn, shape, like)`` method -- `binaryvae.models.replicas.ReplicaGenerator` draws the slice
of each independent replica from that replica's own generator, so that replica r of a stacked
run sees exactly the noise of a single run with r's seed.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

__all__ = ["draw", "open_uniform"]


def draw(
    fn: Callable[..., torch.Tensor], shape, like: torch.Tensor, generator=None
) -> torch.Tensor:
    """``fn`` (torch.rand or torch.randn) of ``shape`` with ``like``'s dtype, on ``like``'s device.

    With a ``torch.Generator`` the numbers are drawn on the generator's device and moved, so a
    CPU generator can drive a CUDA model (and the draws do not depend on where the model lives).
    """
    if generator is None:
        return fn(shape, dtype=like.dtype, device=like.device)
    if isinstance(generator, torch.Generator):
        out = fn(shape, generator=generator, device=generator.device, dtype=like.dtype)
        return out.to(like.device)
    return generator.draw(fn, shape, like)


def open_uniform(shape, like: torch.Tensor, generator=None) -> torch.Tensor:
    """Uniforms in the open interval (0, 1) with the dtype and device of ``like``.

    `torch.rand` draws from the grid {0, 2^-24, ..., 1 - 2^-24} (float32); only the value 0 is
    outside (0, 1), and it is moved to the smallest normal float: the cell of width 2^-24 keeps
    its probability, nothing else changes (no clamp near 1 is needed since rand < 1).
    """
    u = draw(torch.rand, shape, like, generator)
    return u.clamp_(min=torch.finfo(u.dtype).tiny)
