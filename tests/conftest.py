"""Shared test settings: one thread per test process (tests may run beside other work, and two
OpenMP threads on 2 vCPUs collapse under contention; docs/benchmarks.md, section 2)."""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402

torch.set_num_threads(1)
