"""The words the report and the command line use for each run and each number, so that no label
says something untrue: which objective trained a run, what its own ELBO bounds, what its
reconstructions decode and where its samples come from.

A run is one of four kinds (`run_kind`):

- ``relaxed``: a continuous relaxation of bits (gaussian-sigmoid, logistic, concrete,
  steplogistic, smoothsteplogistic): its own ELBO bounds the *relaxed* model; the binary model
  it stands for is scored by the discrete ELBO;
- ``exact``: the latent is Bernoulli itself, trained by a gradient estimator (bernoulli-sfe,
  -st, -reinforce-loo, -disarm): no relaxation, its own ELBO is the binary model's ELBO;
- ``continuous``: a Normal latent (gaussian): no binary model at all;
- ``autoencoder``: the deterministic autoencoder + GMM: trained on reconstruction alone, no
  likelihood, no bound.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "RUN_KINDS",
    "decoder_input_label",
    "interpolation_label",
    "objective_header",
    "own_bound_label",
    "own_elbo_column",
    "prior_description",
    "run_kind",
    "trained_series",
]

RUN_KINDS = ("relaxed", "exact", "continuous", "autoencoder")


def run_kind(facts: dict[str, bool]) -> str:
    """One of `RUN_KINDS` from a run's family facts (``binary_latent``, ``exact_latent``,
    ``has_likelihood``: `binaryvae.runs.labels.family_facts`; see the module docstring)."""
    if not facts["has_likelihood"]:
        return "autoencoder"
    if facts["exact_latent"]:
        return "exact"
    if not facts["binary_latent"]:
        return "continuous"
    return "relaxed"


# what each kind of run's numbers and figure rows are, one table: (own bound, decoded in a
# reconstruction row, moved along in an interpolation row)
_KIND_WORDS: dict[str, tuple[str, str, str]] = {
    "relaxed": ("relaxed ELBO (bound on the relaxed model)",
                "one relaxed posterior sample decoded",
                "lambda(x) interpolated, decoded as soft bits"),
    "exact": ("ELBO of the binary model (no relaxation)",
              "bits b ~ q(b|x) decoded",
              "lambda(x) interpolated, decoded as soft bits"),
    "continuous": ("ELBO (bound on the Normal-latent model)",
                   "one posterior sample z ~ q(z|x) decoded",
                   "posterior means interpolated"),
    "autoencoder": ("reconstruction log p(x | code) (no KL: not a bound)",
                    "its deterministic code decoded",
                    "codes interpolated"),
}  # fmt: skip


def own_bound_label(kind: str) -> str:
    """What the family's own ELBO (`own_elbo_column`) is, per kind."""
    return _KIND_WORDS[kind][0]


def own_elbo_column(kind: str) -> str:
    """The metrics / summary key of the family's own ELBO: ``test_relaxed_elbo`` for relaxed
    runs (`Family.relaxed`), ``test_elbo`` for the others (runs written before ``test_elbo``
    existed have ``test_relaxed_elbo`` for every kind: `RunRecord.column` reads either)."""
    return "test_relaxed_elbo" if kind == "relaxed" else "test_elbo"


def trained_series(kind: str, objective: str) -> tuple[str, str]:
    """(metrics column, legend label) of the objective a run was trained on, on the test set."""
    if kind == "autoencoder":
        return "test_recon", own_bound_label(kind)
    if objective == "bernoulli-elbo":
        return "test_bernoulli_elbo", "Bernoulli ELBO with relaxed samples (not a bound)"
    return own_elbo_column(kind), own_bound_label(kind)


def objective_header(kind: str, objective_label: str) -> str:
    """What trained the run, in one phrase: the header of compare's log, compare.json's
    ``trained_on`` and the figures' titles."""
    if kind == "autoencoder":
        return "reconstruction only (autoencoder: no KL, not a bound)"
    return objective_label


def interpolation_label(kind: str) -> str:
    """What an interpolation row moves along between two test images' codes."""
    return _KIND_WORDS[kind][2]


def decoder_input_label(kind: str) -> str:
    """What a reconstruction row decodes (one draw per image)."""
    return _KIND_WORDS[kind][1]


def prior_description(model: Any) -> str:
    """Where generated codes come from, for a figure title: the fitted mixture of the
    autoencoder, the Normal prior, or the (fixed or learned) Bernoulli prior's bits."""
    from torch.nn import Parameter

    family = model.family
    learned = isinstance(getattr(model.prior_module, "param", None), Parameter)
    if not getattr(family, "binary", True):
        if not family.has_likelihood:  # the autoencoder: its prior is fitted after training
            k = getattr(family, "components", None)
            mixture = f"{k}-component Gaussian mixture" if k else "Gaussian mixture"
            return f"codes drawn from the {mixture} fitted to the training codes"
        return "codes from the learned Normal prior" if learned else "codes z ~ N(0, I), the prior"
    prior = "the learned Bernoulli prior" if learned else "the Bernoulli(1/2) prior"
    return f"{int(model.latent_dim)}-bit codes from {prior}"
