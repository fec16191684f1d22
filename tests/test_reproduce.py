"""`binaryvae reproduce` and the studies shipped as data (issue 27), and the sweep's generic axes
(``[vary]``, ``--vary``).

Default suite: ``--list`` (with the step timer replaced by a fixed number, so its arithmetic is
checked by hand), every shipped study loads and expands for both budgets, one quick study run
whose cell equals ``binaryvae train`` bit for bit and whose paired numbers equal scipy's, a
varied cell that stops at exactly N steps, a varied protocol that applies its preset under the
explicit values, and bad input (exit 2, one line, nothing written).
``pytest -m studies``: every shipped study's whole ``--budget quick`` run.
``pytest -m ray``: ``reproduce --executor ray`` equals ``--executor local``.
"""

from __future__ import annotations

import json
import math
import os
import secrets
import shutil
from pathlib import Path

import pytest

from _runs_helpers import TINY, metric_rows, one_line_error
from binaryvae.cli import main

TIMING = ("seconds_per_epoch", "eval_seconds_per_epoch", "summary_seconds",
          "summary_eval_seconds")  # fmt: skip
STUDY = "published-budget"  # the quick run the default suite makes: 2 cells x 3 seeds, 40 steps


def _summary(run: Path) -> dict:
    data = json.loads((run / "summary.json").read_text())
    return {k: v for k, v in data.items() if k not in TIMING}


def _params(run: Path) -> dict:
    import torch

    return torch.load(run / "checkpoints" / "last.pt", weights_only=False)["model"]


# ----------------------------------------------------------------------------- --list
# hand-computed from the study files: cells x seeds and steps per run of the full budget, and
# the quick budget's cells x seeds and steps per run
EXPECTED = {
    "disarm-protocol": ("18 cells x 3 seeds", "6,000", 4 * 2 * 40),
    "estimator-study": ("14 cells x 3 seeds", "100,800", 6 * 2 * 40),
    "published-budget": ("2 cells x 3 seeds", "1,000,000", 2 * 3 * 40),
    # mnist-mini: 125 epochs of ceil(8,000 / 128) = 63 batches; Fashion-MNIST: of 469
    "dissertation-claim": ("6 cells x 10 seeds", "7,875/58,625", 3 * 3 * 16),
    "beta-sweep": ("24 cells x 3 seeds", "630", 4 * 2 * 16),
    # 5 variants x 5 seeds; quick: 5 cells x 2 seeds, 2 epochs of ceil(8,000 / 500) = 16
    "lr-1e-3-interventions": ("5 cells x 5 seeds", "58,625", 5 * 2 * 32),
    # 4 families x 2 protocols x K = 2, 4; quick: 4 families x K = 2, 4, one protocol
    "estimator-samples": ("16 cells x 3 seeds", "100,000", 8 * 2 * 40),
}
ZERO_EVAL = {"row": 0.0, "row_iwae": 0.0, "track": 0.0, "summary": 0.0}


def test_list_shows_every_study_with_its_cells_steps_and_cpu_time(monkeypatch, capsys):
    """With every model timed at 0.01 s per step and its evaluation at 0 s, the CPU time
    printed is cells x seeds x steps x 0.01 s, computed here by hand (the evaluation's
    arithmetic: the next test)."""
    from binaryvae.studies import cost, study_names

    timed = []
    monkeypatch.setattr(cost, "seconds_per_step", lambda config: timed.append(config) or 0.01)
    monkeypatch.setattr(cost, "seconds_per_image", lambda config: dict(ZERO_EVAL))
    assert main(["reproduce", "--list"]) == 0
    out = capsys.readouterr().out
    for name in study_names():
        assert f"\n{name}: " in "\n" + out, name
    lines = out.splitlines()
    for name, (cells, steps, quick_steps) in EXPECTED.items():
        detail = lines[lines.index(next(x for x in lines if x.startswith(f"{name}: "))) + 1]
        assert f"{cells}, {steps} steps per run" in detail, detail
        total = sum(int(s.replace(",", "")) for s in steps.split("/"))
        n_cells, n_seeds = int(cells.split()[0]), int(cells.split()[3])
        if name == "dissertation-claim":  # 3 cells of each dataset's steps
            hours = 3 * n_seeds * total * 0.01 / 3600
        else:
            hours = n_cells * n_seeds * total * 0.01 / 3600
        text = f"{hours:,.0f} CPU-h" if hours >= 10 else f"{hours:.1f} CPU-h"
        assert f"(training {text}, evaluation " in detail, (detail, text)
        # their gradient diagnostics count as training steps (beta-sweep's: in its summaries)
        if name not in ("estimator-study", "beta-sweep"):
            assert f"full {text} (training {text}, evaluation <1 CPU-s, summaries <1 CPU-s)" in (
                detail), (detail, text)
            assert f"quick {quick_steps * 0.01:.0f} CPU-s" in detail, detail
        if name == "beta-sweep":  # 72 runs x 200 estimates, each a step on 128 of 128 images
            assert f"summaries {72 * 200 * 0.01 / 60:.1f} CPU-min" in detail, detail
    assert "CPU time = training (CPU seconds per step x steps) + evaluation" in out
    assert "measured now on this machine" in out and "moves the numbers up or down" in out
    assert len(timed) == len({cost.cost_key(c) for c in timed})  # each model timed once


