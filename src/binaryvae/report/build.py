"""Assemble the report of a run or compare directory from its run directories only."""

from __future__ import annotations

import dataclasses
import functools
import re
from pathlib import Path

import torch

from binaryvae.errors import BadInput
from binaryvae.evaluation.summary import own_elbo
from binaryvae.report import captions, curves, gradients, model_figures, style, theory_figures
from binaryvae.report.collect import RunRecord, collect_runs
from binaryvae.report.document import (
    Document,
    FigureItem,
    Section,
    TableItem,
    TextItem,
    fmt,
    fmt_mean_se,
)
from binaryvae.report.model_figures import Loaded
from binaryvae.storage import atomic_write_text, refuse_links, reset_folder

__all__ = ["build_document", "final_table", "load_for_report", "write_report"]


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-") or "run"


def final_table(records: list[RunRecord]) -> TableItem:
    """Every run's final numbers (summary.json) with the labels of what each one bounds."""
    header = [
        "run", "trained on", "own ELBO", "Bernoulli ELBO", "discrete ELBO", "exact log p(x)",
        "IWAE (k)", "sample FD", "s / epoch", "epochs",
    ]  # fmt: skip
    rows = [[r.name, *_numbers(r.summary, r)] for r in records]
    rows += _mean_rows(records)
    caption = (
        "Nats per test image, higher is better (sample FD: lower is better). Own ELBO: the "
        "family's own bound: a lower bound on log p(x) of the relaxed (continuous-latent) model "
        "for the relaxed families, of the binary model itself for the exact-Bernoulli families "
        "(bernoulli-*: no relaxation), of the Normal-latent model for gaussian. Bernoulli ELBO: "
        "relaxed samples plugged into Bernoulli log-probabilities (diss. eq. 4.11-4.12), NOT a "
        "bound. Discrete ELBO: a lower bound on log p(x) of the binary-latent model the family "
        "stands for (hard bits b ~ Bernoulli(lambda(x)), analytic KL). IWAE: importance-weighted "
        "bound with k samples, of the discrete model (of the Normal-latent model for gaussian). "
        "Exact log p(x): all 2^n codes enumerated. The autoencoder + GMM has no likelihood: only "
        "its sample FD is comparable. 'not a bound' in 'trained on' marks objectives that are "
        "not lower bounds. s / epoch: the training loop alone. — : not applicable or not "
        "computed."
    )
    if len(rows) > len(records):
        caption += (
            " Mean ± s.e.: over the seeds of one family and objective (replicas), the mean and "
            "the standard error of the mean (sample standard deviation / sqrt(n)); replicas "
            "trained together share one timing, stated once."
        )
    return TableItem("Final numbers", header, rows, caption)


def _numbers(s: dict, r: RunRecord) -> list[str]:
    """The number cells of one run's row of the final table."""
    iwae = fmt(s.get("test_iwae"))
    if s.get("iwae_k") is not None and iwae != "—":
        iwae += f" ({s['iwae_k']})"
    own = fmt(own_elbo(s)) if r.has_likelihood else "—"
    return [
        r.trained_on, own, fmt(s.get("test_bernoulli_elbo")), fmt(s.get("test_discrete_elbo")),
        fmt(s.get("test_log_px_exact")), iwae, fmt(s.get("sample_fd")),
        fmt(s.get("seconds_per_epoch")), fmt(s.get("epochs"), 0),
    ]  # fmt: skip


def _mean_rows(records: list[RunRecord]) -> list[list[str]]:
    """One "mean ± s.e." row per family and objective that has two or more finished seeds
    (the replicas of `train --seeds`), from their summary.json numbers."""
    groups: dict[str, list[RunRecord]] = {}
    for r in records:
        if r.summary:
            groups.setdefault(r.group, []).append(r)
    rows = []
    for group, members in groups.items():
        if len(members) < 2:
            continue
        n = len(members)
        first = members[0]

        def cell(values, digits=2, shared=""):
            return fmt_mean_se(values, digits, shared)

        own = [own_elbo(r.summary) for r in members] if first.has_likelihood else []
        iwae = cell([r.summary.get("test_iwae") for r in members])
        ks = {r.summary.get("iwae_k") for r in members}
        if len(ks) == 1 and None not in ks and iwae != "—":
            iwae += f" ({ks.pop()})"
        epochs = {r.summary.get("epochs") for r in members}
        rows.append([
            f"{group}: mean ± s.e. of {n} seeds", first.trained_on, cell(own),
            cell([r.summary.get("test_bernoulli_elbo") for r in members]),
            cell([r.summary.get("test_discrete_elbo") for r in members]),
            cell([r.summary.get("test_log_px_exact") for r in members]), iwae,
            cell([r.summary.get("sample_fd") for r in members]),
            cell([r.summary.get("seconds_per_epoch") for r in members], 2,
                 shared=f"one timing for the {n} seeds"),
            fmt(epochs.pop(), 0) if len(epochs) == 1 else "—",
        ])  # fmt: skip
    return rows


