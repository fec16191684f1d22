"""binaryvae.report: every figure renders from tiny runs, is a non-empty PNG, and report.html
(self-contained, offline) references them all."""

from __future__ import annotations

import io
import json
import re

import pytest

from _runs_helpers import tiny_config
from binaryvae.report import write_report
from binaryvae.report.style import tile
from binaryvae.runs import compare, parse_families

PNG = b"\x89PNG\r\n\x1a\n"
FAMILIES = "steplogistic,concrete:bernoulli-elbo,bernoulli-sfe,autoencoder-gmm,gaussian"


@pytest.fixture(scope="module")
def compare_run(tmp_path_factory):
    """A relaxed family trained on its ELBO and one on the Bernoulli ELBO, an exact-Bernoulli
    family, the autoencoder + GMM and the Normal-latent gaussian, two epochs each; with the log
    compare wrote."""
    out = tmp_path_factory.mktemp("report") / "cmp"
    base = tiny_config(epochs=2, gmm_components=3, grad_every=8, grad_samples=3)
    log = io.StringIO()
    compare(parse_families(FAMILIES), base, out, progress=True, stream=log)
    return out, log.getvalue()


@pytest.fixture(scope="module")
def compare_dir(compare_run):
    return compare_run[0]


@pytest.fixture(scope="module")
def written(compare_dir):
    """`write_report` of the compare, once: report.html's path, the Document it wrote and every
    figure it drew (as matplotlib Figures, captured at save time), and the left-out note of
    the KL panel."""
    import binaryvae.report.build as build
    import binaryvae.report.curves as curves
    import binaryvae.report.model_figures as model_figures

    figures, docs, notes = {}, [], []
    with pytest.MonkeyPatch.context() as mp:
        for module in (curves, model_figures):
            real = module.save

            def capture(fig, path, real=real):
                figures[path.name] = fig
                return real(fig, path)

            mp.setattr(module, "save", capture)
        real_build, real_kl = build.build_document, curves.kl_recon_per_epoch
        mp.setattr(build, "build_document",
                   lambda *a, **k: docs.append(real_build(*a, **k)) or docs[-1])  # fmt: skip
        mp.setattr(curves, "kl_recon_per_epoch",
                   lambda *a, **k: notes.append(real_kl(*a, **k)) or notes[-1])  # fmt: skip
        path = write_report(compare_dir)
    (doc,) = docs
    ((_, note),) = notes
    return path, doc, figures, note


@pytest.fixture(scope="module")
def report(written):
    """report.html's path and the Document `write_report` built (drawn once, not twice)."""
    path, doc, _, _ = written
    return path, doc


@pytest.mark.e2e
def test_every_figure_is_a_non_empty_png_referenced_by_the_html(compare_dir, report):
    path, doc = report
    html = path.read_text()
    md = (compare_dir / "report.md").read_text()
    figures = doc.figures()
    assert len(figures) >= 10
    for fig in figures:
        data = fig.file.read_bytes()
        assert data[:8] == PNG and len(data) > 2000, fig.file
        rel = fig.file.relative_to(compare_dir).as_posix()
        assert f'href="{rel}"' in html and f'data-file="{rel}"' in html, rel
        assert f"]({rel})" in md, rel
    on_disk = {p.name for p in (compare_dir / "figures").glob("*.png")}
    assert on_disk == {f.file.name for f in figures}


@pytest.mark.e2e
def test_the_report_has_every_figure_of_the_issue(report):
    _, doc = report
    names = {f.file.name for f in doc.figures()}
    expected = {
        "elbo_per_epoch.png", "elbo_all_families.png", "kl_recon_per_epoch.png",
        "reconstructions.png", "interpolation.png", "lambda_histogram.png",
        "steplogistic.png", "toy_posterior.png", "smoothstep.png", "gmm_autoencoder-gmm.png",
        "samples_steplogistic.png", "samples_concrete.png", "samples_bernoulli-sfe.png",
        "samples_autoencoder-gmm.png",
    }  # fmt: skip
    assert expected <= names, expected - names
    tables = [i.title for s in doc.sections for i in s.items if hasattr(i, "header")]
    for wanted in ("Final", "Table 5.1", "Reconstruction loss"):
        assert any(wanted in t for t in tables), wanted


