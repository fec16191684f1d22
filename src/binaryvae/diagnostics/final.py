"""The trained objective's gradient bias after training (summary.json ``final_grad_*``).

`gradient_diagnostics` of the trained model on the first ``images`` test images (the run's test
split as its summary reads it, `binaryvae.runs.build.test_data`), with ``samples`` estimates of
the trained objective's encoder gradient, compared with the exact gradient of the discrete
ELBO (2^n codes enumerated): its bias, the bias test of `binaryvae.diagnostics.gradients`
(squared ratio, z, the debiased bias, the noise's directions). The noise is drawn by a
generator of its own seeded `SEED`, the same for every run seed, as the removed
bench/beta_sweep.py drew it (``torch.Generator().manual_seed(7)``, 200 estimates, 128 test
images), so the committed β-sweep numbers are what ``--summary-grad-samples 200`` gives.
Nothing else draws from that generator and torch's global RNG is restored afterwards, so the
measurement changes no other number of the run.

Each key of `gradient_diagnostics` is written with the prefix ``final_`` (``grad_bias_ratio``
-> ``final_grad_bias_ratio``), and two ratios the β-sweep table reads are derived from them:
``final_grad_bias_over_noise`` = grad_bias_norm / grad_bias_noise (the ratio of norms; the
square root of grad_bias_sq_ratio) and ``final_grad_bias_debiased_ratio`` =
grad_bias_debiased / grad_exact_norm (the bias with the noise's share taken out, relative to
the exact gradient's norm).
"""

from __future__ import annotations

from typing import Any

import torch

from binaryvae.diagnostics.gradients import EXACT_GRADIENT_BITS, gradient_diagnostics
from binaryvae.errors import BadInput

__all__ = ["PREFIX", "SEED", "check_final_gradient", "final_gradient_diagnostics"]

SEED = 7  # the removed bench/beta_sweep.py's generator seed (the same for every run seed)
PREFIX = "final_"


def check_final_gradient(model: Any, config: Any) -> None:
    """BadInput unless ``model`` (built from ``config``) can be measured: a binary latent with a
    likelihood and at most `EXACT_GRADIENT_BITS` bits (the exact gradient enumerates 2^n
    codes). Nothing to check when ``config.summary_grad_samples`` is 0."""
    if not getattr(config, "summary_grad_samples", 0):
        return
    family = model.family
    if not (getattr(family, "binary", False) and getattr(family, "has_likelihood", False)):
        raise BadInput(
            f"summary_grad_samples measures the gradient bias against the exact discrete ELBO "
            f"of a binary latent; family {config.family!r} has none (give 0)"
        )
    if int(model.latent_dim) > EXACT_GRADIENT_BITS:
        raise BadInput(
            f"summary_grad_samples enumerates all 2^n codes for the exact gradient; limited to "
            f"latent_dim <= {EXACT_GRADIENT_BITS} bits, got latent_dim {model.latent_dim}"
        )


def final_gradient_diagnostics(
    model: Any, test_x: torch.Tensor, *, objective: str, samples: int, images: int
) -> dict[str, Any]:
    """``{final_<key>: value}`` of `gradient_diagnostics` of ``model`` on ``test_x[:images]``
    with ``samples`` estimates of ``objective``'s gradient (module docstring), and the two
    derived ratios; the model's mode and torch's global RNG are left as they were."""
    x = test_x[:images]
    device = x.device
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        g = torch.Generator(device=device).manual_seed(SEED)
        diag = gradient_diagnostics(model, x, objective=objective, samples=samples, generator=g)
    out: dict[str, Any] = {PREFIX + k: v for k, v in diag.items()}
    noise, exact = diag.get("grad_bias_noise"), diag.get("grad_exact_norm")
    if noise:
        out[PREFIX + "grad_bias_over_noise"] = diag["grad_bias_norm"] / noise
    if exact and diag.get("grad_bias_debiased") is not None:
        out[PREFIX + "grad_bias_debiased_ratio"] = diag["grad_bias_debiased"] / exact
    return out
