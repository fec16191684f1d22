"""What the report draws and says, checked on the figures themselves: every title, axis label and
legend inside its figure (a single run, the replicas of `train --seeds`, `sample`, a sweep), the
replicas told apart by seed with a mean ± s.e. row, "relaxed" only for families with a
relaxation, captions built from the run's own numbers, the sweep's option checks and its
shared timing, and compare's load-scaled duration estimate."""

from __future__ import annotations

import io
import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
from matplotlib.figure import Figure

from _runs_helpers import tiny_config
from binaryvae.cli import main
from binaryvae.report import sample_figure, write_report
from binaryvae.report.collect import RunRecord, collect_runs
from binaryvae.report.style import DPI, MAX_WIDTH, new_figure, text_artists
from binaryvae.runs import train_replicas, train_run

# the families whose latent is a continuous relaxation of bits (docs/internals.md, vocabulary;
# the report's `run_kind` "relaxed"): written out here as the reference for Family.relaxed
RELAXED = {"gaussian-sigmoid", "logistic", "concrete", "steplogistic", "smoothsteplogistic"}


@pytest.fixture
def captured(monkeypatch):
    """{file name: Figure} of every figure saved while the test runs (after it was drawn)."""
    return _capture(monkeypatch)


def _capture(monkeypatch) -> dict[str, Figure]:
    """{file name: Figure} of every figure saved while ``monkeypatch`` is active.

    Figures are drawn into memory and then written by `atomic_write_bytes` (report.style.save,
    report.sweep), so the name is taken from that write of the figure just drawn."""
    import binaryvae.report.style as style
    import binaryvae.report.sweep as sweep
    import binaryvae.report.theory_figures as theory_figures

    figures: dict[str, Figure] = {}
    drawn: list[Figure] = []
    real = Figure.savefig

    def savefig(self, fname, *args, **kwargs):
        out = real(self, fname, *args, **kwargs)
        if isinstance(fname, str | Path):
            figures[Path(fname).name] = self
        else:
            drawn.append(self)
        return out

    def writer(module):
        real_write = module.atomic_write_bytes

        def write(path, data, *args, **kwargs):
            if drawn:
                figures[Path(path).name] = drawn.pop()
            return real_write(path, data, *args, **kwargs)

        return write

    monkeypatch.setattr(Figure, "savefig", savefig)
    # the theory figures are drawn once per process: drawn again here, so that they are seen
    monkeypatch.setattr(theory_figures, "_DRAWN", {})
    for module in (style, sweep):
        monkeypatch.setattr(module, "atomic_write_bytes", writer(module))
    return figures


def _outside(fig: Figure) -> list[str]:
    """The titles, axis labels and legend texts of ``fig`` that stick out of its bounds."""
    renderer = fig.canvas.get_renderer()
    box = fig.bbox
    out = []
    for t in text_artists(fig):
        e = t.get_window_extent(renderer)
        if e.x0 < box.x0 - 1 or e.x1 > box.x1 + 1 or e.y0 < box.y0 - 1 or e.y1 > box.y1 + 1:
            out.append(f"{t.get_text()!r} at x {e.x0:.0f}..{e.x1:.0f} of {box.width:.0f}")
    return out


def _check_layout(figures: dict[str, Figure]) -> None:
    """Every figure: at most MAX_WIDTH wide, and every text inside it."""
    assert figures
    for name, fig in figures.items():
        width, height = fig.bbox.width, fig.bbox.height
        assert width <= MAX_WIDTH * DPI + 0.5 and height > 0, (name, width, height)
        assert not _outside(fig), (name, _outside(fig))
        # the figure is as wide as its widest text needs, never narrower
        widest = max(t.get_window_extent(fig.canvas.get_renderer()).width
                     for t in text_artists(fig))  # fmt: skip
        assert width >= widest, (name, width, widest)


@pytest.fixture(scope="module")
def single(tmp_path_factory):
    """One steplogistic run trained on the Bernoulli ELBO (its relaxed ELBO is off the scale
    of its panel), mnist-mini, 2 epochs; the command's default of one run per report."""
    out = tmp_path_factory.mktemp("layout") / "run"
    log = io.StringIO()
    train_run(tiny_config(family="steplogistic", objective="bernoulli-elbo"), out, stream=log)
    return out, log.getvalue()


