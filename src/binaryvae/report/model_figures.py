"""Figures that need a trained model: reconstructions, samples, interpolation, lambda, AE+GMM.

Each function takes loaded runs (`Loaded`: the report's record plus the rebuilt model) and
writes one PNG. Randomness comes from generators seeded by the run's seed, so a report is the
same every time it is regenerated.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from binaryvae.errors import BadInput
from binaryvae.report.collect import RunRecord
from binaryvae.report.plotting import COLOURS, new_figure, save, show_grid

__all__ = [
    "Loaded",
    "decode_probs",
    "gmm_figure",
    "interpolation_figure",
    "lambda_histogram",
    "pick_test_images",
    "reconstruction_figure",
    "reconstruction_table",
    "samples_figure",
    "sample_images",
]


@dataclass
class Loaded:
    """A run with its model rebuilt from checkpoints/last.pt and its test split."""

    record: RunRecord
    model: Any
    test_x: torch.Tensor  # float32 [N, D] on the model's device
    test_y: torch.Tensor | None  # int64 [N] or None
    image_shape: tuple[int, int] | None

    @property
    def binary(self) -> bool:
        return bool(getattr(self.model.family, "binary", False))


def decode_probs(model: Any, codes: torch.Tensor) -> torch.Tensor:
    """Pixel probabilities / means ``[..., D]`` of the decoder at ``codes [..., n]``."""
    return model.decoder.mean(model.decode(codes)).clamp(0.0, 1.0)


def _posterior_reconstruction(model: Any, x: torch.Tensor) -> torch.Tensor:
    """Decode one posterior sample per image through the family's relaxation: ``[B, D]``.

    The deterministic autoencoder has no posterior; its code is decoded instead.
    """
    try:
        q = model.posterior(x)
    except BadInput:
        return decode_probs(model, model.encode_mean(x))
    z = q.rsample() if q.has_rsample else q.sample()
    return decode_probs(model, model.relax(z))


def _hard_bit_reconstruction(model: Any, x: torch.Tensor) -> torch.Tensor:
    """Decode hard codes b ~ Bernoulli(lambda(x)): what the discrete model reconstructs."""
    return decode_probs(model, torch.bernoulli(model.bit_probs(x)))


def pick_test_images(test_y: torch.Tensor | None, count: int = 10) -> list[int]:
    """Indices of the figure's test images: the first two "4"s (dissertation Figure 5.6,
    Table 5.2), then the first image of other digits in order, up to ``count``."""
    if test_y is None:
        return list(range(count))
    y = test_y.tolist()
    fours = [i for i, v in enumerate(y) if v == 4][:2]
    picked = list(fours)
    for digit in (0, 1, 2, 3, 5, 6, 7, 8, 9):
        if len(picked) >= count:
            break
        if digit in y:
            picked.append(y.index(digit))
    rest = (i for i in range(len(y)) if i not in picked)
    while len(picked) < count:
        picked.append(next(rest))
    return picked


@torch.no_grad()
def reconstruction_figure(loaded: list[Loaded], index: list[int], path: Path) -> Path:
    """The same test images reconstructed by every family: one relaxed posterior sample (and,
    for binary families, hard bits) per image (Figures 3.2, 4.5, 5.6, A.2, A.4)."""
    first = loaded[0]
    x = first.test_x[index]
    rows: list[tuple[str, np.ndarray]] = [("test images", x.cpu().numpy())]
    for i, lr in enumerate(loaded):
        torch.manual_seed(lr.record.config.seed + i)
        rows.append(
            (
                f"{lr.record.label}: posterior sample",
                _posterior_reconstruction(lr.model, x).cpu().numpy(),
            )
        )
        if lr.binary:
            rows.append(
                (
                    f"{lr.record.label}: hard bits b~Bern(lambda)",
                    _hard_bit_reconstruction(lr.model, x).cpu().numpy(),
                )
            )
    fig = new_figure(0.6 * len(index) + 0.5, 0.85 * len(rows) + 0.4)
    axes = fig.subplots(len(rows), 1, squeeze=False)[:, 0]
    for ax, (title, images) in zip(axes, rows, strict=True):
        show_grid(ax, images, first.image_shape, ncols=len(index), title=title)
    return save(fig, path)


@torch.no_grad()
def reconstruction_table(loaded: list[Loaded], index: list[int], repeats: int = 5) -> list[dict]:
    """Table 5.2: reconstruction loss -log p(x | decoder input) of the first two picked test
    images (the two "4"s), averaged over ``repeats`` posterior draws, for every family: with
    the family's own decoder input, and with hard bits for binary families."""
    from binaryvae.evaluation import reconstruction_loss

    rows = []
    for lr in loaded:
        x = lr.test_x[index[:2]]
        torch.manual_seed(lr.record.config.seed)
        relaxed = reconstruction_loss(lr.model, x, repeats=repeats).tolist()
        hard = [float("nan")] * 2
        if lr.binary:
            hard = reconstruction_loss(lr.model, x, repeats=repeats, mode="discrete").tolist()
        rows.append({"run": lr.record.label, "relaxed": relaxed, "discrete": hard})
    return rows


