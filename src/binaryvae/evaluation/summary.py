"""What a run records: `evaluate_epoch` (one metrics.jsonl line) and `evaluate_summary` (the
numbers of summary.json). Every model is scored as the discrete model it stands for where it
stands for one (binary families), and by its own bound otherwise (docs/internals.md, run directory).

Units: nats per image averaged over the test images; higher is better for ELBO / IWAE / log p(x)
columns; lower is better for recon_loss_* and sample_fd. Both functions fork the global RNG under
`seed`, so evaluating during training never moves the training's random stream, and the same seed
gives the same numbers.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import torch

from binaryvae.evaluation._common import eval_mode, is_binary, model_device, seeded, to_model
from binaryvae.evaluation.bits import bit_statistics
from binaryvae.evaluation.bounds import Bound, discrete_terms, relaxed_terms
from binaryvae.evaluation.exact import MAX_EXACT_BITS, exact_evaluation
from binaryvae.evaluation.iwae import ENUMERATE_BITS, iwae_bound
from binaryvae.evaluation.reconstruction import reconstruction_loss

__all__ = [
    "evaluate_epoch",
    "evaluate_summary",
    "EPOCH_EXACT_BITS",
    "default_iwae_k",
    "run_iwae_k",
    "has_bernoulli_elbo",
    "has_likelihood",
    "iwae_key",
    "own_elbo",
    "own_elbo_key",
    "OWN_ELBO_KEYS",
]

EPOCH_EXACT_BITS = 16  # docs/internals.md: test_log_px_exact per epoch, binary families, n <= 16
IWAE_K_ENUMERATED = 1000  # binary, n <= 12: codes decoded once, a sample costs a gather
IWAE_K_DECODED = 100  # otherwise each sample is one decoder pass per image
BATCH = 500  # test images per evaluation batch


# the key of the family's own ELBO: "relaxed" only for families with a relaxation
# (`Family.relaxed`); the family's own ELBO otherwise (exact-Bernoulli families: the binary
# model's ELBO; gaussian: the Normal-latent model's). A row holds one of them, never both.
OWN_ELBO_KEYS = ("test_relaxed_elbo", "test_elbo")


def own_elbo_key(family: Any) -> str:
    """``test_relaxed_elbo`` for a family with a relaxation (``family.relaxed``; for an object
    without that attribute, derived as `Family.relaxed` is: binary and not exact), else
    ``test_elbo``: the key of the family's own ELBO in metrics.jsonl and summary.json."""
    relaxed = getattr(family, "relaxed", None)
    if relaxed is None:
        relaxed = bool(getattr(family, "binary", False)) and not getattr(family, "exact", False)
    return OWN_ELBO_KEYS[0] if relaxed else OWN_ELBO_KEYS[1]


def own_elbo(row: dict[str, Any]) -> float | None:
    """The family's own ELBO of a metrics row or summary, under whichever key it has
    (`own_elbo_key`; runs written before ``test_elbo`` existed have ``test_relaxed_elbo`` for
    every family); None when it has neither (the autoencoder)."""
    for key in OWN_ELBO_KEYS:
        value = row.get(key)
        if isinstance(value, int | float):
            return float(value)
    return None


def iwae_key(k: int) -> str:
    """The summary key of the IWAE with ``k`` samples, e.g. ``test_iwae_k1000``: one key per k,
    so evaluating with another k adds an entry and never replaces one."""
    return f"test_iwae_k{int(k)}"


def default_iwae_k(model: Any) -> int:
    """The k of ``test_iwae`` when none is asked for: 1,000 where the 2^n codes can be decoded
    once (binary, n <= 12: a sample costs a gather), else 100 (a sample is a decoder pass)."""
    cheap = is_binary(model) and int(model.latent_dim) <= ENUMERATE_BITS
    return IWAE_K_ENUMERATED if cheap else IWAE_K_DECODED


def run_iwae_k(model: Any) -> int:
    """The k of a run's ``test_iwae``: its configured ``summary_iwae_k`` (set from
    TrainConfig.summary_iwae_k by `binaryvae.models.build_model`), else `default_iwae_k`."""
    return getattr(model, "summary_iwae_k", None) or default_iwae_k(model)


def has_likelihood(model: Any) -> bool:
    """False for models without a probabilistic latent (autoencoder-gmm): no ELBO, no IWAE
    (the family's ``has_likelihood``)."""
    return bool(model.family.has_likelihood)


def has_bernoulli_elbo(model: Any) -> bool:
    """True for the relaxed binary families, where relaxed samples can be put in Bernoulli
    log-probabilities (diss. 4.4). The exact-Bernoulli families (`family.exact`: sfe, st, loo,
    disarm) have no relaxed samples (their "Bernoulli ELBO" is the discrete ELBO) and the
    continuous ones no lambda."""
    family = getattr(model, "family", None)
    objectives = getattr(family, "objectives", {"bernoulli-elbo": None})
    return (
        is_binary(model) and not getattr(family, "exact", False) and "bernoulli-elbo" in objectives
    )