def test_a_runs_cost_is_steps_rows_trackers_gradients_and_summary_by_hand(monkeypatch):
    """`run_cost` and `study_cost` with the timers replaced by fixed numbers, against the
    formula computed here: steps x s/step + rows x test images x s/image (rows with the IWAE
    at theirs) + rows x tracked images x s/image + diagnostics x grad_samples x s/step + test
    images x s/image of the summary; the rows counted by brute force over
    `binaryvae.runs.budget.Budget.is_row`."""
    from binaryvae.config import TrainConfig
    from binaryvae.runs.budget import Budget
    from binaryvae.studies import cost, load_study

    image = {"row": 3e-4, "row_iwae": 5e-3, "track": 7e-5, "summary": 2e-3}
    # mnist-mini: 8,000 training images in batches of 500 = 16 per epoch, 3 epochs = 48 steps
    config = TrainConfig(dataset="mnist-mini", epochs=3, batch_size=500, eval_every_steps=5,
                         eval_iwae_every=2, grad_every=10, grad_samples=4, track=("exact",),
                         track_images=300, latent_dim=8)  # fmt: skip
    rows = [s for s in range(1, 49) if Budget.of(config, 8000).is_row(s)]
    assert rows == [5, 10, 15, 16, 20, 25, 30, 32, 35, 40, 45, 48]  # every 5, every epoch
    counts = cost.evaluation_counts(config)
    assert counts == {"rows": 12, "iwae_rows": 2, "grad": 4, "test_images": 2000,
                      "track_images": 300}  # IWAE at epoch 2 and at the end  # fmt: skip
    got = cost.run_cost(config, 0.01, image)
    assert got["train"] == pytest.approx(48 * 0.01)
    assert got["eval"] == pytest.approx((10 * 3e-4 + 2 * 5e-3) * 2000 + 12 * 300 * 7e-5
                                        + 4 * 4 * 0.01)  # fmt: skip
    assert got["summary"] == pytest.approx(2000 * 2e-3)
    # the gradient bias after training: 200 estimates, each a step on 128 of 500 images' work
    with_it = TrainConfig.from_dict({**config.to_dict(), "summary_grad_samples": 200})
    final = cost.run_cost(with_it, 0.01, image)
    assert final["summary"] == pytest.approx(2000 * 2e-3 + 200 * 128 / 500 * 0.01)
    assert (final["train"], final["eval"]) == (got["train"], got["eval"])
    # a step budget that ends inside an epoch: its last row counts once
    cut = TrainConfig(dataset="mnist-mini", steps=20, batch_size=500, eval_iwae_every=1)
    cut_counts = cost.evaluation_counts(cut)
    assert (cut_counts["rows"], cut_counts["iwae_rows"]) == (2, 2)  # at 16 (epoch 1) and 20

    study = load_study("lr-1e-3-interventions")  # quick: 5 cells x 2 seeds, 2 epochs of 16
    steps, evals = [], []
    monkeypatch.setattr(cost, "seconds_per_step", lambda c: steps.append(c) or 0.02)
    monkeypatch.setattr(cost, "seconds_per_image", lambda c: evals.append(c) or dict(image))
    total = cost.study_cost(study, "quick")
    train = 32 * 0.02
    each = 2 * 2000 * 3e-4 + 2 * 1000 * 7e-5  # 2 rows; 1,000 tracked images
    summary = 2000 * 2e-3
    assert total["train_hours"] == pytest.approx(10 * train / 3600)
    assert total["eval_hours"] == pytest.approx(10 * each / 3600)
    assert total["summary_hours"] == pytest.approx(10 * summary / 3600)
    assert total["cpu_hours"] == pytest.approx(10 * (train + each + summary) / 3600)
    # timed once per distinct model: of the five variants, the logit clamp and SGD change a
    # step's work; Adam's epsilon and the learning-rate decay do not
    assert len(steps) == len({cost.cost_key(c) for c in steps}) == total["models"] == 3
    assert len(evals) == len({cost.eval_key(c) for c in evals})


def test_an_evaluation_is_timed_with_the_runs_own_functions():
    from binaryvae.config import TrainConfig
    from binaryvae.studies.cost import seconds_per_image

    config = TrainConfig(family="bernoulli-disarm", hidden=(16,), latent_dim=4, batch_size=500,
                         epochs=1, eval_iwae_every=1, eval_iwae_k=10, track=("exact", "flips"),
                         summary_iwae_k=10)  # fmt: skip
    got = seconds_per_image(config, images=20, summary_images=10)
    assert sorted(got) == ["row", "row_iwae", "summary", "track"]
    assert all(math.isfinite(v) and v >= 0 for v in got.values())
    assert got["summary"] > 0


def test_a_training_step_is_timed_with_the_runs_own_model():
    from binaryvae.config import TrainConfig
    from binaryvae.studies.cost import seconds_per_step, steps_per_run

    config = TrainConfig(family="bernoulli-disarm", hidden=(16,), latent_dim=4, batch_size=500,
                         epochs=3)  # fmt: skip
    seconds = seconds_per_step(config, steps=3)
    assert math.isfinite(seconds) and seconds > 0
    assert steps_per_run(config) == 3 * 16  # 8,000 images in batches of 500
    assert steps_per_run(TrainConfig(dataset="fashion-mnist", validation=10_000, batch_size=50,
                                     epochs=2)) == 2 * 1000  # fmt: skip


