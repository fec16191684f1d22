"""`compare`: several families trained on the same data, seed and architecture, one run each.

Defaults (`binaryvae.config.COMPARE_FAMILIES`, `COMPARE_EPOCHS`): the dissertation's 8-bit
comparison on the offline dataset plus the notes' models.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import Any, TextIO

from binaryvae.config import COMPARE_EPOCHS, COMPARE_FAMILIES, TrainConfig, split_list
from binaryvae.errors import BadInput
from binaryvae.runs.directory import read_compare_listing
from binaryvae.runs.labels import family_facts, family_spec, parse_family_spec, trained_on_label
from binaryvae.runs.ownership import check_new_dir, claim_existing, claim_new
from binaryvae.runs.seeds import parse_seeds
from binaryvae.storage import write_json_atomic

__all__ = ["DEFAULT_COMPARE_EPOCHS", "DEFAULT_FAMILIES", "compare", "parse_families", "run_names"]

DEFAULT_FAMILIES = COMPARE_FAMILIES
DEFAULT_COMPARE_EPOCHS = COMPARE_EPOCHS


def parse_families(spec: str | list[str] | tuple[str, ...]) -> list[tuple[str, str]]:
    """``"logistic,concrete:bernoulli-elbo"`` -> ``[("logistic", "elbo"),
    ("concrete", "bernoulli-elbo")]`` (objective "elbo" unless ``name:objective``)."""
    if isinstance(spec, str) and not spec.strip(", \t"):
        raise BadInput(f"no families given: --families is empty ({spec!r})")
    items = split_list(spec, "--families") if isinstance(spec, str) else list(spec)
    out = []
    for item in items:
        if not isinstance(item, str) or not item.strip():
            raise BadInput(f"families must be names, got {item!r} in {spec!r}")
        item = item.strip()
        family, objective = parse_family_spec(item, "--families: ")
        out.append((family, objective or "elbo"))
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
    seeds: list[int] | str | None = None,
    executor=None,
) -> dict[str, dict[str, Any]]:
    """Train every (family, objective) with ``base``'s other settings into ``out/<name>/``.

    The sweep (`binaryvae.runs.sweep`) of one dataset whose cells are the families: all
    configs, the dataset and every model are built (validated) before ``out`` is created; the
    cells run on ``executor`` (default: one after the other in this process; see
    `binaryvae.runs.sweep_executors`), and ``out/sweep.json`` records each one's status. With
    ``resume``, finished runs are kept, unfinished ones continue, missing ones start. A run that
    diverges (NaN/inf) or fails is reported and the others still run.

    ``seeds`` (e.g. ``"0-4"``): each family becomes a replica group of these seeds,
    ``out/<name>/seed-<s>/``; without it ``out/<name>/`` is one run with ``base.seed``.
    Returns ``{name: summary}`` in order (``{"status": "diverged" | "failed", "message": ...}``
    for a run that stopped; with ``seeds``, ``{name: {seed: summary}}``); ``out/compare.json``
    lists the runs, their family:objective specs (the autoencoder's without an objective: it
    has no ELBO) and what trained each one (``trained_on``: the label summary.json carries as
    ``objective_label``).
    """
    from binaryvae.runs.sweep import SweepState, _header, check_out, execute, validate_cells
    from binaryvae.runs.sweep_executors import LocalExecutor
    from binaryvae.runs.sweep_grid import Cell

    stream = sys.stderr if stream is None else stream
    executor = executor or LocalExecutor(stream)
    out = check_out(Path(out), executor)
    group = None if seeds is None else parse_seeds(seeds)
    if group is not None:
        base = dataclasses.replace(base, seed=group[0])
    configs = [dataclasses.replace(base, family=f, objective=o) for f, o in families]
    names = run_names(families)
    cells = [
        Cell(name, config, tuple(group) if group else (base.seed,), "replicas" if group else "run")
        for name, config in zip(names, configs, strict=True)
    ]
    if not resume:
        check_new_dir(out, force)
    validate_cells(cells, portable=executor.name == "ray", memory=not executor.remote)
    executor.check()
    trained_on, specs = {}, []
    for name, config in zip(names, configs, strict=True):
        trained_on[name] = trained_on_label(config, family_facts(config)["has_likelihood"])
        specs.append(family_spec(config))  # the autoencoder's names no objective
    listing = {"runs": names, "families": specs, "trained_on": trained_on, "base": base.to_dict()}
    if group is not None:
        listing["seeds"] = group
    if progress:
        from binaryvae.data import DATASETS
        from binaryvae.runs.duration import expected_line

        # each seed of a replica group counted as a run: stacked replicas take less
        every_run = [c for c in configs for _ in group or [base.seed]]
        print(expected_line(every_run, DATASETS[base.dataset].sizes), file=stream, flush=True)
    claim = claim_existing(out, "resume") if resume else claim_new(out, force=force, kind="compare")
    with claim as handle, executor.session():
        if resume:
            _check_compare_resume(out, listing, base)
        write_json_atomic(out / "compare.json", listing)
        axes = ("dataset", "family", "objective", "latent_dim", "seed")
        grid = {
            "datasets": [base.dataset],
            "families": listing["families"],
            "latent_dims": [base.latent_dim],
            "seeds": group or [base.seed],
            "fixed": {k: v for k, v in base.to_dict().items() if k not in axes},
        }
        state = SweepState(out, "compare", grid, cells, executor.describe())
        state.write()
        if not resume:
            handle.commit()  # the comparison exists from here on
        results = execute(cells, out, state, executor, progress=progress, stream=stream,
                          header=_header(stream))  # fmt: skip
    summaries: dict[str, dict[str, Any]] = {}
    for name, result in results.items():
        runs = result["runs"]
        if group is not None:
            summaries[name] = {s: runs.get(s) or _stopped(result) for s in group}
        else:
            summaries[name] = runs.get(base.seed) or _stopped(result)
    return summaries


def _stopped(result: dict[str, Any]) -> dict[str, Any]:
    return {"status": result["status"], "message": result.get("reason") or ""}


def _check_compare_resume(out: Path, listing: dict[str, Any], base: TrainConfig) -> None:
    """``compare --resume`` continues the recorded comparison: every recorded family (new ones
    may be added: they start), and the same options except `binaryvae.config.RESUMABLE_FIELDS`
    (BadInput naming each difference)."""
    try:
        recorded = read_compare_listing(out)
    except BadInput as e:
        raise BadInput(f"cannot resume {e}") from None
    try:
        stored = TrainConfig.from_dict(recorded["base"])
    except BadInput as e:
        raise BadInput(f"cannot resume {out}: compare.json: {e}") from None
    # specs compared as pairs: "autoencoder-gmm" and the older "autoencoder-gmm:elbo" are one
    wanted = set(parse_families(listing["families"]))
    dropped = [f for f in recorded.get("families") or [] if parse_families([f])[0] not in wanted]
    if dropped:
        raise BadInput(
            f"--resume continues the recorded comparison of {out}; it cannot drop "
            f"{', '.join(dropped)} (families may only be added)"
        )
    old, new = recorded.get("seeds"), listing.get("seeds")
    if (old is None) != (new is None):
        before = "one run per family (--seed)" if old is None else "replica groups (--seeds)"
        raise BadInput(f"--resume continues the recorded comparison of {out}, which has {before}")
    if old is not None:
        gone = [str(s) for s in old if s not in new]
        if gone:
            raise BadInput(
                f"--resume continues the recorded comparison of {out}; it cannot drop seeds "
                f"{', '.join(gone)} (seeds may only be added)"
            )
        stored = dataclasses.replace(stored, seed=base.seed)
    base.check_resumable(stored, str(out))
