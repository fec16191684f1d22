"""`binaryvae sweep --executor ray` on a local Ray instance (num_cpus=2, started once for the
module): the same numbers as the local executor to the last digit, a rerun that skips every
finished cell, a worker killed mid-cell whose task Ray retries and which resumes to the metrics
of an uninterrupted sweep, and a diverging cell recorded while the others finish. Then a real
head started with `ray start --head --block` (token authentication on, on 127.0.0.1) and the
CLI connecting to it by --address in a process of its own: the token passed through and the
local executor's numbers, and one line with exit 2 when the head refuses the driver.

Not in the default run (Ray takes seconds to start): ``pytest -m ray``; skipped when Ray is not
installed (``pip install 'binaryvae[ray]'``)."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

import binaryvae
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
    # Ray 2.60 turns token authentication on for the instance ray.init starts and, finding no
    # token, writes one to ~/.ray/auth_token, where a later `ray start --head` would pick it
    # up: a token in the environment instead leaves the user's ~/.ray alone
    ours = "RAY_AUTH_TOKEN" not in os.environ
    if ours:
        os.environ["RAY_AUTH_TOKEN"] = secrets.token_hex(32)
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
        if ours:
            os.environ.pop("RAY_AUTH_TOKEN", None)


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


# A real head, started the way docs/cluster.md starts one (`ray start --head`, token
# authentication on), with the driver in its own process connecting by --address.

MINI = ["--dataset", "mnist-mini", "--hidden", "16", "--batch-size", "500", "--device", "cpu",
        "--threads", "1", "--quiet", "--no-report"]  # fmt: skip
SRC = str(Path(binaryvae.__file__).resolve().parents[1])  # the binaryvae under test


def _mini_argv(out, *extra):
    return ["sweep", "--out", str(out), "--families", "bernoulli-sfe,steplogistic",
            "--latent-dims", "4", "--seeds", "0", "--epochs", "1", *MINI, *extra]  # fmt: skip


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _ray_env(home: Path, **extra: str) -> dict[str, str]:
    """This environment without Ray's settings (no RAY_ADDRESS, no RAY_AUTH_*), with ``home``
    as HOME (so ~/.ray/auth_token is the test's own), this binaryvae importable, and every
    Ray address on 127.0.0.1 (``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``: otherwise Ray replaces
    127.0.0.1 by this machine's network address)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    path = [SRC, *filter(None, env.get("PYTHONPATH", "").split(os.pathsep))]
    env.update(HOME=str(home), PYTHONPATH=os.pathsep.join(path),
               RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0", RAY_ENABLE_UV_RUN_RUNTIME_ENV="0",
               **extra)  # fmt: skip
    return env


def _home(root: Path, token: str | None) -> Path:
    home = root / "home"
    (home / ".ray").mkdir(parents=True)
    if token is not None:
        (home / ".ray" / "auth_token").write_text(token)
    return home


@pytest.fixture(scope="module")
def ray_head(tmp_path_factory):
    """`ray start --head --block` with token authentication (RAY_AUTH_MODE=token, as Ray 2.60
    does by itself when a token exists), one CPU, on 127.0.0.1, in a HOME and temp dir of its
    own; stopped by its pid (SIGTERM: `ray start --block` then stops what it started)."""
    root = tmp_path_factory.mktemp("head")
    token = secrets.token_hex(32)
    home = _home(root, token)
    temp = Path(tempfile.mkdtemp(prefix="bvray"))  # short: Ray's socket paths must fit 107 bytes
    port, dashboard, agent = _free_ports(3)
    log_path = root / "head.log"
    argv = [sys.executable, "-m", "ray.scripts.scripts", "start", "--head", "--block",
            f"--port={port}", "--node-ip-address=127.0.0.1", "--num-cpus=1",
            "--include-dashboard=false", f"--dashboard-port={dashboard}",
            f"--dashboard-agent-listen-port={agent}", f"--temp-dir={temp}",
            "--disable-usage-stats"]  # fmt: skip
    with log_path.open("w") as log:
        head = subprocess.Popen(argv, env=_ray_env(home, RAY_AUTH_MODE="token"), stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 180
        while "Ray runtime started" not in log_path.read_text():
            assert head.poll() is None, log_path.read_text()
            assert time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.2)
        yield {"address": f"127.0.0.1:{port}", "token": token, "home": home}
    finally:
        head.terminate()
        try:
            head.wait(timeout=90)
        except subprocess.TimeoutExpired:
            head.kill()
            head.wait()
        try:  # anything of its session still alive (it has its own process group)
            os.killpg(head.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        shutil.rmtree(temp, ignore_errors=True)


def _driver(head, home: Path, out: Path, **env: str) -> subprocess.CompletedProcess:
    """`binaryvae sweep --executor ray --address <head>` in a process of its own."""
    argv = [sys.executable, "-m", "binaryvae",
            *_mini_argv(out, "--executor", "ray", "--address", head["address"])]  # fmt: skip
    return subprocess.run(argv, env=_ray_env(home, **env), cwd=out.parent, capture_output=True,
                          text=True, timeout=600)  # fmt: skip


def test_a_head_from_ray_start_with_token_auth_gives_the_local_numbers(ray_head, tmp_path):
    """The driver finds the token in ~/.ray/auth_token, says in one line that it sends it
    (RAY_AUTH_MODE is not set), and the sweep equals the local executor's to the digit."""
    local = tmp_path / "local"
    assert main(_mini_argv(local)) == 0
    out = tmp_path / "ray"
    done = _driver(ray_head, ray_head["home"], out)
    assert done.returncode == 0, done.stdout + done.stderr
    said = [line for line in done.stderr.splitlines() if "token" in line]
    assert said == [
        f"Ray: connecting to {ray_head['address']} with the authentication token in "
        "~/.ray/auth_token (as RAY_AUTH_MODE=token would; set RAY_AUTH_MODE=disabled to send none)"
    ]
    assert _runs(out) == _runs(local) and len(_runs(out)) == 2
    for run in _runs(local):
        assert metric_rows(out / run) == metric_rows(local / run), run
        assert _summary(out / run) == _summary(local / run), run
    record = json.loads((out / "sweep.json").read_text())
    assert record["executor"]["address"] == ray_head["address"]
    assert record["counts"]["finished"] == 2
    local_cells = json.loads((local / "sweep.json").read_text())["cells"]
    assert [c["headline"] for c in record["cells"]] == [c["headline"] for c in local_cells]


@pytest.mark.parametrize("case", ["no token", "another token", "RAY_AUTH_MODE=disabled"])
def test_a_driver_the_head_refuses_gets_one_line_and_exit_2(ray_head, tmp_path, case):
    """Without the head's token the head refuses the driver: exit 2, one line that says why
    and what to do (naming RAY_AUTH_MODE and ~/.ray/auth_token), none of Ray's InvalidAuthToken
    warnings, no sweep directory. (RAY_gcs_server_port_wait_time_s=2 makes Ray give up after 2
    attempts instead of 20; what it reports is the same.)"""
    token = {"no token": None, "another token": secrets.token_hex(32)}.get(case, ray_head["token"])
    env = {"RAY_gcs_server_port_wait_time_s": "2"}
    if case == "RAY_AUTH_MODE=disabled":
        env["RAY_AUTH_MODE"] = "disabled"
    out = tmp_path / "sweep"
    done = _driver(ray_head, _home(tmp_path, token), out, **env)
    at = f"the Ray cluster at {ray_head['address']}"
    why = {
        "no token": f"{at} requires token authentication and this machine has no token: copy "
        "the head node's ~/.ray/auth_token to ~/.ray/auth_token here (or set $RAY_AUTH_TOKEN; "
        "`ray get-auth-token` on the head node prints its token) and binaryvae sends it with "
        "RAY_AUTH_MODE=token",
        "another token": f"{at} refused the authentication token in ~/.ray/auth_token "
        "(RAY_AUTH_MODE=token): it is not the cluster's token (`ray get-auth-token` on the "
        "head node prints its token)",
        "RAY_AUTH_MODE=disabled": f"{at} requires token authentication and "
        "RAY_AUTH_MODE=disabled here sends no token: set RAY_AUTH_MODE=token, with the "
        "cluster's token in ~/.ray/auth_token or $RAY_AUTH_TOKEN (`ray get-auth-token` on the "
        "head node prints its token)",
    }[case]
    said = done.stderr.splitlines()
    if case == "another token":  # the driver said it sends the token it found
        assert said[0].startswith("Ray: connecting to") and "~/.ray/auth_token" in said[0]
        said = said[1:]
    assert (done.returncode, said) == (2, [f"binaryvae sweep: error: {why}"]), done.stderr
    assert not out.exists()
