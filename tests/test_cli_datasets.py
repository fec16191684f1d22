"""`binaryvae datasets` through the CLI entry point (only this sub-command is registered, so the
test does not depend on the other commands' modules)."""

from __future__ import annotations

import pytest

import binaryvae.cli as cli
from _runs_helpers import DATASETS

SHARED = DATASETS


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    monkeypatch.setattr(cli, "COMMANDS", ("datasets",))
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.delenv("BINARYVAE_DATA_DIR", raising=False)
    monkeypatch.setattr("binaryvae.data.sources.DEBIAN_DIR", tmp_path / "debian")


def test_lists_every_dataset_offline(capsys):
    assert cli.main(["datasets"]) == 0
    out = capsys.readouterr().out
    for name in ("mnist-mini", "mnist", "fashion-mnist", "toy"):
        assert f"\n{name}: " in "\n" + out
    assert "10k subset of MNIST" in out and "shipped in the package" in out
    assert "8,000 train / 2,000 test" in out
    assert "not found" in out  # mnist and fashion-mnist: nowhere to be found here


def test_verify_mnist_mini(capsys):
    assert cli.main(["datasets", "--verify", "mnist-mini"]) == 0
    out = capsys.readouterr().out
    assert out.count("sha256 ok") == 2


@pytest.mark.skipif(not (SHARED / "fashion-mnist").is_dir(), reason="shared datasets absent")
def test_fashion_mnist_resolves_via_env(monkeypatch, capsys):
    monkeypatch.setenv("BINARYVAE_DATA_DIR", str(SHARED))
    assert cli.main(["datasets", "fashion-mnist", "mnist"]) == 0
    out = capsys.readouterr().out
    assert f"available: {SHARED / 'fashion-mnist'} (via $BINARYVAE_DATA_DIR)" in out
    assert "mnist: " in out and "not found" in out


def test_data_dir_option_and_failed_verification(tmp_path, capsys):
    folder = tmp_path / "data" / "fashion-mnist"
    folder.mkdir(parents=True)
    for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
                 "t10k-labels-idx1-ubyte"):
        (folder / name).write_bytes(b"\x00\x00\x08\x01\x00\x00\x00\x00")  # valid but wrong
    assert cli.main(["datasets", "--data-dir", str(tmp_path / "data"), "fashion-mnist"]) == 0
    assert f"{folder} (via --data-dir)" in capsys.readouterr().out
    code = cli.main(["datasets", "--verify", "--data-dir", str(tmp_path / "data"),
                     "fashion-mnist"])
    captured = capsys.readouterr()
    assert code == 2 and "SHA256 MISMATCH" in captured.out
    assert captured.err.count("\n") == 1 and "verification failed" in captured.err


def test_unknown_name_exits_2_with_one_line(capsys):
    assert cli.main(["datasets", "cifar"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown dataset 'cifar'" in err and "Traceback" not in err
