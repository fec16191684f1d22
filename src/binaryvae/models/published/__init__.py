"""Published gradient estimators, one module per paper, each registered as a built-in.

- `vimco`: VIMCO (Mnih & Rezende 2016), the K-sample IWAE bound with leave-one-out baselines;
- `gumbel_rao`: Gumbel-Rao (Paulus, Maddison & Krause 2021), Rao-Blackwellised
  straight-through Gumbel-softmax with M inner samples (biased);
- `reinmax`: ReinMax (Liu, Li, Yang & Gao 2023), second-order straight-through (biased);
- `arms`: ARMS (Dimitriev & Zhou 2021), K negatively correlated samples from the Dirichlet
  copula (``arms``) or the Gaussian copula (``arms-normal``), REINFORCE with a leave-one-out
  baseline reweighted to stay unbiased;
- `relax`: RELAX (Grathwohl et al. 2018), a control variate on the concrete relaxation plus a
  surrogate network, trained to minimise the estimator's variance;
- `rodeo`: RODEO (Shi et al. 2022), REINFORCE-LOO with control variates from a discrete
  (Gibbs) Stein operator applied to a network of the other samples' values and gradients.

The older built-ins (sfe, straight-through, reinforce-loo, arm, disarm) live in
`binaryvae.models.estimators`; the registry (`binaryvae.models.registry`) imports both.
"""

from binaryvae.models.published.arms import ARMS, ARMSNormal
from binaryvae.models.published.gumbel_rao import GumbelRao
from binaryvae.models.published.reinmax import ReinMax
from binaryvae.models.published.relax import RELAX
from binaryvae.models.published.rodeo import RODEO
from binaryvae.models.published.vimco import VIMCO

__all__ = ["VIMCO", "GumbelRao", "ReinMax", "ARMS", "ARMSNormal", "RELAX", "RODEO"]