@pytest.mark.e2e
def test_html_is_self_contained(report):
    path, doc = report
    html = path.read_text()
    # every image is embedded; nothing is fetched from the network
    assert len(re.findall(r'src="data:image/png;base64,', html)) == len(doc.figures())
    assert not re.search(r'(src|href)="(https?:)?//', html)


@pytest.mark.e2e
def test_final_table_labels_what_is_a_bound(report):
    path, _ = report
    html = path.read_text()
    for phrase in (
        "NOT a bound",
        "lower bound on log p(x)",
        "discrete",
        "bernoulli-elbo (not a bound)",
    ):
        assert phrase in html, phrase
    for column in ("own ELBO", "Bernoulli ELBO", "discrete ELBO", "exact log p(x)", "IWAE",
                   "sample FD", "s / epoch"):  # fmt: skip
        assert f"<th>{column}" in html, column


@pytest.mark.e2e
def test_report_of_a_single_run_and_regeneration(compare_dir):
    run = compare_dir / "bernoulli-sfe"
    first = write_report(run, theory=False)
    names = sorted(p.name for p in (run / "figures").glob("*.png"))
    assert "reconstructions.png" in names and "lambda_histogram.png" in names
    again = write_report(run, theory=False)
    assert again == first and sorted(p.name for p in (run / "figures").glob("*.png")) == names


def test_report_of_a_directory_without_runs_is_bad_input(tmp_path):
    from binaryvae.errors import BadInput

    with pytest.raises(BadInput, match="no run directories"):
        write_report(tmp_path)


def test_theory_figures_are_drawn_once_per_process_and_equal_a_fresh_drawing(tmp_path,
                                                                              monkeypatch):
    """The run-independent theory figures: the second report of a process gets the first's PNG
    bytes without drawing (matplotlib is most of a small report's time), and those bytes are
    what drawing them afresh gives."""
    import binaryvae.report.theory_figures as tf

    monkeypatch.setattr(tf, "_DRAWN", {})
    calls = []
    for name in ("steplogistic_figure", "toy_posterior_figure", "smoothstep_figure"):
        real = getattr(tf, name)
        monkeypatch.setattr(tf, name, lambda path, real=real: calls.append(path.name) or real(path))
    folders = [tmp_path / d for d in ("first", "second", "fresh")]
    for folder in folders:
        folder.mkdir()
    first, _ = tf.theory_items(folders[0])
    assert sorted(calls) == ["smoothstep.png", "steplogistic.png", "toy_posterior.png"]
    second, _ = tf.theory_items(folders[1])
    assert len(calls) == 3  # nothing drawn again
    monkeypatch.setattr(tf, "_DRAWN", {})
    tf.theory_items(folders[2])
    assert len(calls) == 6
    for name in ("smoothstep.png", "steplogistic.png", "toy_posterior.png"):
        drawn = (folders[2] / name).read_bytes()
        assert drawn[:8] == PNG
        assert (folders[0] / name).read_bytes() == drawn == (folders[1] / name).read_bytes()
    # the captions (which quote the figures' data) are the same
    assert [getattr(i, "caption", None) for i in first] == [getattr(i, "caption", None)
                                                            for i in second]


def test_tile_lays_images_out_in_rows():
    import numpy as np

    images = np.ones((5, 4))  # five 2x2 white images
    canvas = tile(images, (2, 2), ncols=3, pad=1)
    assert canvas.shape == (2 * 3 + 1, 3 * 3 + 1)
    assert canvas[1:3, 1:3].min() == 1.0 and canvas[0, 0] == 0.5


def _md_cells(line: str) -> list[str]:
    """Cells of one Markdown table row, split on pipes that are not escaped (GFM's rule)."""
    inner = line.strip()
    assert inner.startswith("|") and inner.endswith("|") and not inner.endswith("\\|"), line
    return re.split(r"(?<!\\)\|", inner[1:-1])


@pytest.mark.e2e
def test_every_markdown_table_has_as_many_cells_per_row_as_header(compare_dir, report):
    md = (compare_dir / "report.md").read_text().splitlines()
    tables = 0
    for i, line in enumerate(md):
        if re.fullmatch(r"\|(---\|)+", line.strip()):
            tables += 1
            width = len(_md_cells(md[i - 1]))
            assert len(_md_cells(line)) == width, md[i - 1]
            j = i + 1
            while j < len(md) and md[j].startswith("|"):
                assert len(_md_cells(md[j])) == width, md[j]
                j += 1
    assert tables >= 3  # final numbers, Table 5.1, Table 5.2
    # Table 5.1's header names KL(p || q): the pipes are escaped, not cell borders
    assert "KL(Logistic(mu,1) \\|\\| Logistic(0,1))" in "\n".join(md)


