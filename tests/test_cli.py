"""The command line of train / compare / evaluate / sample / report: help, bad input (exit 2,
nothing written), config round trip, and SIGKILL + --resume (a real subprocess)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from _runs_helpers import TINY, metric_rows
from binaryvae.cli import COMMANDS, build_parser, main


def _help(capsys, *argv) -> str:
    with pytest.raises(SystemExit) as info:
        main([*argv, "--help"])
    assert info.value.code == 0
    return capsys.readouterr().out


def test_top_level_help_lists_every_command(capsys):
    out = _help(capsys)
    for name in COMMANDS:
        assert name in out


@pytest.mark.parametrize("command", ["train", "compare", "evaluate", "sample", "report"])
def test_subcommand_help(capsys, command):
    out = _help(capsys, command)
    assert out.startswith(f"usage: binaryvae {command}")
    expected = {
        "train": ["--dataset", "--family", "--objective", "--latent-dim", "--epochs", "--seed",
                  "--out", "--hidden", "--batch-size", "--lr", "--beta", "--binarize",
                  "--threads", "--device", "--resume", "--force", "--config"],
        "compare": ["--families", "--dataset", "--latent-dim", "--epochs", "--out"],
        "evaluate": ["RUN_DIR", "--exact", "--iwae"],
        "sample": ["RUN_DIR", "--n", "--mode", "--out", "probs", "bernoulli", "threshold"],
        "report": ["DIR"],
    }[command]  # fmt: skip
    for flag in expected:
        assert flag in out, flag


def test_every_command_is_registered():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    assert set(sub.choices) == set(COMMANDS)


def test_version(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.startswith("binaryvae ")


@pytest.mark.parametrize("argv", [["--help"], ["--version"], ["sample", "--help"]])
def test_help_and_version_import_neither_torch_nor_scipy(argv):
    """`binaryvae --help` builds every sub-command's parser: none may import the heavy
    libraries at import time (they cost seconds before anything is printed)."""
    code = (
        "import sys\n"
        "from binaryvae.cli import main\n"
        "try:\n"
        f"    main({argv!r})\n"
        "except SystemExit:\n"
        "    pass\n"
        "heavy = ('torch', 'scipy', 'numpy', 'matplotlib', 'sklearn')\n"
        "print('LOADED', sorted(m for m in heavy if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, check=True)  # fmt: skip
    assert "usage: binaryvae" in done.stdout or done.stdout.startswith("binaryvae ")
    assert done.stdout.strip().splitlines()[-1] == "LOADED []", done.stdout


def _train_argv(out, *extra):
    return ["train", "--out", str(out), "--epochs", "1", "--latent-dim", "4", *TINY, "--quiet",
            "--no-report", *extra]  # fmt: skip


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--family", "nope"], "unknown family"),
        (["--dataset", "nope"], "unknown dataset"),
        (["--beta", "0"], "beta"),
        (["--beta", "-1"], "beta"),
        (["--latent-dim", "0"], "latent size"),
        (["--hidden", "16,x"], "--hidden"),
        (["--epochs", "0"], "epochs"),
        (["--lr", "0"], "learning rate"),
        (["--family", "autoencoder-gmm", "--objective", "bernoulli-elbo"], "not available"),
    ],
)
def test_train_bad_input_exits_2_and_writes_nothing(tmp_path, capsys, extra, message):
    out = tmp_path / "run"
    assert main(_train_argv(out, *extra)) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err, err
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []


def test_unknown_objective_is_a_usage_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        main(_train_argv(tmp_path / "run", "--objective", "likelihood"))
    assert info.value.code == 2
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("content", [None, "{not json", "[1, 2]", '{"no_such_field": 1}'])
def test_unreadable_config_exits_2(tmp_path, capsys, content):
    config = tmp_path / "config.json"
    if content is not None:
        config.write_text(content)
    out = tmp_path / "run"
    assert main(_train_argv(out, "--config", str(config))) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
    assert not out.exists()


@pytest.mark.parametrize(
    "families, message",
    [("logistic,nope", "unknown family"), ("logistic:likelihood", "unknown objective")],
)
def test_compare_bad_input_exits_2_and_writes_nothing(tmp_path, capsys, families, message):
    out = tmp_path / "cmp"
    argv = ["compare", "--out", str(out), "--families", families, "--epochs", "1",
            "--hidden", "16", "--quiet", "--no-report"]  # fmt: skip
    assert main(argv) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory):
    """One tiny run made through the CLI (with its report)."""
    out = tmp_path_factory.mktemp("cli") / "run"
    code = main(["train", "--out", str(out), "--family", "bernoulli-sfe", "--epochs", "2",
                 "--latent-dim", "4", "--seed", "3", *TINY, "--quiet"])  # fmt: skip
    assert code == 0
    return out


def test_existing_run_dir_needs_force(cli_run, capsys):
    before = (cli_run / "metrics.jsonl").read_text()
    assert main(_train_argv(cli_run)) == 2
    assert "already exists" in capsys.readouterr().err
    assert (cli_run / "metrics.jsonl").read_text() == before


def test_config_round_trip(cli_run, tmp_path):
    again = tmp_path / "again"
    assert main(["train", "--config", str(cli_run / "config.json"), "--out", str(again),
                 "--quiet", "--no-report"]) == 0  # fmt: skip
    assert json.loads((again / "config.json").read_text()) == json.loads(
        (cli_run / "config.json").read_text()
    )
    assert metric_rows(again) == metric_rows(cli_run)  # same seed: the same run
    # options given beside --config override it
    third = tmp_path / "third"
    assert main(["train", "--config", str(cli_run / "config.json"), "--out", str(third),
                 "--epochs", "1", "--quiet", "--no-report"]) == 0  # fmt: skip
    assert json.loads((third / "config.json").read_text())["epochs"] == 1


def test_resume_cannot_change_the_model(cli_run, capsys):
    code = main(["train", "--out", str(cli_run), "--resume", "--family", "logistic", "--quiet"])
    assert code == 2
    assert "cannot change family" in capsys.readouterr().err


def test_train_writes_the_report(cli_run):
    """report.md states the run's own final numbers, and report.html shows every figure in
    figures/ and no other."""
    import re

    summary = json.loads((cli_run / "summary.json").read_text())
    md = (cli_run / "report.md").read_text()
    for key in ("test_discrete_elbo", "test_log_px_exact"):
        assert f"{summary[key]:.2f}" in md, key
    html = (cli_run / "report.html").read_text()
    drawn = {p.name for p in (cli_run / "figures").glob("*.png")}
    shown = set(re.findall(r"figures/([\w.-]+\.png)", html))
    assert drawn and shown == drawn


def test_evaluate_keeps_one_iwae_entry_per_k(cli_run, capsys):
    """evaluate --iwae K adds test_iwae_k<K> and prints K; the k of training (TINY's
    --summary-iwae-k 100; the default's 1,000 is tests/test_protocol.py's) stays in test_iwae /
    iwae_k and under its own key."""
    trained = json.loads((cli_run / "summary.json").read_text())
    assert trained["iwae_k"] == 100 and trained["test_iwae_k100"] == trained["test_iwae"]
    assert main(["evaluate", str(cli_run), "--iwae", "7"]) == 0
    assert main(["evaluate", str(cli_run), "--iwae", "3"]) == 0
    out = capsys.readouterr().out
    assert "test_discrete_elbo=" in out and "test_iwae_k7=" in out and "test_iwae_k3=" in out
    s = json.loads((cli_run / "summary.json").read_text())
    assert s["iwae_k"] == 100 and s["test_iwae"] == trained["test_iwae"]
    assert s["test_iwae_k100"] == trained["test_iwae_k100"]
    # the IWAE grows with k towards the exact log p(x) (4 bits: all 16 codes enumerated)
    assert s["test_iwae_k3"] < s["test_iwae_k7"] < s["test_iwae_k100"]
    assert s["test_iwae_k7"] < s["test_log_px_exact"]
    # the default k (1,000 at 4 bits) asked of a run trained with another: its own key only
    assert main(["evaluate", str(cli_run), "--iwae", "1000"]) == 0
    s = json.loads((cli_run / "summary.json").read_text())
    assert s["iwae_k"] == 100 and s["test_iwae"] == trained["test_iwae"]
    assert s["test_iwae_k100"] < s["test_iwae_k1000"] < s["test_log_px_exact"]


def test_evaluate_bad_input(tmp_path, capsys):
    assert main(["evaluate", str(tmp_path)]) == 2
    assert main(["evaluate", str(tmp_path), "--iwae", "0"]) == 2


@pytest.mark.parametrize("mode", ["probs", "bernoulli", "threshold"])
def test_sample_command(cli_run, tmp_path, mode, monkeypatch):
    """The PNG shows decoded prior samples: over 400 of them, the mean pixel matches its
    expectation computed independently by enumerating the model's 16 codes (uniform prior),
    within 5 standard errors; threshold and bernoulli images are binary."""
    import binaryvae.report.style as style
    from binaryvae.runs import load_run

    shown = {}
    real = style.tile
    monkeypatch.setattr(style, "tile", lambda images, *a, **k: shown.setdefault(
        "images", images) is not None and real(images, *a, **k))  # fmt: skip
    out = tmp_path / f"{mode}.png"
    assert main(["sample", str(cli_run), "--n", "400", "--mode", mode, "--out", str(out)]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    images = torch.as_tensor(shown["images"]).double()  # [400, 784]
    model = load_run(cli_run).model
    codes = torch.tensor([[(c >> i) & 1 for i in range(4)] for c in range(16)], dtype=torch.float32)
    with torch.no_grad():
        probs = torch.sigmoid(model.decode(codes)).double()  # [16, 784]
    pixel = (probs > 0.5).double() if mode == "threshold" else probs
    per_image = images.mean(1)  # [400]
    want = pixel.mean()  # E over the uniform prior of the mean pixel
    se = per_image.std() / 20
    assert abs(per_image.mean() - want) < 5 * se + 1e-9, (per_image.mean(), want)
    if mode in ("threshold", "bernoulli"):
        assert set(images.unique().tolist()) <= {0.0, 1.0}


def _write_idx(path: Path, array) -> None:
    """An uncompressed IDX file of uint8 ``array`` (the format of the MNIST files)."""
    import struct

    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(header + array.astype("uint8").tobytes())


def test_sample_needs_only_the_run_directory(tmp_path, monkeypatch, capsys):
    """A run on Fashion-MNIST samples where no Fashion-MNIST can be found (nor downloaded): the
    same PNG as while its data were there, written to the default RUN_DIR/samples_MODE.png."""
    import shutil

    import numpy as np

    from binaryvae.data import load_dataset, sources
    from binaryvae.errors import BadInput

    rng = np.random.default_rng(0)
    folder = tmp_path / "data" / "fashion-mnist"
    folder.mkdir(parents=True)
    for split, n in (("train", 60), ("t10k", 20)):  # a tiny stand-in, 28x28 like the real one
        _write_idx(folder / f"{split}-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28)))
        _write_idx(folder / f"{split}-labels-idx1-ubyte", rng.integers(0, 10, n))
    # the registry made to know the stand-in's files (they are checked against it when loaded)
    monkeypatch.setitem(sources.FILES, "fashion-mnist", tuple(
        sources.RemoteFile(f.name, (folder / f.name).stat().st_size,
                           sources.sha256_decompressed(folder / f.name))
        for f in sources.FILES["fashion-mnist"]))  # fmt: skip
    run = tmp_path / "run"
    assert main(["train", "--out", str(run), "--dataset", "fashion-mnist", "--data-dir",
                 str(tmp_path / "data"), "--family", "steplogistic", "--epochs", "1",
                 "--latent-dim", "3", *TINY, "--batch-size", "20",  # a batch: 60 images hold 3
                 "--quiet", "--no-report"]) == 0  # fmt: skip
    with_data = tmp_path / "with_data.png"
    assert main(["sample", str(run), "--n", "9", "--out", str(with_data)]) == 0

    shutil.rmtree(tmp_path / "data")
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv("BINARYVAE_DATA_DIR", str(empty))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setattr("binaryvae.data.sources.DEBIAN_DIR", tmp_path / "debian")
    # a download would fail at once: nothing listens on port 9
    monkeypatch.setitem(sources.MIRRORS, "fashion-mnist", ("http://127.0.0.1:9/",))
    with pytest.raises(BadInput):  # the premise: the dataset is gone
        load_dataset("fashion-mnist", data_dir=str(tmp_path / "data"))
    capsys.readouterr()
    assert main(["sample", str(run), "--n", "9"]) == 0
    default = run / "samples_probs.png"
    assert capsys.readouterr().out.strip() == str(default)
    assert default.read_bytes() == with_data.read_bytes()


def test_sample_bad_input(cli_run, tmp_path, capsys):
    assert main(["sample", str(cli_run), "--n", "0", "--out", str(tmp_path / "a.png")]) == 2
    assert main(["sample", str(cli_run), "--n", "4", "--out", str(tmp_path / "a.jpg")]) == 2
    assert main(["sample", str(tmp_path), "--n", "4", "--out", str(tmp_path / "b.png")]) == 2
    assert list(tmp_path.iterdir()) == []


def test_report_command(cli_run, tmp_path, capsys):
    """`binaryvae report` rebuilds, from the run directory alone, the very report `train`
    wrote (the same bytes), every embedded image is a figure file, and the table row holds the
    run's summary.json numbers."""
    import base64
    import re
    import shutil

    run = tmp_path / "run"
    shutil.copytree(cli_run, run)
    html, md = (run / "report.html").read_bytes(), (run / "report.md").read_text()
    figures = {f.name: f.read_bytes() for f in (run / "figures").glob("*.png")}
    (run / "report.html").unlink()
    (run / "report.md").unlink()
    shutil.rmtree(run / "figures")
    capsys.readouterr()
    assert main(["report", str(run)]) == 0
    assert capsys.readouterr().out.strip() == str(run / "report.html")
    assert (run / "report.html").read_bytes() == html
    assert (run / "report.md").read_text() == md
    assert {f.name: f.read_bytes() for f in (run / "figures").glob("*.png")} == figures
    embedded = re.findall(rb'src="data:image/png;base64,([^"]+)"', html)
    assert sorted(base64.b64decode(e) for e in embedded) == sorted(figures.values())
    s = json.loads((run / "summary.json").read_text())
    row = next(line for line in md.splitlines() if line.startswith("| bernoulli-sfe | "))
    assert f"| {s['test_discrete_elbo']:.2f} |" in row
    assert f"| {s['test_log_px_exact']:.2f} |" in row