# ----------------------------------------------------------------------------- study files
# the budgets of docs/benchmarks.md each study must keep (bench scripts' values)
FULL = {
    "disarm-protocol": dict(steps=6000, lr=1e-4, batch_size=50, latent_dim=200, seeds=[0, 1, 2]),
    "learning-signal": dict(steps=6000, lr=1e-4, batch_size=50, latent_dim=200, seeds=[0, 1, 2]),
    "estimator-study": dict(steps=100_800, lr=1e-4, batch_size=50, latent_dim=200,
                            seeds=[0, 1, 2]),  # fmt: skip
    "published-budget": dict(steps=1_000_000, eval_every_steps=10_000, lr=1e-4, batch_size=50,
                             latent_dim=200, seeds=[0, 1, 2], hidden=()),  # fmt: skip
    "dissertation-claim": dict(epochs=125, lr=1e-3, batch_size=128, latent_dim=8,
                               hidden=(512, 256, 128), seeds=list(range(10))),  # fmt: skip
    "dissertation-claim-mnist-short": dict(epochs=20, dataset="mnist-mini", seeds=list(range(10))),
    "dissertation-claim-fashion-short": dict(epochs=10, dataset="fashion-mnist",
                                             seeds=list(range(10))),  # fmt: skip
    "dissertation-claim-lr1e-4": dict(epochs=125, lr=1e-4, dataset="fashion-mnist",
                                      seeds=[3, 4, 5, 6]),  # fmt: skip
    "adam-1e-4": dict(epochs=125, lr=1e-4, dataset="fashion-mnist", batch_size=128,
                      latent_dim=8, hidden=(512, 256, 128), seeds=list(range(10))),  # fmt: skip
    "beta-sweep": dict(epochs=10, lr=1e-3, latent_dim=8, seeds=[0, 1, 2]),
    # lr differs by variant (SGD at 3e-4): checked in test_variants
    "lr-1e-3-interventions": dict(epochs=125, dataset="fashion-mnist", family="steplogistic",
                                  batch_size=128, latent_dim=8, hidden=(512, 256, 128),
                                  beta=10.0, seeds=list(range(5))),  # fmt: skip
    "estimator-samples": dict(steps=100_000, lr=1e-4, batch_size=50, latent_dim=200,
                              summary_train_images=50_000, seeds=[0, 1, 2]),  # fmt: skip
    "steplogistic-bits": dict(epochs=10, dataset="mnist-mini", seeds=[0]),
    "steplogistic-bits-fashion": dict(epochs=5, dataset="fashion-mnist", seeds=[0]),
}


def _shipped():
    from binaryvae.studies import study_names

    return study_names()


@pytest.mark.parametrize("name", _shipped())
def test_every_shipped_study_loads_and_expands_for_both_budgets(name):
    from binaryvae.models.families import check_options, make_family
    from binaryvae.studies import load_study
    from binaryvae.studies.tables import _partner, cell_coordinates

    study = load_study(name)
    assert name in FULL, "a new study: add its budget to FULL"
    for budget in ("full", "quick"):
        cells = study.grid(budget).cells()
        assert cells and len({c.name for c in cells}) == len(cells)
        for cell in cells:
            make_family(cell.config)  # the family takes every option the cell gives it
            check_options(cell.config, "bernoulli")
            if budget == "quick":
                assert cell.config.dataset == "mnist-mini"
        if budget == "full":
            for cell in cells:
                for field, value in FULL[name].items():
                    have = list(cell.seeds) if field == "seeds" else getattr(cell.config, field)
                    assert have == value, (cell.name, field)
            # every baseline names cells of the grid, and every other cell has its partner
            recorded = [{"name": c.name, "coords": cell_coordinates(c.to_dict())} for c in cells]
            for table in study.tables:
                if table.baseline:
                    partners = [_partner(c["coords"], table, recorded) for c in recorded]
                    assert any(p is not None for p in partners), table.title


# ----------------------------------------------------------------------------- one quick run
@pytest.fixture(scope="module")
def quick_study(tmp_path_factory):
    out = tmp_path_factory.mktemp("study") / "run"
    argv = ["reproduce", STUDY, "--budget", "quick", "--out", str(out), "--threads", "1",
            "--device", "cpu", "--quiet"]  # fmt: skip
    assert main(argv) == 0
    return out


def test_a_quick_study_cell_equals_binaryvae_train_bit_for_bit(quick_study, tmp_path):
    """published-budget's REINFORCE-LOO cell against `binaryvae train` with the options its
    study file gives (--protocol disarm-linear, the quick budget's overrides): parameters,
    every metrics row (timings aside), the summary and config.json."""
    out = tmp_path / "train"
    argv = ["train", "--out", str(out), "--protocol", "disarm-linear", "--family",
            "bernoulli-reinforce-loo", "--dataset", "mnist-mini", "--latent-dim", "8",
            "--validation", "1000", "--steps", "40", "--eval-every-steps", "20",
            "--seeds", "0,1,2", "--threads", "1", "--device", "cpu", "--quiet",
            "--no-report"]  # fmt: skip
    assert main(argv) == 0
    cell = quick_study / "mnist-mini_bernoulli-reinforce-loo_elbo_8bit"
    for seed in (0, 1, 2):
        mine, theirs = cell / f"seed-{seed}", out / f"seed-{seed}"
        a, b = _params(mine), _params(theirs)
        assert list(a) == list(b)
        assert all(a[k].equal(b[k]) for k in a), seed
        assert metric_rows(mine) == metric_rows(theirs)
        assert len(metric_rows(mine)) == 2  # rows at 20 and 40 steps
        assert _summary(mine) == _summary(theirs)
        assert json.loads((mine / "config.json").read_text()) == json.loads(
            (theirs / "config.json").read_text()
        )