@torch.no_grad()
def sample_images(model: Any, n: int, mode: str, seed: int = 0) -> torch.Tensor:
    """``n`` generated images ``[n, D]``: decoded prior codes shown as pixel probabilities
    (``probs``), one Bernoulli draw per pixel (``bernoulli``), or probabilities > 0.5
    (``threshold``) -- notes Figures 1-2, 4-5; dissertation Figures 3.6, A.3."""
    model.eval()
    device = next(model.parameters()).device
    g = torch.Generator(device=device).manual_seed(seed)
    probs = decode_probs(model, model.sample_codes(n, generator=g))
    if mode == "probs":
        return probs
    if mode == "bernoulli":
        return torch.bernoulli(probs, generator=g)
    if mode == "threshold":
        return (probs > 0.5).to(probs.dtype)
    raise BadInput(f"unknown sample mode {mode!r}; choose one of probs, bernoulli, threshold")


def samples_figure(lr: Loaded, path: Path, n: int = 64) -> Path:
    """One family's generated samples in the three display modes side by side."""
    fig = new_figure(11, 4.2)
    axes = fig.subplots(1, 3)
    seed = lr.record.config.seed
    for ax, mode in zip(axes, ("probs", "bernoulli", "threshold"), strict=True):
        images = sample_images(lr.model, n, mode, seed=seed).cpu().numpy()
        show_grid(ax, images, lr.image_shape, ncols=8, title=mode)
    fig.suptitle(f"{lr.record.label}: samples from the prior", fontsize=10)
    return save(fig, path)


@torch.no_grad()
def interpolation_figure(
    loaded: list[Loaded], pair: tuple[int, int], path: Path, steps: int = 10
) -> Path:
    """Decode the straight line between two test images' deterministic codes (Figure 1.3):
    lambda(x) for binary families (decoded as soft bits), the mean / code otherwise."""
    first = loaded[0]
    x = first.test_x[list(pair)]
    t = torch.linspace(0.0, 1.0, steps, device=x.device)[:, None]  # [steps, 1]
    fig = new_figure(0.6 * (steps + 2) + 0.5, 0.85 * len(loaded) + 0.4)
    axes = fig.subplots(len(loaded), 1, squeeze=False)[:, 0]
    for ax, lr in zip(axes, loaded, strict=True):
        codes = lr.model.encode_mean(x)  # [2, n]
        path_codes = (1 - t) * codes[0] + t * codes[1]  # [steps, n]
        images = torch.cat([x[:1], decode_probs(lr.model, path_codes), x[1:]]).cpu().numpy()
        show_grid(ax, images, first.image_shape, ncols=steps + 2, title=lr.record.label)
    return save(fig, path)


