"""`compare`: several families trained on the same data, seed and architecture, one run each.

Defaults (`binaryvae.config.COMPARE_FAMILIES`, `COMPARE_EPOCHS`): the dissertation's 8-bit
comparison on the offline dataset plus the notes' models.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path
from typing import Any, TextIO

from binaryvae.config import COMPARE_EPOCHS, COMPARE_FAMILIES, OBJECTIVES, TrainConfig
from binaryvae.errors import BadInput
from binaryvae.evaluation.summary import has_likelihood
from binaryvae.runs.build import prepare
from binaryvae.runs.labels import objective_label
from binaryvae.runs.ownership import check_new_dir, claim_existing, claim_new
from binaryvae.runs.train import TrainingDiverged, train_run
from binaryvae.storage import write_json_atomic

__all__ = ["DEFAULT_COMPARE_EPOCHS", "DEFAULT_FAMILIES", "compare", "parse_families", "run_names"]

DEFAULT_FAMILIES = COMPARE_FAMILIES
DEFAULT_COMPARE_EPOCHS = COMPARE_EPOCHS


def parse_families(spec: str | list[str] | tuple[str, ...]) -> list[tuple[str, str]]:
    """``"logistic,concrete:bernoulli-elbo"`` -> ``[("logistic", "elbo"),
    ("concrete", "bernoulli-elbo")]`` (objective "elbo" unless ``name:objective``)."""
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    out = []
    for item in items:
        item = item.strip()
        if not item:
            continue
        family, _, objective = item.partition(":")
        objective = objective.strip() or "elbo"
        if objective not in OBJECTIVES:
            raise BadInput(
                f"unknown objective {objective!r} in {item!r}; "
                f"choose one of {', '.join(OBJECTIVES)}"
            )
        out.append((family.strip(), objective))
    if not out:
        raise BadInput("no families given")
    if len(set(out)) != len(out):
        raise BadInput(f"a family:objective pair is listed twice in {spec!r}")
    return out


def run_names(pairs: list[tuple[str, str]]) -> list[str]:
    """Sub-directory names: the family, or family-objective where a family appears twice."""
    counts: dict[str, int] = {}
    for family, _ in pairs:
        counts[family] = counts.get(family, 0) + 1
    return [f if counts[f] == 1 else f"{f}-{o}" for f, o in pairs]


def compare(
    families: list[tuple[str, str]],
    base: TrainConfig,
    out: str | Path,
    *,
    force: bool = False,
    resume: bool = False,
    progress: bool = True,
    stream: TextIO | None = None,
) -> dict[str, dict[str, Any]]:
    """Train every (family, objective) with ``base``'s other settings into ``out/<name>/``.

    All configs, the dataset and every model are built (validated) before ``out`` is created.
    With ``resume``, finished runs are re-summarised, unfinished ones continue, missing ones
    start. A run that diverges (NaN/inf) is reported and skipped, the others still run.
    Returns ``{name: summary}`` in order (``{"status": "diverged", "message": ...}`` for a run
    that stopped); ``out/compare.json`` lists the runs, their family:objective specs (the
    autoencoder's without an objective: it has no ELBO) and what trained each one
    (``trained_on``: the label summary.json carries as ``objective_label``).
    """
    stream = sys.stderr if stream is None else stream
    out = Path(out)
    configs = [dataclasses.replace(base, family=f, objective=o) for f, o in families]
    names = run_names(families)
    if not resume:
        check_new_dir(out, force)
    trained_on, specs = {}, []
    for name, config in zip(names, configs, strict=True):
        # BadInput for an unknown family/dataset before anything is written
        model = prepare(config).model
        trained_on[name] = objective_label(config, model)[0]
        # the autoencoder has one loss, no ELBO: its spec names no objective
        specs.append(
            f"{config.family}:{config.objective}" if has_likelihood(model) else config.family
        )
    listing = {"runs": names, "families": specs, "trained_on": trained_on, "base": base.to_dict()}
    if progress:
        from binaryvae.data import DATASETS
        from binaryvae.runs.duration import expected_line

        print(expected_line(configs, DATASETS[base.dataset].sizes), file=stream, flush=True)
    claim = claim_existing(out, "resume") if resume else claim_new(out, force=force, kind="compare")
    with claim as handle:
        if resume:
            _check_compare_resume(out, listing, base)
        write_json_atomic(out / "compare.json", listing)
        if not resume:
            handle.commit()  # the comparison exists from here on
        summaries: dict[str, dict[str, Any]] = {}
        for name, config in zip(names, configs, strict=True):
            run_dir = out / name
            again = resume and (run_dir / "config.json").is_file()
            if progress:
                print(f"== {name} ({trained_on[name]}) -> {run_dir}", file=stream, flush=True)
            try:
                summaries[name] = train_run(
                    config,
                    run_dir,
                    resume=again,
                    force=force,  # a sub-run that kept a user's file after the clean-up
                    progress=progress,
                    label=name,
                    stream=stream,
                )
            except TrainingDiverged as e:  # the other families still run; the report shows it
                print(f"{name}: stopped: {e}", file=stream, flush=True)
                summaries[name] = {"status": "diverged", "message": str(e)}
    return summaries


def _check_compare_resume(out: Path, listing: dict[str, Any], base: TrainConfig) -> None:
    """``compare --resume`` continues the recorded comparison: every recorded family (new ones
    may be added: they start), and the same options except `binaryvae.config.RESUMABLE_FIELDS`
    (BadInput naming each difference)."""
    try:
        recorded = json.loads((out / "compare.json").read_text())
        stored = TrainConfig.from_dict(recorded["base"])
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise BadInput(f"cannot resume {out}: unreadable compare.json ({e})") from None
    # specs compared as pairs: "autoencoder-gmm" and the older "autoencoder-gmm:elbo" are one
    wanted = set(parse_families(listing["families"]))
    dropped = [f for f in recorded.get("families") or [] if parse_families([f])[0] not in wanted]
    if dropped:
        raise BadInput(
            f"--resume continues the recorded comparison of {out}; it cannot drop "
            f"{', '.join(dropped)} (families may only be added)"
        )
    base.check_resumable(stored, str(out))
