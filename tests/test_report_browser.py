"""report.html opened in a real headless Chromium: every image loads (natural width > 0), every
linked figure file loads, the page logs no console error, and every table row has as many cells
as its header.

Runs under the `browser` marker (`pytest -m browser`), which the default run leaves out. It needs
the `browser` extra (`pip install -e '.[browser]'`, i.e. Playwright's Python package) and a
system Chromium (`apt-get install chromium`; another binary with $BINARYVAE_CHROMIUM); it skips
with a message naming what is missing. Playwright never downloads a browser here: it drives the
system one through ``executable_path``.
"""

from __future__ import annotations

import os
import shutil

import pytest

from _runs_helpers import tiny_config

pytestmark = pytest.mark.browser

# Chromium's flags for a sandboxed, offline, headless run
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]


def _chromium() -> str:
    """$BINARYVAE_CHROMIUM, else the first Chromium on PATH; skips the module if none."""
    named = os.environ.get("BINARYVAE_CHROMIUM")
    if named:
        if not os.access(named, os.X_OK):
            pytest.skip(f"$BINARYVAE_CHROMIUM={named} is not an executable file")
        return named
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if found := shutil.which(name):
            return found
    pytest.skip("no Chromium found: apt-get install chromium, or set $BINARYVAE_CHROMIUM")


@pytest.fixture(scope="module")
def page_report(tmp_path_factory):
    """A report of a relaxed, a Bernoulli-ELBO, an autoencoder and a Normal-latent run, as
    Chromium loaded it: (the checks' results, console errors, page errors)."""
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="playwright is not installed: pip install -e '.[browser]'"
    )
    executable = _chromium()
    from binaryvae.report import write_report
    from binaryvae.runs import compare, parse_families

    out = tmp_path_factory.mktemp("browser") / "cmp"
    families = parse_families("steplogistic,concrete:bernoulli-elbo,autoencoder-gmm,gaussian")
    compare(families, tiny_config(epochs=1, gmm_components=3), out, progress=False)
    html = write_report(out)
    console, errors = [], []
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.on("console", lambda m: console.append(m) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(html.resolve().as_uri(), wait_until="load")
            checks = page.evaluate(_CHECKS)
        finally:
            browser.close()
    return checks, [m.text for m in console], errors


# Runs in the page: the state of every <img>, of every linked figure file loaded as an image,
# and the cell counts of every table.
_CHECKS = """async () => {
  const images = [...document.images].map(img => ({
    alt: img.alt, complete: img.complete, width: img.naturalWidth, height: img.naturalHeight}));
  const links = [...new Set([...document.querySelectorAll('figure a[href]')]
    .map(a => a.getAttribute('href')))];
  const linked = await Promise.all(links.map(href => new Promise(done => {
    const img = new Image();
    img.onload = () => done({href, width: img.naturalWidth});
    img.onerror = () => done({href, width: 0});
    img.src = href;
  })));
  const tables = [...document.querySelectorAll('table')].map(t => {
    const rows = [...t.querySelectorAll('tr')];
    return {
      title: (t.previousElementSibling || {}).textContent || '',
      header: rows.length ? rows[0].querySelectorAll('th').length : 0,
      rows: rows.slice(1).map(r => r.querySelectorAll('td, th').length)};
  });
  return {images, linked, tables};
}"""


def test_every_image_loads(page_report):
    checks, _, _ = page_report
    images = checks["images"]
    assert len(images) >= 10
    broken = [i["alt"] for i in images if not (i["complete"] and i["width"] > 0)]
    assert broken == []


def test_every_linked_figure_file_loads(page_report):
    checks, _, _ = page_report
    linked = checks["linked"]
    assert len(linked) == len(checks["images"])
    assert [x["href"] for x in linked if x["width"] <= 0] == []


def test_no_console_or_page_errors(page_report):
    _, console, errors = page_report
    assert console == [] and errors == []


def test_every_table_row_has_a_cell_per_header(page_report):
    checks, _, _ = page_report
    tables = checks["tables"]
    assert len(tables) >= 3  # final numbers, reconstruction losses, Table 5.1
    for table in tables:
        assert table["header"] > 0 and table["rows"], table["title"]
        assert set(table["rows"]) == {table["header"]}, table["title"]