@pytest.fixture(scope="module")
def seeds(tmp_path_factory):
    """`train --seeds 0-2` of bernoulli-disarm (no relaxation), mnist-mini, 2 epochs."""
    out = tmp_path_factory.mktemp("layout") / "seeds"
    log = io.StringIO()
    train_replicas(tiny_config(family="bernoulli-disarm"), "0-2", out, stream=log)
    return out, log.getvalue()


def _written(out: Path) -> tuple[dict[str, Figure], object]:
    """`write_report(out, theory=False)`, once: every figure it drew and the Document it wrote."""
    import binaryvae.report.build as build

    docs = []
    with pytest.MonkeyPatch.context() as mp:
        figures = _capture(mp)
        real = build.build_document
        mp.setattr(build, "build_document", lambda *a, **k: docs.append(real(*a, **k)) or docs[-1])
        write_report(out, theory=False)
    (doc,) = docs
    return figures, doc


@pytest.fixture(scope="module")
def single_report(single):
    """The figures and the Document of the single run's report (drawn once for its tests)."""
    return _written(single[0])


@pytest.fixture(scope="module")
def seeds_report(seeds):
    """The figures and the Document of the seeds' report (drawn once for its tests)."""
    return _written(seeds[0])


# ----------------------------------------------------------------------------- figure layout
@pytest.mark.e2e
def test_every_figure_of_a_single_run_report_fits_its_text(single_report):
    captured, _ = single_report
    names = {"elbo_per_epoch.png", "lambda_histogram.png", "posterior_means.png",
             "elbo_all_families.png", "kl_recon_per_epoch.png"}  # fmt: skip
    assert names <= set(captured), set(captured)
    _check_layout(captured)
    # the 300 px figures: now as wide as their legends and titles
    for name in ("elbo_per_epoch.png", "lambda_histogram.png", "posterior_means.png"):
        assert captured[name].bbox.width > 400, (name, captured[name].bbox.width)


@pytest.mark.e2e
def test_every_figure_of_a_seeds_report_fits_its_text(seeds_report):
    captured, _ = seeds_report
    assert "elbo_per_epoch.png" in captured
    _check_layout(captured)


def test_a_title_wider_than_the_widest_figure_is_wrapped_inside_it(tmp_path):
    fig = new_figure(2.0, 2.0)
    ax = fig.subplots()
    ax.plot([0, 1], [0, 1], label="a legend entry that is much wider than two inches")
    fig.legend(loc="outside lower center", ncols=1)
    fig.suptitle("a title of many words " * 12)  # about 3,000 px at 11 pt
    fig.savefig(tmp_path / "wide.png")
    assert fig.get_size_inches()[0] == pytest.approx(MAX_WIDTH)
    assert "\n" in fig.get_suptitle()
    assert not _outside(fig), _outside(fig)


def test_sample_titles_fit(captured, tmp_path):
    run = tmp_path / "ae"
    train_run(tiny_config(family="autoencoder-gmm", gmm_components=3), run, progress=False)
    sample_figure(run, n=16, mode="probs", out=tmp_path / "s.png")
    (fig,) = captured.values()
    title = " ".join(t.get_text() for t in text_artists(fig))
    assert "3-component Gaussian mixture fitted to the training codes" in title.replace("\n", " ")
    assert not _outside(fig), _outside(fig)


# ----------------------------------------------------------------------------- replicas
@pytest.mark.e2e
def test_a_seeds_report_labels_each_seed_and_has_a_mean_and_se_row(seeds, seeds_report):
    out, _ = seeds
    captured, doc = seeds_report
    assert "seeds 0, 1, 2," in doc.intro
    titles = [ax.get_title() for ax in captured["elbo_per_epoch.png"].axes if ax.get_visible()]
    for s in range(3):
        assert sum(f"bernoulli-disarm, seed {s}" in t for t in titles) == 1, titles
    table = next(i for sec in doc.sections for i in sec.items if getattr(i, "title", "") ==
                 "Final numbers")  # fmt: skip
    row = next(r for r in table.rows if "mean ± s.e." in r[0])
    assert row[0] == "bernoulli-disarm: mean ± s.e. of 3 seeds"
    summaries = [json.loads((out / f"seed-{s}" / "summary.json").read_text()) for s in range(3)]
    for column, key in ((2, "test_elbo"), (4, "test_discrete_elbo"), (5, "test_log_px_exact"),
                        (7, "sample_fd")):  # fmt: skip
        values = np.array([s[key] for s in summaries])
        mean, se = values.mean(), values.std(ddof=1) / math.sqrt(3)
        assert row[column] == f"{mean:.2f} ± {se:.2f}", (key, row[column])
    timings = {s["seconds_per_epoch"] for s in summaries}
    assert len(timings) == 1  # replicas trained together share one timing
    assert row[8] == f"{timings.pop():.2f} (one timing for the 3 seeds)"


