"""Assemble the report of a run or compare directory from its run directories only."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import torch

from binaryvae.errors import BadInput
from binaryvae.report import curves, model_figures, theory_figures
from binaryvae.report.collect import RunRecord, collect_runs
from binaryvae.report.document import Document, FigureItem, Section, TableItem, TextItem, fmt
from binaryvae.report.model_figures import Loaded

__all__ = ["build_document", "final_table", "load_for_report", "write_report"]


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-") or "run"


def final_table(records: list[RunRecord]) -> TableItem:
    """Every run's final numbers (summary.json) with the labels of what each one bounds."""
    header = [
        "run", "trained on", "relaxed ELBO", "Bernoulli ELBO", "discrete ELBO", "exact log p(x)",
        "IWAE (k)", "sample FD", "s / epoch", "epochs",
    ]  # fmt: skip
    rows = []
    for r in records:
        s = r.summary
        iwae = fmt(s.get("test_iwae"))
        if s.get("iwae_k") is not None and iwae != "—":
            iwae += f" ({s['iwae_k']})"
        relaxed = fmt(s.get("test_relaxed_elbo")) if r.has_likelihood else "—"
        rows.append([
            r.name, s.get("objective_label", r.config.objective_label()),
            relaxed, fmt(s.get("test_bernoulli_elbo")),
            fmt(s.get("test_discrete_elbo")), fmt(s.get("test_log_px_exact")), iwae,
            fmt(s.get("sample_fd")), fmt(s.get("seconds_per_epoch")), fmt(s.get("epochs"), 0),
        ])  # fmt: skip
    caption = (
        "Nats per test image, higher is better (sample FD: lower is better). Relaxed ELBO: a "
        "lower bound on log p(x) of the family's relaxed (continuous-latent) model. Bernoulli "
        "ELBO: relaxed samples plugged into Bernoulli log-probabilities (diss. eq. 4.11-4.12), "
        "NOT a bound. Discrete ELBO: a lower bound on log p(x) of the binary-latent model the "
        "family stands for (hard bits b ~ Bernoulli(lambda(x))). IWAE: importance-weighted bound "
        "of the same discrete model (k samples). Exact log p(x): all 2^n codes enumerated. "
        "The autoencoder + GMM has no likelihood: only its sample FD is comparable. "
        "'not a bound' in 'trained on' marks objectives that are not lower bounds. "
        "s / epoch: the training loop alone. — : not applicable or not computed."
    )
    return TableItem("Final numbers", header, rows, caption)


def _ranking(records: list[RunRecord]) -> str:
    """One sentence ranking the runs by the best valid measure of the discrete model they all
    have: exact log p(x) if every run has it, else the discrete ELBO."""
    measures = (("test_log_px_exact", "exact log p(x)"), ("test_discrete_elbo", "discrete ELBO"))
    for key, what in measures:
        scored = [(r.summary.get(key), r.name) for r in records if r.has_likelihood]
        if len(scored) > 1 and all(isinstance(v, int | float) for v, _ in scored):
            order = sorted(scored, reverse=True)
            text = " > ".join(f"{name} ({v:.2f})" for v, name in order)
            return f"Ranked by {what} of the discrete model (test set, nats per image): {text}."
    return ""


def load_for_report(record: RunRecord) -> Loaded:
    """Rebuild a run's model from its checkpoint, with its test split (labels included)."""
    from binaryvae.runs import load_run, test_data

    prepared = load_run(record.path)
    return Loaded(
        record=record,
        model=prepared.model,
        test_x=test_data(prepared),
        test_y=getattr(prepared.dataset, "test_y", None),
        image_shape=getattr(prepared.dataset, "image_shape", None),
    )


