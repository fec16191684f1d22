"""Shared helpers of the training/run/CLI/report tests: tiny, fast run settings."""

from __future__ import annotations

import json
import os
from pathlib import Path

# A tiny network and big batches: one mnist-mini epoch (8,000 images) takes well under a second.
TINY = ["--hidden", "16", "--batch-size", "500", "--threads", "1", "--device", "cpu"]
TIMING_KEYS = ("train_seconds", "eval_seconds")
# A folder holding real datasets (fashion-mnist/ with its four IDX files) for the tests that
# read them: $BINARYVAE_TEST_DATASETS, else shared/datasets beside the checkout (where CI puts
# them). Those tests are skipped when the folder is absent.
DATASETS = Path(os.environ.get("BINARYVAE_TEST_DATASETS")
                or Path(__file__).resolve().parents[2] / "shared" / "datasets")  # fmt: skip


def tiny_config(**changes):
    from binaryvae.config import TrainConfig

    fields = dict(
        dataset="mnist-mini", family="bernoulli-sfe", latent_dim=4, epochs=2, hidden=(16,),
        batch_size=500, threads=1, device="cpu", seed=0,
    )  # fmt: skip
    fields.update(changes)
    return TrainConfig(**fields)


def metric_rows(run: Path, drop_timing: bool = True) -> list[dict]:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    if drop_timing:
        rows = [{k: v for k, v in r.items() if k not in TIMING_KEYS} for r in rows]
    return rows
