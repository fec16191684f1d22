"""Shared test settings: one thread per test process (tests may run beside other work, and two
OpenMP threads on 2 vCPUs collapse under contention; docs/benchmarks.md, section 2), and a
private binaryvae cache: the suite never reads or writes the user's ~/.cache/binaryvae (a
feature classifier cached there by another process must not change a sample FD here)."""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)


@pytest.fixture(scope="session", autouse=True)
def private_binaryvae_cache(tmp_path_factory):
    """$BINARYVAE_CACHE (read by `binaryvae.training.classifier.classifier_cache_dir`) points
    at a fresh directory for the whole session, subprocesses included; restored at the end."""
    before = os.environ.get("BINARYVAE_CACHE")
    cache = tmp_path_factory.mktemp("binaryvae-cache")
    os.environ["BINARYVAE_CACHE"] = str(cache)
    yield cache
    if before is None:
        os.environ.pop("BINARYVAE_CACHE", None)
    else:
        os.environ["BINARYVAE_CACHE"] = before