def test_the_tables_paired_numbers_equal_scipys(quick_study):
    """study.json's differences against scipy.stats.ttest_rel / wilcoxon / t.interval on the
    values of each seed's summary.json, and Holm's adjustment by hand."""
    from scipy import stats

    record = json.loads((quick_study / "study.json").read_text())
    import binaryvae

    engine = record["engine"]  # what made the numbers: this binaryvae, from this checkout
    assert engine["name"] == "binaryvae reproduce" and engine["version"] == binaryvae.__version__
    assert engine["commit"] and engine["torch"] == __import__("torch").__version__
    (table,) = record["tables"]
    (diff,) = table["differences"]
    assert diff["label"] == "bernoulli-reinforce-loo minus bernoulli-disarm"
    loo = quick_study / "mnist-mini_bernoulli-reinforce-loo_elbo_8bit"
    disarm = quick_study / "mnist-mini_bernoulli-disarm_elbo_8bit"
    pvalues = []
    for measure in ("test_iwae_k100", "test_discrete_elbo"):
        x = [json.loads((loo / f"seed-{s}" / "summary.json").read_text())[measure]
             for s in (0, 1, 2)]  # fmt: skip
        y = [json.loads((disarm / f"seed-{s}" / "summary.json").read_text())[measure]
             for s in (0, 1, 2)]  # fmt: skip
        d = [a - b for a, b in zip(x, y, strict=True)]
        mine = diff["measures"][measure]
        assert mine["n"] == 3 and mine["seeds"] == [0, 1, 2]
        assert mine["mean"] == pytest.approx(sum(d) / 3, rel=1e-12, abs=1e-12)
        assert mine["p_t"] == pytest.approx(stats.ttest_rel(x, y).pvalue, rel=1e-9)
        assert mine["wilcoxon_p"] == pytest.approx(stats.wilcoxon(d).pvalue, rel=1e-9)
        low, high = stats.t.interval(0.95, 2, loc=sum(d) / 3, scale=stats.sem(d))
        assert mine["ci95"] == pytest.approx([low, high], rel=1e-9, abs=1e-12)
        pvalues.append(mine["p_t"])
        row = next(r for r in table["rows"] if r["cell"] == loo.name)
        assert row["measures"][measure]["mean"] == pytest.approx(sum(x) / 3, rel=1e-12)
        assert row["measures"][measure]["se"] == pytest.approx(stats.sem(x), rel=1e-9)
    low, high = sorted(pvalues)
    holm = {low: min(1.0, 2 * low), high: max(min(1.0, 2 * low), high)}
    for measure, p in zip(("test_iwae_k100", "test_discrete_elbo"), pvalues, strict=True):
        assert diff["measures"][measure]["p_holm"] == pytest.approx(holm[p], rel=1e-12)
    assert "2 pairwise comparisons" in table["note"]
    md = (quick_study / "study.md").read_text()
    assert "bernoulli-reinforce-loo minus bernoulli-disarm" in md and "Holm" in md
    assert list((quick_study / "figures").glob("*.png"))


def test_tables_only_rewrites_the_same_tables_and_a_rerun_skips_finished_cells(
    quick_study, capsys
):
    before = (quick_study / "study.json").read_bytes()
    (quick_study / "study.json").unlink()
    argv = ["reproduce", STUDY, "--budget", "quick", "--out", str(quick_study)]
    assert main([*argv, "--tables-only"]) == 0
    assert (quick_study / "study.json").read_bytes() == before
    mtimes = {p: p.stat().st_mtime_ns for p in quick_study.glob("*/seed-*/summary.json")}
    assert main([*argv, "--threads", "1", "--device", "cpu"]) == 0
    assert capsys.readouterr().err.count("finished already") == 2
    assert {p: p.stat().st_mtime_ns for p in mtimes} == mtimes
    assert (quick_study / "study.json").read_bytes() == before


def test_cells_trains_only_the_chosen_cells_and_the_rest_later(quick_study, tmp_path, capsys):
    """--cells PATTERN trains the matching cells only (the other stays without a run); the same
    command without --cells then trains the rest, and the result equals the whole study run at
    once (quick_study) number for number."""
    out = tmp_path / "part"
    argv = ["reproduce", STUDY, "--budget", "quick", "--out", str(out), "--threads", "1",
            "--device", "cpu", "--quiet"]  # fmt: skip
    assert main([*argv, "--cells", "*reinforce-loo*"]) == 0
    assert "1 of 1 cells finished" in capsys.readouterr().out
    trained = {p.parent.parent.name for p in out.glob("*/seed-*/summary.json")}
    assert trained == {"mnist-mini_bernoulli-reinforce-loo_elbo_8bit"}
    assert main(argv) == 0
    whole = {p.relative_to(quick_study): _summary(p.parent)
             for p in quick_study.glob("*/seed-*/summary.json")}  # fmt: skip
    parts = {p.relative_to(out): _summary(p.parent) for p in out.glob("*/seed-*/summary.json")}
    assert parts == whole and len(whole) >= 4