def _curve_section(records: list[RunRecord], figs: Path) -> Section:
    sec = Section("Bounds, KL and reconstruction per epoch")
    sec.items.append(FigureItem(
        curves.elbo_per_family(records, figs / "elbo_per_epoch.png"),
        "Test bounds per epoch, per family",
        "The bound each model was trained with (relaxed ELBO, or the Bernoulli ELBO, which is not "
        "a bound) against the discrete ELBO of the binary model it stands for and, where the "
        "2^n codes can be enumerated, the exact log p(x) (dissertation Figs 4.6, 4.7, 4.8, A.5).",
    ))  # fmt: skip
    sec.items.append(FigureItem(
        curves.elbo_all_families(records, figs / "elbo_all_families.png"),
        "All families: trained objective vs discrete bound",
        "The comparison of dissertation Fig. 5.5, with each family's discrete bound beside it "
        "(models without a likelihood, i.e. the autoencoder, are left out).",
    ))  # fmt: skip
    sec.items.append(FigureItem(
        curves.kl_recon_per_epoch(records, figs / "kl_recon_per_epoch.png"),
        "KL and reconstruction terms per epoch",
        "The two terms of each family's own ELBO on the test split (notes Figs 10-11).",
    ))  # fmt: skip
    return sec


def _model_sections(doc: Document, records: list[RunRecord], figs: Path) -> list[Section]:
    usable = [r for r in records if r.has_checkpoint]
    for r in records:
        if not r.has_checkpoint:
            doc.omitted.append(f"{r.name}: no checkpoint, so no reconstructions or samples")
    loaded = []
    for r in usable:
        try:
            loaded.append(load_for_report(r))
        except BadInput as e:
            doc.omitted.append(f"{r.name}: model could not be rebuilt ({e})")
    loaded = [lr for lr in loaded if lr.image_shape is not None]
    if not loaded:
        doc.omitted.append("image figures: no run on an image dataset with a checkpoint")
        return []
    for lr in loaded:
        lr.model.eval()
    index = model_figures.pick_test_images(loaded[0].test_y)
    rec = Section("Reconstructions")
    rec.items.append(FigureItem(
        model_figures.reconstruction_figure(loaded, index, figs / "reconstructions.png"),
        "Reconstructions of the same test images by every family",
        "Top row: test images (the first two are the two '4's of dissertation Fig. 5.6). Per "
        "family: decoder mean at one relaxed posterior sample and, for binary families, at hard "
        "bits b ~ Bernoulli(lambda(x)) (Figs 3.2, 4.5, 5.6, A.2, A.4).",
    ))  # fmt: skip
    table = model_figures.reconstruction_table(loaded, index)
    rec.items.append(TableItem(
        "Table 5.2: reconstruction loss of the two '4's",
        ["run", "first '4'", "second '4'", "first '4', hard bits", "second '4', hard bits"],
        [[t["run"], *(fmt(v) for v in t["relaxed"] + t["discrete"])] for t in table],
        "-log p(x | decoder input) in nats, averaged over 5 posterior draws (lower is better): "
        "the family's own decoder input (a relaxed sample, as in the dissertation; the code for "
        "the autoencoder), and hard bits b ~ Bernoulli(lambda(x)) for binary families.",
    ))  # fmt: skip
    gen = Section("Generated samples and interpolation")
    for lr in loaded:
        gen.items.append(FigureItem(
            model_figures.samples_figure(lr, figs / f"samples_{_slug(lr.record.name)}.png"),
            f"Samples from {lr.record.label}",
            "Decoded prior codes shown as pixel probabilities, one Bernoulli draw per pixel, and "
            "probabilities thresholded at 0.5 (Figs 3.6, A.3; notes Figs 1-2, 4-5).",
        ))  # fmt: skip
    ys = loaded[0].test_y
    pair = (index[0], index[2] if len(index) > 2 else index[-1])
    gen.items.append(FigureItem(
        model_figures.interpolation_figure(loaded, pair, figs / "interpolation.png"),
        "Latent interpolation between two test images",
        "Decoder mean along the straight line between the two images' deterministic codes "
        "(lambda(x) decoded as soft bits for binary families; mean or code otherwise), "
        f"first and last columns the images themselves{'' if ys is None else ''} (Fig. 1.3).",
    ))  # fmt: skip
    codes = Section("Codes")
    hist = model_figures.lambda_histogram(loaded, figs / "lambda_histogram.png")
    if hist is not None:
        codes.items.append(FigureItem(
            hist, "Histogram of lambda and posterior means",
            "lambda = P(bit = 1 | x) for 32 test images x n bits, 45 bins, and the posterior "
            "means where the family has them (dissertation Fig. 5.2).",
        ))  # fmt: skip
    else:
        doc.omitted.append("lambda histogram: no binary-latent family among the runs")
    gmm = [lr for lr in loaded if lr.record.config.family == "autoencoder-gmm"]
    for lr in gmm:
        path, how = model_figures.gmm_figure(lr, figs / f"gmm_{_slug(lr.record.name)}.png")
        codes.items.append(FigureItem(
            path, f"Autoencoder + GMM codes ({lr.record.name})",
            f"Test codes coloured by label, their density, samples of the fitted Gaussian "
            f"mixture and decoded mixture samples (notes Figs 6-9); {how}.",
        ))  # fmt: skip
    if not gmm:
        doc.omitted.append("autoencoder + GMM figures: no autoencoder-gmm run")
    return [rec, gen, codes]