@pytest.mark.e2e
def test_html_renders_code_spans_not_backticks(report):
    path, _ = report
    html = path.read_text()
    body = re.sub(r'src="data:[^"]*"', "", html)
    assert "`" not in body
    assert "<code>binaryvae report DIR</code>" in html


# ---------------------------------------------------------------- labels that say what is true


def _lines(log: str, run: str) -> list[str]:
    return [line for line in log.splitlines() if line.startswith(f"{run} epoch")]


@pytest.mark.e2e
def test_compare_log_names_what_trained_each_run(compare_run):
    _, log = compare_run
    assert "== autoencoder-gmm (reconstruction only (autoencoder: no KL, not a bound))" in log
    assert "== concrete (bernoulli-elbo (not a bound))" in log
    assert "== bernoulli-sfe (elbo)" in log
    ae, concrete, sfe = (_lines(log, r) for r in ("autoencoder-gmm", "concrete", "bernoulli-sfe"))
    assert len(ae) == len(concrete) == len(sfe) == 2
    for line in ae:  # its loss is the reconstruction term; its test field shows it
        assert "train recon " in line and "train elbo" not in line and "test recon " in line
    for line in concrete:
        assert "train bernoulli-elbo " in line and "train elbo" not in line
    for line in sfe:
        assert "train elbo " in line


@pytest.mark.e2e
def test_compare_json_and_summaries_name_what_trained_each_run(compare_dir):
    listing = json.loads((compare_dir / "compare.json").read_text())
    assert listing["families"] == [
        "steplogistic:elbo", "concrete:bernoulli-elbo", "bernoulli-sfe:elbo", "autoencoder-gmm",
        "gaussian:elbo",
    ]  # fmt: skip
    assert parse_families(listing["families"]) == parse_families(FAMILIES)  # it round-trips
    trained_on = listing["trained_on"]
    assert trained_on["autoencoder-gmm"].startswith("reconstruction only")
    assert trained_on["concrete"] == "bernoulli-elbo (not a bound)"
    assert trained_on["bernoulli-sfe"] == "elbo"
    for name, label in trained_on.items():
        summary = json.loads((compare_dir / name / "summary.json").read_text())
        assert summary["objective_label"] == label
    ae = json.loads((compare_dir / "autoencoder-gmm" / "summary.json").read_text())
    assert ae["objective_is_bound"] is False and ae["has_likelihood"] is False


@pytest.fixture(scope="module")
def drawn(compare_dir, written):
    """Every figure the report drew, as matplotlib Figures (captured at save time while
    `write_report` drew them), the runs' records and the KL panel's left-out note."""
    from binaryvae.report.collect import collect_runs

    _, _, figures, note = written
    return figures, collect_runs(compare_dir), note


def _titles(fig) -> list[str]:
    axes = [ax for ax in fig.get_axes() if ax.get_visible()]
    return [ax.get_title() for ax in axes]


@pytest.mark.e2e
def test_bound_panels_name_the_objective_of_each_run(drawn):
    figures, records, _ = drawn
    titles = _titles(figures["elbo_per_epoch.png"])
    by_run = {t.split("\n")[0]: " ".join(t.split("\n")[1:]) for t in titles if t}
    assert by_run["bernoulli-sfe"] == "trained on: ELBO of the binary model (no relaxation)"
    assert "relaxed" not in by_run["bernoulli-sfe"]
    assert (
        "Bernoulli ELBO with relaxed samples (not a bound)" in by_run["concrete (bernoulli-elbo)"]
    )
    assert "not a bound" in by_run["autoencoder-gmm"] and "reconstruction" in by_run[
        "autoencoder-gmm"]  # fmt: skip
    assert "Normal-latent" in by_run["gaussian"]