def test_seeds_trains_a_few_seeds_at_a_time_each_subset_the_group_train_gives(tmp_path,
                                                                              capsys):
    """--seeds 1, then --seeds 0,2: each subset of a cell is the replica group `binaryvae train
    --seeds SUBSET` gives, bit for bit; a later subset leaves the finished seeds' files as they
    were; replicas.json then lists every seed, and the command without --seeds trains nothing
    more and tables all three seeds."""
    out = tmp_path / "split"
    argv = ["reproduce", STUDY, "--budget", "quick", "--out", str(out), "--threads", "1",
            "--device", "cpu", "--quiet", "--cells", "*reinforce-loo*"]  # fmt: skip
    cell = out / "mnist-mini_bernoulli-reinforce-loo_elbo_8bit"
    assert main([*argv, "--seeds", "1"]) == 0
    assert "1 of 1 cells finished" in capsys.readouterr().out
    assert sorted(p.name for p in cell.glob("seed-*")) == ["seed-1"]
    entry = next(c for c in json.loads((out / "sweep.json").read_text())["cells"]
                 if c["name"] == cell.name)  # fmt: skip
    assert entry["status"] == "pending" and entry["runs"] == {"0": "pending", "1": "finished",
                                                              "2": "pending"}  # fmt: skip
    first = {f: f.read_bytes() for f in (cell / "seed-1").rglob("*") if f.is_file()
             and f.name != ".binaryvae.lock"}  # fmt: skip
    assert main([*argv, "--seeds", "0,2"]) == 0
    assert {f: f.read_bytes() for f in first} == first  # seed 1 untouched
    assert json.loads((cell / "replicas.json").read_text())["seeds"] == [0, 1, 2]
    for subset in ("1", "0,2"):
        theirs = tmp_path / f"train-{subset}"
        assert main(["train", "--out", str(theirs), "--protocol", "disarm-linear", "--family",
                     "bernoulli-reinforce-loo", "--dataset", "mnist-mini", "--latent-dim", "8",
                     "--validation", "1000", "--steps", "40", "--eval-every-steps", "20",
                     "--seeds", subset, "--threads", "1", "--device", "cpu", "--quiet",
                     "--no-report"]) == 0  # fmt: skip
        for seed in map(int, subset.split(",")):
            a, b = _params(cell / f"seed-{seed}"), _params(theirs / f"seed-{seed}")
            assert all(a[k].equal(b[k]) for k in a), (subset, seed)
            assert metric_rows(cell / f"seed-{seed}") == metric_rows(theirs / f"seed-{seed}")
    before = {f: f.read_bytes() for f in cell.rglob("*") if f.is_file()
              and f.name != ".binaryvae.lock"}  # fmt: skip
    assert main(argv) == 0  # every seed finished: nothing is trained again
    assert {f: f.read_bytes() for f in before} == before
    table = json.loads((out / "study.json").read_text())["tables"][0]
    row = next(r for r in table["rows"] if r["cell"] == cell.name)
    assert row["seeds"] == [0, 1, 2]


SPLIT_STUDY = """
title = "a group trained a few seeds at a time"
about = "a test study"
docs = "tests"
seeds = [0, 1, 2]

[grid]
datasets = ["mnist-mini"]
families = ["steplogistic:elbo"]
latent-dims = [4]
hidden = [16]
batch-size = 500
steps = {steps}
summary-iwae-k = 100

[budget.full]

[budget.quick]

[[table]]
title = "t"
measures = ["test_elbo"]
"""


def test_a_group_left_part_way_finishes_its_other_seeds_after_some_went_ahead(tmp_path):
    """The whole group trains 6 steps; the budget grows to 12 and --seeds 0 takes seed 0 there
    alone; the command without --seeds then continues seeds 1 and 2 from their checkpoints as
    a group, leaving seed 0's files as they are, and every seed ends at 12 steps."""
    study, out = tmp_path / "split.toml", tmp_path / "out"
    argv = ["reproduce", str(study), "--out", str(out), "--threads", "1", "--device", "cpu",
            "--quiet"]  # fmt: skip
    study.write_text(SPLIT_STUDY.replace("{steps}", "6"))
    assert main(argv) == 0
    study.write_text(SPLIT_STUDY.replace("{steps}", "12"))
    assert main([*argv, "--seeds", "0"]) == 0
    cell = out / "mnist-mini_steplogistic_elbo_4bit"
    assert [_summary(cell / f"seed-{s}")["steps"] for s in (0, 1, 2)] == [12, 6, 6]
    seed0 = {f: f.read_bytes() for f in (cell / "seed-0").rglob("*") if f.is_file()
             and f.name != ".binaryvae.lock"}  # fmt: skip
    assert main(argv) == 0
    assert [_summary(cell / f"seed-{s}")["steps"] for s in (0, 1, 2)] == [12, 12, 12]
    assert {f: f.read_bytes() for f in seed0} == seed0
    assert [r["step"] for r in metric_rows(cell / "seed-2")][-1] == 12


MERGE_STUDY = (
    SPLIT_STUDY.replace("{steps}", "6")
    .replace('["steplogistic:elbo"]', '["steplogistic:elbo", "logistic:elbo"]')
    .replace("summary-iwae-k = 100", "summary-iwae-k = 100\nsummary-fd-samples = 0")
    .replace("seeds = [0, 1, 2]", "seeds = [0, 1]")
)
CELLS = ("mnist-mini_steplogistic_elbo_4bit", "mnist-mini_logistic_elbo_4bit")


def _reproduce(study: Path, out: Path, *extra: str) -> int:
    return main(["reproduce", str(study), "--out", str(out), "--threads", "1", "--device",
                 "cpu", "--quiet", *extra])  # fmt: skip


def _files(folder: Path) -> dict[Path, bytes]:
    return {f: f.read_bytes() for f in sorted(folder.rglob("*"))
            if f.is_file() and f.name != ".binaryvae.lock"}  # fmt: skip


