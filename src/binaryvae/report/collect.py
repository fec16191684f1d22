"""Read what the report needs from run directories: config, metrics rows, summary. What kind of
model a run is comes from its summary.json (`binaryvae.runs.labels.family_facts`), or, for a
run without one, from the run layer's reading of its config."""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from binaryvae.config import TrainConfig
from binaryvae.errors import BadInput
from binaryvae.runs.directory import RunDir, find_runs, is_run_dir, read_compare_listing

__all__ = ["RunRecord", "collect_runs"]


@dataclass
class RunRecord:
    """One run directory as the report sees it."""

    name: str
    path: Path
    config: TrainConfig
    metrics: list[dict[str, Any]]
    summary: dict[str, Any]
    has_checkpoint: bool
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def group(self) -> str:
        """The family and, unless it is "elbo", the objective it was trained with: what the
        replicas of one `train --seeds` run share."""
        c = self.config
        return c.family if c.objective == "elbo" else f"{c.family} ({c.objective})"

    @property
    def label(self) -> str:
        """Legend label: `group`, and the seed when another run of the report shares the
        group (the replicas of `train --seeds`), e.g. "bernoulli-disarm, seed 2"."""
        if self.extra.get("replica"):
            return f"{self.group}, seed {self.config.seed}"
        return self.group

    @property
    def facts(self) -> dict[str, bool]:
        """binary_latent, exact_latent, has_likelihood: from summary.json where it has them."""
        keys = ("binary_latent", "exact_latent", "has_likelihood")
        if all(k in self.summary for k in keys):
            return {k: bool(self.summary[k]) for k in keys}
        if "facts" not in self.extra:
            from binaryvae.runs.labels import family_facts

            self.extra["facts"] = family_facts(self.config)
        return self.extra["facts"]

    @property
    def has_likelihood(self) -> bool:
        """False for autoencoder-gmm: no ELBO (its relaxed-ELBO column is the recon term)."""
        return self.facts["has_likelihood"]

    @property
    def kind(self) -> str:
        """The run's kind: relaxed, exact, continuous or autoencoder (`binaryvae.report.labels`)."""
        from binaryvae.report.labels import run_kind

        return run_kind(self.facts)

    @property
    def binary(self) -> bool:
        """True when the run stands for a binary-latent model (has a discrete ELBO)."""
        return self.kind in ("relaxed", "exact")

    @property
    def trained_on(self) -> str:
        """What trained the run, e.g. "elbo", "bernoulli-elbo (not a bound)" or, for the
        autoencoder, "reconstruction only (...)": never "elbo" for a model without one."""
        from binaryvae.report.labels import objective_header

        stored = self.summary.get("objective_label")
        return stored or objective_header(self.kind, self.config.objective_label())

    def column(self, key: str) -> tuple[list[int], list[float]]:
        """(epochs, values) of one metrics column, skipping epochs where it is missing/null.
        The family's own ELBO is read under either of its keys (`OWN_ELBO_KEYS`: runs written
        before ``test_elbo`` existed have ``test_relaxed_elbo`` for every family). An epoch
        with several rows (``--eval-every-steps``) gives its last one."""
        from binaryvae.evaluation.summary import OWN_ELBO_KEYS

        keys = [key, *(k for k in OWN_ELBO_KEYS if k != key)] if key in OWN_ELBO_KEYS else [key]
        rows = self.metrics
        last = [
            r
            for i, r in enumerate(rows)
            if i + 1 == len(rows) or rows[i + 1]["epoch"] != r["epoch"]
        ]
        for name in keys:
            xs, ys = [], []
            for row in last:
                v = row.get(name)
                if isinstance(v, int | float):
                    xs.append(int(row["epoch"]))
                    ys.append(float(v))
            if xs:
                break
        return xs, ys


def _ordered(path: Path) -> list[Path]:
    """The runs at ``path``, in compare.json's order when there is one."""
    runs = find_runs(path)
    listing = path / "compare.json"
    if not is_run_dir(path) and os.path.lexists(listing):
        names = read_compare_listing(path).get("runs") or []
        rank = {n: i for i, n in enumerate(names)}
        runs.sort(key=lambda p: (rank.get(p.name, len(rank)), p.name))
    return runs


def _readable(read, problems: list[str], empty):
    """``read()``, or ``empty`` with the one-line reason appended to ``problems``."""
    try:
        return read()
    except BadInput as e:
        problems.append(str(e))
        return empty


def collect_runs(path: str | Path) -> list[RunRecord]:
    """Every run at ``path`` (a run directory, or a compare directory of runs). Runs that share
    family and objective (replicas, e.g. of `train --seeds`) are labelled with their seed.

    A run whose config.json is unreadable is refused (BadInput naming the file): nothing can
    be said about it. A malformed metrics.jsonl or summary.json counts as absent, and the
    reason (naming the file) is kept in the record's ``extra["problems"]`` for the report to
    say: the run keeps its row (and its curves or final numbers, whichever is readable).
    """
    path = Path(path)
    if not path.is_dir():
        raise BadInput(f"{path} is not a directory")
    records = []
    for run_path in _ordered(path):
        run = RunDir(run_path)
        config = run.read_config()
        problems: list[str] = []
        records.append(
            RunRecord(
                name=run_path.name if run_path != path else config.family,
                path=run_path,
                config=config,
                metrics=_readable(run.read_metrics, problems, []),
                summary=_readable(run.read_summary, problems, {}),
                has_checkpoint=run.checkpoint_path.is_file(),
                extra={"problems": problems} if problems else {},
            )
        )
    if not records:
        raise BadInput(f"{path} holds no run directories (nothing with a config.json)")
    shared = Counter(r.group for r in records)
    for r in records:
        r.extra["replica"] = shared[r.group] > 1
    return records
