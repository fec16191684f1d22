"""`binaryvae sweep` on the local executor (and compare as its special case): each cell is the
replica group `train --seeds` writes, sweep.json/sweep.csv record every cell and run, a rerun
skips finished cells and resumes interrupted ones, a cell that diverges or fails is recorded
and the others finish, bad grids exit 2 before anything is written, and the report's numbers
are the mean and standard error of the runs' own summaries. The same on Ray:
tests/test_sweep_ray.py (`pytest -m ray`)."""

from __future__ import annotations

import csv
import json
import math
import shutil
import sys

import numpy as np
import pytest
from scipy import stats

from _runs_helpers import metric_rows, one_line_error
from binaryvae.cli import main

TOY = ["--dataset", "toy", "--hidden", "16", "--batch-size", "500", "--device", "cpu",
       "--threads", "1", "--quiet", "--no-report"]  # fmt: skip
CELLS = ["toy_bernoulli-sfe_elbo_2bit", "toy_bernoulli-sfe_elbo_4bit",
         "toy_steplogistic_elbo_2bit", "toy_steplogistic_elbo_4bit"]  # fmt: skip
TIMING = ("seconds_per_epoch", "eval_seconds_per_epoch", "summary_seconds",
          "summary_eval_seconds")  # fmt: skip


def _argv(out, *extra, families="bernoulli-sfe,steplogistic", latent="2,4", seeds="0,1"):
    return ["sweep", "--out", str(out), "--families", families, "--latent-dims", latent,
            "--seeds", seeds, "--epochs", "2", *TOY, *extra]  # fmt: skip


def _summary(run) -> dict:
    data = json.loads((run / "summary.json").read_text())
    return {k: v for k, v in data.items() if k not in TIMING}


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    """A finished 2 x 2 sweep (2 families x 2 latent sizes, seeds 0 and 1) on the toy data."""
    out = tmp_path_factory.mktemp("sweep") / "sweep"
    assert main(_argv(out)) == 0
    return out


def test_each_cell_is_the_replica_group_train_seeds_writes(swept, tmp_path):
    """The reference is `binaryvae train --seeds` with the cell's options: same config.json,
    same metrics and final numbers, bit for bit (same engine, same process)."""
    ref = tmp_path / "ref"
    assert main(["train", "--out", str(ref), "--family", "steplogistic", "--latent-dim", "4",
                 "--seeds", "0,1", "--epochs", "2", *TOY]) == 0  # fmt: skip
    cell = swept / "toy_steplogistic_elbo_4bit"
    assert json.loads((cell / "replicas.json").read_text()) == json.loads(
        (ref / "replicas.json").read_text()
    )
    for seed in (0, 1):
        a, b = cell / f"seed-{seed}", ref / f"seed-{seed}"
        assert (a / "config.json").read_text() == (b / "config.json").read_text()
        assert metric_rows(a) == metric_rows(b)
        assert _summary(a) == _summary(b)