# ----------------------------------------------------------------------------- "relaxed"
def test_family_relaxed_is_true_exactly_for_the_relaxations():
    from binaryvae.models.families import FAMILIES, make_family

    for name in FAMILIES:
        family = make_family(tiny_config(family=name))
        assert family.relaxed == (name in RELAXED), name
        assert type(family).relaxed == family.relaxed  # a property of the class


@pytest.mark.e2e
def test_own_elbo_key_follows_the_relaxation_in_metrics_and_summary(single, seeds):
    relaxed_run, _ = single
    exact_run, _ = seeds
    for run, key, other in ((relaxed_run, "test_relaxed_elbo", "test_elbo"),
                            (exact_run / "seed-0", "test_elbo", "test_relaxed_elbo")):  # fmt: skip
        summary = json.loads((run / "summary.json").read_text())
        rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        assert isinstance(summary[key], float) and other not in summary
        assert all(isinstance(r[key], float) and other not in r for r in rows)
        # the family's own ELBO is its reconstruction term minus its KL
        assert rows[-1][key] == pytest.approx(rows[-1]["test_recon"] - rows[-1]["test_kl"])


@pytest.mark.e2e
def test_the_console_says_relaxed_only_for_a_relaxation(single, seeds):
    _, relaxed_log = single
    _, exact_log = seeds
    epochs = [line for line in exact_log.splitlines() if "epoch" in line and "test" in line]
    assert epochs and all("test, mean of 3 replicas: ELBO " in line for line in epochs)
    assert "relaxed" not in exact_log
    assert "test relaxed " in relaxed_log


@pytest.mark.e2e
def test_a_run_written_before_test_elbo_is_still_read(seeds, tmp_path):
    """Old run directories have test_relaxed_elbo for every family: the report reads it."""
    import shutil

    out = tmp_path / "old"
    shutil.copytree(seeds[0] / "seed-0", out)
    lines = (out / "metrics.jsonl").read_text().replace('"test_elbo"', '"test_relaxed_elbo"')
    (out / "metrics.jsonl").write_text(lines)
    (record,) = collect_runs(out)
    new = [json.loads(line)["test_relaxed_elbo"] for line in lines.splitlines()]
    assert record.column("test_elbo")[1] == new


# ----------------------------------------------------------------------------- captions
def _record(family, objective, metrics, kind_facts) -> RunRecord:
    return RunRecord(name=family, path=Path("."), config=tiny_config(family=family,
                     objective=objective), metrics=metrics, summary=dict(kind_facts),
                     has_checkpoint=False)  # fmt: skip


RELAXED_FACTS = {"binary_latent": True, "exact_latent": False, "has_likelihood": True}
EXACT_FACTS = {"binary_latent": True, "exact_latent": True, "has_likelihood": True}


def test_the_off_scale_sentence_gives_the_runs_own_gap_or_is_left_out():
    from binaryvae.report.captions import off_scale_sentence

    metrics = [
        {"epoch": 1, "test_relaxed_elbo": -250.0, "test_bernoulli_elbo": -200.0},
        {"epoch": 2, "test_relaxed_elbo": -301.4, "test_bernoulli_elbo": -130.9},
    ]
    concrete = _record("concrete", "bernoulli-elbo", metrics, RELAXED_FACTS)
    text = off_scale_sentence([concrete])
    assert "concrete (bernoulli-elbo): 170 nats below its Bernoulli ELBO at epoch 2" in text
    assert "120" not in text
    plain = _record("logistic", "elbo", [{"epoch": 1, "test_relaxed_elbo": -200.0}],
                    RELAXED_FACTS)  # fmt: skip
    exact = _record("bernoulli-sfe", "elbo", [{"epoch": 1, "test_elbo": -200.0}], EXACT_FACTS)
    assert off_scale_sentence([plain, exact]) == ""


