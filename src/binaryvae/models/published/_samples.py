"""The sample count K of the multi-sample published estimators (ARMS, VIMCO, RODEO)."""

from __future__ import annotations

from typing import Any

from binaryvae.errors import BadInput

__all__ = ["sample_count"]


def sample_count(estimator: str, samples: Any) -> int:
    """``samples`` as K >= 2 (an int, not a bool); BadInput naming ``estimator`` otherwise."""
    if isinstance(samples, bool) or not isinstance(samples, int) or samples < 2:
        raise BadInput(f"{estimator} needs at least 2 samples (extra.samples), got {samples!r}")
    return int(samples)