def _mean(t: torch.Tensor) -> float:
    return float(t.double().mean())


def _batched_bound(fn: Callable[[torch.Tensor], Bound], x: torch.Tensor, batch: int) -> Bound:
    """Apply fn to image batches of x [B, D] and concatenate the per-image terms."""
    parts = [fn(x[i : i + batch]) for i in range(0, x.shape[0], batch)]
    return Bound(*(torch.cat(ts) for ts in zip(*parts, strict=True)))


def _batched(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, batch: int):
    return torch.cat([fn(x[i : i + batch]) for i in range(0, x.shape[0], batch)])


@torch.no_grad()
def evaluate_epoch(
    model: Any,
    test_x: torch.Tensor,
    *,
    samples: int = 1,
    seed: int | None = 0,
    exact_max_bits: int = EPOCH_EXACT_BITS,
    batch_size: int = BATCH,
    iwae_k: int = 0,
) -> dict[str, float]:
    """The per-epoch test columns of metrics.jsonl for `model` on test_x [N, D] (float32).

    Keys (nats per image, mean over the N images; present when they apply):
    - test_relaxed_elbo (families with a relaxation, `Family.relaxed`) or test_elbo (the
      others: exact-Bernoulli families, gaussian), test_recon, test_kl: the family's own ELBO
      and its terms, `samples` draws per image (`own_elbo_key`; autoencoder-gmm: no ELBO;
      test_recon = log p(x | code), test_kl = 0);
    - test_bernoulli_elbo: relaxed binary families (diss. eq. 4.11-4.12; not a bound);
    - test_discrete_elbo, test_discrete_recon, test_discrete_kl: binary families (diss. 4.5);
      hard codes b ~ Bernoulli(lambda), `samples` per image, analytic Bernoulli KL;
    - test_log_px_exact, test_exact_gap: binary families with n <= exact_max_bits (2^n codes
      enumerated; gap = log p(x) - E_q[discrete ELBO] by enumeration = KL(q || p(b|x)));
    - test_iwae_k<K> with ``iwae_k`` = K > 0: IWAE-K of the discrete model (binary families;
      of the continuous one for gaussian), the estimator literature's test bound;
    - grad_var_param_ema: for a model that tracks it (``model.grad_ema``, TrainConfig
      ``grad_var_param_ema``), the reference code's gradient variance: the EMA moments of the
      encoder's parameter gradients over the training steps so far
      (`binaryvae.models.grad_moments`; not a test-set number).
    """
    with seeded(seed, model_device(model)), eval_mode(model):
        x = to_model(model, test_x)
        out: dict[str, float] = {}
        _relaxed_columns(model, x, samples, batch_size, out)
        if is_binary(model):
            disc = _batched_bound(
                lambda b: discrete_terms(model, b, samples=samples), x, batch_size
            )
            out["test_discrete_elbo"] = _mean(disc.elbo)
            out["test_discrete_recon"] = _mean(disc.recon)
            out["test_discrete_kl"] = _mean(disc.kl)
            if int(model.latent_dim) <= exact_max_bits:
                exact = exact_evaluation(model, x)
                out["test_log_px_exact"] = _mean(exact.log_px)
                out["test_exact_gap"] = _mean(exact.gap)
        if iwae_k > 0 and has_likelihood(model):
            iw = _batched(lambda b: iwae_bound(model, b, iwae_k), x, batch_size)
            out[f"test_iwae_k{iwae_k}"] = _mean(iw)
    tracker = getattr(model, "grad_ema", None)
    if tracker is not None:  # the reference's gradient variance (binaryvae.models.grad_moments)
        out["grad_var_param_ema"] = tracker.variance()
    return out


def _relaxed_columns(model: Any, x: torch.Tensor, samples: int, batch: int, out: dict) -> None:
    """The family's own ELBO (`own_elbo_key`: test_relaxed_elbo or test_elbo) / test_recon /
    test_kl, and test_bernoulli_elbo where it applies.

    autoencoder-gmm has no ELBO: only its reconstruction term (and kl = 0) is reported."""
    own = _batched_bound(lambda b: relaxed_terms(model, b, samples=samples), x, batch)
    if has_likelihood(model):
        out[own_elbo_key(model.family)] = _mean(own.elbo)
    out["test_recon"] = _mean(own.recon)
    out["test_kl"] = _mean(own.kl)
    if has_bernoulli_elbo(model):
        bern = _batched_bound(
            lambda b: relaxed_terms(model, b, objective="bernoulli-elbo", samples=samples), x, batch
        )
        out["test_bernoulli_elbo"] = _mean(bern.elbo)