@pytest.mark.e2e
def test_the_elbo_caption_of_a_report_without_a_bernoulli_elbo_run_has_no_off_scale_words(
    seeds_report,
):
    _, doc = seeds_report
    (item,) = [i for s in doc.sections for i in s.items
               if getattr(i, "file", None) and i.file.name == "elbo_per_epoch.png"]  # fmt: skip
    assert "own axes" not in item.caption and "nats lower" not in item.caption


@pytest.mark.e2e
def test_the_elbo_caption_of_a_bernoulli_elbo_run_gives_its_gap(single, single_report):
    out, _ = single
    _, doc = single_report
    (item,) = [i for s in doc.sections for i in s.items
               if getattr(i, "file", None) and i.file.name == "elbo_per_epoch.png"]  # fmt: skip
    last = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()][-1]
    gap = last["test_bernoulli_elbo"] - last["test_relaxed_elbo"]
    assert f"{gap:.0f} nats below its Bernoulli ELBO at epoch {last['epoch']}" in item.caption


def test_prior_sample_captions_do_not_say_test_split():
    from binaryvae.report.build import _samples_caption
    from binaryvae.report.captions import setting_of
    from binaryvae.report.model_figures import Loaded

    record = _record("logistic", "elbo", [{"epoch": 1}], RELAXED_FACTS)
    lr = Loaded(record=record, model=None, test_x=None, test_y=None, image_shape=(28, 28))
    caption = _samples_caption(lr, setting_of([record]))
    assert "Reproduces diss. Fig. A.3" in caption  # mnist-mini, logistic:elbo
    assert "test split" not in caption and "codes drawn from the prior" in caption


# ----------------------------------------------------------------------------- gradients
def test_the_gradient_legend_names_a_run_without_an_exact_gradient(captured, tmp_path):
    from binaryvae.report.gradients import gradient_figure

    grad = {"step": 8, "grad_var": 0.5}
    exact = dict(grad, grad_bias_ratio=0.1, grad_bias_noise=0.01, grad_exact_norm=1.0)
    gaussian = _record("gaussian", "elbo", [{"epoch": 1, "gradient": [grad]}],
                       {"binary_latent": False, "exact_latent": False, "has_likelihood": True})
    logistic = _record("logistic", "elbo", [{"epoch": 1, "gradient": [exact]}], RELAXED_FACTS)
    gradient_figure([gaussian, logistic], tmp_path / "g.png")
    fig = captured["g.png"]
    legend = [t.get_text() for leg in fig.legends for t in leg.get_texts()]
    assert legend == ["gaussian (variance only: no exact gradient)", "logistic"]
    assert not _outside(fig)


def test_the_bias_panel_fills_the_markers_where_the_bias_test_resolves_a_bias(captured, tmp_path):
    """Three measurements of one run, grad_bias_z 5, 1 and absent: the first drawn filled in
    the run's colour, the other two hollow (white face), at their own steps and ratios."""
    from matplotlib.colors import to_rgba

    from binaryvae.report.gradients import gradient_figure

    base = {"grad_var": 0.5, "grad_bias_noise": 0.01, "grad_exact_norm": 1.0}
    grads = [dict(base, step=10, grad_bias_ratio=0.3, grad_bias_z=5.0),
             dict(base, step=20, grad_bias_ratio=0.2, grad_bias_z=1.0),
             dict(base, step=30, grad_bias_ratio=0.1)]  # fmt: skip
    rec = _record("logistic", "elbo", [{"epoch": 1, "gradient": grads}], RELAXED_FACTS)
    gradient_figure([rec], tmp_path / "g.png")
    bias_ax = captured["g.png"].axes[1]
    markers = {to_rgba(line.get_markerfacecolor()) == to_rgba("white"): line
               for line in bias_ax.get_lines() if line.get_marker() == "o"}  # fmt: skip
    assert list(markers[False].get_xdata()) == [10] and list(markers[False].get_ydata()) == [0.3]
    assert to_rgba(markers[False].get_markerfacecolor()) == to_rgba(markers[False].get_color())
    assert list(markers[True].get_xdata()) == [20, 30]
    assert list(markers[True].get_ydata()) == [0.2, 0.1]