def _theory_section(doc: Document, figs: Path) -> Section:
    sec = Section("Distributions and theory")
    items, omitted = theory_figures.theory_items(figs)
    sec.items += items
    doc.omitted += omitted
    return sec


def build_document(path: Path, theory: bool = True) -> Document:
    records = collect_runs(path)
    figs = path / "figures"
    figs.mkdir(parents=True, exist_ok=True)
    for stale in figs.glob("*.png"):  # figures/ is the report's own: no leftovers of old runs
        stale.unlink()
    c = records[0].config
    intro = (
        f"{len(records)} run(s) on {c.dataset}, {c.latent_dim}-bit latent codes, seed {c.seed}, "
        f"hidden {list(c.hidden)}, batch {c.batch_size}, lr {c.lr:g}, beta {c.beta:g}. "
        "Every model is also scored as the discrete (binary-latent) model it stands for. "
        "Regenerate with `binaryvae report DIR`."
    )
    doc = Document(f"binaryvae report: {path.resolve().name}", intro)
    if any(
        dataclasses.replace(r.config, family=c.family, objective=c.objective, seed=c.seed)
        != dataclasses.replace(c)
        for r in records[1:]
    ):
        doc.intro += " Note: the runs differ in more than family/objective."
    summary = Section("Summary")
    summary.items.append(final_table(records))
    ranking = _ranking(records)
    if ranking:
        summary.items.append(TextItem(ranking))
    incomplete = [r.name for r in records if not r.summary]
    if incomplete:
        summary.items.append(TextItem(
            "No summary.json (unfinished or stopped) for: " + ", ".join(incomplete) + "."
        ))  # fmt: skip
    doc.sections.append(summary)
    doc.sections.append(_curve_section(records, figs))
    with torch.random.fork_rng():
        doc.sections += _model_sections(doc, records, figs)
        if theory:
            doc.sections.append(_theory_section(doc, figs))
    return doc


def write_report(path: str | Path, theory: bool = True) -> Path:
    """Write ``path``/figures/*.png, report.html and report.md; return report.html's path."""
    path = Path(path)
    # a sweep (or a compare of replica groups) has its own report: binaryvae.report.sweep
    from binaryvae.report.sweep import is_sweep_dir, write_sweep_report

    if is_sweep_dir(path):
        return write_sweep_report(path)
    doc = build_document(path, theory=theory)
    (path / "report.html").write_text(doc.to_html(path))
    (path / "report.md").write_text(doc.to_markdown(path))
    return path / "report.html"
