"""Seed lists of replica groups: ``"0-3,10"`` -> ``[0, 1, 2, 3, 10]`` and back.

Imports nothing of training, so that readers of options (`binaryvae.runs.compare`,
`binaryvae.runs.sweep_grid`) check seeds without loading torch's training layer.
"""

from __future__ import annotations

from binaryvae.config import MAX_SEED, split_list
from binaryvae.errors import BadInput

__all__ = ["MAX_REPLICAS", "parse_seeds", "seed_text"]

MAX_REPLICAS = 256  # seeds per replica group: memory grows linearly with them


def parse_seeds(spec: str | list[int] | tuple[int, ...]) -> list[int]:
    """``"0,1,2"``, ``"0-7"`` (inclusive) or a mix like ``"0-3,10"`` -> a list of distinct seeds.

    BadInput for anything else, an empty text or element (``"0,,1"``) included."""
    if not isinstance(spec, str):
        seeds = list(spec)
    else:
        seeds = []
        for part in split_list(spec, "--seeds"):
            lo, sep, hi = part.partition("-")
            try:
                if sep:
                    a, b = int(lo), int(hi)
                    if b < a:
                        raise BadInput(f"seed range {part!r} runs backwards")
                    if b - a >= MAX_REPLICAS:
                        raise BadInput(f"seed range {part!r} holds more than {MAX_REPLICAS} seeds")
                    seeds += range(a, b + 1)
                else:
                    seeds.append(int(part))
            except ValueError:
                raise BadInput(f"--seeds takes seeds like 0,1,2 or 0-7, got {spec!r}") from None
    if not seeds:
        raise BadInput("no seeds given")
    if len(set(seeds)) != len(seeds):
        raise BadInput(f"a seed is listed twice in {spec!r}")
    if len(seeds) > MAX_REPLICAS:
        raise BadInput(f"at most {MAX_REPLICAS} seeds per replica group, got {len(seeds)}")
    for s in seeds:
        if isinstance(s, bool) or not isinstance(s, int) or not 0 <= s <= MAX_SEED:
            raise BadInput(f"seeds must be integers in [0, {MAX_SEED}], got {s!r}")
    return seeds


def seed_text(seeds: list[int]) -> str:
    """``[0, 1, 2, 3]`` -> ``"0-3"`` (a run of three or more), else ``"0,2"``."""
    if len(seeds) > 2 and seeds == list(range(seeds[0], seeds[-1] + 1)):
        return f"{seeds[0]}-{seeds[-1]}"
    return ",".join(map(str, seeds))