# ----------------------------------------------------------------------------- sweep
def test_sweep_refuses_an_empty_element_in_an_axis(tmp_path, capsys):
    for option, value in (("--latent-dims", "4,"), ("--families", "logistic,,concrete"),
                          ("--seeds", "0,"), ("--datasets", ",toy")):  # fmt: skip
        out = tmp_path / "sw"
        assert main(["sweep", "--out", str(out), option, value, "--no-report"]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "empty element" in err and value in err, err
        assert not out.exists()


def test_sweep_help_names_the_default_families_and_epochs(capsys):
    from binaryvae.config import COMPARE_EPOCHS, COMPARE_FAMILIES

    with pytest.raises(SystemExit):
        main(["sweep", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert f"compare's {len(COMPARE_FAMILIES)}," in text.replace("- ", "-")
    for spec in COMPARE_FAMILIES:
        assert spec in text.replace("- ", "-").replace(" ", ""), spec
    assert f"default {COMPARE_EPOCHS}" in text


def test_a_sweep_without_epochs_says_which_it_uses(tmp_path, capsys, monkeypatch):
    import binaryvae.runs.sweep as sweep_module
    from binaryvae.config import COMPARE_EPOCHS

    grids = []
    monkeypatch.setattr(sweep_module, "sweep", lambda grid, *a, **k: grids.append(grid) or {})
    argv = ["sweep", "--out", str(tmp_path / "sw"), "--families", "logistic", "--no-report"]
    assert main(argv) == 0
    assert grids[-1].base.epochs == COMPARE_EPOCHS
    assert f"--epochs not given: {COMPARE_EPOCHS} epochs per run" in capsys.readouterr().out
    assert main([*argv, "--epochs", "3"]) == 0
    assert grids[-1].base.epochs == 3 and "--epochs not given" not in capsys.readouterr().out


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    """A sweep of one toy cell, 2 seeds, 3 epochs (one replica group: one shared timing)."""
    out = tmp_path_factory.mktemp("layout") / "sweep"
    argv = ["sweep", "--out", str(out), "--families", "steplogistic", "--latent-dims", "2",
            "--seeds", "0,1", "--epochs", "3", "--dataset", "toy", "--hidden", "16",
            "--batch-size", "500", "--device", "cpu", "--threads", "1", "--quiet",
            "--no-report"]  # fmt: skip
    assert main(argv) == 0
    return out


def test_sweep_figures_have_integer_epoch_ticks_and_fit_their_text(swept, captured):
    write_report(swept)
    # the sweep report saves into memory first: its figures are known by their titles
    curves = next(f for f in captured.values() if "per epoch" in f.get_suptitle())
    (ax,) = [a for a in curves.axes if a.get_visible()]
    lo, hi = ax.get_xlim()
    ticks = [t for t in ax.get_xticks() if lo <= t <= hi]
    assert ticks and all(float(t).is_integer() for t in ticks), ticks
    _check_layout(captured)


def test_the_sweep_table_states_a_shared_timing_once(swept):
    from binaryvae.report.sweep import cell_results, dataset_table

    _, cells = cell_results(swept)
    table = dataset_table("toy", cells)
    (row,) = table.rows
    timing = {r["seconds_per_epoch"] for r in cells[0].finished}
    assert len(timing) == 1
    assert row[-1] == f"{timing.pop():.3f} (one timing for all 2 seeds)"
    assert "±" not in row[-1]


# ----------------------------------------------------------------------------- duration
def test_compare_duration_is_scaled_by_the_load_at_start():
    from binaryvae.config import COMPARE_FAMILIES
    from binaryvae.runs.duration import expected_line, expected_seconds

    base = tiny_config(epochs=15, hidden=(512, 256, 128), latent_dim=8, threads=1)
    configs = [tiny_config(epochs=15, hidden=base.hidden, latent_dim=8, threads=1,
                           family=spec.split(":")[0],
                           objective=(spec.split(":") + ["elbo"])[1])
               for spec in COMPARE_FAMILIES]  # fmt: skip
    seconds, _ = expected_seconds(configs, (8000, 2000))
    # measured: 1 thread, 2 cores, load 2.6 with itself: share min(1, 2 / 2.6) of a core
    for load, cpus, share in ((7.5, 2, 2 / 8.5), (0.0, 16, 1.0), (1.6, 2, 2 / 2.6)):
        line = expected_line(configs, (8000, 2000), load=load, cpus=cpus)
        factor = (2 / 2.6) / share
        minutes, rest = divmod(round(seconds * factor), 60)
        assert line.startswith(f"expected duration about {minutes} min {rest:02d} s "), line
        assert f"x{factor:.1f} for the load average {load:.1f} on {cpus} cores" in line
    assert re.search(r"load average \d+\.\d on \d+ cores", expected_line(configs, (8000, 2000)))
