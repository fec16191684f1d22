"""binaryvae.report: every figure renders from tiny runs, is a non-empty PNG, and report.html
(self-contained, offline) references them all."""

from __future__ import annotations

import re

import pytest

from _runs_helpers import tiny_config
from binaryvae.report import build_document, write_report
from binaryvae.report.style import tile
from binaryvae.runs import compare, parse_families

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def compare_dir(tmp_path_factory):
    """A relaxed family, an exact-Bernoulli family and the autoencoder + GMM, one epoch each."""
    out = tmp_path_factory.mktemp("report") / "cmp"
    base = tiny_config(epochs=2, gmm_components=3)
    compare(parse_families("steplogistic,concrete:bernoulli-elbo,bernoulli-sfe,autoencoder-gmm"),
            base, out, progress=False)  # fmt: skip
    return out


@pytest.fixture(scope="module")
def report(compare_dir):
    path = write_report(compare_dir)
    return path, build_document(compare_dir)


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


def test_html_is_self_contained(report):
    path, doc = report
    html = path.read_text()
    # every image is embedded; nothing is fetched from the network
    assert len(re.findall(r'src="data:image/png;base64,', html)) == len(doc.figures())
    assert not re.search(r'(src|href)="(https?:)?//', html)


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
    for column in ("relaxed ELBO", "Bernoulli ELBO", "discrete ELBO", "exact log p(x)", "IWAE",
                   "sample FD", "s / epoch"):  # fmt: skip
        assert f"<th>{column}" in html, column


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


def test_html_renders_code_spans_not_backticks(report):
    path, _ = report
    html = path.read_text()
    body = re.sub(r'src="data:[^"]*"', "", html)
    assert "`" not in body
    assert "<code>binaryvae report DIR</code>" in html