def test_sweep_json_and_csv_record_every_cell_and_run(swept):
    record = json.loads((swept / "sweep.json").read_text())
    assert [c["name"] for c in record["cells"]] == CELLS
    assert record["counts"] == {"pending": 0, "running": 0, "finished": 4, "failed": 0,
                                "diverged": 0}  # fmt: skip
    assert record["grid"]["seeds"] == [0, 1] and record["grid"]["latent_dims"] == [2, 4]
    assert record["grid"]["fixed"]["epochs"] == 2 and record["grid"]["fixed"]["threads"] == 1
    for cell in record["cells"]:
        assert cell["status"] == "finished" and cell["runs"] == {"0": "finished", "1": "finished"}
        values = [json.loads((swept / cell["name"] / f"seed-{s}" / "summary.json").read_text())
                  ["test_log_px_exact"] for s in (0, 1)]  # fmt: skip
        assert cell["headline"]["key"] == "test_log_px_exact"
        assert cell["headline"]["mean"] == pytest.approx(np.mean(values), rel=1e-12)
        assert cell["headline"]["se"] == pytest.approx(np.std(values, ddof=1) / math.sqrt(2))
    with open(swept / "sweep.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(r["cell"], r["seed"]) for r in rows] == [(c, s) for c in CELLS for s in ("0", "1")]
    for row in rows:
        summary = json.loads((swept / row["run_dir"] / "summary.json").read_text())
        assert row["status"] == "finished" and row["family"] == summary["family"]
        for key in ("test_discrete_elbo", "test_log_px_exact", "test_iwae", "sample_fd",
                    "seconds_per_epoch"):  # fmt: skip
            assert float(row[key]) == summary[key], key  # repr round-trips a float exactly
        assert row["test_bernoulli_elbo"] == ("" if row["family"] == "bernoulli-sfe" else
                                              repr(summary["test_bernoulli_elbo"]))  # fmt: skip


def test_rerunning_skips_finished_cells_and_resumes_an_interrupted_one(swept, tmp_path,
                                                                       monkeypatch):  # fmt: skip
    """Interrupted (Ctrl-C) in the third cell's second epoch, then the same command again:
    the finished cells are not touched (their summary.json, timings included, stays byte for
    byte), the interrupted one continues from its epoch-1 checkpoint, and every run ends with
    the metrics of the uninterrupted sweep."""
    import binaryvae.runs.engine as engine

    original = engine.end_epoch

    def interrupt(m, stats, point, kl_weight):
        if "steplogistic_elbo_2bit" in str(m.run.path) and point.epoch == 2:
            raise KeyboardInterrupt
        return original(m, stats, point, kl_weight)

    out = tmp_path / "sweep"
    monkeypatch.setattr(engine, "end_epoch", interrupt)
    assert main(_argv(out)) == 130
    monkeypatch.undo()
    record = json.loads((out / "sweep.json").read_text())
    status = {c["name"]: (c["status"], c["reason"]) for c in record["cells"]}
    assert status[CELLS[0]] == status[CELLS[1]] == ("finished", None)
    assert status[CELLS[2]][0] == "pending" and "interrupted" in status[CELLS[2]][1]
    assert status[CELLS[3]] == ("pending", None)
    kept = {c: [(out / c / f"seed-{s}" / "summary.json").read_bytes() for s in (0, 1)]
            for c in CELLS[:2]}  # fmt: skip
    cut = out / CELLS[2] / "seed-0"
    first_epoch = metric_rows(cut, drop_timing=False)[0]
    assert [r["epoch"] for r in metric_rows(cut)] == [1] and not (cut / "summary.json").exists()

    assert main(_argv(out)) == 0
    for c in CELLS[:2]:
        assert [(out / c / f"seed-{s}" / "summary.json").read_bytes() for s in (0, 1)] == kept[c]
    assert metric_rows(cut, drop_timing=False)[0] == first_epoch  # resumed, not retrained
    for c in CELLS:
        for s in (0, 1):
            assert metric_rows(out / c / f"seed-{s}") == metric_rows(swept / c / f"seed-{s}")
            assert _summary(out / c / f"seed-{s}") == _summary(swept / c / f"seed-{s}")
    assert json.loads((out / "sweep.json").read_text())["counts"]["finished"] == 4


def test_a_diverging_cell_is_marked_and_the_others_finish(tmp_path, monkeypatch, capsys):
    from binaryvae.models import VAE

    original = VAE.loss

    def poisoned(self, x, *args, **kwargs):
        terms = original(self, x, *args, **kwargs)
        if self.latent_dim == 2 and self.training:
            return terms._replace(recon=terms.recon + float("nan"))
        return terms

    monkeypatch.setattr(VAE, "loss", poisoned)
    out = tmp_path / "sweep"
    assert main(_argv(out, families="bernoulli-sfe", seeds="0")) == 1
    captured = capsys.readouterr()
    assert "toy_bernoulli-sfe_elbo_4bit: log p(x)" in captured.out
    assert "not finished: toy_bernoulli-sfe_elbo_2bit" in captured.err
    cells = {c["name"]: c for c in json.loads((out / "sweep.json").read_text())["cells"]}
    bad, good = cells["toy_bernoulli-sfe_elbo_2bit"], cells["toy_bernoulli-sfe_elbo_4bit"]
    assert bad["status"] == "diverged" and bad["runs"] == {"0": "diverged"}
    assert "seed 0:" in bad["reason"] and "epoch 1, batch 1" in bad["reason"]
    assert "\n" not in bad["reason"]
    assert (
        good["status"] == "finished" and (out / good["name"] / "seed-0" / "summary.json").is_file()
    )


def test_a_cell_that_fails_for_its_own_reason_is_marked_failed_and_the_sweep_goes_on(
    swept, tmp_path, capsys
):
    """The grid grows by two latent sizes; a folder of the user's sits where the 3-bit cell
    would go. That cell fails with a one-line reason (the folder untouched); the 5-bit one after
    it still runs; the finished cells are kept; exit code 1."""
    out = tmp_path / "sweep"
    shutil.copytree(swept, out)
    mine = out / "toy_bernoulli-sfe_elbo_3bit"
    mine.mkdir()
    (mine / "notes.txt").write_text("mine")
    assert main(_argv(out, latent="2,4,3,5")) == 1
    cells = {c["name"]: c for c in json.loads((out / "sweep.json").read_text())["cells"]}
    failed = cells["toy_bernoulli-sfe_elbo_3bit"]
    assert failed["status"] == "failed" and "marker" in failed["reason"]
    assert "\n" not in failed["reason"] and failed["runs"] == {"0": "failed", "1": "failed"}
    assert (mine / "notes.txt").read_text() == "mine" and sorted(mine.iterdir()) == [
        mine / "notes.txt"
    ]
    finished = [n for n, c in cells.items() if c["status"] == "finished"]
    grown = ["toy_bernoulli-sfe_elbo_5bit", "toy_steplogistic_elbo_3bit",
             "toy_steplogistic_elbo_5bit"]  # fmt: skip
    assert sorted(finished) == sorted([*CELLS, *grown])
    assert "toy_bernoulli-sfe_elbo_3bit" in capsys.readouterr().err


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("g.toml", 'famlies = ["logistic"]\n', "unknown key 'famlies'"),
        ("g.json", '{"latent-dims": []}', "the axis latent-dims is empty"),
        ("g.toml", 'seeds = ""\n', "the axis seeds is empty"),
        ("g.toml", 'families = ["logistic", "nope"]\n', "unknown family 'nope'"),
        ("g.toml", 'families = ["logistic:likelihood"]\n', "unknown objective 'likelihood'"),
        ("g.json", '{"epochs": 0}', "epochs must be in"),
        ("g.toml", "seeds = [1, 1]\n", "seeds lists 1 twice"),
        ("g.toml", "families = [\n", "unreadable grid file"),
        ("g.yaml", "families: [logistic]\n", "must end in .toml or .json"),
    ],
)
@pytest.mark.parametrize("executor", ["local", "ray"])
def test_bad_grid_files_exit_2_naming_the_problem_and_write_nothing(
    tmp_path, capsys, name, content, message, executor
):
    grid = tmp_path / name
    grid.write_text(content)
    out = tmp_path / "sweep"
    argv = ["sweep", "--out", str(out), "--grid", str(grid), "--executor", executor, *TOY]
    assert main(argv) == 2
    assert message in one_line_error(capsys)
    assert not out.exists()


