"""Study tables read per-epoch rows (issue 27: the claim by budget): ``epoch.<E>.<key>`` reads
the row that ends epoch E of each run's metrics.jsonl, and a table with ``epochs`` repeats its
measures at each listed epoch the runs passed and at their last one; every number against the
metrics.jsonl rows by hand (scipy for the intervals). A bad selector is refused naming it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from _runs_helpers import one_line_error
from binaryvae.cli import main
from binaryvae.errors import BadInput

STUDY = """
title = "per-epoch measures"
about = "a test study"
docs = "tests"
seeds = [0, 1, 2]

[grid]
datasets = ["mnist-mini"]
families = ["steplogistic:elbo", "logistic:elbo"]
latent-dims = [4]
epochs = 3
hidden = [16]
batch-size = 500
track = ["exact"]
summary-iwae-k = 100

[budget.full]

[budget.quick]

[[table]]
title = "by budget"
measures = ["track_discrete_elbo", "track_log_px_exact"]
epochs = [2, 5]
baseline = { family = "steplogistic" }
reverse = true

[[table]]
title = "one epoch"
measures = ["epoch.1.track_exact_gap", "last.track_exact_gap"]
baseline = { family = "steplogistic" }
"""
CELLS = {"steplogistic": "mnist-mini_steplogistic_elbo_4bit",
         "logistic": "mnist-mini_logistic_elbo_4bit"}  # fmt: skip


def _rows(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def _at(root: Path, family: str, seed: int, epoch: int, key: str) -> float:
    """The value of ``key`` in the row of epoch ``epoch`` (the one row of an epoch here)."""
    (row,) = [r for r in _rows(root / CELLS[family] / f"seed-{seed}") if r["epoch"] == epoch]
    return row[key]


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    root = tmp_path_factory.mktemp("per-epoch")
    path = root / "per-epoch.toml"
    path.write_text(STUDY)
    out = root / "out"
    argv = ["reproduce", str(path), "--budget", "quick", "--out", str(out), "--threads", "1",
            "--device", "cpu", "--quiet"]  # fmt: skip
    assert main(argv) == 0
    return out


def test_a_by_budget_table_reads_each_epochs_row(study):
    """Epochs 2 and 3 (5 is past the runs' 3 epochs; 3 is their last): each cell's mean and
    each paired difference (steplogistic minus logistic) against the rows by hand."""
    from scipy import stats

    tables = json.loads((study / "study.json").read_text())["tables"]
    table = tables[0]
    assert table["epochs"] == [2, 3]
    assert table["measures"] == ["epoch.2.track_discrete_elbo", "epoch.2.track_log_px_exact",
                                 "epoch.3.track_discrete_elbo", "epoch.3.track_log_px_exact"]
    (diff,) = table["differences"]
    assert diff["label"] == "steplogistic minus logistic"
    for epoch in (2, 3):
        for key in ("track_discrete_elbo", "track_log_px_exact"):
            measure = f"epoch.{epoch}.{key}"
            a = [_at(study, "steplogistic", s, epoch, key) for s in (0, 1, 2)]
            b = [_at(study, "logistic", s, epoch, key) for s in (0, 1, 2)]
            row = next(r for r in table["rows"] if r["cell"] == CELLS["logistic"])
            assert row["measures"][measure]["mean"] == pytest.approx(sum(b) / 3, rel=1e-12)
            d = [x - y for x, y in zip(a, b, strict=True)]
            mine = diff["measures"][measure]
            assert mine["seeds"] == [0, 1, 2]
            assert mine["mean"] == pytest.approx(sum(d) / 3, rel=1e-12, abs=1e-12)
            assert mine["p_t"] == pytest.approx(stats.ttest_rel(a, b).pvalue, rel=1e-9)
            low, high = stats.t.interval(0.95, 2, loc=sum(d) / 3, scale=stats.sem(d))
            assert mine["ci95"] == pytest.approx([low, high], rel=1e-9, abs=1e-12)
    assert "4 pairwise comparisons" in table["note"]
    md = (study / "study.md").read_text()
    lines = [x for x in md.splitlines() if x.startswith("| steplogistic minus logistic |")]
    assert [x.split(" | ")[1] for x in lines[:2]] == ["2", "3"]  # a row per epoch


def test_an_epoch_selector_reads_that_epochs_row_and_last_the_last(study):
    table = json.loads((study / "study.json").read_text())["tables"][1]
    (diff,) = table["differences"]  # logistic minus steplogistic
    for measure, epoch in (("epoch.1.track_exact_gap", 1), ("last.track_exact_gap", 3)):
        a = [_at(study, "logistic", s, epoch, "track_exact_gap") for s in (0, 1, 2)]
        b = [_at(study, "steplogistic", s, epoch, "track_exact_gap") for s in (0, 1, 2)]
        expected = sum(x - y for x, y in zip(a, b, strict=True)) / 3
        assert diff["measures"][measure]["mean"] == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize(
    "measure, line",
    [
        ("epoch.0.track_exact_gap", "measures = [\"epoch.0.track_exact_gap\"]"),
        ("epoch.two.track_exact_gap", "measures = [\"epoch.two.track_exact_gap\"]"),
        ("last.track_exact_gap", "measures = [\"last.track_exact_gap\"]\nepochs = [1]"),
        ("epochs", "measures = [\"track_exact_gap\"]\nepochs = [3, 2]"),
    ],
)
def test_a_bad_selector_is_refused_naming_it(measure, line, tmp_path, capsys):
    """In a study file (reproduce: exit 2, one line naming it, nothing written) and given to
    `measure_values` directly."""
    path = tmp_path / "bad.toml"
    path.write_text(STUDY.split("[[table]]")[0] + f"[[table]]\ntitle = \"t\"\n{line}\n")
    out = tmp_path / "out"
    assert main(["reproduce", str(path), "--budget", "quick", "--out", str(out)]) == 2
    err = one_line_error(capsys)
    assert str(path) in err and measure in err and "table 1" in err
    assert not out.exists()
    if measure.startswith("epoch."):
        from binaryvae.studies.tables import measure_values

        with pytest.raises(BadInput, match=measure):
            measure_values(tmp_path, {"name": "x"}, {0: {}}, measure)


def test_bench_study_results_commits_each_finished_run_tagged(study, tmp_path):
    """bench/study_results.py: one JSON per finished run, holding that run's config, summary
    and metrics rows as they are on disk, tagged with the engine and the commit given."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
    import study_results

    results = tmp_path / "results"
    assert study_results.main(["--out", str(study), "--study", "per-epoch", "--results",
                               str(results), "--commit", "abc1234"]) == 0  # fmt: skip
    files = sorted(results.glob("*.json"))
    runs = sorted(p for p in study.glob("*/seed-*") if (p / "summary.json").is_file())
    assert len(files) == len(runs) == 6
    for run in runs:
        record = json.loads((results / f"{run.parent.name}_seed{run.name[5:]}.json").read_text())
        assert record["engine"] == {"name": "binaryvae reproduce per-epoch", "commit": "abc1234"}
        assert record["summary"] == json.loads((run / "summary.json").read_text())
        assert record["config"] == json.loads((run / "config.json").read_text())
        assert record["metrics"] == _rows(run)
    assert (results / "study.md").read_text() == (study / "study.md").read_text()
    assert not any(str(study) in f.read_text() for f in files)  # no folder of this machine


def test_bench_study_results_cells_writes_only_those_and_keeps_the_others_tags(study, tmp_path):
    """--cells: a cell trained at another commit is written with its own tag; the files of the
    cells already committed keep theirs, byte for byte."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
    import study_results

    results = tmp_path / "results"
    base = ["--out", str(study), "--study", "per-epoch", "--results", str(results)]
    assert study_results.main([*base, "--commit", "aaa1111", "--cells", "*_logistic_*"]) == 0
    first = {p.name: p.read_bytes() for p in results.glob("*.json")}
    assert sorted(first) == [f"{CELLS['logistic']}_seed{s}.json" for s in (0, 1, 2)]
    assert study_results.main([*base, "--commit", "bbb2222", "--cells", "*steplogistic*"]) == 0
    for name, data in first.items():
        assert (results / name).read_bytes() == data
    tags = {p.name: json.loads(p.read_text())["engine"]["commit"] for p in results.glob("*.json")}
    assert tags == {**{n: "aaa1111" for n in first},
                    **{f"{CELLS['steplogistic']}_seed{s}.json": "bbb2222" for s in (0, 1, 2)}}


def test_a_small_measure_is_printed_to_its_standard_errors_two_significant_digits():
    """Bounds in nats keep two decimals; a gradient variance of 0.0426 ± 0.0012 is not printed
    as 0.04 ± 0.00 (its s.e. sets the decimals), and its paired interval follows it."""
    from binaryvae.studies.tables import _interval, _mean_se

    assert _mean_se({"mean": -243.4843, "se": 0.0449}) == "-243.48 ± 0.04"
    assert _mean_se({"mean": 0.042631, "se": 0.0012}) == "0.0426 ± 0.0012"
    assert _mean_se({"mean": -0.001234, "se": 0.0004}, sign=True) == "-0.00123 ± 0.00040"
    assert _mean_se({"mean": 0.00391, "se": None}) == "0.0039"  # one seed: the mean's digits
    assert _mean_se({"mean": 34.42, "se": 0.0}) == "34.42 ± 0.00"
    assert _interval({"mean": 0.0021, "se": 0.0003, "t": 4.303, "ci95": [0.00081, 0.00339]}) == (
        "t = 4.30: [+0.00081, +0.00339]"
    )


def _study_results():
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
    import study_results

    return study_results


def test_restored_runs_write_the_same_tables_as_the_folder_they_were_committed_from(
    study, tmp_path, capsys
):
    """--restore rebuilds a study folder from the committed files alone (the run folders of a
    long study are gone after the session that trained them): `reproduce --tables-only` on it
    writes the original study.md byte for byte and the same study.json tables; the restored runs
    count as finished in sweep.json."""
    study_results = _study_results()
    results, restored = tmp_path / "results", tmp_path / "restored"
    assert study_results.main(["--out", str(study), "--study", "per-epoch", "--results",
                               str(results), "--commit", "abc1234"]) == 0  # fmt: skip
    toml = str(study.parent / "per-epoch.toml")
    assert study_results.main(["--restore", "--results", str(results), "--study", toml,
                               "--out", str(restored), "--budget", "quick"]) == 0  # fmt: skip
    assert main(["reproduce", toml, "--budget", "quick", "--out", str(restored),
                 "--tables-only"]) == 0  # fmt: skip
    assert (restored / "study.md").read_text() == (study / "study.md").read_text()
    tables = json.loads((restored / "study.json").read_text())["tables"]
    assert tables == json.loads((study / "study.json").read_text())["tables"]
    sweep = json.loads((restored / "sweep.json").read_text())
    assert {c["name"]: c["status"] for c in sweep["cells"]} == dict.fromkeys(CELLS.values(),
                                                                            "finished")


def test_restore_refuses_another_studys_files_and_writes_nothing(study, tmp_path, capsys):
    """A committed file of another study, of a cell the study does not have, named for another
    run, or not JSON is refused with exit code 2 and one line naming it; the folder is not
    created."""
    study_results = _study_results()
    results = tmp_path / "results"
    assert study_results.main(["--out", str(study), "--study", "per-epoch", "--results",
                               str(results), "--commit", "abc1234"]) == 0  # fmt: skip
    capsys.readouterr()
    toml = str(study.parent / "per-epoch.toml")
    planted = results / f"{CELLS['logistic']}_seed1.json"
    record = json.loads(planted.read_text())
    planted.write_text(json.dumps({**record, "study": "estimator-study"}))
    out = tmp_path / "restored"
    argv = ["--restore", "--results", str(results), "--study", toml, "--out", str(out),
            "--budget", "quick"]  # fmt: skip
    assert study_results.main(argv) == 2
    assert planted.name in one_line_error(capsys) and not out.exists()
    foreign = results / "mnist-mini_concrete_elbo_4bit_seed1.json"
    planted.rename(foreign)
    foreign.write_text(json.dumps({**record, "cell": "mnist-mini_concrete_elbo_4bit"}))
    assert study_results.main(argv) == 2
    assert "mnist-mini_concrete_elbo_4bit" in one_line_error(capsys) and not out.exists()
    foreign.rename(planted)
    planted.write_text(json.dumps({**record, "seed": 0}))  # a second file of seed 0
    assert study_results.main(argv) == 2
    assert "not the run its name says" in one_line_error(capsys) and not out.exists()
    planted.write_text("{")
    assert study_results.main(argv) == 2
    assert "not a committed run file" in one_line_error(capsys) and not out.exists()


COMMITTED = Path(__file__).resolve().parent.parent / "bench" / "results"
STUDY_FOLDERS = sorted(
    p.parent.name for p in COMMITTED.glob("*/study.md") if any(p.parent.glob("*_seed*.json"))
)


def test_the_committed_study_folders_are_found():
    assert {"claim125-rerun", "estimator-study-rerun", "estimator-samples"} <= set(STUDY_FOLDERS)


@pytest.mark.parametrize("folder", STUDY_FOLDERS)
def test_every_committed_study_table_regenerates_from_its_committed_runs(folder, tmp_path):
    """The study.md committed beside a study's run files is what the tables code writes from
    those files alone (restored, then tabled): no table quotes a run that is not committed, and
    a table of runs trained in several sessions is the command's, not a hand-edit."""
    from binaryvae.studies import load_study
    from binaryvae.studies.tables import render_markdown, study_tables

    results = COMMITTED / folder
    name = json.loads(next(results.glob("*_seed*.json")).read_text())["study"]
    _study_results().restore(results, name, tmp_path / "restored")
    spec = load_study(name)
    text = render_markdown(spec, "full", study_tables(spec, tmp_path / "restored"))
    assert text == (results / "study.md").read_text()
