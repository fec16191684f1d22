"""Shared helpers of the training/run/CLI/report tests: tiny, fast run settings."""

from __future__ import annotations

import json
import os
from pathlib import Path

# A tiny network and big batches: one mnist-mini epoch (8,000 images) takes well under a second.
# TINY_NET for compare and sweep; TINY for train adds its summary: IWAE-100 and no sample FD
# (most of a tiny run's time was its summary; the default k and the FD are tested where they
# are the point: test_protocol, test_summary_fd, test_evaluation_fid, ...).
TINY_NET = ["--hidden", "16", "--batch-size", "500", "--threads", "1", "--device", "cpu"]
TINY = [*TINY_NET, "--summary-iwae-k", "100", "--summary-fd-samples", "0"]
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


def train_argv(out, *extra: str, epochs: str = "1") -> list[str]:
    """``binaryvae train`` of one tiny mnist-mini run (4 bits, `TINY`) into ``out``, quiet, no
    report; ``extra`` options are appended (and override)."""
    return ["train", "--out", str(out), "--epochs", epochs, "--latent-dim", "4", *TINY,
            "--quiet", "--no-report", *extra]  # fmt: skip


def file_bytes(path: Path, follow_links: bool = True) -> dict[str, bytes]:
    """Every file under ``path`` (relative name -> bytes); ``follow_links=False`` leaves out
    symbolic links (a test that planted one compares only what binaryvae may write)."""
    return {
        str(p.relative_to(path)): p.read_bytes()
        for p in sorted(path.rglob("*"))
        if p.is_file() and (follow_links or not p.is_symlink())
    }


def one_line_error(capsys) -> str:
    """What the command printed on stderr, asserted to be one line and no traceback."""
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert "Traceback" not in err, err
    return err


def fail_fsync_of(monkeypatch, predicate, err: int | None = None) -> None:
    """Make os.fsync raise OSError(err, ENOSPC by default) for files whose path (read from
    /proc/self/fd) satisfies ``predicate``."""
    import errno

    err = errno.ENOSPC if err is None else err
    real = os.fsync

    def fsync(fd):
        try:
            path = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            path = ""
        if predicate(path):
            raise OSError(err, os.strerror(err))
        return real(fd)

    monkeypatch.setattr(os, "fsync", fsync)


SUMMARY_TIMING = ("seconds_per_epoch", "eval_seconds_per_epoch", "summary_seconds",
                  "summary_eval_seconds")  # fmt: skip


def checkpoint_of(run: Path) -> dict:
    """The run's checkpoints/last.pt, loaded (and validated) by binaryvae."""
    from binaryvae.training.checkpoint import load_checkpoint

    return load_checkpoint(run / "checkpoints" / "last.pt")


def summary_of(run: Path) -> dict:
    """The run's summary.json without its timing keys."""
    s = json.loads((run / "summary.json").read_text())
    return {k: v for k, v in s.items() if k not in SUMMARY_TIMING}


def assert_same_weights(got: Path, want: Path) -> None:
    """Two runs' checkpoints hold the same parameters and the same Adam state, bit for bit."""
    import torch

    a, b = checkpoint_of(got), checkpoint_of(want)
    assert a["model"].keys() == b["model"].keys()
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    for i, state in b["optimizer"]["state"].items():
        for key, value in state.items():
            assert torch.equal(a["optimizer"]["state"][i][key], value), (i, key)