def test_a_grid_file_gives_the_grid_and_options_override_it(tmp_path):
    """TOML with hyphenated names and a fixed value; --epochs on the command line wins."""
    grid = tmp_path / "g.toml"
    grid.write_text('families = ["bernoulli-sfe"]\nlatent-dims = [2]\nseeds = "0-1"\n'
                    'dataset = "toy"\nepochs = 5\nhidden = [16]\nbatch-size = 500\n')  # fmt: skip
    out = tmp_path / "sweep"
    argv = ["sweep", "--out", str(out), "--grid", str(grid), "--epochs", "1", "--device", "cpu",
            "--quiet", "--no-report"]  # fmt: skip
    assert main(argv) == 0
    config = json.loads(
        (out / "toy_bernoulli-sfe_elbo_2bit" / "seed-1" / "config.json").read_text()
    )
    assert (config["epochs"], config["hidden"], config["batch_size"], config["threads"]) == (
        1, [16], 500, 1,
    )  # fmt: skip


def test_executor_ray_without_ray_exits_2_with_the_install_command(tmp_path, capsys,
                                                                    monkeypatch):  # fmt: skip
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    out = tmp_path / "sweep"
    assert main(_argv(out, "--executor", "ray")) == 2
    assert "pip install 'binaryvae[ray]'" in one_line_error(capsys)
    assert not out.exists()


@pytest.mark.parametrize("how", ["option", "environment"])
def test_a_relative_out_with_a_remote_address_is_refused(tmp_path, capsys, monkeypatch, how):
    monkeypatch.chdir(tmp_path)
    extra = ["--executor", "ray"]
    if how == "option":
        extra += ["--address", "10.255.255.1:6379"]
    else:
        monkeypatch.setenv("RAY_ADDRESS", "10.255.255.1:6379")
    assert main(_argv("rel", *extra)) == 2
    err = one_line_error(capsys)
    assert "relative" in err and "10.255.255.1:6379" in err
    assert not (tmp_path / "rel").exists()


def test_a_sweep_continues_only_its_own_grid(swept, tmp_path, capsys):
    out = tmp_path / "sweep"
    shutil.copytree(swept, out)
    before = (out / "sweep.json").read_text()
    assert main(_argv(out, latent="2")) == 2  # an axis may grow, not shrink
    assert "latent-dims 4" in one_line_error(capsys)
    assert main(_argv(out, "--lr", "0.01")) == 2  # a fixed value that makes other runs
    assert "lr (0.001 -> 0.01)" in one_line_error(capsys)
    assert (out / "sweep.json").read_text() == before
    assert main(["sweep", "--out", str(tmp_path / "none"), "--resume", *TOY]) == 2
    assert "no sweep" in one_line_error(capsys)
    run = tmp_path / "run"  # another binaryvae output is not a sweep to continue
    assert main(["train", "--out", str(run), "--epochs", "1", "--latent-dim", "2", *TOY]) == 0
    assert main(_argv(run)) == 2
    assert "already exists" in one_line_error(capsys)
    # --resume alone continues the recorded grid
    assert main(["sweep", "--out", str(out), "--resume", "--quiet", "--no-report"]) == 0


