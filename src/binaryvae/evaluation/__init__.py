"""Scores every model as the discrete model it stands for (never imports the estimators).

```python
from binaryvae.evaluation import evaluate_epoch, evaluate_summary, exact_log_px, iwae_bound
evaluate_epoch(model, test_x, samples=1, seed=0)      # one metrics.jsonl line (dict of floats)
evaluate_summary(model, test_x, features=f, seed=0)  # summary.json numbers
exact_log_px(model, x)                                # [B] log p(x) over all 2^n codes
```
Modules: `bounds` (relaxed / Bernoulli / discrete ELBO), `exact` (enumeration), `iwae`,
`reconstruction` (Table 5.2), `bits` (Figure 5.2, active and stuck bits), `fid` (Fréchet
distance of samples), `summary` (what a run records). All numbers are nats per image, per-image
tensors [B], higher is better for bounds and likelihoods.
"""

from binaryvae.evaluation.bits import BitStatistics, bit_statistics
from binaryvae.evaluation.bounds import (
    Bound,
    bernoulli_kl,
    discrete_elbo,
    discrete_terms,
    relaxed_elbo,
    relaxed_terms,
)
from binaryvae.evaluation.exact import (
    MAX_EXACT_BITS,
    ExactResult,
    enumerate_codes,
    exact_evaluation,
    exact_log_posterior,
    exact_log_px,
    exact_posterior,
    joint_log_prob_matrix,
)
from binaryvae.evaluation.fid import (
    FDResult,
    frechet_distance,
    generate_images,
    sample_frechet_distance,
)
from binaryvae.evaluation.iwae import iwae_bound
from binaryvae.evaluation.reconstruction import reconstruction_loss
from binaryvae.evaluation.summary import (
    OWN_ELBO_KEYS,
    evaluate_epoch,
    evaluate_summary,
    own_elbo,
    own_elbo_key,
)

__all__ = [
    "MAX_EXACT_BITS",
    "OWN_ELBO_KEYS",
    "BitStatistics",
    "Bound",
    "ExactResult",
    "FDResult",
    "bernoulli_kl",
    "bit_statistics",
    "discrete_elbo",
    "discrete_terms",
    "enumerate_codes",
    "evaluate_epoch",
    "evaluate_summary",
    "exact_evaluation",
    "exact_log_posterior",
    "exact_log_px",
    "exact_posterior",
    "frechet_distance",
    "generate_images",
    "iwae_bound",
    "joint_log_prob_matrix",
    "own_elbo",
    "own_elbo_key",
    "reconstruction_loss",
    "relaxed_elbo",
    "relaxed_terms",
    "sample_frechet_distance",
]
