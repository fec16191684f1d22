"""`evaluate`: re-score a finished run directory and merge the numbers into its summary.json.

A group (the runs of a compare or replica directory) is evaluated all or nothing as far as its
input goes: every run is locked, and its config, checkpoint, data (fingerprint) and summary.json
are read and checked, before the first summary.json is written (`evaluate_runs`).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from binaryvae.config import MAX_IWAE_K
from binaryvae.errors import BadInput
from binaryvae.runs.build import load_run, test_data
from binaryvae.runs.directory import RunDir, is_run_dir
from binaryvae.runs.labels import summary_labels
from binaryvae.runs.ownership import claim_existing
from binaryvae.training import epoch_seed

__all__ = ["MAX_IWAE_K", "check_evaluate", "evaluate_run", "evaluate_runs"]


def evaluate_run(
    path: str | Path, *, exact: bool = False, iwae_k: int | None = None, device: str | None = None
) -> dict[str, Any]:
    """Evaluate run ``path`` on its test split with `binaryvae.evaluation.evaluate_summary`.

    ``exact``: enumerate all 2^n codes for log p(x) even above the per-epoch limit (n <= 20;
    BadInput above). ``iwae_k``: samples of the importance-weighted bound (1..`MAX_IWAE_K`).
    Its value is stored under its own key (``test_iwae_k<k>``); ``test_iwae`` / ``iwae_k`` stay
    the entry of the run's k (`binaryvae.evaluation.summary.run_iwae_k`), so no earlier k is
    ever replaced. The
    sample FD is the run's (``summary_fd_samples``; 0: none). The run directory is locked while
    it is evaluated (one writer). Returns the updated summary.
    """
    return evaluate_runs([path], exact=exact, iwae_k=iwae_k, device=device)[0]


def evaluate_runs(
    paths: list[str | Path],
    *,
    exact: bool = False,
    iwae_k: int | None = None,
    device: str | None = None,
    on_done: Callable[[Path, dict[str, Any]], None] | None = None,
) -> list[dict[str, Any]]:
    """`evaluate_run` of every run in ``paths`` (a compare or replica group), validating all of
    them before writing anything for any: each is locked, its options checked
    (`check_evaluate`), its model rebuilt from config.json and its checkpoint, its data
    checked against its recorded fingerprint and its summary.json read; then each is loaded
    again (under the same locks) and evaluated. A BadInput for any run leaves every
    summary.json as it was. Runs of one dataset share its data in memory.
    ``on_done(path, summary)`` is called after each run's summary.json is written. Returns the
    summaries in order."""
    runs = [RunDir(p) for p in paths]
    for run in runs:
        check_evaluate(run.path, exact=exact, iwae_k=iwae_k)
    with ExitStack() as stack:
        for run in runs:
            stack.enter_context(claim_existing(run.path, "evaluate"))
        datasets: dict[tuple, Any] = {}

        def load(run: RunDir):
            config = run.read_config()
            key = (config.dataset, config.data_dir)
            prepared = load_run(run.path, device=device, dataset=datasets.get(key))
            datasets[key] = prepared.dataset
            return prepared

        summaries, kept = [], None
        for run in runs:  # everything read and checked; one model in memory at a time
            summaries.append(run.read_summary())
            prepared = load(run)
            kept = prepared if len(runs) == 1 else None  # a single run: evaluated as loaded
        out = []
        for run, summary in zip(runs, summaries, strict=True):
            out.append(_evaluate_loaded(run, kept or load(run), summary, exact, iwae_k))
            if on_done is not None:
                on_done(run.path, out[-1])
        return out


def check_evaluate(path: str | Path, *, exact: bool = False, iwae_k: int | None = None) -> None:
    """BadInput (nothing read or written) when ``evaluate_run(path, ...)`` is asked for
    unbounded work: K outside [1, `MAX_IWAE_K`], or ``exact`` for more bits than
    `binaryvae.evaluation.MAX_EXACT_BITS`."""
    from binaryvae.evaluation import MAX_EXACT_BITS

    run = RunDir(path)
    if iwae_k is not None and not 1 <= iwae_k <= MAX_IWAE_K:
        raise BadInput(f"--iwae K must be in [1, {MAX_IWAE_K:,}], got {iwae_k}")
    if exact and is_run_dir(run.path):
        n = run.read_config().latent_dim
        if n > MAX_EXACT_BITS:
            raise BadInput(
                f"--exact enumerates all 2^n codes: {run.path} has n = {n} bits, above the limit "
                f"of {MAX_EXACT_BITS} (2^{MAX_EXACT_BITS} codes); use --iwae K for a bound instead"
            )


def _evaluate_loaded(
    run: RunDir, prepared: Any, summary: dict[str, Any], exact: bool, iwae_k: int | None
) -> dict:
    from binaryvae.evaluation import evaluate_summary
    from binaryvae.evaluation.summary import run_iwae_k
    from binaryvae.training.classifier import fd_features

    c = prepared.config
    options: dict[str, Any] = {"exact": exact}
    if iwae_k is not None:
        options["iwae_k"] = iwae_k
    numbers = evaluate_summary(
        prepared.model,
        test_data(prepared),
        features=fd_features(prepared.dataset, c.summary_fd_samples),  # the run's sample FD
        fd_samples=c.summary_fd_samples or None,
        seed=epoch_seed(c.seed, 0, "summary"),
        **options,
    )
    numbers = dict(numbers)
    if iwae_k is not None and iwae_k != run_iwae_k(prepared.model):
        # another k than the run's: only its per-k key; test_iwae stays the run's k's
        for key in ("test_iwae", "iwae_k", "iwae_proposal"):
            numbers.pop(key, None)
    summary = dict(summary)
    summary.update(numbers)
    summary.update(summary_labels(c, prepared.model))
    run.write_summary(summary)
    return summary
