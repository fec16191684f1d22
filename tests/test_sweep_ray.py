"""`binaryvae sweep --executor ray` on a local Ray instance (num_cpus=2, started once for the
module): the same numbers as the local executor to the last digit, a rerun that skips every
finished cell, a worker killed mid-cell whose task Ray retries and which resumes to the metrics
of an uninterrupted sweep, and a diverging cell recorded while the others finish.

Not in the default run (Ray takes seconds to start): ``pytest -m ray``; skipped when Ray is not
installed (``pip install 'binaryvae[ray]'``)."""

from __future__ import annotations

import json
import os
import signal
import threading
import time

import pytest

from _runs_helpers import metric_rows
from binaryvae.cli import main

ray = pytest.importorskip(
    "ray", reason="Ray is not installed: pip install 'binaryvae[ray]' to run the Ray tests"
)
pytestmark = pytest.mark.ray

TOY = ["--dataset", "toy", "--hidden", "16", "--batch-size", "500", "--device", "cpu",
       "--threads", "1", "--quiet", "--no-report"]  # fmt: skip
TIMING = ("seconds_per_epoch", "eval_seconds_per_epoch", "summary_seconds",
          "summary_eval_seconds")  # fmt: skip
POISONED_BITS = 3  # the latent size whose cells the workers' setup hook drives to NaN


def _argv(out, *extra, families="bernoulli-sfe,steplogistic", latent="2,4", seeds="0,1"):
    return ["sweep", "--out", str(out), "--families", families, "--latent-dims", latent,
            "--seeds", seeds, "--epochs", "2", *TOY, *extra]  # fmt: skip


def _runs(out) -> list:
    return sorted(p.relative_to(out) for p in out.glob("*/seed-*") if p.is_dir())


def _summary(run) -> dict:
    data = json.loads((run / "summary.json").read_text())
    return {k: v for k, v in data.items() if k not in TIMING}


@pytest.fixture(scope="module")
def local_ray():
    bits = POISONED_BITS

    def poison_workers():
        """Runs in every Ray worker as it starts (a nested function: Ray ships it by value):
        training a model with ``bits`` latent bits turns NaN, as a diverging run does;
        everything else is untouched."""
        from binaryvae.models import VAE

        original = VAE.loss

        def loss(self, x, *args, **kwargs):
            terms = original(self, x, *args, **kwargs)
            if self.latent_dim == bits and self.training:
                return terms._replace(recon=terms.recon + float("nan"))
            return terms

        VAE.loss = loss

    os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        runtime_env={"worker_process_setup_hook": poison_workers},
    )
    try:
        yield
    finally:
        ray.shutdown()


@pytest.fixture(scope="module")
def local_sweep(tmp_path_factory):
    """The reference: the same 2 x 2 grid on the local executor."""
    out = tmp_path_factory.mktemp("local") / "sweep"
    assert main(_argv(out)) == 0
    return out


@pytest.fixture(scope="module")
def ray_sweep(local_ray, tmp_path_factory):
    out = tmp_path_factory.mktemp("ray") / "sweep"
    assert main(_argv(out, "--executor", "ray")) == 0
    return out


def test_ray_gives_the_local_executors_numbers_to_the_digit(local_sweep, ray_sweep):
    assert _runs(ray_sweep) == _runs(local_sweep) and len(_runs(ray_sweep)) == 8
    for run in _runs(local_sweep):
        assert metric_rows(ray_sweep / run) == metric_rows(local_sweep / run), run
        assert _summary(ray_sweep / run) == _summary(local_sweep / run), run
    record = json.loads((ray_sweep / "sweep.json").read_text())
    assert record["executor"]["name"] == "ray" and record["counts"]["finished"] == 4
    local = json.loads((local_sweep / "sweep.json").read_text())
    assert [c["headline"] for c in record["cells"]] == [c["headline"] for c in local["cells"]]


