"""How long `compare` should take, printed when it starts: per family, measured seconds per
1,000 images, scaled by the dataset's size and the epochs.

The constants come from the default `binaryvae compare --out runs/compare --threads 1`
(mnist-mini, 15 epochs, 784-512-256-128 networks, 8-bit codes) read by
`python bench/compare_duration.py runs/compare` on a 2-core AMD EPYC (AVX2) with torch 2.13.0,
one thread, next to one other busy process (load average 2.2-3.0), on 2026-12-03; the whole
compare took 3 min 27 s there (docs/benchmarks.md, section 9). Other network and latent sizes
are not scaled. The machine's load is: `load_factor` scales the estimate by the share of a core
the run's threads can expect at the load average seen at start (os.getloadavg, os.cpu_count)
against the share they had where it was measured, and the printed line says so.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from binaryvae.config import TrainConfig
from binaryvae.runs.labels import family_spec

__all__ = [
    "SECONDS_PER_1000",
    "REPORT_SECONDS_PER_RUN",
    "expected_seconds",
    "expected_line",
    "load_factor",
]

# family spec -> seconds per 1,000 images: (training, per epoch; test evaluation, per epoch;
# final summary evaluation incl. sample FD, once). Measured as the module docstring says.
SECONDS_PER_1000: dict[str, tuple[float, float, float]] = {
    "logistic:elbo": (0.168, 0.174, 1.014),
    "logistic:bernoulli-elbo": (0.139, 0.154, 0.980),
    "concrete:bernoulli-elbo": (0.137, 0.150, 0.987),
    "steplogistic:elbo": (0.139, 0.154, 0.957),
    "gaussian-sigmoid:elbo": (0.147, 0.158, 0.963),
    "bernoulli-sfe:elbo": (0.134, 0.109, 0.785),
    "autoencoder-gmm": (0.122, 0.039, 0.488),
    "gaussian:elbo": (0.139, 0.040, 2.354),
}
REPORT_SECONDS_PER_RUN = 1.49  # `binaryvae report` of that compare directory, per run
MEASURED = "1 thread of a 2-core AMD EPYC beside one busy process"
# where it was measured: 2 cores, 1 thread, load average 2.2-3.0 with the compare itself running
MEASURED_CPUS, MEASURED_THREADS, MEASURED_LOAD = 2, 1, 2.6


def _share(others: float, threads: int, cpus: int) -> float:
    """The share of its threads' time a run gets beside ``others`` busy processes on ``cpus``
    cores (1 when there are enough cores for everyone)."""
    return min(1.0, cpus / max(others + threads, 1e-9))


def load_factor(
    threads: int, load: float | None = None, cpus: int | None = None
) -> tuple[float, float | None, int]:
    """(factor the measured durations are multiplied by, the load average used, the cores):
    the measurement's share of a core over the share at ``load`` (default: the 1-minute load
    average now, before the runs start) on ``cpus`` (default os.cpu_count()). 1 when the load
    cannot be read."""
    cpus = int(cpus or os.cpu_count() or 1)
    if load is None:
        try:
            load = os.getloadavg()[0]
        except (AttributeError, OSError):  # not on every platform
            return 1.0, None, cpus
    measured = _share(MEASURED_LOAD - MEASURED_THREADS, MEASURED_THREADS, MEASURED_CPUS)
    return measured / _share(float(load), max(1, int(threads)), cpus), float(load), cpus


def expected_seconds(
    configs: Sequence[TrainConfig], sizes: tuple[int, int]
) -> tuple[float, list[str]]:
    """(expected seconds of training, evaluating and reporting ``configs`` on a dataset of
    ``sizes`` = (training images, test images), the family specs with no measurement)."""
    n_train, n_test = (n / 1000 for n in sizes)
    total, unknown = 0.0, []
    for config in configs:
        spec = family_spec(config)
        if spec not in SECONDS_PER_1000:
            unknown.append(spec)
            continue
        train, evaluate, summary = SECONDS_PER_1000[spec]
        epochs = config.epochs
        if config.steps is not None:  # the epochs (a fraction) the steps take
            epochs = config.steps * config.batch_size / max(sizes[0], 1)
        total += epochs * (train * n_train + evaluate * n_test) + summary * n_test
        total += REPORT_SECONDS_PER_RUN
    return total, unknown


def expected_line(
    configs: Sequence[TrainConfig],
    sizes: tuple[int, int],
    *,
    load: float | None = None,
    cpus: int | None = None,
) -> str:
    """The line compare prints first: the expected duration and what it assumes, scaled by
    the load seen now (`load_factor`; ``load`` and ``cpus`` default to this machine's)."""
    seconds, unknown = expected_seconds(configs, sizes)
    c = configs[0]
    factor, load, cpus = load_factor(c.threads or 1, load, cpus)
    minutes, rest = divmod(round(seconds * factor), 60)
    measured_at = c.hidden == (512, 256, 128) and c.latent_dim == 8
    scaled = (
        f"; x{factor:.1f} for the load average {load:.1f} on {cpus} cores seen at start"
        if load is not None
        else "; the load could not be read, not scaled for it"
    )
    line = (
        f"expected duration about {minutes} min {rest:02d} s for {len(configs) - len(unknown)} "
        f"runs x {f'{c.steps} steps' if c.steps else f'{c.epochs} epochs'} x {sizes[0]:,} "
        f"training images (scaled from {MEASURED}"
        f"{scaled}; a load that changes while it runs changes it"
    )
    if not measured_at:
        line += "; measured with 784-512-256-128 networks and 8 bits, not scaled to these"
    if unknown:
        line += f"; no measurement for {', '.join(unknown)}"
    return line + ")"
