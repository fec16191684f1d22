"""``--tensorboard`` (issue 27; `binaryvae.runs.tensorboard`): every metrics row as TensorBoard
scalars in ``<run dir>/tensorboard/``, read back with TensorBoard's own readers and compared
with metrics.jsonl; a resume rewrites them to match; without the extra, a one-line error naming
it and nothing written; a linked folder refused."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest

from _runs_helpers import TINY, file_bytes, metric_rows, one_line_error
from binaryvae.cli import main
from binaryvae.runs.tensorboard import INSTALL_HINT, crc32c


def _argv(out, *options) -> list[str]:
    return ["train", "--out", str(out), "--dataset", "toy", "--latent-dim", "4", *TINY,
            "--quiet", "--no-report", *options]  # fmt: skip


def _expected(run: Path) -> set[tuple[str, int, float]]:
    """(tag, step, value as float32) of every number in metrics.jsonl (nulls left out), the
    gradient records' under gradient/<key> at their own steps."""
    out = set()
    for row in (json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()):
        for key, value in row.items():
            if key != "step" and isinstance(value, int | float) and not isinstance(value, bool):
                out.add((key, row["step"], float(np.float32(value))))
        for record in row.get("gradient", []):
            for key, value in record.items():
                if key != "step" and isinstance(value, int | float):
                    out.add((f"gradient/{key}", record["step"], float(np.float32(value))))
    return out


def _events(run: Path) -> list[tuple[str, int, float]]:
    """Every scalar of every event file in run/tensorboard/, read by TensorBoard's loader
    (which checks each record's CRC), duplicates kept."""
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

    found = []
    for path in sorted((run / "tensorboard").iterdir()):
        for event in EventFileLoader(str(path)).Load():
            for value in event.summary.value:
                kind = value.WhichOneof("value")
                number = value.simple_value if kind == "simple_value" else None
                if number is None:  # newer loaders turn simple values into tensors
                    from tensorboard.util import tensor_util

                    number = float(tensor_util.make_ndarray(value.tensor))
                found.append((value.tag, event.step, float(np.float32(number))))
    return found


def test_crc32c_of_the_standard_check_string():
    assert crc32c(b"123456789") == 0xE3069283
    assert crc32c(b"") == 0


def test_every_metrics_row_is_written_as_tensorboard_scalars(tmp_path):
    """Every number of every row (rows every 7 steps and at epoch ends, trackers with their
    first-row nulls, gradient diagnostics) is a scalar at the row's step, each once, and
    TensorBoard's EventAccumulator reads the folder as a run."""
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "run"
    assert main(_argv(out, "--steps", "20", "--eval-every-steps", "7", "--tensorboard",
                      "--track", "logits,flips", "--track-images", "30",
                      "--grad-every", "5", "--grad-samples", "2")) == 0  # fmt: skip
    rows = metric_rows(out)
    assert [r["step"] for r in rows] == [7, 14, 16, 20]
    events = _events(out)
    assert len(events) == len(set(events))
    assert set(events) == _expected(out)
    tags = {e[0] for e in events}
    assert {"gradient/grad_var", "track_bits_flipped", "test_discrete_elbo"} <= tags
    acc = EventAccumulator(str(out / "tensorboard"), size_guidance={"scalars": 0}).Reload()
    scalars = acc.Scalars("test_discrete_elbo")
    assert [(s.step, np.float32(s.value)) for s in scalars] == [
        (r["step"], np.float32(r["test_discrete_elbo"])) for r in rows
    ]
    assert json.loads((out / "config.json").read_text())["tensorboard"] is True


def test_a_resume_rewrites_the_scalars_to_match_metrics_jsonl(tmp_path):
    """A run cut at step 13 (its row there dropped by the resume to 27) and resumed: the folder
    holds each step once, exactly metrics.jsonl's numbers; a resume may switch it off."""
    pytest.importorskip("tensorboard")
    out = tmp_path / "run"
    assert main(_argv(out, "--steps", "13", "--eval-every-steps", "10", "--tensorboard")) == 0
    assert {e[1] for e in _events(out)} == {10, 13}
    assert main(_argv(out, "--steps", "27", "--resume")) == 0  # the stored option stays on
    events = _events(out)
    assert len(os.listdir(out / "tensorboard")) == 1
    assert len(events) == len(set(events)) and set(events) == _expected(out)
    assert {e[1] for e in events} == {10, 16, 20, 27}
    before = file_bytes(out / "tensorboard")
    assert main(_argv(out, "--steps", "30", "--resume", "--tensorboard", "off")) == 0
    assert file_bytes(out / "tensorboard") == before
    assert json.loads((out / "config.json").read_text())["tensorboard"] is False


def _without_tensorboard(monkeypatch) -> None:
    """Make every import of the tensorboard package fail, as where it is not installed."""
    for name in [n for n in sys.modules if n == "tensorboard" or n.startswith("tensorboard.")]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, "tensorboard", None)


@pytest.mark.parametrize("command", ["train", "sweep", "compare"])
def test_without_the_extra_tensorboard_is_refused_in_one_line(tmp_path, capsys, monkeypatch,
                                                              command):  # fmt: skip
    _without_tensorboard(monkeypatch)
    out = tmp_path / "out"
    if command == "train":
        argv = _argv(out, "--steps", "2", "--tensorboard")
    else:
        argv = [command, "--out", str(out), "--dataset", "toy", "--latent-dim", "4",
                "--hidden", "16", "--batch-size", "500", "--epochs", "1", "--quiet",
                "--no-report", "--families", "steplogistic", "--tensorboard"]  # fmt: skip
    assert main(argv) == 2
    err = one_line_error(capsys)
    assert INSTALL_HINT in err and "--tensorboard" in err
    assert not out.exists()


def test_a_link_where_the_folder_should_be_is_refused(tmp_path, capsys):
    """A resumed run whose tensorboard/ is a symbolic link: exit 2 naming it, nothing written
    through it or in the run."""
    pytest.importorskip("tensorboard")
    out, elsewhere = tmp_path / "run", tmp_path / "elsewhere"
    assert main(_argv(out, "--steps", "3")) == 0
    elsewhere.mkdir()
    (out / "tensorboard").symlink_to(elsewhere)
    before = file_bytes(out, follow_links=False)
    capsys.readouterr()
    assert main(_argv(out, "--steps", "5", "--resume", "--tensorboard")) == 2
    err = one_line_error(capsys)
    assert "tensorboard" in err and "symbolic link" in err
    assert list(elsewhere.iterdir()) == []
    assert file_bytes(out, follow_links=False) == before


def test_force_removes_the_event_files_binaryvae_wrote_only(tmp_path):
    pytest.importorskip("tensorboard")
    out = tmp_path / "run"
    assert main(_argv(out, "--steps", "2", "--tensorboard")) == 0
    mine = out / "tensorboard" / "notes.txt"
    mine.write_text("mine")
    assert main(_argv(out, "--steps", "2", "--force")) == 0
    assert os.listdir(out / "tensorboard") == ["notes.txt"]
