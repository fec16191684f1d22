"""A step budget and evaluation every N steps (issue 27): ``--steps N`` stops after exactly N
optimizer steps (an epoch may be cut, its row says so), ``--eval-every-steps M`` writes a row at
every multiple of M, a run cut inside an epoch resumes to exactly what an uninterrupted run
writes, and contradictory budgets are refused (exit 2)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from _runs_helpers import (
    TINY_NET,
    assert_same_weights,
    checkpoint_of,
    metric_rows,
    summary_of,
    tiny_config,
)
from binaryvae.cli import main
from binaryvae.config import TrainConfig
from binaryvae.errors import BadInput
from binaryvae.runs import train_replicas, train_run
from binaryvae.training.checkpoint import CheckpointError, checkpoint_schema, load_checkpoint

PER_EPOCH = math.ceil(8000 / 500)  # toy's (and mnist-mini's) 8,000 training points, batch 500


def _cfg(**changes) -> TrainConfig:
    """A tiny steplogistic run on the toy data (the fastest to prepare and evaluate)."""
    return tiny_config(**{"family": "steplogistic", "epochs": None, "dataset": "toy", **changes})


def _adam_steps(run: Path) -> set[int]:
    """The optimizer step count Adam recorded for every parameter of the run's checkpoint."""
    return {int(s["step"]) for s in checkpoint_of(run)["optimizer"]["state"].values()}


def _assert_same_run(got: Path, want: Path) -> None:
    """Parameters, Adam state, metrics rows (timing aside) and summary equal, bit for bit."""
    assert_same_weights(got, want)
    assert metric_rows(got) == metric_rows(want)
    assert summary_of(got) == summary_of(want)


def _expected_row_steps(total: int, every: int | None) -> list[int]:
    """Brute force: the steps where a run writes rows (epoch ends, multiples, the end)."""
    return [s for s in range(1, total + 1)
            if s % PER_EPOCH == 0 or s == total or (every and s % every == 0)]  # fmt: skip


def test_a_step_budget_stops_after_exactly_n_optimizer_steps(tmp_path, monkeypatch):
    """21 steps = one epoch of 16 batches and 5 of the second: the training optimizer's step
    is called 21 times, Adam's own count says 21, and the second epoch's row says it had 5
    batches."""
    import binaryvae.runs.trainer as trainer

    calls = []
    real = trainer.make_optimizer

    def counted(*args, **kwargs):
        optimizer = real(*args, **kwargs)
        step = optimizer.step

        def counting_step(*a, **k):
            calls.append(1)
            return step(*a, **k)

        optimizer.step = counting_step
        return optimizer

    monkeypatch.setattr(trainer, "make_optimizer", counted)
    out = tmp_path / "run"
    summary = train_run(_cfg(steps=21), out, progress=False)
    assert len(calls) == 21
    assert _adam_steps(out) == {21}
    rows = metric_rows(out)
    assert [(r["epoch"], r["step"], r.get("epoch_batches")) for r in rows] == [
        (1, 16, None),
        (2, 21, 5),
    ]
    assert summary["steps"] == 21 and summary["epochs"] == 2
    assert checkpoint_of(out)["extra"]["step"] == 21


def test_eval_every_steps_writes_rows_at_exactly_the_multiples(tmp_path):
    """Rows at every multiple of 6, at every epoch's end (16, 32) and at the budget's end (40),
    each once; ``epoch`` is the epoch the step falls in, ``epoch_batches`` its batches so far
    (absent at an epoch's end); an epoch's train_* are the averages of its batches so far, so
    its last row's equal those of a run without the extra rows; the report's per-epoch curves
    take each epoch's last row."""
    out = tmp_path / "every"
    train_run(_cfg(steps=40, eval_every_steps=6), out, progress=False)
    rows = metric_rows(out)
    steps = _expected_row_steps(40, 6)
    assert steps == [6, 12, 16, 18, 24, 30, 32, 36, 40]
    assert [r["step"] for r in rows] == steps
    for r in rows:
        epoch = (r["step"] - 1) // PER_EPOCH + 1
        assert r["epoch"] == epoch
        inside = r["step"] - (epoch - 1) * PER_EPOCH
        assert r.get("epoch_batches") == (None if inside == PER_EPOCH else inside)
    plain = tmp_path / "plain"
    train_run(_cfg(steps=40), plain, progress=False)
    ends = {r["step"]: r for r in metric_rows(plain)}
    assert sorted(ends) == [16, 32, 40]
    for r in rows:
        if r["step"] in ends:  # the same training: the same numbers
            assert {k: v for k, v in r.items() if k.startswith("train_")} == {
                k: v for k, v in ends[r["step"]].items() if k.startswith("train_")
            }
    assert _adam_steps(out) == _adam_steps(plain) == {40}
    # the report's per-epoch curves take each epoch's last row
    from binaryvae.report.collect import collect_runs

    (record,) = collect_runs(out)
    by_step = {r["step"]: r["test_discrete_elbo"] for r in rows}
    assert record.column("test_discrete_elbo") == ([1, 2, 3], [by_step[s] for s in (16, 32, 40)])


