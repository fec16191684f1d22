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
from binaryvae.report.labels import (
    decoder_input_label,
    interpolation_label,
    prior_description,
)
from binaryvae.report.style import colour_of, new_figure, save, show_grid

__all__ = [
    "Loaded",
    "decode_probs",
    "gmm_figure",
    "interpolation_figure",
    "lambda_histogram",
    "pick_test_images",
    "posterior_means_histogram",
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

    @property
    def kind(self) -> str:
        """relaxed, exact, continuous or autoencoder (`binaryvae.report.labels.run_kind`)."""
        return self.record.kind


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
    """Indices of the figure's test images: the first two images labelled 4 in the test split
    (two "4"s as in dissertation Figure 5.6 and Table 5.2, though not the dissertation's own
    images, which it does not identify), then the first image of every other label in order,
    up to ``count``."""
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
    """The same test images reconstructed by every run: one posterior draw decoded per image
    (what each row decodes is in its title, `binaryvae.report.labels.decoder_input_label`), and
    for relaxed binary families also hard bits b ~ Bernoulli(lambda(x)) (the binary model)."""
    first = loaded[0]
    x = first.test_x[index]  # [len(index), D]
    rows: list[tuple[str, np.ndarray]] = [("test images", x.cpu().numpy())]
    for i, lr in enumerate(loaded):
        torch.manual_seed(lr.record.config.seed + i)
        if lr.kind == "exact":  # the posterior is Bernoulli itself: its draws are hard bits
            images = _hard_bit_reconstruction(lr.model, x)
        else:
            images = _posterior_reconstruction(lr.model, x)
        rows.append((f"{lr.record.label}: {decoder_input_label(lr.kind)}", images.cpu().numpy()))
        if lr.kind == "relaxed":
            rows.append(
                (
                    f"{lr.record.label}: hard bits b ~ Bernoulli(lambda(x)) decoded",
                    _hard_bit_reconstruction(lr.model, x).cpu().numpy(),
                )
            )
    fig = new_figure(max(6.0, 0.6 * len(index) + 0.5), 0.85 * len(rows) + 0.6)
    axes = fig.subplots(len(rows), 1, squeeze=False)[:, 0]
    for ax, (title, images) in zip(axes, rows, strict=True):
        show_grid(ax, images, first.image_shape, ncols=len(index), title=title)
    fig.suptitle("Reconstructions of the same test images (decoder mean)")
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
    """One run's generated images in the three display modes side by side; the title says
    where the codes come from (`prior_description`: the prior, or the autoencoder's mixture)."""
    fig = new_figure(11, 4.4)
    axes = fig.subplots(1, 3)
    seed = lr.record.config.seed
    titles = {
        "probs": "pixel probabilities (decoder mean)",
        "bernoulli": "one Bernoulli draw per pixel",
        "threshold": "probabilities > 0.5",
    }
    for ax, (mode, title) in zip(axes, titles.items(), strict=True):
        images = sample_images(lr.model, n, mode, seed=seed).cpu().numpy()
        show_grid(ax, images, lr.image_shape, ncols=8, title=title)
    fig.suptitle(f"{lr.record.label}: {n} {prior_description(lr.model)}, decoded")
    return save(fig, path)


@torch.no_grad()
def interpolation_figure(
    loaded: list[Loaded], pair: tuple[int, int], path: Path, steps: int = 10
) -> Path:
    """Decode the straight line between two test images' deterministic codes (Figure 1.3):
    lambda(x) for binary families (decoded as soft bits), the mean / code otherwise. First and
    last columns are the two images themselves."""
    first = loaded[0]
    x = first.test_x[list(pair)]  # [2, D]
    t = torch.linspace(0.0, 1.0, steps, device=x.device)[:, None]  # [steps, 1]
    fig = new_figure(max(6.0, 0.6 * (steps + 2) + 0.5), 0.85 * len(loaded) + 0.6)
    axes = fig.subplots(len(loaded), 1, squeeze=False)[:, 0]
    for ax, lr in zip(axes, loaded, strict=True):
        codes = lr.model.encode_mean(x)  # [2, n]
        path_codes = (1 - t) * codes[0] + t * codes[1]  # [steps, n]
        images = torch.cat([x[:1], decode_probs(lr.model, path_codes), x[1:]]).cpu().numpy()
        title = f"{lr.record.label}: {interpolation_label(lr.kind)}"
        show_grid(ax, images, first.image_shape, ncols=steps + 2, title=title)
    fig.suptitle(f"Straight line between two test images' codes, {steps} steps")
    return save(fig, path)


def _grid(count: int, width: float = 3.0, height: float = 2.6, max_cols: int = 4):
    """A figure of ``count`` panels in rows of at most ``max_cols``; unused panels hidden."""
    ncols = min(max_cols, count)
    nrows = -(-count // ncols)
    fig = new_figure(width * ncols, height * nrows + 0.5)
    axes = fig.subplots(nrows, ncols, squeeze=False).flat
    axes = list(axes)
    for ax in axes[count:]:
        ax.set_visible(False)
    return fig, axes[:count]


@torch.no_grad()
def lambda_histogram(loaded: list[Loaded], path: Path, images: int = 32) -> Path | None:
    """Histogram of lambda = P(bit = 1 | x) over ``images`` test images x n bits, 45 bins, one
    panel per binary run (the bit probabilities the discrete model uses)."""
    binary = [(i, lr) for i, lr in enumerate(loaded) if lr.binary]
    if not binary:
        return None
    fig, axes = _grid(len(binary))
    n = binary[0][1].model.latent_dim
    for ax, (i, lr) in zip(axes, binary, strict=True):
        lam = lr.model.bit_probs(lr.test_x[:images]).reshape(-1).cpu().numpy()
        ax.hist(lam, bins=45, range=(0, 1), color=colour_of(i))
        ax.set_title(lr.record.label)
        ax.set_xlabel("lambda = P(bit = 1 | x)")
        ax.set_ylabel("count (images x bits)")
    fig.suptitle(f"Bit probabilities lambda(x): {images} test images x {n} bits, 45 bins")
    return save(fig, path)


@torch.no_grad()
def posterior_means_histogram(
    loaded: list[Loaded], path: Path, images: int = 32
) -> tuple[Path | None, list[str]]:
    """Histogram of the posterior means E_q[z | x] over ``images`` test images x n latent
    dimensions, 45 bins, one panel per run with a continuous posterior (dissertation Fig. 5.2
    is the Logistic panel). Each panel has its own x axis: the families' latents differ.
    Returns the path (None without any panel) and the runs whose posterior has no mean."""
    panels, skipped = [], []
    for i, lr in enumerate(loaded):
        if lr.kind not in ("relaxed", "continuous"):
            continue  # exact: the mean is lambda itself; autoencoder: no posterior
        try:
            means = lr.model.posterior(lr.test_x[:images]).mean.reshape(-1).cpu().numpy()
        except (BadInput, NotImplementedError, AttributeError):
            skipped.append(lr.record.label)
            continue
        means = means[np.isfinite(means)]
        if means.size:
            panels.append((i, lr, means))
        else:
            skipped.append(lr.record.label)
    if not panels:
        return None, skipped
    fig, axes = _grid(len(panels))
    for ax, (i, lr, means) in zip(axes, panels, strict=True):
        ax.hist(means, bins=45, color=colour_of(i))
        ax.set_title(lr.record.label)
        ax.set_xlabel("posterior mean E_q[z | x]")
        ax.set_ylabel("count (images x dimensions)")
    n = panels[0][1].model.latent_dim
    fig.suptitle(f"Posterior means: {images} test images x {n} dimensions, 45 bins")
    return save(fig, path), skipped


@torch.no_grad()
def gmm_figure(lr: Loaded, path: Path, points: int = 2000) -> tuple[Path, str]:
    """Autoencoder + GMM (notes Figures 6-9): test codes coloured by label, their density, the
    fitted mixture's samples (same bins), and decoded mixture samples. Codes with more than two
    dimensions are shown on their first two principal components (PCA fitted on the test
    codes). Returns the path and a sentence saying which projection was used."""
    codes = lr.model.encode_mean(lr.test_x[:points]).double().cpu().numpy()  # [N, n]
    g = torch.Generator(device=lr.test_x.device).manual_seed(lr.record.config.seed)
    gmm_codes = lr.model.sample_codes(points, generator=g)  # [N, n]
    decoded = decode_probs(lr.model, gmm_codes[:32]).cpu().numpy()
    gmm_np = gmm_codes.double().cpu().numpy()
    n = codes.shape[1]
    if n <= 2:
        project, how = (lambda a: a), f"the codes are {n}-D and shown as they are"
        axis_names = [f"code dimension {d + 1}" for d in range(2)]
    else:
        from sklearn.decomposition import PCA

        pca = PCA(n_components=2).fit(codes)
        project = pca.transform
        ratio = pca.explained_variance_ratio_
        how = (
            f"the {n}-D codes are shown on their first two principal components "
            f"(PCA of the test codes, {100 * ratio.sum():.0f}% of the variance)"
        )
        axis_names = [f"PC {d + 1} ({100 * r:.0f}% of variance)" for d, r in enumerate(ratio)]
    c2, s2 = project(codes), project(gmm_np)
    if c2.shape[1] == 1:
        c2 = np.hstack([c2, np.zeros_like(c2)])
        s2 = np.hstack([s2, np.zeros_like(s2)])
    fig = new_figure(10, 8.2)
    (ax1, ax2), (ax3, ax4) = fig.subplots(2, 2)
    labels = lr.test_y[: len(codes)].cpu().numpy() if lr.test_y is not None else None
    what = "digit" if lr.record.config.dataset in ("mnist", "mnist-mini") else "class label"
    sc = ax1.scatter(c2[:, 0], c2[:, 1], c=labels, cmap="tab10", s=3)
    if labels is not None:
        fig.colorbar(sc, ax=ax1, label=what)
    ax1.set_title(f"{len(codes)} test codes, coloured by {what} (notes Fig. 6)")
    lims = np.percentile(c2, [0.5, 99.5], axis=0).T
    *_, im = ax2.hist2d(c2[:, 0], c2[:, 1], bins=60, range=lims)
    fig.colorbar(im, ax=ax2, label="test codes per bin")
    ax2.set_title("density of the test codes (notes Fig. 7)")
    *_, im = ax3.hist2d(s2[:, 0], s2[:, 1], bins=60, range=lims)
    fig.colorbar(im, ax=ax3, label="mixture samples per bin")
    k = lr.record.config.gmm_components
    ax3.set_title(f"{len(s2)} samples of the {k}-component mixture (notes Fig. 8)")
    for ax in (ax1, ax2, ax3):
        ax.set_xlabel(axis_names[0])
        ax.set_ylabel(axis_names[1])
    title = f"{len(decoded)} mixture samples decoded (notes Fig. 9)"
    show_grid(ax4, decoded, lr.image_shape, ncols=8, title=title)
    fig.suptitle(f"{lr.record.label}: codes and the Gaussian mixture fitted to them")
    return save(fig, path), how
