"""Where and how a run computes: threads, device, seeds, and the allocator setting.

Threads. Two OpenMP threads on these 2-vCPU machines are fastest when the machine is quiet, but
libgomp's default spin-waiting collapses them next to any other busy process. Measured here
(2026-11-21, steplogistic 784-512-256-128, 8 bits, batch 128, fused Adam, images/s, best of 3
epochs, on a machine already shared with other sessions' test runs):

    OMP_WAIT_POLICY   threads   shared machine   + one busy loop
    PASSIVE           1         7,200            3,100
    PASSIVE           2         6,400            6,000
    (default) ACTIVE  1         6,300            4,100
    (default) ACTIVE  2         2,000              385

At a quieter moment (same day): 2 passive threads 11,700 images/s; two 1-thread processes side
by side 5,600-6,300 each, i.e. no gain from training compare's families in parallel.

So the command line sets ``OMP_WAIT_POLICY=PASSIVE`` before torch starts (unless the user set
it) and then uses every core (`default_threads`); with any other wait policy in the environment
(library use where torch was imported first) the default is 1 thread, which never collapses.
``--threads N`` overrides both. The allocator setting (`tune_allocator`) gave 1.37x on the same
run (4,500 -> 6,100 images/s with 2 passive threads).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import hashlib
import os
import random

import numpy as np
import torch

from binaryvae.errors import BadInput

__all__ = [
    "bf16_support",
    "check_precision",
    "default_threads",
    "epoch_seed",
    "resolve_device",
    "seed_everything",
    "set_threads",
    "tune_allocator",
]


def default_threads() -> int:
    """Threads used when the config leaves ``threads`` unset (module docstring): every core
    this process may use when ``OMP_WAIT_POLICY=PASSIVE``, else 1."""
    if os.environ.get("OMP_WAIT_POLICY", "").upper() != "PASSIVE":
        return 1
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def set_threads(threads: int | None) -> int:
    """Set torch's intra-op thread count (``None``: `default_threads`); return the count used."""
    n = default_threads() if threads is None else int(threads)
    if n < 1:
        raise BadInput(f"threads must be >= 1, got {n}")
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    return n


def resolve_device(name: str) -> torch.device:
    """``auto`` -> cuda when available else cpu; ``cuda`` without a GPU is bad input."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise BadInput("--device cuda asked for, but torch sees no CUDA device (use cpu or auto)")
    if name not in ("cpu", "cuda"):
        raise BadInput(f"unknown device {name!r}; choose one of auto, cpu, cuda")
    return torch.device(name)


def epoch_seed(seed: int, epoch: int, stream: str = "train") -> int:
    """A 63-bit seed derived from (run seed, epoch, stream name).

    Every epoch reseeds its own streams (``train`` for the training pass, ``eval`` for the
    test-set evaluation), so an epoch's randomness does not depend on what ran before it: a
    resumed run replays exactly the epochs an uninterrupted run would have run, and evaluation
    never shifts the training stream.
    """
    digest = hashlib.sha256(f"binaryvae:{seed}:{epoch}:{stream}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def seed_everything(seed: int) -> None:
    """Seed torch (CPU and CUDA), numpy's global generator and Python's `random`."""
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)


def tune_allocator() -> bool:
    """Stop glibc from returning the step's activation buffers to the OS after every step.

    glibc's default dynamic mmap threshold maps and unmaps the 0.4-1.6 MB activation buffers of
    an MLP step each time (twice the page faults); raising the mmap and trim thresholds gave
    1.24x training throughput on a Xeon measured earlier, and no measurable change on
    the AMD EPYC of docs/benchmarks.md (section 1): harmless, sometimes useful. Equivalent to the
    ``MALLOC_MMAP_THRESHOLD_`` / ``MALLOC_TRIM_THRESHOLD_`` environment variables, but settable
    after start-up. Returns False (and does nothing) off glibc or when the user set either variable.
    """
    if "MALLOC_MMAP_THRESHOLD_" in os.environ or "MALLOC_TRIM_THRESHOLD_" in os.environ:
        return False
    name = ctypes.util.find_library("c")
    if not name:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3  # from glibc's malloc.h
    ok = mallopt(m_mmap_threshold, 32 * 1024 * 1024) == 1  # 32 MiB: glibc's maximum on 64-bit
    ok = (mallopt(m_trim_threshold, 128 * 1024 * 1024) == 1) and ok
    return ok


def bf16_support(device: torch.device) -> tuple[bool, str]:
    """(whether ``device`` multiplies bfloat16 matrices in hardware, what it has).

    CPU: the avx512_bf16 or amx_bf16 instructions (``/proc/cpuinfo``; elsewhere oneDNN's own
    check). Without them PyTorch emulates bfloat16 products, measured 30-50x slower than float32
    on an AVX2-only AMD EPYC (docs/benchmarks.md). CUDA: ``torch.cuda.is_bf16_supported()``.
    """
    if device.type == "cuda":
        ok = torch.cuda.is_bf16_supported()
        return ok, torch.cuda.get_device_name(device)
    capability = torch.backends.cpu.get_cpu_capability()
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line.split(":", 1)[1].split() for line in f
                          if line.startswith("flags")), [])  # fmt: skip
        found = [x for x in ("avx512_bf16", "amx_bf16") if x in flags]
        return bool(found), " ".join(found) or f"{capability}, no bf16 instructions"
    except OSError:
        ok = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
        return ok, capability


def check_precision(precision: str, device: torch.device) -> None:
    """BadInput when ``precision`` is "bf16" and ``device`` has no bfloat16 hardware."""
    if precision != "bf16":
        return
    ok, what = bf16_support(device)
    if not ok:
        raise BadInput(
            f"--precision bf16 needs bfloat16 matrix instructions, and this {device.type} has "
            f"none ({what}): its bf16 products are emulated, 30-50x slower than fp32; use fp32"
        )