@pytest.fixture(scope="module")
def merge_folders(tmp_path_factory):
    """A study of two cells: --seeds 0 into A, --seeds 1 into B (two groups at the same time,
    e.g. on two cores), and --seeds 0 then --seeds 1 into one folder D."""
    root = tmp_path_factory.mktemp("merge")
    study = root / "merge.toml"
    study.write_text(MERGE_STUDY)
    for out, seeds in (("A", "0"), ("B", "1"), ("D", "0"), ("D", "1")):
        assert _reproduce(study, root / out, "--seeds", seeds) == 0
    return root, study


def test_merge_from_joins_two_folders_into_what_one_folder_trained_in_turn_holds(
    merge_folders, tmp_path, capsys
):
    """--merge-from B copies B's finished seeds into A: every run then equals the one D holds
    (parameters, metrics rows, summary; timings aside), replicas.json and the study's tables
    are byte for byte D's, B is left as it was, and a cell A did not have is made whole."""
    root, study = merge_folders
    a = tmp_path / "A"
    shutil.copytree(root / "A", a)
    only_steplogistic = tmp_path / "C"  # a folder that has not started the other cell
    assert _reproduce(study, only_steplogistic, "--seeds", "0", "--cells", "*steplogistic*") == 0
    b_before = _files(root / "B")
    capsys.readouterr()
    assert _reproduce(study, a, "--merge-from", str(root / "B")) == 0
    assert f"merged {CELLS[0]}: seeds 1" in capsys.readouterr().out
    assert _files(root / "B") == b_before
    for cell in CELLS:
        assert (a / cell / "replicas.json").read_bytes() == (
            root / "D" / cell / "replicas.json").read_bytes()  # fmt: skip
        for seed in (0, 1):
            mine, theirs = a / cell / f"seed-{seed}", root / "D" / cell / f"seed-{seed}"
            pa, pb = _params(mine), _params(theirs)
            assert all(pa[k].equal(pb[k]) for k in pa), (cell, seed)
            assert metric_rows(mine) == metric_rows(theirs)
            assert _summary(mine) == _summary(theirs)
    assert (a / "study.md").read_bytes() == (root / "D" / "study.md").read_bytes()
    assert _reproduce(study, only_steplogistic, "--merge-from", str(root / "B")) == 0
    listing = json.loads((only_steplogistic / CELLS[1] / "replicas.json").read_text())
    assert listing["seeds"] == [1] and listing["config"]["seed"] == 1
    assert sorted(p.name for p in (only_steplogistic / CELLS[1]).glob("seed-*")) == ["seed-1"]


def test_merge_from_copies_only_finished_seeds(merge_folders, tmp_path, capsys):
    """An unfinished seed of DIR2 is named and left where it is, even while a process trains it
    (holding its lock); the cell's finished seeds are copied."""
    from binaryvae.runs.ownership import DirLock

    root, study = merge_folders
    a, d = tmp_path / "A", tmp_path / "D"
    shutil.copytree(root / "A", a), shutil.copytree(root / "D", d)
    shutil.rmtree(a / CELLS[1])  # A has not started the logistic cell
    (d / CELLS[1] / "seed-1" / "summary.json").unlink()  # seed 1 stopped before its summary
    capsys.readouterr()
    training = DirLock(d / CELLS[1] / "seed-1").acquire()  # and is training again in D
    try:
        assert _reproduce(study, a, "--merge-from", str(d), "--cells", "*_logistic*") == 0
    finally:
        training.release()
    out = capsys.readouterr().out
    assert f"merged {CELLS[1]}: seeds 0" in out and f"left {CELLS[1]}: seeds 1 not" in out
    assert (a / CELLS[1] / "seed-0").is_dir() and not (a / CELLS[1] / "seed-1").exists()
    assert json.loads((a / CELLS[1] / "replicas.json").read_text())["seeds"] == [0]


@pytest.mark.parametrize("case", ["seed in both", "link", "other options", "other data",
                                  "other study", "with --seeds"])  # fmt: skip
def test_merge_from_refuses_what_cannot_be_joined_and_writes_nothing(
    merge_folders, case, tmp_path, capsys
):
    root, study = merge_folders
    a, b = tmp_path / "A", tmp_path / "B"
    shutil.copytree(root / "A", a), shutil.copytree(root / "B", b)
    extra, words = [], ""
    if case == "seed in both":
        b = root / "D"  # D holds seed 0 too
        words = f"cannot merge cell {CELLS[0]}: seed 0 is in both folders"
    elif case == "link":
        secret = tmp_path / "secret.txt"
        secret.write_text("the user's")
        (b / CELLS[1] / "seed-1" / "notes").symlink_to(secret)
        words = "notes is not a plain file or folder"
    elif case == "other options":  # same cells, another learning rate
        other = tmp_path / "other.toml"
        other.write_text(MERGE_STUDY.replace("batch-size = 500", "batch-size = 500\nlr = 3e-4"))
        b = tmp_path / "B-lr"
        assert _reproduce(other, b, "--seeds", "1", "--cells", "*logistic*") == 0
        words = "trained it with other options: lr (0.001 vs 0.0003)"
    elif case == "other data":  # B's run records another dataset fingerprint than A's
        config = b / CELLS[1] / "seed-1" / "config.json"
        recorded = json.loads(config.read_text())
        config.write_text(json.dumps({**recorded, "data_fingerprint": "0" * 64}))
        words = "trained it on other data (fingerprints"
    elif case == "other study":
        b = tmp_path / "B-study"
        other = tmp_path / "other.toml"
        other.write_text(MERGE_STUDY.replace('"steplogistic:elbo", ', ""))
        assert _reproduce(other, b, "--seeds", "1") == 0
        words = "they hold sweeps of other cells"
    else:
        extra, words = ["--seeds", "1"], "--merge-from trains nothing and replaces nothing"
    before = _files(a)
    capsys.readouterr()
    assert _reproduce(study, a, "--merge-from", str(b), *extra) == 2
    assert words in one_line_error(capsys)
    assert _files(a) == before