@torch.no_grad()
def lambda_histogram(loaded: list[Loaded], path: Path, images: int = 32) -> Path | None:
    """Histogram of lambda = P(bit = 1 | x) and of the posterior means over ``images`` test
    images, 45 bins (dissertation Figure 5.2), for every binary family."""
    binary = [lr for lr in loaded if lr.binary]
    if not binary:
        return None
    fig = new_figure(3.3 * len(binary), 5.2)
    axes = fig.subplots(2, len(binary), squeeze=False)
    for j, (lr, colour) in enumerate(zip(binary, COLOURS * 3, strict=False)):
        x = lr.test_x[:images]
        lam = lr.model.bit_probs(x).reshape(-1).cpu().numpy()
        axes[0, j].hist(lam, bins=45, range=(0, 1), color=colour)
        axes[0, j].set_title(f"{lr.record.label}\nlambda (P(bit=1|x))", fontsize=8)
        try:
            means = lr.model.posterior(x).mean.reshape(-1).cpu().numpy()
            means = means[np.isfinite(means)]
        except (BadInput, NotImplementedError, AttributeError):
            means = np.array([])
        if means.size:
            axes[1, j].hist(means, bins=45, color=colour, alpha=0.8)
            axes[1, j].set_title("posterior means", fontsize=8)
        else:
            axes[1, j].set_visible(False)
    fig.suptitle(f"{images} test images x {binary[0].model.latent_dim} bits", fontsize=10)
    return save(fig, path)


@torch.no_grad()
def gmm_figure(lr: Loaded, path: Path, points: int = 2000) -> tuple[Path, str]:
    """Autoencoder + GMM (notes Figures 6-9): test codes coloured by label, their density, the
    fitted mixture's samples, and decoded mixture samples. Codes with more than two dimensions
    are shown on their first two principal components (PCA fitted on the test codes).
    Returns the path and a sentence saying which projection was used."""
    codes = lr.model.encode_mean(lr.test_x[:points]).double().cpu().numpy()  # [N, n]
    g = torch.Generator(device=lr.test_x.device).manual_seed(lr.record.config.seed)
    gmm_codes = lr.model.sample_codes(points, generator=g)  # [N, n]
    decoded = decode_probs(lr.model, gmm_codes[:32]).cpu().numpy()
    gmm_np = gmm_codes.double().cpu().numpy()
    n = codes.shape[1]
    if n == 2:
        project, how = (lambda a: a), "the codes are 2-D and shown as they are"
    else:
        from sklearn.decomposition import PCA

        pca = PCA(n_components=min(2, n)).fit(codes)
        project = pca.transform
        share = pca.explained_variance_ratio_.sum()
        how = (
            f"the {n}-D codes are shown on their first two principal components "
            f"(PCA of the test codes, {100 * share:.0f}% of the variance)"
        )
    c2, s2 = project(codes), project(gmm_np)
    if c2.shape[1] == 1:
        c2 = np.hstack([c2, np.zeros_like(c2)])
        s2 = np.hstack([s2, np.zeros_like(s2)])
    fig = new_figure(15, 4)
    ax1, ax2, ax3, ax4 = fig.subplots(1, 4)
    labels = lr.test_y[: len(codes)].cpu().numpy() if lr.test_y is not None else None
    sc = ax1.scatter(c2[:, 0], c2[:, 1], c=labels, cmap="tab10", s=3)
    if labels is not None:
        fig.colorbar(sc, ax=ax1, label="digit")
    ax1.set_title("test codes by label (notes Fig. 6)", fontsize=9)
    lims = np.percentile(c2, [0.5, 99.5], axis=0).T
    ax2.hist2d(c2[:, 0], c2[:, 1], bins=60, range=lims, cmap="viridis")
    ax2.set_title("density of the codes (Fig. 7)", fontsize=9)
    ax3.hist2d(s2[:, 0], s2[:, 1], bins=60, range=lims, cmap="viridis")
    ax3.set_title(f"GMM samples, {lr.record.config.gmm_components} components (Fig. 8)", fontsize=9)
    show_grid(ax4, decoded, lr.image_shape, ncols=8, title="decoded GMM samples (Fig. 9)")
    return save(fig, path), how