@torch.no_grad()
def evaluate_summary(
    model: Any,
    test_x: torch.Tensor,
    *,
    features: Any = None,
    seed: int | None = 0,
    samples: int = 5,
    iwae_k: int | None = None,
    exact: bool = False,
    exact_max_bits: int = EPOCH_EXACT_BITS,
    recon_repeats: int = 5,
    fd_samples: int | None = None,
    batch_size: int = BATCH,
) -> dict[str, Any]:
    """The final numbers of summary.json for `model` on test_x [N, D] (float32).

    Everything `evaluate_epoch` reports (with `samples` draws per image, default 5), plus:
    - test_iwae, iwae_k, iwae_proposal: IWAE-k (Burda et al. 2016) of the discrete model
      ("discrete", binary families) or of the family's own continuous model ("relaxed", e.g.
      gaussian); absent for autoencoder-gmm. iwae_k=None: the model's ``summary_iwae_k`` (set
      from TrainConfig.summary_iwae_k by `binaryvae.models.build_model`), else `default_iwae_k`
      (1,000 where the 2^n codes can be decoded once, binary and n <= 12, else 100); 0 skips
      it. The same value is also under its per-k key `iwae_key(k)`, e.g. test_iwae_k1000;
    - test_log_px_exact, test_exact_gap for n <= exact_max_bits, or n <= 20 with exact=True;
    - recon_loss_r5 (Table 5.2: -log p(x | decoder input) averaged over recon_repeats draws,
      the family's own decoder input) and recon_loss_r5_discrete (hard codes; binary families);
    - active_bits, stuck_bits and bit_statistics (per-dimension dict, `BitStatistics.to_dict`);
    - sample_fd (+ fd_samples, fd_features, fd_classifier_accuracy) when `features` (the
      feature function, `binaryvae.training.classifier.feature_network(dataset)`) is given:
      Fréchet distance of fd_samples generated images (default: as many as test images) to the
      test images, see `binaryvae.evaluation.fid`;
    - eval_samples, discrete_kl ("analytic"), summary_eval_seconds.
    """
    start = time.perf_counter()
    n = int(model.latent_dim)
    bits = MAX_EXACT_BITS if exact else exact_max_bits
    out: dict[str, Any] = evaluate_epoch(
        model, test_x, samples=samples, seed=seed, exact_max_bits=bits, batch_size=batch_size
    )
    out["eval_samples"] = samples
    if is_binary(model):
        out["discrete_kl"] = "analytic"
    with seeded(None if seed is None else seed + 1, model_device(model)), eval_mode(model):
        x = to_model(model, test_x)
        proposal = "discrete" if is_binary(model) else "relaxed"
        if iwae_k is None:
            iwae_k = run_iwae_k(model)
        if has_likelihood(model) and iwae_k > 0:
            iw = _batched(lambda b: iwae_bound(model, b, iwae_k, proposal=proposal), x, batch_size)
            out.update(test_iwae=_mean(iw), iwae_k=iwae_k, iwae_proposal=proposal)
            out[iwae_key(iwae_k)] = out["test_iwae"]
        # Table 5.2; when samples == recon_repeats the epoch columns already hold that mean
        r = recon_repeats
        own = (
            -out["test_recon"] if r == samples else _recon_loss(model, x, r, "relaxed", batch_size)
        )
        out[f"recon_loss_r{r}"] = own
        if is_binary(model):
            hard = -out["test_discrete_recon"] if r == samples else None
            out[f"recon_loss_r{r}_discrete"] = (
                hard if hard is not None else _recon_loss(model, x, r, "discrete", batch_size)
            )
        stats = bit_statistics(model, x)
        out["active_bits"] = stats.active_bits
        if stats.binary:
            out["stuck_bits"] = len(stats.stuck_at_0 or []) + len(stats.stuck_at_1 or [])
        out["bit_statistics"] = stats.to_dict()
        if features is not None:
            out.update(_sample_fd(model, x, features, fd_samples, seed))
    if n > bits and is_binary(model):
        out["exact_skipped"] = f"2^{n} codes: above the enumeration limit of {bits} bits"
    out["summary_eval_seconds"] = time.perf_counter() - start
    return {
        k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in out.items()
    }


def _recon_loss(model: Any, x: torch.Tensor, repeats: int, mode: str, batch: int) -> float:
    """Mean over images of `reconstruction_loss` (Table 5.2) with `repeats` draws."""
    return _mean(
        _batched(lambda b: reconstruction_loss(model, b, repeats=repeats, mode=mode), x, batch)
    )


def _sample_fd(
    model: Any, x: torch.Tensor, features: Any, fd_samples: int | None, seed
) -> dict[str, Any]:
    from binaryvae.evaluation.fid import sample_frechet_distance

    num = fd_samples or x.shape[0]
    result = sample_frechet_distance(
        model, x, features, num_samples=num, seed=0 if seed is None else seed
    )
    return {
        "sample_fd": result.distance,
        "fd_samples": num,
        "fd_features": result.features,
        "fd_classifier_accuracy": result.classifier_accuracy,
    }