def test_compare_with_seeds_trains_replica_groups_and_reports_mean_and_se(tmp_path, capsys):
    """compare --seeds: one replica group per family, compare.json keeps its keys, and the
    report's table holds mean ± s.e. over the seeds' summary.json (numpy as the reference)."""
    out = tmp_path / "cmp"
    argv = ["compare", "--out", str(out), "--families", "bernoulli-sfe,steplogistic",
            "--seeds", "0-2", "--epochs", "1", "--latent-dim", "2", "--dataset", "toy",
            "--hidden", "16", "--batch-size", "500", "--threads", "1", "--device", "cpu",
            "--quiet"]  # fmt: skip
    assert main(argv) == 0
    listing = json.loads((out / "compare.json").read_text())
    assert listing["runs"] == ["bernoulli-sfe", "steplogistic"] and listing["seeds"] == [0, 1, 2]
    assert {"runs", "families", "base"} <= set(listing)
    report = (out / "report.md").read_text()
    for name in listing["runs"]:
        values = [json.loads((out / name / f"seed-{s}" / "summary.json").read_text())
                  ["test_discrete_elbo"] for s in range(3)]  # fmt: skip
        mean, se = np.mean(values), np.std(values, ddof=1) / math.sqrt(3)
        row = next(line for line in report.splitlines() if line.startswith(f"| {name} |"))
        assert f"| {mean:.2f} ± {se:.2f} |" in row, row
        lo, hi = stats.t.interval(0.95, 2, loc=mean, scale=se)  # Student t, 2 degrees of freedom
        assert f"| [{lo:.2f}, {hi:.2f}] |" in row, row
        assert "| 3/3 |" in row
    assert "mean ± s.e. of 3 seeds" in capsys.readouterr().out
    # compare --seeds --resume continues; dropping a seed is refused
    assert main([*argv, "--resume", "--no-report"]) == 0
    assert main([*argv[:6], "0-1", *argv[7:], "--resume"]) == 2


def test_the_report_figures_plot_every_seed_with_labelled_axes(swept):
    from binaryvae.report.sweep import cell_results, metric_figure

    _, cells = cell_results(swept)
    fig = metric_figure("toy", cells, "test_discrete_elbo")
    axes = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title() for ax in axes] == ["toy, 2-bit codes", "toy, 4-bit codes"]
    for ax, bits in zip(axes, (2, 4), strict=True):
        assert ax.get_xlabel() and "discrete ELBO" in ax.get_ylabel()
        assert [t.get_text() for t in ax.get_xticklabels()] == ["bernoulli-sfe", "steplogistic"]
        plotted = [y for c in ax.collections if c.get_offsets().shape[0] == 2
                   for y in c.get_offsets()[:, 1].tolist()]  # one dot per seed  # fmt: skip
        expected = [
            json.loads((swept / f"toy_{f}_elbo_{bits}bit" / f"seed-{s}" / "summary.json")
                       .read_text())["test_discrete_elbo"]
            for f in ("bernoulli-sfe", "steplogistic") for s in (0, 1)
        ]  # fmt: skip
        assert plotted == pytest.approx(expected, rel=1e-12)


def test_report_command_on_a_sweep(swept, tmp_path):
    out = tmp_path / "sweep"
    shutil.copytree(swept, out)
    assert main(["report", str(out)]) == 0
    html = (out / "report.html").read_text()
    assert "toy: every cell" in html and "Every cell finished." in html
    assert sorted(p.name for p in (out / "figures").iterdir()) == [
        "sweep_toy_curves.png", "sweep_toy_log_px.png", "sweep_toy_sample_fd.png",
        "sweep_toy_test_discrete_elbo.png",
    ]  # fmt: skip


def test_sweep_takes_every_train_option_as_a_fixed_value(capsys):
    from binaryvae.cli import train

    with pytest.raises(SystemExit) as info:
        main(["sweep", "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    for option in train._FIELDS:  # every train option that sets a config field
        plural = {"dataset": "datasets", "family": "families", "objective": "objectives",
                  "latent_dim": "latent-dims", "seed": "seeds"}.get(option)  # fmt: skip
        assert f"--{(plural or option).replace('_', '-')} " in out, option
    for flag in ("--grid", "--executor", "--address", "--cpus-per-run", "--gpus-per-run",
                 "--max-retries", "--hidden"):  # fmt: skip
        assert flag in out, flag
