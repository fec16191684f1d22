"""The training set's discrete ELBO after training (summary.json ``train_discrete_elbo``).

The DisARM paper's "train ELBO" (Dong, Mnih & Tucker 2020, section 6), as the removed
bench/protocol.py and bench/estimator_study.py computed it: the discrete ELBO
(`binaryvae.evaluation.discrete_elbo`: hard codes b ~ Bernoulli(lambda(x)), 1 sample per
image, the analytic Bernoulli KL) of the first ``images`` training images, binarized once with
`BINARIZE_SEED` under "dynamic" (`binaryvae.data.test_tensor`: the same images for every seed),
the codes drawn by a generator of its own seeded ``SAMPLE_SEED + seed``, in chunks of `CHUNK`
images. Nothing else draws from that generator, and torch's global RNG is not touched, so
computing it changes no other number of the run.
"""

from __future__ import annotations

from typing import Any

import torch

from binaryvae.evaluation._common import eval_mode, model_device, to_model
from binaryvae.evaluation.bounds import discrete_elbo

__all__ = ["BINARIZE_SEED", "CHUNK", "SAMPLE_SEED", "train_discrete_elbo", "train_images"]

BINARIZE_SEED = 1  # the bench scripts' binarization of the training set (test_tensor seed 1)
SAMPLE_SEED = 1234  # the code draws: a generator seeded SAMPLE_SEED + the run's seed
CHUNK = 5000  # images per encoder/decoder pass


def train_images(train_x: torch.Tensor, binarize: str, images: int) -> torch.Tensor:
    """The first ``images`` of ``train_x`` [N, D] (all N when fewer) as float32 [M, D],
    binarized once with `BINARIZE_SEED` under "dynamic"."""
    from binaryvae.data import test_tensor

    return test_tensor(train_x[:images], binarize=binarize, seed=BINARIZE_SEED)


@torch.no_grad()
def train_discrete_elbo(
    model: Any, train_x: torch.Tensor, *, binarize: str, images: int, seed: int
) -> tuple[float, int]:
    """(mean discrete ELBO in nats per image, images used) of ``model`` on the first
    ``images`` training images of ``train_x`` (module docstring); the model's mode is
    restored and torch's global RNG left as it was."""
    x = train_images(train_x, binarize, images)
    device = model_device(model)
    g = torch.Generator(device=device).manual_seed(SAMPLE_SEED + int(seed))
    with eval_mode(model):
        values = [discrete_elbo(model, to_model(model, xb), samples=1, generator=g)
                  for xb in x.split(CHUNK)]  # fmt: skip
    return float(torch.cat(values).double().mean()), int(x.shape[0])