@pytest.mark.parametrize(
    "data", [{"dataset": "mnist-mini", "binarize": "dynamic"}, {"dataset": "toy"}]
)
def test_resume_inside_an_epoch_equals_an_uninterrupted_run(tmp_path, data):
    """Cut at step 13 (inside epoch 1, between the rows at 10 and 16) and resumed to 27: the
    parameters, Adam's state, every metrics row and the summary equal a run trained straight to
    27 -- the cut's own row is gone (the straight run has none there), the data order, the
    dynamic binarization and the training noise continue where the cut left them."""
    straight, cut = tmp_path / "straight", tmp_path / "cut"
    cfg = {"eval_every_steps": 10, **data}
    train_run(_cfg(steps=27, **cfg), straight, progress=False)
    train_run(_cfg(steps=13, **cfg), cut, progress=False)
    assert [r["step"] for r in metric_rows(cut)] == [10, 13]
    assert checkpoint_of(cut)["extra"]["epoch_batches"] == 13
    train_run(_cfg(steps=27, **cfg), cut, resume=True, progress=False)
    assert [r["step"] for r in metric_rows(cut)] == [10, 16, 20, 27]
    _assert_same_run(cut, straight)


def test_a_run_interrupted_after_an_evaluation_row_resumes_exactly(tmp_path, monkeypatch):
    """Ctrl-C while writing the row at step 24: the checkpoint of step 18 (an
    --eval-every-steps row, 2 batches into epoch 2) is where --resume continues, its row is
    kept, and the run ends as one never interrupted."""
    import binaryvae.runs.engine as engine

    straight, cut = tmp_path / "straight", tmp_path / "cut"
    train_run(_cfg(steps=30, eval_every_steps=6), straight, progress=False)
    original = engine.end_epoch

    def interrupt(m, stats, point, kl_weight):
        if point.step == 24:
            raise KeyboardInterrupt
        return original(m, stats, point, kl_weight)

    monkeypatch.setattr(engine, "end_epoch", interrupt)
    with pytest.raises(KeyboardInterrupt):
        train_run(_cfg(steps=30, eval_every_steps=6), cut, progress=False)
    monkeypatch.undo()
    assert [r["step"] for r in metric_rows(cut)] == [6, 12, 16, 18]
    assert checkpoint_of(cut)["extra"]["epoch_batches"] == 2
    train_run(_cfg(steps=30, eval_every_steps=6), cut, resume=True, progress=False)
    _assert_same_run(cut, straight)


def test_replicas_cut_at_the_same_step_and_resume_like_an_uninterrupted_group(tmp_path):
    """``--seeds`` with a step budget: every replica stops at step 13 (Adam counts 13), and the
    group resumed to 20 equals a group trained straight to 20, replica by replica."""
    straight, cut = tmp_path / "straight", tmp_path / "cut"
    train_replicas(_cfg(steps=20), [0, 1], straight, progress=False)
    train_replicas(_cfg(steps=13), [0, 1], cut, progress=False)
    for seed in (0, 1):
        assert _adam_steps(cut / f"seed-{seed}") == {13}
        assert [r["step"] for r in metric_rows(cut / f"seed-{seed}")] == [13]
    train_replicas(_cfg(steps=20), [0, 1], cut, resume=True, progress=False)
    for seed in (0, 1):
        _assert_same_run(cut / f"seed-{seed}", straight / f"seed-{seed}")


def test_a_run_continues_from_a_step_budget_to_epochs(tmp_path):
    """Resume may change the kind of budget: a run cut at step 13 resumed with --epochs 2
    equals a 2-epoch run."""
    straight, cut = tmp_path / "straight", tmp_path / "cut"
    train_run(_cfg(epochs=2), straight, progress=False)
    train_run(_cfg(steps=13), cut, progress=False)
    train_run(_cfg(epochs=2), cut, resume=True, progress=False)
    _assert_same_run(cut, straight)


def _train(out, *options) -> list[str]:
    # TINY_NET: these options also resume `inside` (a TrainConfig with the default summary)
    return ["train", "--out", str(out), "--dataset", "toy", "--latent-dim", "4", *TINY_NET,
            "--quiet", "--no-report", *options]  # fmt: skip


@pytest.mark.parametrize(
    "options, words",
    [
        (["--epochs", "3", "--steps", "10"], "epochs (3) and steps (10) are both given"),
        (["--steps", "0"], "steps must be in [1, "),
        (["--steps", "5", "--eval-every-steps", "0"], "eval_every_steps must be in [1, "),
    ],
)
def test_contradictory_or_bad_budgets_are_refused(tmp_path, capsys, options, words):
    out = tmp_path / "run"
    assert main(_train(out, *options)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and words in err[0], err
    assert not out.exists()


def test_a_config_file_with_both_budgets_is_refused(tmp_path, capsys):
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({"epochs": 2, "steps": 7}))
    assert main(_train(tmp_path / "run", "--config", str(cfg))) == 2
    assert "are both given" in capsys.readouterr().err
    with pytest.raises(BadInput, match="are both given"):
        TrainConfig(epochs=2, steps=7)
    assert TrainConfig().epochs == 10 and TrainConfig(steps=7).epochs is None