@pytest.mark.e2e
def test_relaxed_elbo_of_a_bernoulli_elbo_run_gets_its_own_axis(drawn):
    """Fig. 4.8's panel: the Bernoulli ELBO (trained on), the discrete ELBO and the exact
    log p(x) share the panel and its scale; the relaxed ELBO (about 120 nats lower after
    training) is drawn on separate axes, so it cannot stretch theirs."""
    figures, records, _ = drawn
    fig = figures["elbo_per_epoch.png"]
    concrete = next(r for r in records if r.name == "concrete")
    columns = ("test_bernoulli_elbo", "test_discrete_elbo", "test_log_px_exact")
    main = next(ax for ax in fig.get_axes() if ax.get_title().split(" ")[0] == "concrete")
    assert [list(line.get_ydata()) for line in main.get_lines()] == [
        concrete.column(c)[1] for c in columns
    ]
    values = [v for c in columns for v in concrete.column(c)[1]]
    lo, hi = main.get_ylim()
    assert lo <= min(values) and hi >= max(values) and hi - lo < 1.2 * (max(values) - min(values))
    own = [ax for ax in fig.get_axes() if ax.get_ylabel() == "relaxed\nELBO"]
    assert len(own) == 1  # one Bernoulli-ELBO run here
    assert [list(line.get_ydata()) for line in own[0].get_lines()] == [
        concrete.column("test_relaxed_elbo")[1]
    ]


@pytest.mark.e2e
def test_epoch_axes_have_integer_ticks_and_units(drawn):
    figures, *_ = drawn
    for name in ("elbo_per_epoch.png", "elbo_all_families.png", "kl_recon_per_epoch.png"):
        for ax in figures[name].get_axes():
            if not ax.get_visible() or not ax.get_lines():
                continue
            if ax.get_xlabel():
                assert ax.get_xlabel() == "epoch"
                lo, hi = ax.get_xlim()
                ticks = [t for t in ax.get_xticks() if lo <= t <= hi]
                assert ticks and all(float(t).is_integer() for t in ticks), (name, ticks)
            label = ax.get_ylabel() or " ".join(
                other.get_ylabel() for other in ax.get_shared_y_axes().get_siblings(ax)
            )  # a panel sharing its y axis is labelled by its neighbour
            assert "nats" in label or label == "relaxed\nELBO", (name, label)


@pytest.mark.e2e
def test_kl_panel_leaves_out_the_autoencoder_and_the_untrained_relaxed_kl(drawn):
    figures, records, note = drawn
    ax_kl = figures["kl_recon_per_epoch.png"].get_axes()[0]
    trained_on_own_kl = [r for r in records if r.config.objective == "elbo" and r.has_likelihood]
    assert {r.name for r in trained_on_own_kl} == {"steplogistic", "bernoulli-sfe", "gaussian"}
    assert len(ax_kl.get_lines()) == len(trained_on_own_kl)
    for line in ax_kl.get_lines():
        assert max(line.get_ydata()) > 0  # no flat KL of 0 (the autoencoder has none)
    assert note.startswith("The family's own KL of runs trained on the Bernoulli ELBO")
    assert "concrete (bernoulli-elbo)" in note


@pytest.mark.e2e
def test_reconstruction_and_sample_titles_say_what_is_decoded(drawn):
    figures, *_ = drawn
    rows = _titles(figures["reconstructions.png"])
    def run_of(title: str) -> str:  # a row title reads "RUN: what is decoded"
        return title.split(":")[0].split(" ")[0]

    ae = [t for t in rows if run_of(t) == "autoencoder-gmm"]
    assert ae == ["autoencoder-gmm: its deterministic code decoded"]
    assert not any("posterior" in t for t in ae)
    assert [t for t in rows if run_of(t) == "bernoulli-sfe"] == [
        "bernoulli-sfe: bits b ~ q(b|x) decoded"
    ]
    assert len([t for t in rows if run_of(t) == "concrete"]) == 2  # relaxed sample + hard bits
    ae_samples = figures["samples_autoencoder-gmm.png"]._suptitle.get_text()
    assert "Gaussian mixture fitted to the training codes" in ae_samples
    assert "prior" not in ae_samples
    assert "Bernoulli(1/2) prior" in figures["samples_concrete.png"]._suptitle.get_text()
    assert "N(0, I)" in figures["samples_gaussian.png"]._suptitle.get_text()


