"""Option helpers shared by the training sub-commands (parsing only, no maths)."""

from __future__ import annotations

import argparse
import re

from binaryvae.config import DEVICES, PRECISIONS, split_list
from binaryvae.errors import BadInput

__all__ = ["hidden_sizes", "add_run_options", "on_off", "path_option"]


def hidden_sizes(text: str) -> tuple[int, ...]:
    """``"512,256,128"`` -> ``(512, 256, 128)``; BadInput for anything else (an empty text or
    element included: `binaryvae.config.split_list`)."""
    parts = split_list(text, "--hidden")
    try:
        return tuple(int(part) for part in parts)
    except ValueError:
        raise BadInput(
            f"--hidden takes comma-separated integers like 512,256,128, got {text!r}"
        ) from None


def path_option(text: str | None, option: str) -> str | None:
    """``text`` unchanged unless it is empty or blank: BadInput naming ``option`` then (an
    empty path would mean the current folder). None (not given) passes."""
    if text is not None and not text.strip():
        raise BadInput(f"{option} is empty; give a path")
    return text


def on_off(text: str) -> bool:
    """``on`` -> True, ``off`` -> False."""
    value = {"on": True, "off": False}.get(text.strip().lower())
    if value is None:
        raise argparse.ArgumentTypeError(f"expected on or off, got {text!r}")
    return value


def add_run_options(p: argparse.ArgumentParser) -> None:
    """Options of `train` and `compare` that only say where/how to compute and report."""
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        metavar="N",
        help="torch CPU threads (default: every core, with OMP_WAIT_POLICY=PASSIVE, which the "
        "command line sets unless the environment already names a policy; 1 under another "
        "policy, since spin-waiting threads collapse next to a busy neighbour)",
    )
    p.add_argument(
        "--device",
        default=None,
        choices=DEVICES,
        help="where to train (default auto: cuda when available)",
    )
    p.add_argument(
        "--data-dir", default=None, metavar="DIR", help="look for dataset files in DIR first"
    )
    p.add_argument(
        "--precision",
        default=None,
        choices=PRECISIONS,
        help="arithmetic of the training step: fp32 (default) or bf16 (autocast; needs "
        "bfloat16 instructions, e.g. avx512_bf16 or a CUDA GPU; evaluation stays fp32)",
    )
    p.add_argument(
        "--force",
        action="store_true",
        help="replace an existing output directory that binaryvae wrote (only its own files)",
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue the run(s) in --out from the last checkpoint",
    )
    p.add_argument(
        "--tensorboard",
        nargs="?",
        const=True,
        default=None,
        type=on_off,
        metavar="on|off",
        help="also write every metrics row as TensorBoard scalars into <run dir>/tensorboard/ "
        "(step = optimizer step; needs pip install 'binaryvae[tensorboard]'); a resume may "
        "switch it on or off",
    )
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.add_argument(
        "--no-report",
        action="store_true",
        help="skip figures/report.html at the end (binaryvae report DIR makes them later)",
    )


def _iwae_keys(summary: dict) -> list[str]:
    """The per-k IWAE keys of a summary (test_iwae_k100, test_iwae_k1000, ...), by k."""
    keys = [k for k in summary if re.fullmatch(r"test_iwae_k\d+", k)]
    return sorted(keys, key=lambda k: int(k[len("test_iwae_k") :]))


def print_summary(out, summary: dict) -> None:
    """One line per run: its objective label and the final numbers that apply; every IWAE
    is printed with its k (``test_iwae_k1000=...``)."""
    keys = (
        "test_relaxed_elbo",
        "test_elbo",
        "test_bernoulli_elbo",
        "test_discrete_elbo",
        "test_log_px_exact",
    )
    parts = [f"{k}={summary[k]:.3f}" for k in keys if isinstance(summary.get(k), int | float)]
    iwae = dict(summary)
    if "test_iwae" in summary and isinstance(summary.get("iwae_k"), int):
        # a summary written before per-k keys existed: its one IWAE, named with its k
        iwae.setdefault(f"test_iwae_k{summary['iwae_k']}", summary["test_iwae"])
    for key in _iwae_keys(iwae):
        if isinstance(iwae.get(key), int | float):
            parts.append(f"{key}={iwae[key]:.3f}")
    if isinstance(summary.get("sample_fd"), int | float):
        parts.append(f"sample_fd={summary['sample_fd']:.3f}")
    print(f"{out}: {summary.get('objective_label', '')}  " + "  ".join(parts))