def test_the_command_line_budget_replaces_the_stored_one(tmp_path, capsys):
    """--steps on the command line replaces a --config file's epochs (and --resume's stored
    budget); a budget shorter than what the run has trained is refused."""
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({"epochs": 2}))
    out = tmp_path / "run"
    assert main(_train(out, "--config", str(cfg), "--steps", "3")) == 0
    stored = json.loads((out / "config.json").read_text())
    assert (stored["epochs"], stored["steps"]) == (None, 3)
    assert _adam_steps(out) == {3}
    capsys.readouterr()
    assert main(_train(out, "--resume", "--steps", "2")) == 2
    assert "already has 3 steps; --steps 2 would shorten it" in capsys.readouterr().err
    assert main(_train(out, "--resume", "--steps", "5")) == 0
    assert _adam_steps(out) == {5} and [r["step"] for r in metric_rows(out)] == [5]


def test_a_sweep_cell_with_a_step_budget_stops_at_exactly_n_steps(tmp_path, capsys):
    """The sweep takes --steps like any fixed option (and a grid file's ``steps``): its cells
    stop at exactly N steps, and the same command again finds them finished."""
    out = tmp_path / "sweep"
    grid = tmp_path / "grid.toml"
    grid.write_text(
        'datasets = ["toy"]\nfamilies = ["steplogistic"]\nlatent-dims = [4]\nseeds = "0-1"\n'
        "steps = 7\n"
    )
    argv = ["sweep", "--out", str(out), "--grid", str(grid), "--hidden", "16",
            "--batch-size", "500", "--quiet", "--no-report"]  # fmt: skip
    assert main(argv) == 0
    cell = out / "toy_steplogistic_elbo_4bit"
    for seed in (0, 1):
        assert _adam_steps(cell / f"seed-{seed}") == {7}
        assert json.loads((cell / f"seed-{seed}" / "summary.json").read_text())["steps"] == 7
    before = (cell / "seed-0" / "summary.json").read_bytes()
    capsys.readouterr()
    assert main(argv) == 0  # finished: not trained again
    assert (cell / "seed-0" / "summary.json").read_bytes() == before


# ----------------------------------------------------------------- the checkpoint's position
@pytest.fixture(scope="module")
def inside(tmp_path_factory):
    """A run whose checkpoint was written inside an epoch (step 5 of 16)."""
    out = tmp_path_factory.mktemp("inside") / "run"
    train_run(_cfg(steps=5), out, progress=False)
    return out


@pytest.mark.parametrize(
    "change, words",
    [
        (lambda e: e.update(generator=e["generator"][:100]), "extra.generator has shape"),
        (lambda e: e.update(generator=e["generator"].to(torch.int64)), "extra.generator has dtype"),
        (lambda e: e.update(generator=torch.zeros_like(e["generator"])), "not a generator state"),
        (lambda e: e.update(torch_rng=e["torch_rng"][:-1]), "extra.torch_rng has shape"),
        (lambda e: e.pop("epoch_sums"), "extra lacks epoch_sums"),
        (lambda e: e.update(epoch_sums=[1.0, 2.0, float("nan"), 0.0]), "epoch_sums must be"),
        (lambda e: e.update(epoch_batches=0), "extra.epoch_batches must be an integer >= 1"),
        (lambda e: e.update(epoch_images=True), "extra.epoch_images must be an integer"),
        (lambda e: e.update(epoch_seconds="1"), "extra.epoch_seconds must be"),
        (lambda e: e.update(step=-1), "extra.step must be an integer >= 0"),
        (lambda e: e.update(learning_rate=0.1), "extra holds unknown entries learning_rate"),
    ],
)
def test_a_checkpoints_position_is_checked_before_use(inside, tmp_path, change, words):
    path = tmp_path / "last.pt"
    payload = torch.load(inside / "checkpoints" / "last.pt", weights_only=True)
    change(payload["extra"])
    torch.save(payload, path)
    config = TrainConfig.load(inside / "config.json")
    from binaryvae.runs import prepare

    schema = checkpoint_schema(config, prepare(config).model)
    with pytest.raises(CheckpointError, match=words.replace("[", r"\[")):
        load_checkpoint(path, schema=schema)


def test_a_position_that_does_not_fit_the_run_is_refused(inside, tmp_path, capsys):
    """A step that is not the recorded epochs and batches (e.g. another batch size) is refused
    on resume, one line naming the file, nothing rewritten."""
    import shutil

    run = tmp_path / "run"
    shutil.copytree(inside, run)
    payload = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    payload["extra"]["step"] = 6
    torch.save(payload, run / "checkpoints" / "last.pt")
    rows = (run / "metrics.jsonl").read_bytes()
    assert main(_train(run, "--resume", "--steps", "9")) == 2
    err = capsys.readouterr().err
    assert "step 6 is not 0 epochs and 5 batches" in err and "last.pt" in err
    assert (run / "metrics.jsonl").read_bytes() == rows