def _cli(*argv: str, **kwargs) -> subprocess.Popen:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.Popen([sys.executable, "-m", "binaryvae", *argv], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kwargs)  # fmt: skip


@pytest.mark.slow
def test_sigkill_then_resume_gives_the_uninterrupted_metrics(tmp_path):
    """Kill a training process (SIGKILL) right after its first checkpoint, i.e. mid-way through
    epoch 2, resume it, and compare every metric with an uninterrupted run of the same seed.

    End to end: three processes, 17 s of CPU, so marked slow (`pytest -m slow`); the default
    suite checks the same resume in-process (tests/test_runs.py::test_resume_continues_exactly,
    the replica groups' resume tests)."""
    args = ["--family", "bernoulli-sfe", "--epochs", "4", "--latent-dim", "4", "--seed", "7",
            "--hidden", "16", "--batch-size", "40", "--threads", "1", "--device", "cpu",
            "--quiet", "--no-report"]  # fmt: skip
    killed = tmp_path / "killed"
    proc = _cli("train", "--out", str(killed), *args)
    checkpoint = killed / "checkpoints" / "last.pt"
    deadline = time.monotonic() + 120
    while not checkpoint.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()
    done_before_kill = len(metric_rows(killed))
    assert 1 <= done_before_kill < 4  # it really was interrupted
    assert not (killed / "summary.json").exists()

    resume = _cli("train", "--out", str(killed), "--resume", "--threads", "1", "--quiet",
                  "--no-report")  # fmt: skip
    _, err = resume.communicate(timeout=300)
    assert resume.returncode == 0, err.decode()

    whole = tmp_path / "whole"
    run = _cli("train", "--out", str(whole), *args)
    _, err = run.communicate(timeout=300)
    assert run.returncode == 0, err.decode()

    assert metric_rows(killed) == metric_rows(whole)
    a = json.loads((killed / "summary.json").read_text())
    b = json.loads((whole / "summary.json").read_text())
    for key in ("test_discrete_elbo", "test_log_px_exact", "test_iwae", "sample_fd", "test_recon"):
        assert a[key] == b[key], key


def test_nan_stop_message_via_cli(tmp_path, capsys):
    """A huge learning rate drives the weights to inf: the run stops with exit 1, naming the
    epoch and batch, keeping the metrics and checkpoint of the last good epoch (if any)."""
    out = tmp_path / "nan"
    code = main(["train", "--out", str(out), "--family", "gaussian-sigmoid", "--epochs", "3",
                 "--latent-dim", "4", "--hidden", "16", "--batch-size", "500", "--lr", "1e30",
                 "--threads", "1", "--quiet"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 1, err
    assert "non-finite" in err and "at epoch" in err and "batch" in err
    assert (out / "config.json").is_file()
    rows = metric_rows(out) if (out / "metrics.jsonl").exists() else []
    stopped_epoch = int(err.split("at epoch ")[1].split(",")[0])
    assert [r["epoch"] for r in rows] == list(range(1, stopped_epoch))
    assert (out / "checkpoints" / "last.pt").exists() == (stopped_epoch > 1)
    assert not Path(out / "summary.json").exists()