def test_rerunning_on_ray_skips_every_finished_cell(ray_sweep, capsys):
    before = {run: (ray_sweep / run / "summary.json").read_bytes() for run in _runs(ray_sweep)}
    mtimes = {run: (ray_sweep / run / "metrics.jsonl").stat().st_mtime_ns for run in before}
    argv = [a for a in _argv(ray_sweep, "--executor", "ray") if a != "--quiet"]
    assert main(argv) == 0
    assert capsys.readouterr().err.count("finished already") == 4
    for run, data in before.items():  # a re-run cell would rewrite its summary (timings)
        assert (ray_sweep / run / "summary.json").read_bytes() == data
        assert (ray_sweep / run / "metrics.jsonl").stat().st_mtime_ns == mtimes[run]
    cells = json.loads((ray_sweep / "sweep.json").read_text())["cells"]
    assert all(c["status"] == "finished" and c["seconds"] is None for c in cells)


def test_a_worker_killed_mid_cell_is_retried_and_the_cell_resumes(local_ray, tmp_path):
    """SIGKILL to the Ray worker training the first cell, after its first checkpoint: Ray
    retries the task, the retry resumes from the checkpoint (its epoch-1 row, timings
    included, is kept), and every run ends with the metrics of an uninterrupted sweep."""
    from binaryvae.runs.sweep import sweep
    from binaryvae.runs.sweep_executors import RayExecutor
    from binaryvae.runs.sweep_grid import grid_from_values

    values = dict(families="bernoulli-sfe,steplogistic", latent_dims=4, seeds=0, dataset="toy",
                  epochs=8, hidden=[16], batch_size=100, threads=1, device="cpu")  # fmt: skip
    grid = grid_from_values(values)
    whole = sweep(grid, tmp_path / "whole", progress=False)  # local, uninterrupted
    assert all(r["status"] == "finished" for r in whole.values())

    out = tmp_path / "killed"
    results = {}

    def drive():
        results.update(sweep(grid, out, executor=RayExecutor(max_retries=2), progress=False))

    driver = threading.Thread(target=drive)
    driver.start()
    run = out / "toy_bernoulli-sfe_elbo_4bit" / "seed-0"
    deadline = time.monotonic() + 300
    while not (run / "checkpoints" / "last.pt").exists():
        assert driver.is_alive() and time.monotonic() < deadline
        time.sleep(0.01)
    pid = int((run / ".binaryvae.lock").read_text())  # the writer holding the run's lock
    first_epoch = metric_rows(run, drop_timing=False)[0]
    assert pid != os.getpid() and not (run / "summary.json").exists()
    os.kill(pid, signal.SIGKILL)
    done_at_kill = len(metric_rows(run))
    driver.join(timeout=600)
    assert not driver.is_alive()
    assert 1 <= done_at_kill < 8  # it really was killed mid-cell
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert {name: r["status"] for name, r in results.items()} == dict.fromkeys(whole, "finished")
    assert metric_rows(run, drop_timing=False)[0] == first_epoch  # resumed, not restarted
    for name in whole:
        a, b = out / name / "seed-0", tmp_path / "whole" / name / "seed-0"
        assert metric_rows(a) == metric_rows(b), name
        assert _summary(a) == _summary(b), name


def test_a_cell_forced_to_diverge_is_marked_and_the_others_finish(local_ray, tmp_path, capsys):
    out = tmp_path / "sweep"
    latent = f"{POISONED_BITS},4"
    assert main(_argv(out, "--executor", "ray", families="bernoulli-sfe", latent=latent)) == 1
    cells = {c["name"]: c for c in json.loads((out / "sweep.json").read_text())["cells"]}
    bad = cells[f"toy_bernoulli-sfe_elbo_{POISONED_BITS}bit"]
    good = cells["toy_bernoulli-sfe_elbo_4bit"]
    assert bad["status"] == "diverged" and bad["runs"] == {"0": "diverged", "1": "diverged"}
    assert "epoch 1, batch 1" in bad["reason"] and "\n" not in bad["reason"]
    assert good["status"] == "finished"
    assert all((out / good["name"] / f"seed-{s}" / "summary.json").is_file() for s in (0, 1))
    assert "not finished: toy_bernoulli-sfe_elbo_3bit" in capsys.readouterr().err