@pytest.mark.e2e
def test_captions_cite_only_the_seed_figures_the_runs_reproduce(compare_dir, report):
    md = (compare_dir / "report.md").read_text()
    # a gaussian run on an MNIST subset: the continuous-model figures are reproduced
    reproduced = (
        "diss. Fig. 3.2", "diss. Fig. A.2", "notes Figs 1-2", "diss. Fig. 3.6",
        "notes Figs 10-11", "notes Figs 4-5", "notes Figs 6-9", "diss. Fig. A.3",
    )  # fmt: skip
    for cited in reproduced:
        assert f"Reproduces {cited} (" in md, cited
    # no logistic run, no Fashion-MNIST: these are not
    for absent in ("Fig. 5.6", "Fig. 4.5", "Fig. 4.6", "Fig. 4.7", "Fig. 4.8", "Fig. 5.5",
                   "Fig. A.5", "Table 5.2", "Fig. 5.2"):  # fmt: skip
        assert f"Reproduces diss. {absent}" not in md, absent
    assert "first two '4's of the test split" in md and "two '4's of dissertation" not in md
    # each citation says how it differs: the seed figure's setting and this run's
    assert "there 2-dimensional codes" in md and "here 4 dimensions, 2 epochs, mnist-mini" in md


@pytest.mark.e2e
def test_capacity_of_binary_and_continuous_codes_is_stated(report):
    path, _ = report
    html = path.read_text()
    assert "an 4-bit model has 2^4 = 16 codes" in html or "a 4-bit model has 2^4 = 16 codes" in html
    assert "autoencoder-gmm (4 continuous dimensions)" in html


@pytest.mark.parametrize("epochs", [[1], [1, 2], list(range(1, 16))])
def test_epoch_axis_ticks_are_whole_epochs(epochs):
    """One epoch used to get ticks 0.96-1.04 (matplotlib's default locator)."""
    from binaryvae.report.style import epoch_axis, new_figure

    fig = new_figure(4, 3)
    ax = fig.subplots()
    ax.plot(epochs, [float(e) for e in epochs])
    epoch_axis(ax, epochs)
    fig.canvas.draw()
    lo, hi = ax.get_xlim()
    ticks = [t for t in ax.get_xticks() if lo <= t <= hi]
    assert ticks and all(float(t).is_integer() for t in ticks), ticks
    assert lo < min(epochs) and hi > max(epochs)


@pytest.mark.e2e
def test_a_compare_report_shows_the_gradient_variance_of_each_run(compare_dir, report, tmp_path):
    """compare measures gradients by default (`COMPARE_GRADIENTS`; the fixture's compare every 8
    steps); the report draws one variance line per run that has a likelihood, from
    metrics.jsonl, and the bias where the exact gradient is known (binary runs, 4 bits)."""
    import binaryvae.report.gradients as gradients
    from binaryvae.config import COMPARE_GRADIENTS
    from binaryvae.report.collect import collect_runs

    assert COMPARE_GRADIENTS["grad_every"] > 0
    assert "Gradient variance and bias during training" in (compare_dir / "report.md").read_text()
    captured = {}
    real = gradients.save
    records = collect_runs(compare_dir)
    label = {r.name: r.label for r in records}
    try:
        gradients.save = lambda fig, path: captured.setdefault("fig", fig) and real(fig, path)
        gradients.gradient_figure(records, tmp_path / "g.png")
    finally:
        gradients.save = real
    ax_var, ax_bias = captured["fig"].get_axes()[:2]
    assert ax_var.get_yscale() == "log"
    runs = json.loads((compare_dir / "compare.json").read_text())["runs"]
    measured, exact = [], 0
    for name in runs:
        text = (compare_dir / name / "metrics.jsonl").read_text()
        rows = [json.loads(r) for r in text.splitlines()]
        if "gradient" not in rows[0]:
            continue
        measured.append((name, [g["grad_var"] for row in rows for g in row["gradient"]]))
        exact += rows[0]["gradient"][0].get("grad_bias_norm") is not None
    assert [n for n, _ in measured] == [n for n in runs if n not in ("autoencoder-gmm",)]
    lines = ax_var.get_lines()
    assert [line.get_label() for line in lines] == [label[n] for n, _ in measured]
    for line, (_, want) in zip(lines, measured, strict=True):
        assert list(line.get_ydata()) == want and len(want) == 4  # steps 8, 16, 24, 32
    # per run: its bias line (labelled) and its noise (dotted); markers are unlabelled lines
    named = [line for line in ax_bias.get_lines() if not line.get_label().startswith("_")]
    dotted = [line for line in ax_bias.get_lines() if line.get_linestyle() == ":"]
    assert exact == 3 and len(named) == exact and len(dotted) == exact