def test_seeds_the_study_does_not_have_are_refused(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["reproduce", STUDY, "--budget", "quick", "--out", str(out), "--seeds",
                 "1,7"]) == 2  # fmt: skip
    assert "--seeds: study published-budget has no seed 7" in one_line_error(capsys)
    assert not out.exists()


# ----------------------------------------------------------------------------- [vary]
def _sweep(out, *extra):
    return ["sweep", "--out", str(out), "--families", "bernoulli-sfe", "--latent-dims", "4",
            "--seeds", "0,1", *TINY, "--quiet", "--no-report", *extra]  # fmt: skip


def test_a_varied_cell_with_steps_stops_at_exactly_n_steps(tmp_path):
    """--vary steps=7,20 (16 batches per epoch: 7 cuts the first epoch, 20 the second): each
    run's Adam state counts exactly N steps, its last metrics row is at step N and says how
    many batches its epoch had, its summary says N; sweep.json records each cell's value."""
    import torch

    out = tmp_path / "a"
    assert main(_sweep(out, "--vary", "steps=7,20")) == 0
    for n, batches in ((7, 7), (20, 4)):
        cell = out / f"mnist-mini_bernoulli-sfe_elbo_4bit_steps-{n}"
        for seed in (0, 1):
            run = cell / f"seed-{seed}"
            state = torch.load(run / "checkpoints" / "last.pt", weights_only=False)
            assert {float(s["step"]) for s in state["optimizer"]["state"].values()} == {n}
            last = metric_rows(run)[-1]
            assert (last["step"], last["epoch_batches"]) == (n, batches)
            assert json.loads((run / "summary.json").read_text())["steps"] == n
            config = json.loads((run / "config.json").read_text())
            assert (config["steps"], config["epochs"]) == (n, None)
    record = json.loads((out / "sweep.json").read_text())
    assert [c["vary"] for c in record["cells"]] == [{"steps": 7}, {"steps": 20}]
    assert record["counts"]["finished"] == 2
    assert record["grid"]["vary"] == {"steps": [7, 20]}
    # run again from sweep.json alone: the recorded varied grid continues, nothing retrains
    mtimes = {p: p.stat().st_mtime_ns for p in out.glob("*/seed-*/summary.json")}
    assert main(["sweep", "--out", str(out), "--resume", "--quiet", "--no-report"]) == 0
    assert len(mtimes) == 4 and {p: p.stat().st_mtime_ns for p in mtimes} == mtimes


def test_a_varied_protocol_applies_its_preset_under_the_explicit_values():
    """Each cell equals `TrainConfig.from_protocol` of its preset with the grid's fixed values
    (and the cell's axes) on top, as `train --protocol P --lr ...` builds it; the recorded grid
    gives the same cells."""
    from binaryvae.config import TrainConfig
    from binaryvae.runs.sweep_grid import Grid, grid_from_values

    values = {"families": "bernoulli-disarm,steplogistic", "lr": 1e-3, "validation": 1000,
              "datasets": "mnist-mini", "latent-dims": 8, "steps": 5,
              "vary": {"protocol": ["disarm-nonlinear", "disarm-linear"],
                       "batch-size": [50, 100]}}  # fmt: skip
    grid = grid_from_values(values)
    cells = grid.cells()
    assert len(cells) == 2 * 2 * 2
    for cell in cells:
        preset, batch = cell.vary["protocol"], cell.vary["batch_size"]
        assert cell.name.endswith(f"_protocol-{preset}_batch-size-{batch}")
        reference = TrainConfig.from_protocol(
            preset, family=cell.config.family, dataset="mnist-mini", latent_dim=8, lr=1e-3,
            validation=1000, steps=5, batch_size=batch, threads=None,
        )  # fmt: skip
        assert cell.config == reference, cell.name
    assert cells[0].config.hidden == (200, 200) and cells[2].config.hidden == ()
    assert cells[0].config.adam_eps == 1e-7  # the preset's, not given here
    again = Grid.from_dict(json.loads(json.dumps(grid.to_dict())), "recorded")
    assert [c.config for c in again.cells()] == [c.config for c in cells]
    assert [c.name for c in again.cells()] == [c.name for c in cells]


def test_vary_takes_lists_of_layer_sizes_and_family_options():
    from binaryvae.runs.sweep_grid import grid_from_values, parse_vary_option

    assert parse_vary_option("hidden=200x200,none") == ("hidden", [[200, 200], []])
    assert parse_vary_option("lr=1e-3,0.5,2") == ("lr", [1e-3, 0.5, 2])
    grid = grid_from_values({"families": "bernoulli-reinforce-loo", "epochs": 1,
                             "vary": {"hidden": [[200, 200], []], "loo_samples": [2, 4]}})
    got = [(c.name.split("_", 4)[-1], c.config.hidden, c.config.extra) for c in grid.cells()]
    assert got == [
        ("hidden-200x200_loo-samples-2", (200, 200), {"loo_samples": 2}),
        ("hidden-200x200_loo-samples-4", (200, 200), {"loo_samples": 4}),
        ("hidden-none_loo-samples-2", (), {"loo_samples": 2}),
        ("hidden-none_loo-samples-4", (), {"loo_samples": 4}),
    ]


