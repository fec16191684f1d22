"""Runs remember their data, and every JSON file binaryvae reads goes through one reader
(docs/reliability.md; issue 24, findings 8 and 9 and the JSON findings of its Low list).

- config.json records the dataset's fingerprint (sha256 of a manifest of its parts' decompressed
  bytes); evaluate, report and train --resume refuse other data, naming where the data were when
  the run trained and where they were found now, and write nothing;
- the files of known datasets are checked against the checksums binaryvae knows when loaded;
- evaluate of a group checks every run before writing anything for any;
- summary.json, config.json, metrics.jsonl (and the group files) of the wrong type, with invalid
  UTF-8, nested 100,000 deep, linked to /dev/zero or huge: exit 2, one line naming the file.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import json
import os
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from _runs_helpers import file_bytes, one_line_error, train_argv
from binaryvae.cli import main
from binaryvae.data import datasets, load_dataset, sources
from binaryvae.errors import BadInput
from binaryvae.jsonfiles import check_depth, read_json, read_jsonl
from binaryvae.runs.ownership import read_marker

# every file under a folder, symbolic links left out
_no_links = functools.partial(file_bytes, follow_links=False)


def _manifest_sha256(parts: list[tuple[str, bytes]]) -> str:
    """The fingerprint as the docstring of binaryvae.data.datasets defines it, computed here
    from the parts' decompressed bytes with hashlib alone."""
    text = "".join(f"{name} {hashlib.sha256(data).hexdigest()}\n" for name, data in parts)
    return hashlib.sha256(text.encode()).hexdigest()


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One tiny finished mnist-mini run (1 epoch), copied by the tests that alter it."""
    out = tmp_path_factory.mktemp("reldata") / "run"
    assert main(train_argv(out, "--family", "bernoulli-sfe")) == 0
    return out


@pytest.fixture
def run_copy(trained, tmp_path):
    dst = tmp_path / "run"
    shutil.copytree(trained, dst)
    return dst


# ------------------------------------------------------------------ the fingerprint
MINI_FILES = ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def _mini_reference() -> str:
    return _manifest_sha256([
        (name, gzip.decompress((datasets.MNIST_MINI_DIR / (name + ".gz")).read_bytes()))
        for name in MINI_FILES
    ])  # fmt: skip


def test_the_fingerprint_is_the_sha256_of_the_manifest_of_decompressed_parts():
    reference = _mini_reference()
    assert load_dataset("mnist-mini").fingerprint == reference
    assert datasets.fingerprint_found("mnist-mini") == (reference, str(datasets.MNIST_MINI_DIR))
    toy = load_dataset("toy")
    toy_reference = _manifest_sha256([
        ("train_x", toy.train_x.numpy().astype("<f4").tobytes()),
        ("test_x", toy.test_x.numpy().astype("<f4").tobytes()),
    ])  # fmt: skip
    assert toy.fingerprint == toy_reference == datasets.fingerprint_found("toy")[0]


def test_a_run_records_its_data_and_its_config_still_trains(trained, tmp_path, capsys):
    recorded = json.loads((trained / "config.json").read_text())
    assert recorded["data_fingerprint"] == _mini_reference()
    assert recorded["data_source"] == str(datasets.MNIST_MINI_DIR)
    # config.json is a public contract: `train --config` takes it, fingerprint included
    again = tmp_path / "again"
    assert main(["train", "--config", str(trained / "config.json"), "--out", str(again),
                 "--quiet", "--no-report"]) == 0  # fmt: skip
    assert json.loads((again / "config.json").read_text()) == recorded
    # and --resume with it (the recorded fields are no change of the run's options)
    assert main(["train", "--config", str(again / "config.json"), "--out", str(again),
                 "--resume", "--epochs", "2", "--quiet", "--no-report"]) == 0  # fmt: skip
    resumed = json.loads((again / "config.json").read_text())
    assert resumed == {**recorded, "epochs": 2}
    # a config that records other data is refused before anything is written
    other = dict(recorded, data_fingerprint="0" * 64)
    (tmp_path / "other.json").write_text(json.dumps(other))
    capsys.readouterr()
    assert main(["train", "--config", str(tmp_path / "other.json"), "--out",
                 str(tmp_path / "new"), "--quiet", "--no-report"]) == 2  # fmt: skip
    assert "are not the data it was trained on" in one_line_error(capsys)
    assert not (tmp_path / "new").exists()


def test_a_config_without_a_fingerprint_is_accepted_and_resume_records_it(run_copy, capsys):
    """Runs written before the fingerprint existed: evaluate uses the data found (config.json
    untouched); train --resume records their fingerprint."""
    config = json.loads((run_copy / "config.json").read_text())
    old = {k: v for k, v in config.items() if k not in ("data_fingerprint", "data_source")}
    (run_copy / "config.json").write_text(json.dumps(old))
    before = (run_copy / "config.json").read_bytes()
    assert main(["evaluate", str(run_copy)]) == 0
    assert (run_copy / "config.json").read_bytes() == before
    assert main(["train", "--out", str(run_copy), "--resume", "--epochs", "2", "--quiet",
                 "--no-report"]) == 0  # fmt: skip
    assert json.loads((run_copy / "config.json").read_text())["data_fingerprint"] == (
        _mini_reference()
    )


# a tiny IDX dataset standing in for mnist (28x28, 40 training and 12 test images)
def _idx(array: np.ndarray) -> bytes:
    return (struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
            + array.astype(np.uint8).tobytes())  # fmt: skip


def _mnist_files(seed: int) -> dict[str, bytes]:
    rng = np.random.default_rng(seed)
    return {
        "train-images-idx3-ubyte": _idx(rng.integers(0, 256, (40, 28, 28))),
        "train-labels-idx1-ubyte": _idx(np.arange(40) % 10),
        "t10k-images-idx3-ubyte": _idx(rng.integers(0, 256, (12, 28, 28))),
        "t10k-labels-idx1-ubyte": _idx(np.arange(12) % 10),
    }


def _put(folder: Path, files: dict[str, bytes], level: int = 9) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (folder / (name + ".gz")).write_bytes(gzip.compress(data, compresslevel=level))
    return folder


def _registry_knows(monkeypatch, files: dict[str, bytes]) -> None:
    spec = tuple(sources.RemoteFile(name, len(data), hashlib.sha256(data).hexdigest())
                 for name, data in files.items())  # fmt: skip
    monkeypatch.setitem(sources.FILES, "mnist", spec)


@pytest.fixture(scope="module")
def classifiers(tmp_path_factory):
    """One feature-classifier cache for the module (a classifier is fitted once per data)."""
    return tmp_path_factory.mktemp("classifiers")


@pytest.fixture
def isolated(tmp_path, monkeypatch, classifiers):
    """No lookup place outside tmp_path, no mirror: nothing is downloaded."""
    monkeypatch.setenv("BINARYVAE_CACHE", str(classifiers))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.delenv("BINARYVAE_DATA_DIR", raising=False)
    monkeypatch.setattr(sources, "DEBIAN_DIR", tmp_path / "debian")
    monkeypatch.setitem(sources.MIRRORS, "mnist", ())
    return tmp_path


def test_known_files_are_checked_when_loaded(isolated, monkeypatch, capsys):
    files = _mnist_files(0)
    _registry_knows(monkeypatch, files)
    good = _put(isolated / "good" / "mnist", files, level=1)  # re-compressed, like Debian's
    ds = load_dataset("mnist", data_dir=isolated / "good")
    assert ds.fingerprint == _manifest_sha256(list(files.items()))
    assert ds.fingerprint == datasets.fingerprint_found("mnist", isolated / "good")[0]
    assert ds.source == str(good)
    # a valid IDX file with other pixels: refused, naming the file, and no run directory
    bad = dict(files, **{"t10k-images-idx3-ubyte": _mnist_files(1)["t10k-images-idx3-ubyte"]})
    _put(isolated / "bad" / "mnist", bad)
    out = isolated / "run"
    assert main(train_argv(out, "--dataset", "mnist", "--data-dir", str(isolated / "bad"))) == 2
    err = one_line_error(capsys)
    assert str(isolated / "bad" / "mnist" / "t10k-images-idx3-ubyte.gz") in err
    assert "not the t10k-images-idx3-ubyte of mnist that binaryvae knows" in err
    assert not out.exists()


def test_corrupt_embedded_mnist_mini_is_refused(tmp_path, monkeypatch):
    copy = tmp_path / "mini"
    shutil.copytree(datasets.MNIST_MINI_DIR, copy)
    labels = bytearray(gzip.decompress((copy / "t10k-labels-idx1-ubyte.gz").read_bytes()))
    labels[-1] = (labels[-1] + 1) % 10  # one label changed: still a valid IDX file
    (copy / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(bytes(labels)))
    monkeypatch.setattr(datasets, "MNIST_MINI_DIR", copy)
    with pytest.raises(BadInput, match="t10k-labels-idx1-ubyte.gz: not the t10k-labels"):
        load_dataset("mnist-mini")


def test_mnist_mini_changed_in_place_after_a_first_read_is_refused(tmp_path, monkeypatch):
    """mnist-mini is read and checked once per process (`datasets._MNIST_MINI_READ`): a file
    changed in place after a first good read (same path) is read and checked again, and
    refused; the good bytes put back load again."""
    copy = tmp_path / "mini"
    shutil.copytree(datasets.MNIST_MINI_DIR, copy)
    monkeypatch.setattr(datasets, "MNIST_MINI_DIR", copy)
    first = load_dataset("mnist-mini")
    path = copy / "t10k-labels-idx1-ubyte.gz"
    good = path.read_bytes()
    labels = bytearray(gzip.decompress(good))
    labels[-1] = (labels[-1] + 1) % 10
    path.write_bytes(gzip.compress(bytes(labels)))
    with pytest.raises(BadInput, match="t10k-labels-idx1-ubyte.gz: not the t10k-labels"):
        load_dataset("mnist-mini")
    path.write_bytes(good)
    again = load_dataset("mnist-mini")
    assert torch.equal(again.test_y, first.test_y) and again.fingerprint == first.fingerprint


@pytest.fixture
def idx_run(isolated, monkeypatch):
    """A run trained on the stand-in mnist in --data-dir ``isolated/train-data``."""
    files = _mnist_files(0)
    _registry_knows(monkeypatch, files)
    _put(isolated / "train-data" / "mnist", files)
    out = isolated / "run"
    assert main(train_argv(out, "--dataset", "mnist", "--data-dir", str(isolated / "train-data"),
                      "--family", "steplogistic", "--batch-size", "20")) == 0  # fmt: skip
    return out


def _commands(run: Path) -> list[list[str]]:
    return [["evaluate", str(run)], ["report", str(run), "--no-theory"],
            ["train", "--out", str(run), "--resume", "--epochs", "2", "--quiet",
             "--no-report"]]  # fmt: skip


def test_other_data_are_refused_naming_both_places(idx_run, isolated, monkeypatch, capsys):
    """The training --data-dir vanished and $BINARYVAE_DATA_DIR holds other data, which the
    registry knows (as a newer binaryvae might): evaluate, report and resume all refuse."""
    trained_at = isolated / "train-data" / "mnist"
    shutil.rmtree(trained_at)
    other = _mnist_files(7)
    _registry_knows(monkeypatch, other)
    found_at = _put(isolated / "elsewhere" / "mnist", other)
    monkeypatch.setenv("BINARYVAE_DATA_DIR", str(isolated / "elsewhere"))
    before = _no_links(idx_run)
    capsys.readouterr()
    for argv in _commands(idx_run):
        assert main(argv) == 2, argv
        err = one_line_error(capsys)
        assert f"at {found_at} " in err and f"at {trained_at} " in err, err
        assert "are not the data it was trained on" in err
        assert _no_links(idx_run) == before  # summary.json byte-identical, nothing written


def test_changed_files_in_place_are_refused(idx_run, isolated, monkeypatch, capsys):
    other = _mnist_files(3)
    _registry_knows(monkeypatch, other)
    _put(isolated / "train-data" / "mnist", other)  # the same folder, other bytes
    before = _no_links(idx_run)
    capsys.readouterr()
    for argv in _commands(idx_run):
        assert main(argv) == 2, argv
        assert "are not the data it was trained on" in one_line_error(capsys)
        assert _no_links(idx_run) == before


def test_the_same_data_elsewhere_are_accepted(idx_run, isolated, monkeypatch):
    shutil.move(isolated / "train-data", isolated / "moved")
    monkeypatch.setenv("BINARYVAE_DATA_DIR", str(isolated / "moved"))
    assert main(["evaluate", str(idx_run)]) == 0


# ------------------------------------------------------------------ a group: all checked first
def _break_checkpoint(run: Path) -> None:
    state = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    first = next(iter(state["model"]))
    state["model"][first] = torch.zeros(3)  # a tensor of the wrong shape
    torch.save(state, run / "checkpoints" / "last.pt")


def _break_config(run: Path) -> None:
    (run / "config.json").write_bytes(b"[]")


def _break_summary(run: Path) -> None:
    (run / "summary.json").write_text('{"test_discrete_elbo": "high"}')


def _break_data(run: Path) -> None:
    config = json.loads((run / "config.json").read_text())
    config["data_fingerprint"] = "f" * 64
    (run / "config.json").write_text(json.dumps(config))


@pytest.mark.parametrize("breaker", [_break_checkpoint, _break_config, _break_summary,
                                     _break_data])  # fmt: skip
def test_evaluate_of_a_group_writes_nothing_when_one_run_is_bad(trained, tmp_path, capsys,
                                                                breaker):  # fmt: skip
    group = tmp_path / "cmp"
    for name in ("a", "b"):  # evaluated in this order
        shutil.copytree(trained, group / name)
    breaker(group / "b")
    before = {name: _no_links(group / name) for name in ("a", "b")}
    capsys.readouterr()
    assert main(["evaluate", str(group)]) == 2
    err = one_line_error(capsys)
    assert str(group / "b") in err
    assert {name: _no_links(group / name) for name in ("a", "b")} == before


def test_a_replica_group_is_checked_whole_before_anything_is_written(tmp_path, capsys):
    group = tmp_path / "group"
    assert main(train_argv(group, "--family", "bernoulli-sfe", "--seeds", "0,1")) == 0
    _break_data(group / "seed-1")
    before = _no_links(group)
    stamps = {p: p.stat().st_mtime_ns for p in (group / "seed-0").rglob("*")
              if p.is_file() and p.name != ".binaryvae.lock"}  # the lock records its holder
    capsys.readouterr()
    for argv in (["evaluate", str(group)],
                 ["train", "--out", str(group), "--seeds", "0,1", "--resume", "--epochs", "2",
                  "--quiet", "--no-report"]):  # fmt: skip
        assert main(argv) == 2, argv
        err = one_line_error(capsys)
        assert str(group / "seed-1") in err and "are not the data it was trained on" in err
        assert _no_links(group) == before  # seed-0's files too, not even rewritten:
        assert {p: p.stat().st_mtime_ns for p in stamps} == stamps


# ------------------------------------------------------------------ the JSON reader
DEEP = b'{"a": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"


def _deep_metrics(run: Path) -> bytes:
    return DEEP + b"\n" + (run / "metrics.jsonl").read_bytes()


CASES = {
    # file: {case: bytes (or a function of the run giving them), what the message must say}
    "config.json": {
        "wrong top-level type": (b'["steplogistic"]', "must hold an object, got an array"),
        "wrong field type": (None, "(latent_dim) must be an integer"),
        "invalid UTF-8": (b'{"family": "\xff"}', "not UTF-8 text"),
        "nested 100,000 deep": (DEEP, "nested more than 64 levels deep"),
    },
    "summary.json": {
        "wrong top-level type": (b"3.5", "must hold an object, got 3.5"),
        "wrong field type": (b'{"test_discrete_elbo": "high"}',
                             "field test_discrete_elbo must be a number or null"),
        "invalid UTF-8": (b'{"family": "\xc3\x28"}', "not UTF-8 text"),
        "nested 100,000 deep": (DEEP, "nested more than 64 levels deep"),
    },
    "metrics.jsonl": {
        "wrong top-level type": (lambda run: b"[1, 2]\n" + (run / "metrics.jsonl").read_bytes(),
                                 "line 1: must hold an object, got an array"),
        "wrong field type": (lambda run: b'{"epoch": "one"}\n' + (run / "metrics.jsonl")
                             .read_bytes(), "line 1: field epoch must be an integer"),
        "invalid UTF-8": (lambda run: b'{"epoch": 1, "x": "\xff"}\n'
                          + (run / "metrics.jsonl").read_bytes(), "line 1: not UTF-8 text"),
        "nested 100,000 deep": (_deep_metrics, "line 1: nested more than 64 levels deep"),
    },
}  # fmt: skip


def _command(run: Path, name: str) -> list[str]:
    """A command that reads ``name`` and would write into the run after it."""
    if name == "metrics.jsonl":  # resume trims metrics.jsonl, then trains on
        return ["train", "--out", str(run), "--resume", "--epochs", "2", "--quiet", "--no-report"]
    return ["evaluate", str(run)]


@pytest.mark.parametrize("name,case", [(n, c) for n, cases in CASES.items() for c in cases])
def test_malformed_json_files_exit_2_naming_the_file(run_copy, capsys, name, case):
    data, message = CASES[name][case]
    if data is None:  # config.json with one field of the wrong type
        config = json.loads((run_copy / name).read_text())
        data = json.dumps(dict(config, latent_dim="four")).encode()
    elif callable(data):
        data = data(run_copy)
    (run_copy / name).write_bytes(data)
    before = _no_links(run_copy)
    capsys.readouterr()
    assert main(_command(run_copy, name)) == 2
    err = one_line_error(capsys)
    assert str(run_copy / name) in err and message in err, err
    assert _no_links(run_copy) == before


@pytest.mark.parametrize("name", ["config.json", "summary.json", "metrics.jsonl"])
@pytest.mark.parametrize("how", ["link to /dev/zero", "huge file"])
def test_endless_or_huge_json_files_are_refused_without_reading_them(run_copy, capsys, name,
                                                                     how):  # fmt: skip
    path = run_copy / name
    path.unlink()
    if how == "link to /dev/zero":
        path.symlink_to("/dev/zero")
        # the reader refuses what is not a regular file; a command that writes into the run
        # refuses the link itself before reading anything (binaryvae.storage)
        messages = ("not a regular file", "is a symbolic link (to /dev/zero)")
    else:
        with open(path, "wb") as f:  # sparse: 1 GiB declared, nothing stored
            f.truncate(1 << 30)
        messages = ("bytes, more than the",)
    capsys.readouterr()
    assert main(_command(run_copy, name)) == 2
    err = one_line_error(capsys)
    assert str(path) in err and any(m in err for m in messages), err


def test_a_torn_last_metrics_line_is_skipped(run_copy):
    rows = (run_copy / "metrics.jsonl").read_bytes()
    (run_copy / "metrics.jsonl").write_bytes(rows + b'{"epoch": 2, "train_lo')
    assert main(_command(run_copy, "metrics.jsonl")) == 0
    lines = (run_copy / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2]


def test_the_report_keeps_a_run_whose_summary_or_metrics_are_malformed(trained, tmp_path):
    group = tmp_path / "cmp"
    for name in ("a", "b"):
        shutil.copytree(trained, group / name)
    (group / "a" / "summary.json").write_bytes(b"[]")
    row = (trained / "metrics.jsonl").read_bytes()
    (group / "b" / "metrics.jsonl").write_bytes(row + b'"x"\n' + row)
    assert main(["report", str(group), "--no-theory"]) == 0
    text = (group / "report.md").read_text()
    assert f"{group / 'a' / 'summary.json'}: must hold an object" in text
    assert f"{group / 'b' / 'metrics.jsonl'} line 2: must hold an object" in text
    table = [line for line in text.splitlines() if line.startswith("| a ") or
             line.startswith("| b ")]  # fmt: skip
    assert len(table) == 2  # both runs keep their row


def test_group_files_are_read_through_the_reader(trained, tmp_path, capsys):
    group = tmp_path / "cmp"
    shutil.copytree(trained, group / "a")
    (group / "compare.json").symlink_to("/dev/zero")
    capsys.readouterr()
    assert main(["report", str(group), "--no-theory"]) == 2
    assert f"cannot read {group / 'compare.json'}: not a regular file" in one_line_error(capsys)
    (group / "compare.json").unlink()
    (group / "compare.json").write_text('{"runs": "a", "families": [], "base": {}}')
    assert main(["report", str(group), "--no-theory"]) == 2
    assert "field runs must be an array" in one_line_error(capsys)
    # replicas.json nested deep: train --seeds --resume refuses it in one line
    (group / "replicas.json").write_bytes(DEEP)
    assert main(["train", "--out", str(group), "--seeds", "0,1", "--resume", "--quiet",
                 "--no-report"]) == 2  # fmt: skip
    err = one_line_error(capsys)
    assert str(group / "replicas.json") in err and "nested more than 64" in err
    # sweep.json of the wrong type: sweep --resume refuses it in one line
    sweep_dir = tmp_path / "sweep"
    sweep_dir.mkdir()
    (sweep_dir / "sweep.json").write_text('{"grid": [], "cells": []}')
    assert main(["sweep", "--out", str(sweep_dir), "--resume", "--quiet"]) == 2
    err = one_line_error(capsys)
    assert f"{sweep_dir / 'sweep.json'}: field grid must be an object, got an array" in err
    # the marker: unreadable counts as absent, at once
    (group / ".binaryvae-run").unlink(missing_ok=True)
    (group / ".binaryvae-run").symlink_to("/dev/zero")
    assert read_marker(group) == {}


def test_the_reader_unit(tmp_path):
    # brackets inside strings (with escaped quotes) do not count towards the depth
    check_depth(b'{"a": "[[[[\\"[[[[", "b": [[1]]}', 3, "x")
    with pytest.raises(BadInput, match="x: nested more than 2"):
        check_depth(b'{"a": [[1]]}', 2, "x")
    # a FIFO is refused at once (opening it does not wait for a writer)
    fifo = tmp_path / "f.json"
    os.mkfifo(fifo)
    with pytest.raises(BadInput, match="not a regular file"):
        read_json(fifo)
    # JSON lines: a torn last line skipped, an invalid middle line named by its number
    lines = tmp_path / "m.jsonl"
    lines.write_bytes(b'{"epoch": 1}\n\n{"epoch": 2}\n{"epoch": 3, "x": "\xc3')
    assert read_jsonl(lines) == [{"epoch": 1}, {"epoch": 2}]
    lines.write_bytes(b'{"epoch": 1}\n{"epo\n{"epoch": 3}\n')
    with pytest.raises(BadInput, match=r"m.jsonl line 2: not valid JSON"):
        read_jsonl(lines)
    big = tmp_path / "big.json"
    big.write_text('{"a": ' + "1" * 5000 + "}")  # an integer of more digits than Python reads
    with pytest.raises(BadInput, match="big.json: not valid JSON"):
        read_json(big)