def _ranking(records: list[RunRecord]) -> str:
    """One sentence ranking the binary runs by the best valid measure of the discrete model
    they all have: exact log p(x) if every one has it, else the discrete ELBO."""
    binary = [r for r in records if r.binary]
    others = [r.name for r in records if not r.binary]
    measures = (("test_log_px_exact", "exact log p(x)"), ("test_discrete_elbo", "discrete ELBO"))
    for key, what in measures:
        scored = [(r.summary.get(key), r.name) for r in binary]
        if len(scored) > 1 and all(isinstance(v, int | float) for v, _ in scored):
            order = sorted(scored, reverse=True)
            text = " > ".join(f"{name} ({v:.2f})" for v, name in order)
            tail = f" ({', '.join(others)}: no binary model, not ranked)" if others else ""
            return (
                f"Binary-latent runs ranked by {what} of the discrete model (test set, nats per "
                f"image): {text}.{tail}"
            )
    return ""


def _has_fd(r: RunRecord) -> bool:
    return isinstance(r.summary.get("sample_fd"), int | float)


def _capacity_note(records: list[RunRecord]) -> str:
    """Sample FD puts models of different capacity side by side: say so, with the numbers."""
    binary = [r for r in records if r.binary and _has_fd(r)]
    continuous = [r for r in records if not r.binary and _has_fd(r)]
    if not binary or not continuous:
        return ""
    n = binary[0].config.latent_dim
    names = ", ".join(f"{r.name} ({r.config.latent_dim} continuous dimensions)" for r in continuous)
    return (
        f"Sample FD compares models of different capacity: {names} can generate any number of "
        f"distinct images, while an {n}-bit model has 2^{n} = {2**n:,} codes, so at most "
        f"{2**n:,} distinct decoded images (the 'probs' display; a Bernoulli draw per pixel "
        "only adds pixel noise). A lower FD for a continuous code does not say that the binary "
        "models are worse at the same capacity."
    )


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
    here = captions.setting_of(records)
    has = functools.partial(captions.has_runs, records)
    sec = Section("Bounds, KL and reconstruction per epoch")
    mnist = captions.is_mnist(here)  # the dissertation's chapter 4 and the notes use MNIST
    cited = []
    if mnist and has("logistic:elbo"):
        cited.append(("diss. Fig. 4.7", "the logistic panel"))
    if mnist and has("logistic:bernoulli-elbo"):
        cited.append(("diss. Fig. 4.8", "the logistic (bernoulli-elbo) panel"))
    text = " ".join(captions.cite(name, here, note=where) for name, where in cited)
    sec.items.append(FigureItem(
        curves.elbo_per_family(records, figs / "elbo_per_epoch.png"),
        "Test bounds per epoch, one panel per run",
        "Each run's objective it was trained on (its title names it: a relaxed ELBO, the "
        "Bernoulli ELBO, which is not a bound, the exact-Bernoulli families' own ELBO, or the "
        "autoencoder's reconstruction term) against the discrete ELBO of the binary model it "
        "stands for and, where the 2^n codes can be enumerated, its exact log p(x). "
        + captions.off_scale_sentence(records) + text,
    ))  # fmt: skip
    cited = []
    if mnist and has("logistic:elbo", "logistic:bernoulli-elbo"):
        cited.append("diss. Fig. 4.6")
    if here.dataset == "fashion-mnist":
        if has("logistic", "steplogistic", "concrete"):
            cited.append("diss. Fig. A.5")
    elif captions.is_mnist(here) and has("steplogistic:elbo", "logistic:elbo"):
        cited.append("diss. Fig. 5.5")
    text = captions.cite_all(((name, False) for name in cited), here)
    sec.items.append(FigureItem(
        curves.elbo_all_families(records, figs / "elbo_all_families.png"),
        "All runs: trained objective vs discrete bound",
        "Left: the objective each run was trained on; right: the discrete ELBO of the binary "
        "model each run stands for, the footing on which they compare (the autoencoder has no "
        "bound and is left out). " + text,
    ))  # fmt: skip
    kl_path, left_out = curves.kl_recon_per_epoch(records, figs / "kl_recon_per_epoch.png")
    text = ""
    if mnist and has("gaussian", "bernoulli-sfe"):
        text = captions.cite("notes Figs 10-11", here, note="the gaussian and bernoulli-sfe "
                             "curves; the Gaussian's latent is continuous")  # fmt: skip
    sec.items.append(FigureItem(
        kl_path, "KL and reconstruction terms per epoch",
        "The KL term of the ELBO each run was trained on, the Bernoulli KL of the binary model "
        "(binary runs), and the reconstruction term, on the test split. " + left_out + " "
        + text,
    ))  # fmt: skip
    if gradients.has_gradients(records):
        sec.items.append(FigureItem(
            gradients.gradient_figure(records, figs / "gradient_diagnostics.png"),
            "Gradient variance and bias during training",
            "Every few hundred steps, on a fixed batch of held-out test images, K estimates of "
            "the gradient of each run's training objective with respect to its encoder outputs "
            "(binaryvae.diagnostics): their variance per coordinate (log scale, as in Dong, "
            "Mnih & Tucker 2020, Fig. 5 right, whose estimators and network differ) and, for "
            "models of at most 12 bits, the distance of their mean from the exact gradient of "
            "the discrete ELBO, relative to that gradient's norm: the measured bias of "
            "straight-through, of each relaxation at its beta and of the Bernoulli ELBO. "
            "Dotted: the norm the mean's own noise gives (where an unbiased estimator sits); "
            "a filled marker where the bias test resolves a bias above it (z > 3).",
        ))  # fmt: skip
        by_beta = gradients.bias_vs_beta(records, figs / "gradient_bias_vs_beta.png")
        if by_beta is not None:
            sec.items.append(FigureItem(
                by_beta, "Gradient bias of the relaxations against beta",
                "The last measured bias of each relaxed run against the inverse temperature "
                "beta of its steep sigmoid.",
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
    here = captions.setting_of([lr.record for lr in loaded])
    has = functools.partial(captions.has_runs, [lr.record for lr in loaded])
    index = model_figures.pick_test_images(loaded[0].test_y)
    digits = captions.is_mnist(here) and loaded[0].test_y is not None
    fours = "the first two '4's of the test split" if digits else (
        "the first two test images labelled 4" if loaded[0].test_y is not None
        else "the first two test images"
    )  # fmt: skip
    rec = Section("Reconstructions")
    cited = []
    if digits and has("steplogistic", "logistic"):
        cited.append(captions.cite("diss. Fig. 5.6", here, note="the steplogistic and logistic "
                                   "rows, first two columns; the dissertation's two '4's are "
                                   "other images"))  # fmt: skip
    if digits and has("logistic"):
        cited.append(captions.cite("diss. Fig. 4.5", here, note="the logistic rows"))
    if digits and has("gaussian"):
        cited.append(
            captions.cite(
                "diss. Fig. 3.2",
                here,
                continuous=True,
                note="the gaussian row, with a Bernoulli likelihood",
            )
        )
        cited.append(captions.cite("diss. Fig. A.2", here, continuous=True,
                                   note="the gaussian row"))  # fmt: skip
    rec.items.append(FigureItem(
        model_figures.reconstruction_figure(loaded, index, figs / "reconstructions.png"),
        "Reconstructions of the same test images by every run",
        f"Top row: test images; the first two are {fours}. Each run's row decodes what its "
        "title says: one relaxed posterior sample (relaxed families), hard bits "
        "b ~ Bernoulli(lambda(x)) (the binary model; a second row for relaxed families, the only "
        "row for the exact-Bernoulli families), one Normal posterior sample (gaussian), or the "
        "autoencoder's deterministic code. " + " ".join(cited),
    ))  # fmt: skip
    table = model_figures.reconstruction_table(loaded, index)
    table_cite = ""
    if digits and has("steplogistic", "logistic"):
        table_cite = (
            " Reproduces diss. Table 5.2 (StepLogistic 201.7 / 134.0, Logistic 208.0 / 119.0 "
            "there: its own two '4's, 8 bits, 125 epochs, MNIST); here other images and budget."
        )
    rec.items.append(TableItem(
        ("Table 5.2: reconstruction" if table_cite else "Reconstruction") + f" loss of {fours}",
        ["run", "first image", "second image", "first, hard bits", "second, hard bits"],
        [[t["run"], *(fmt(v) for v in t["relaxed"] + t["discrete"])] for t in table],
        "-log p(x | decoder input) in nats, averaged over 5 posterior draws (lower is better): "
        "the family's own decoder input (a relaxed sample, as in the dissertation; the code for "
        "the autoencoder), and hard bits b ~ Bernoulli(lambda(x)) for binary families."
        + table_cite,
    ))  # fmt: skip
    gen = Section("Generated samples and interpolation")
    for lr in loaded:
        gen.items.append(FigureItem(
            model_figures.samples_figure(lr, figs / f"samples_{_slug(lr.record.name)}.png"),
            f"Samples of {lr.record.label}",
            _samples_caption(lr, here),
        ))  # fmt: skip
    pair = (index[0], index[2] if len(index) > 2 else index[-1])
    interp_cite = captions.cite("diss. Fig. 1.3", here) if digits else ""
    gen.items.append(FigureItem(
        model_figures.interpolation_figure(loaded, pair, figs / "interpolation.png"),
        "Latent interpolation between two test images",
        "Decoder mean along the straight line between the two images' deterministic codes "
        "(lambda(x) decoded as soft bits for binary families; the posterior mean or the code "
        "otherwise); first and last columns are the images themselves. " + interp_cite,
    ))  # fmt: skip
    codes = Section("Codes")
    hist = model_figures.lambda_histogram(loaded, figs / "lambda_histogram.png")
    if hist is not None:
        codes.items.append(FigureItem(
            hist, "Histogram of the bit probabilities lambda(x)",
            "lambda = P(bit = 1 | x) of the binary model each binary run stands for, for 32 test "
            "images x n bits, 45 bins: bits near 0 or 1 are confident, bits near 1/2 are noise. "
            "No seed figure shows lambda (diss. Fig. 5.2 shows posterior means, next figure).",
        ))  # fmt: skip
    else:
        doc.omitted.append("lambda histogram: no binary-latent family among the runs")
    means, no_mean = model_figures.posterior_means_histogram(loaded, figs / "posterior_means.png")
    if means is not None:
        text = captions.cite("diss. Fig. 5.2", here, note="the logistic panel") if (
            digits and has("logistic")) else ""  # fmt: skip
        if no_mean:
            text += f" Left out (the posterior has no closed-form mean): {', '.join(no_mean)}."
        codes.items.append(FigureItem(
            means, "Histogram of the posterior means",
            "E_q[z | x] of every run with a continuous posterior, for 32 test images x n latent "
            "dimensions, 45 bins; each panel in its family's own latent units. " + text,
        ))  # fmt: skip
    gmm = [lr for lr in loaded if not lr.record.has_likelihood]  # the fitted-mixture prior
    for lr in gmm:
        path, how = model_figures.gmm_figure(lr, figs / f"gmm_{_slug(lr.record.name)}.png")
        text = ""
        if digits:
            text = captions.cite("notes Figs 6-9", here, continuous=True,
                                 note=f"{how}; 2,000 test codes and 2,000 mixture samples; the "
                                 "mixture is fitted to the training codes")  # fmt: skip
        codes.items.append(FigureItem(
            path, f"Autoencoder + GMM codes ({lr.record.name})",
            f"Test codes coloured by label, their density, samples of the Gaussian mixture "
            f"fitted to the training codes, and decoded mixture samples; {how}. " + text,
        ))  # fmt: skip
    if not gmm:
        doc.omitted.append("autoencoder + GMM figures: no autoencoder-gmm run")
    return [rec, gen, codes]


def _samples_caption(lr: Loaded, here: captions.Setting) -> str:
    """What one run's sample figure shows and which seed figures it reproduces."""
    family = lr.record.config.family
    digits = captions.is_mnist(here)
    text = (
        "Decoded codes shown three ways: pixel probabilities (the decoder mean), one Bernoulli "
        "draw per pixel, and probabilities thresholded at 0.5. "
    )
    if lr.kind == "autoencoder":
        text += (
            "The codes are samples of the Gaussian mixture fitted to the training codes (the "
            "autoencoder has no prior). "
        )
        cited = []
    elif lr.kind == "continuous":
        text += "The codes are drawn from the N(0, I) prior. "
        cited = [("notes Figs 1-2", True), ("diss. Fig. 3.6", True)] if digits else []
    else:
        n = lr.record.config.latent_dim
        text += (
            f"The codes are drawn from the {n}-bit Bernoulli prior: at most 2^{n} = "
            f"{2**n:,} distinct images in the first panel. "
        )
        cited = []
        if (
            digits
            and family in ("steplogistic", "logistic")
            and lr.record.config.objective == ("elbo")
        ):
            cited = [("diss. Fig. A.3", False)]
        if digits and family == "bernoulli-sfe":
            cited = [("notes Figs 4-5", False)]
    return (text + captions.cite_all(cited, here, test_split=False)).strip()


def _theory_section(doc: Document, figs: Path) -> Section:
    sec = Section("Distributions and theory")
    items, omitted = theory_figures.theory_items(figs)
    sec.items += items
    doc.omitted += omitted
    return sec


def build_document(path: Path, theory: bool = True) -> Document:
    from binaryvae.runs.build import check_run_data

    records = collect_runs(path)
    for r in records:  # never a figure of other data than a run trained on: refused up front
        if r.has_checkpoint:
            check_run_data(r.path, r.config)
    figs = path / "figures"
    # figures/ is the report's own: no leftovers of old runs (a linked figures/ is refused)
    reset_folder(figs, ".png", root=path)
    c = records[0].config
    seeds = sorted({r.config.seed for r in records})
    seed_text = f"seed {seeds[0]}" if len(seeds) == 1 else "seeds " + ", ".join(map(str, seeds))
    intro = (
        f"{len(records)} run(s) on {c.dataset}, {c.latent_dim}-dimensional latent codes (bits "
        f"for the binary families), {seed_text}, hidden {list(c.hidden)}, batch "
        f"{c.batch_size}, lr {c.lr:g}, beta {c.beta:g}. Every binary-latent model is also "
        "scored as the discrete model it stands for. Regenerate with `binaryvae report DIR`."
    )
    if len(records) > 1 or records[0].path != path:
        intro += (
            " This report and figures/ cover every run under this directory; each run's own "
            "directory holds config.json, metrics.jsonl, checkpoints/last.pt and summary.json "
            "(`binaryvae report DIR/RUN` writes a report of one run into it)."
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
    for text in (_ranking(records), _capacity_note(records)):
        if text:
            summary.items.append(TextItem(text))
    unreadable = [p for r in records for p in r.extra.get("problems", [])]
    if unreadable:
        summary.items.append(TextItem(
            "Left out as unreadable (the runs keep their rows): " + "; ".join(unreadable) + "."
        ))  # fmt: skip
    incomplete = [r.name for r in records if not r.summary]
    if incomplete:
        summary.items.append(TextItem(
            "No summary.json (unfinished or stopped) for: " + ", ".join(incomplete) + "."
        ))  # fmt: skip
    doc.sections.append(summary)
    with style.context():
        doc.sections.append(_curve_section(records, figs))
        with torch.random.fork_rng():
            doc.sections += _model_sections(doc, records, figs)
            if theory:
                doc.sections.append(_theory_section(doc, figs))
    return doc


# what the report writes at the top of its directory
REPORT_FILES = ("report.html", "report.md", "figures")


def write_report(path: str | Path, theory: bool = True) -> Path:
    """Write ``path``/figures/*.png, report.html and report.md; return report.html's path."""
    path = Path(path)
    # a sweep (or a compare of replica groups) has its own report: binaryvae.report.sweep
    from binaryvae.report.sweep import is_sweep_dir, write_sweep_report

    if is_sweep_dir(path):
        return write_sweep_report(path)
    # a linked report or figures/ is refused before anything is drawn; each file is replaced
    # atomically (a full disk keeps the old one and names the file)
    refuse_links(path, REPORT_FILES, root=path)
    doc = build_document(path, theory=theory)
    atomic_write_text(path / "report.html", doc.to_html(path), root=path)
    atomic_write_text(path / "report.md", doc.to_markdown(path), root=path)
    return path / "report.html"