# ----------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["reproduce", "no-such-study", "--out", "{out}"], "unknown study 'no-such-study'"),
        (["reproduce", STUDY, "--budget", "huge", "--out", "{out}"], "invalid choice: 'huge'"),
        (["reproduce", STUDY], "--out"),
        (["reproduce", "{bad}", "--out", "{out}"], "unknown key 'nosuch'"),
        (["reproduce", STUDY, "--out", "{out}", "--tables-only"], "no sweep.json"),
        (["reproduce", STUDY, "--out", "{out}", "--cells", "*loo*,nope*"],
         "--cells: 'nope*' matches no cell of study published-budget"),
        (_sweep("{out}", "--vary", "nosuch=1,2"), "vary nosuch: unknown option"),
        (_sweep("{out}", "--vary", "lr="), "--vary lr: no values given"),
        (_sweep("{out}", "--vary", "lr=1e-3,0.001"), "vary lr lists 0.001 twice"),
        (_sweep("{out}", "--vary", "dataset=toy"), "datasets is an axis of the grid"),
        (_sweep("{out}", "--vary", "lr=1e-3", "--lr", "1e-4"), "both as a fixed value and varied"),
        (_sweep("{out}", "--vary", "lr=-1"), "learning rate (lr) must be > 0"),
        (_sweep("{out}", "--vary", "hidden=20y3"), "not layer sizes like 200x200"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_writes_nothing(argv, words, tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text('title = "t"\nabout = "a"\ndocs = "d"\nseeds = [0]\n[grid]\nnosuch = 1\n'
                   '[budget.full]\n[budget.quick]\n[[table]]\ntitle = "t"\n'
                   'measures = ["test_elbo"]\n')  # fmt: skip
    out = tmp_path / "out"
    argv = [a.replace("{out}", str(out)).replace("{bad}", str(bad)) for a in argv]
    with pytest.raises(SystemExit) if "huge" in argv else _nothing() as raised:
        assert main(argv) == 2
    if raised is not None and hasattr(raised, "value"):
        assert raised.value.code == 2
    assert words in one_line_error(capsys)
    assert not out.exists()


class _nothing:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


# ----------------------------------------------------------------------------- markers
@pytest.mark.studies
@pytest.mark.parametrize("name", _shipped())
def test_each_shipped_studys_quick_budget_runs_to_its_tables(name, tmp_path):
    """``pytest -m studies``: the whole quick budget of every shipped study."""
    out = tmp_path / name
    argv = ["reproduce", name, "--budget", "quick", "--out", str(out), "--threads", "1",
            "--device", "cpu", "--quiet"]  # fmt: skip
    assert main(argv) == 0
    record = json.loads((out / "sweep.json").read_text())
    assert record["counts"]["finished"] == len(record["cells"])
    tables = json.loads((out / "study.json").read_text())["tables"]
    for table in tables:
        rows = table["rows"]
        seeds = len(record["cells"][0]["runs"])
        assert rows and all(len(r["seeds"]) == seeds for r in rows)  # every seed finished
        # every measure has numbers (exact log p(x) only where the code is small enough)
        for m in table["measures"]:
            assert any(r["measures"][m]["mean"] is not None for r in rows), m
        if seeds > 1:  # with 2+ seeds every paired row has its test
            for d in table["differences"]:
                assert all(d["measures"][m].get("p_t") is not None for m in table["measures"]
                           if d["measures"][m]["n"] >= 2), d["label"]  # fmt: skip
    assert (out / "study.md").is_file()


@pytest.fixture(scope="module")
def local_ray():
    ray = pytest.importorskip("ray", reason="Ray is not installed: pip install 'binaryvae[ray]'")
    os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")
    ours = "RAY_AUTH_TOKEN" not in os.environ  # keep the user's ~/.ray untouched
    if ours:
        os.environ["RAY_AUTH_TOKEN"] = secrets.token_hex(32)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        yield
    finally:
        ray.shutdown()
        if ours:
            os.environ.pop("RAY_AUTH_TOKEN", None)


@pytest.mark.ray
def test_reproduce_on_ray_equals_reproduce_local(local_ray, tmp_path):
    runs = {}
    for executor in ("local", "ray"):
        out = tmp_path / executor
        argv = ["reproduce", STUDY, "--budget", "quick", "--out", str(out), "--threads", "1",
                "--device", "cpu", "--quiet", "--executor", executor]  # fmt: skip
        assert main(argv) == 0
        runs[executor] = out
    local, ray_out = runs["local"], runs["ray"]
    found = sorted(p.relative_to(local) for p in local.glob("*/seed-*"))
    assert len(found) == 6 and found == sorted(p.relative_to(ray_out)
                                               for p in ray_out.glob("*/seed-*"))  # fmt: skip
    for run in found:
        assert metric_rows(ray_out / run) == metric_rows(local / run), run
        assert _summary(ray_out / run) == _summary(local / run), run
        a, b = _params(ray_out / run), _params(local / run)
        assert all(a[k].equal(b[k]) for k in a)
    ta = json.loads((local / "study.json").read_text())["tables"]
    tb = json.loads((ray_out / "study.json").read_text())["tables"]
    assert ta == tb
