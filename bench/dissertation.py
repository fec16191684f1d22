"""The dissertation's own setting: exact log-likelihood of every 8-bit family, and its claim.

Setting (dissertation sections 3.2, 5.3): 784-512-256-128 ReLU encoder, 8 latent bits, mirrored
decoder, Bernoulli likelihood on grey levels, fixed priors, batch 128, Adam 1e-3, beta = 10.
Every family is trained with ``binaryvae.training.fit_epoch`` and then scored on the test set as
the discrete model it stands for, exactly, by enumerating the 256 codes
(``binaryvae.evaluation.exact_evaluation``): exact log p(x), the exact discrete ELBO
(expectation over q(b|x) computed in closed form, no sampling) and the exact gap
log p(x) - ELBO = KL(q(b|x) || p(b|x)). The trained objective's value on the test set (relaxed
ELBO, or the Bernoulli ELBO, which is not a bound) is shown beside it, labelled.

The claim tested (dissertation Figure 5.5 and A.5): StepLogistic's bound is tighter than
Logistic's and than Concrete's trained with the Bernoulli ELBO. "Bound" is read as the discrete
ELBO of the model each training produced (the only number that is a valid bound of the same kind
of model for all three); the script also compares exact log p(x) and the gap, paired by seed.

    python bench/dissertation.py --datasets mnist-mini,fashion-mnist --epochs 20 --seeds 0,1,2
    python bench/dissertation.py --quick       # smoke test
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import _common  # noqa: E402
from binaryvae import stats  # noqa: E402
from binaryvae.runs.labels import parse_family_spec  # noqa: E402

FAMILIES = (
    "gaussian-sigmoid",
    "logistic",
    "logistic:bernoulli-elbo",
    "concrete",
    "concrete:bernoulli-elbo",
    "steplogistic",
    "smoothsteplogistic",
    "bernoulli-sfe",
    "bernoulli-st",
    "bernoulli-reinforce-loo",
    "bernoulli-disarm",
)
CLAIM = ("steplogistic", ("logistic", "concrete:bernoulli-elbo"))
DISSERTATION_LR = 1e-3  # Adam, dissertation section 3.2
TRACK_IMAGES = 1000  # first test images scored exactly after every epoch
SATURATED = 10.0  # |logit P(bit = 1 | x)| above which a bit counts as saturated


class EpochTracker:
    """After every epoch, on the first ``TRACK_IMAGES`` test images (fixed, binarized once):
    the exact discrete ELBO and log p(x) (enumeration), quantiles of |logit P(bit = 1 | x)|,
    and how many of the images' bits changed their most probable value since the previous epoch
    (``bits_flipped``, a fraction of images x bits), and how many of those were saturated
    (|logit| > ``SATURATED``) before they flipped. The first epoch after a resume has no
    previous logits: its flip fractions are None.

    Made to follow the budget at which the claim's verdict holds, and to test the lead that
    StepLogistic's logits grow without bound and its codes then flip in bulk: its Bernoulli KL
    is bounded by log 2 per bit and its sample's derivative in the logit vanishes at saturation.
    """

    def __init__(self, x):
        self.x = x  # [TRACK_IMAGES, D]
        self.previous = None  # [TRACK_IMAGES, n] logits after the previous epoch

    def __call__(self, model, epoch: int) -> dict:
        import torch

        from binaryvae.evaluation import exact_evaluation

        exact = exact_evaluation(model, self.x)
        logits = model.bit_logits(self.x).float()  # [TRACK_IMAGES, n]
        q = torch.quantile(logits.abs().flatten(), torch.tensor([0.5, 0.99]))
        flipped = saturated = None
        if self.previous is not None:
            changed = (logits > 0) != (self.previous > 0)  # [TRACK_IMAGES, n]
            flipped = changed.float().mean().item()
            saturated = (changed & (self.previous.abs() > SATURATED)).float().mean().item()
        self.previous = logits
        return {
            "epoch": epoch,
            "discrete_elbo": round(exact.elbo.mean().item(), 4),
            "log_px": round(exact.log_px.mean().item(), 4),
            "logit_abs_median": q[0].item(),
            "logit_abs_q99": q[1].item(),
            "bits_flipped": flipped,
            "saturated_bits_flipped": saturated,
        }


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--families",
        default=",".join(FAMILIES),
        help="comma-separated FAMILY or FAMILY:OBJECTIVE entries",
    )
    p.add_argument("--datasets", default="mnist-mini,fashion-mnist")
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--latent-dim", type=int, default=8)
    p.add_argument("--max-steps", type=int, default=0, help="cap on steps per epoch (0: none)")
    p.add_argument("--lr", type=float, default=DISSERTATION_LR,
                   help=f"Adam learning rate (default {DISSERTATION_LR:g}, the dissertation's)")
    p.add_argument("--eval-images", type=int, default=0, help="first N test images (0: all)")
    p.add_argument("--jobs", type=int, default=None, help="runs at a time (default: cores)")
    p.add_argument("--out", default=str(_common.REPO / "bench" / "results"))
    p.add_argument(
        "--aggregate-only",
        action="store_true",
        help="run nothing: tabulate the result files that exist among the requested runs",
    )
    p.add_argument("--force", action="store_true")
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument(
        "--quick",
        action="store_true",
        help="smoke test: mnist-mini, steplogistic and concrete:bernoulli-elbo, 1 epoch of "
        "5 steps, 1 seed, 200 test images",
    )
    args = p.parse_args(argv)
    _common.quick_folders(args, p)
    if args.quick:
        args.datasets, args.epochs, args.seeds, args.max_steps = "mnist-mini", 1, "0", 5
        args.eval_images = 200
        if args.families == ",".join(FAMILIES):
            args.families = "steplogistic,concrete:bernoulli-elbo"
    return args


def run_one(spec: dict) -> dict:
    import torch

    from binaryvae.config import TrainConfig
    from binaryvae.data import load_dataset, test_tensor
    from binaryvae.evaluation import exact_evaluation, relaxed_terms

    ds = load_dataset(spec["dataset"])
    config = TrainConfig(
        dataset=spec["dataset"],
        family=spec["family"],
        objective=spec["objective"],
        latent_dim=spec["latent_dim"],
        epochs=spec["epochs"],
        seed=spec["seed"],
        lr=spec.get("lr", DISSERTATION_LR),
        threads=1,
    )
    track = test_tensor(ds.test_x[:TRACK_IMAGES], binarize=config.binarize, seed=0)
    model, done = _common.train_steps(
        config, ds, steps_per_epoch=spec["max_steps"] or None, checkpoint=_common.resume_file(),
        on_epoch=EpochTracker(track),
    )  # fmt: skip
    failure, steps, train_seconds = done["failure"], done["steps"], done["train_seconds"]

    x = test_tensor(ds.test_x[: spec["eval_images"] or None], binarize=config.binarize, seed=0)
    t0 = time.perf_counter()
    exact = exact_evaluation(model, x)
    torch.manual_seed(4321 + config.seed)
    trained = relaxed_terms(model, x, objective=config.objective, samples=5).elbo
    # both relaxed numbers of the model on the test set (the one not trained is shown beside)
    relaxed = {
        key: relaxed_terms(model, x, objective=name, samples=5).elbo.mean().item()
        for name, key in (("elbo", "relaxed_elbo_test"), ("bernoulli-elbo", "bernoulli_elbo_test"))
        if name in model.family.objectives
    }
    eval_seconds = time.perf_counter() - t0
    with torch.no_grad():  # how sharp the trained encoder is: |logit P(bit = 1 | x)|, test set
        sharpness = model.bit_logits(x).abs().flatten().float()
    levels = torch.tensor([0.5, 0.9, 0.99, 1.0])
    return spec | {
        "bit_logit_abs_quantiles": dict(
            zip(("median", "q90", "q99", "max"), torch.quantile(sharpness, levels).tolist(),
                strict=True)
        ),
        "objective_label": config.objective_label(),
        "failure": failure,
        "steps_done": steps,
        "train_seconds": train_seconds,
        "eval_seconds": eval_seconds,
        "test_images": int(x.shape[0]),
        "log_px": exact.log_px.mean().item(),
        "discrete_elbo": exact.elbo.mean().item(),
        "gap": exact.gap.mean().item(),
        "trained_objective_test": trained.mean().item(),
        # the dissertation's Figures 4.6-4.8, 5.5, A.5 plot the trained objective averaged over
        # the training set during each epoch: here its value over the last epoch
        "trained_objective_train_last_epoch": done["last_train_elbo"],
        # its value over every epoch (the curve those figures draw; runs resumed from a
        # checkpoint written before this was recorded start it at the resumed epoch)
        "trained_objective_train_by_epoch": [round(v, 4) for v in done["train_elbo_by_epoch"]],
        # after every epoch, on the first TRACK_IMAGES test images: exact discrete ELBO and
        # log p(x), |logit| quantiles, bits flipped since the previous epoch (EpochTracker)
        "track_images": int(track.shape[0]),
        "by_epoch": done["by_epoch"],
        **relaxed,
        # per-image values, for differences paired by image (test-set noise)
        "per_image_log_px": [round(v, 4) for v in exact.log_px.tolist()],
        "per_image_discrete_elbo": [round(v, 4) for v in exact.elbo.tolist()],
        "machine": _common.machine_info(),
    }


def lr_text(lr: float) -> str:
    """1e-3, 1e-4, 3e-4: a learning rate as the dissertation writes it."""
    mantissa, _, exponent = f"{lr:.0e}".partition("e")
    return f"{mantissa}e{int(exponent)}"


def entry_name(family: str, objective: str) -> str:
    return family if objective == "elbo" else f"{family}:{objective}"


def run_file(out: Path, spec: dict) -> Path:
    fam = entry_name(spec["family"], spec["objective"]).replace(":", "-")
    return (
        out
        / "runs"
        / (
            f"diss_{spec['dataset']}_{fam}_s{spec['seed']}_e{spec['epochs']}"
            f"_n{spec['latent_dim']}"
            + (f"_m{spec['max_steps']}" if spec["max_steps"] else "")
            + (f"_lr{lr_text(spec['lr'])}" if spec.get("lr", DISSERTATION_LR) != DISSERTATION_LR
               else "")
            + ".json"
        )
    )


def describe(r: dict) -> str:
    return (
        f"log p(x) {r['log_px']:.2f}, discrete ELBO {r['discrete_elbo']:.2f}, gap "
        f"{r['gap']:.2f}, {r['train_seconds']:.0f} s training"
        + (f" [{r['failure']}]" if r["failure"] else "")
    )


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.child:
        print(json.dumps(run_one(json.loads(args.child)), default=str))
        return 0
    out = Path(args.out)
    specs = []
    for dataset in args.datasets.split(","):  # seed-major: stopped early, every family has seeds
        for seed in (int(s) for s in args.seeds.split(",")):
            for entry in args.families.split(","):
                family, objective = parse_family_spec(entry)  # the one parser
                specs.append(
                    {
                        "dataset": dataset,
                        "family": family,
                        "objective": objective or "elbo",
                        "seed": seed,
                        "epochs": args.epochs,
                        "latent_dim": args.latent_dim,
                        "max_steps": args.max_steps,
                        "lr": args.lr,
                        "eval_images": args.eval_images,
                    }
                )
    results = _common.run_or_load(
        Path(__file__).resolve(), specs, lambda spec: run_file(out, spec), describe,
        jobs=args.jobs, force=args.force, aggregate_only=args.aggregate_only,
    )  # fmt: skip
    summary = aggregate(args, results)
    name = "dissertation_" + "_".join(args.datasets.split(",")) + ("_quick" if args.quick else "")
    _common.write_table(out, name, summary, render(summary))
    figure = plot_curves(results, out / f"{name}_curves.png")
    if figure is not None:
        print(f"figure: {figure}")
    return 1 if any("error" in r for r in results) else 0


# what the per-epoch records hold, drawn one panel each: key, y label, y scale
TRACKED_PANELS = (
    ("discrete_elbo", "exact discrete ELBO, nats (first {n} test images)", "linear"),
    ("logit_abs_median", "median |logit P(bit = 1 | x)| (first {n} test images)", "log"),
    ("saturated_bits_flipped", "fraction of bits flipped in the epoch while |logit| > "
     f"{SATURATED:g}", "symlog"),  # zero for most runs, so not log
)


def plot_curves(results: list[dict], path: Path) -> Path | None:
    """Per-epoch curves, one block of panels per dataset, one colour per entry, one thin line
    per seed: the trained objective on the training set, averaged over each epoch (what the
    dissertation's Figures 5.5 and A.5 draw), and, for runs that recorded them (EpochTracker),
    the exact discrete ELBO on the tracked test images, the median |logit| and the fraction of
    saturated bits that flipped. None when no run recorded a curve."""
    runs = [r for r in results if len(r.get("trained_objective_train_by_epoch") or []) > 1]
    if not runs:
        return None
    from matplotlib.ticker import MaxNLocator

    from binaryvae.report.style import colour_of, context, new_figure, save

    datasets = list(dict.fromkeys(r["dataset"] for r in runs))
    entries = list(dict.fromkeys(entry_name(r["family"], r["objective"]) for r in runs))
    tracked = {d for d in datasets if any(r.get("by_epoch") for r in runs if r["dataset"] == d)}
    heights = [8.4 if d in tracked else 4.2 for d in datasets]
    with context():
        fig = new_figure(12 if tracked else 6 * len(datasets), sum(heights))
        blocks = fig.subfigures(len(datasets), 1, height_ratios=heights, squeeze=False)[:, 0]
        for block, dataset in zip(blocks, datasets, strict=True):
            mine = [r for r in runs if r["dataset"] == dataset]
            shape = (2, 2) if dataset in tracked else (1, 1)
            axes = block.subplots(*shape, squeeze=False).flatten()
            _plot_trained_objective(axes[0], mine, entries, colour_of)
            axes[0].set_title(f"{dataset}: trained objective over each epoch")
            for ax, (key, label, scale) in zip(axes[1:], TRACKED_PANELS, strict=False):
                n = next(r["track_images"] for r in mine if r.get("by_epoch"))
                _plot_tracked(ax, mine, entries, colour_of, key)
                ax.set_ylabel(label.format(n=n))
                ax.set_xlabel("epoch")
                if scale == "symlog":
                    ax.set_yscale("symlog", linthresh=1e-4)
                    ax.set_ylim(bottom=0)
                else:
                    ax.set_yscale(scale)
            for ax in axes:
                ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            if dataset in tracked:
                axes[1].set_title(f"{dataset}: the discrete model, scored exactly")
        return save(fig, path)


def _entry_runs(runs, entries):
    for k, entry in enumerate(entries):
        mine = [r for r in runs if entry_name(r["family"], r["objective"]) == entry]
        for i, r in enumerate(mine):
            seeds = f"{len(mine)} seed" + "s" * (len(mine) != 1)
            yield k, r, (f"{entry} ({seeds})" if i == 0 else None)


def _plot_trained_objective(ax, runs, entries, colour_of) -> None:
    for k, r, label in _entry_runs(runs, entries):
        ys = r["trained_objective_train_by_epoch"]
        # a finished run resumed from an older checkpoint lacks the first epochs;
        # a run stopped by a NaN lacks the last
        first = 1 if r.get("failure") else r["epochs"] - len(ys) + 1
        ax.plot(range(first, first + len(ys)), ys, color=colour_of(k), lw=0.8, alpha=0.8,
                label=label)  # fmt: skip
    ax.set_xlabel("epoch")
    ax.set_ylabel("trained objective, nats per training image")
    lows = [v for r in runs for v in r["trained_objective_train_by_epoch"][2:]]
    if lows:  # the first epochs would flatten the rest
        ax.set_ylim(min(lows) - 2, max(lows) + 2)
    ax.legend(loc="lower right")


def _plot_tracked(ax, runs, entries, colour_of, key: str) -> None:
    for k, r, label in _entry_runs([r for r in runs if r.get("by_epoch")], entries):
        points = [(e["epoch"], e[key]) for e in r["by_epoch"] if e.get(key) is not None]
        if key == "discrete_elbo":
            points = points[2:]  # the first epochs would flatten the rest
        if points:
            ax.plot(*zip(*points, strict=True), color=colour_of(k), lw=0.8, alpha=0.8,
                    label=label)  # fmt: skip


PER_IMAGE_KEYS = ("log_px", "discrete_elbo", "gap")


def _per_image(r: dict, key: str) -> list[float]:
    if key == "gap":  # log p(x) - discrete ELBO, per image
        return [
            u - v for u, v in zip(r["per_image_log_px"], r["per_image_discrete_elbo"], strict=True)
        ]
    return r[f"per_image_{key}"]


def _paired(a: list[dict], b: list[dict], key: str) -> dict:
    """Difference a - b of `key`, paired by seed among the runs that hold it
    (`binaryvae.stats.paired`): mean, s.e. and Student-t 95% interval over seeds, with the
    paired t test's and the Wilcoxon signed-rank test's p-values. Keys with per-image values
    (log p(x), discrete ELBO, gap) also give the per-image paired standard error of the first
    common seed (test-set noise only), the interval used when a single seed ran; a key without
    them (the trained objective over the last training epoch) needs two seeds, else {}."""
    runs_a = {r["seed"]: r for r in a if r.get(key) is not None}
    runs_b = {r["seed"]: r for r in b if r.get(key) is not None}
    d = stats.paired({s: r[key] for s, r in runs_a.items()},
                     {s: r[key] for s, r in runs_b.items()})  # fmt: skip
    per_image = key in PER_IMAGE_KEYS
    if d["n"] < (1 if per_image else 2):
        return {}
    out = {"mean": d["mean"], "se_seeds": d["se"], "n_seeds": d["n"], "diffs": d["diffs"]}
    if per_image:
        ra, rb = runs_a[d["keys"][0]], runs_b[d["keys"][0]]
        per = [u - v for u, v in zip(_per_image(ra, key), _per_image(rb, key), strict=True)]
        out["se_images_seed0"] = stats.mean_se(per)[1]
    if "ci95" in d:
        out.update({k: d[k] for k in ("t", "ci95", "p_t", "wilcoxon_p")})
    else:  # one seed: normal interval over the test images
        se_img = out["se_images_seed0"]
        out["ci95"] = [d["mean"] - 1.96 * se_img, d["mean"] + 1.96 * se_img]
    return out


def verdict(d: dict) -> str:
    """'higher' / 'lower' when the 95% interval of the paired difference excludes 0."""
    if not d:
        return "not measured"
    lo, hi = d["ci95"]
    caveat = "" if d["n_seeds"] >= 2 else " [1 seed: test-image noise only]"
    if lo > 0:
        return "higher (supports the claim)" + caveat
    if hi < 0:
        return "lower (contradicts the claim)" + caveat
    return "no difference (95% interval contains 0)" + caveat


def aggregate(args, results: list[dict]) -> dict:
    groups: dict[tuple, list[dict]] = {}
    for r in results:
        groups.setdefault((r["dataset"], entry_name(r["family"], r["objective"])), []).append(r)
    rows, claims = [], []
    for (dataset, entry), rs in groups.items():
        ok = [r for r in rs if "error" not in r]
        rows.append(
            {
                "dataset": dataset,
                "entry": entry,
                "seeds": [r["seed"] for r in ok],
                "errors": [r["error"] for r in rs if "error" in r],
                "failures": [r["failure"] for r in ok if r.get("failure")],
                "objective_label": ok[0]["objective_label"] if ok else "",
                "log_px": [r["log_px"] for r in ok],
                "discrete_elbo": [r["discrete_elbo"] for r in ok],
                "gap": [r["gap"] for r in ok],
                "trained_objective_test": [r["trained_objective_test"] for r in ok],
                "seconds_per_epoch": [r["train_seconds"] / max(r["epochs"], 1) for r in ok],
                "test_images": ok[0]["test_images"] if ok else None,
            }
        )
    for dataset in dict.fromkeys(d for d, _ in groups):
        main_entry, others = CLAIM
        a = [r for r in groups.get((dataset, main_entry), []) if "error" not in r]
        for other in others:
            b = [r for r in groups.get((dataset, other), []) if "error" not in r]
            if not a or not b:
                continue
            elbo = _paired(a, b, "discrete_elbo")
            logpx = _paired(a, b, "log_px")
            gap = _paired(b, a, "gap")  # other's gap minus StepLogistic's: > 0 = tighter
            # what the dissertation's Figure 5.5 compares: each model's trained objective on the
            # training set (relaxed ELBO, or the Bernoulli ELBO, which is no bound)
            trained = _paired(a, b, "trained_objective_train_last_epoch")
            claims.append(
                {
                    "dataset": dataset,
                    "versus": other,
                    "discrete_elbo_diff": elbo,
                    "log_px_diff": logpx,
                    "gap_reduction": gap,
                    "trained_objective_diff": trained,
                    "verdict_trained_objective": verdict(trained),
                    "verdict_discrete_elbo": verdict(elbo),
                    "verdict_log_px": verdict(logpx),
                    "verdict_gap": verdict(gap)
                    .replace("higher", "smaller gap")
                    .replace("lower", "larger gap"),
                }
            )
    machine = next((r["machine"] for r in results if "machine" in r), _common.machine_info())
    by_budget = claim_by_budget(groups, args.epochs)
    return {
        "benchmark": "dissertation",
        "command": _common.command_line(),
        "machine": machine,
        "runs_line": _common.runs_line([r.get("machine") for r in results]),
        "epochs": args.epochs,
        "latent_dim": args.latent_dim,
        "max_steps": args.max_steps,
        "lr": args.lr,
        "rows": rows,
        "claim": claims,
        "claim_by_budget": by_budget,
    }


BUDGETS = (5, 10, 20, 40, 80)  # epochs at which the per-epoch records are compared


def _records_by_seed(runs: list[dict]) -> dict[int, dict[int, dict]]:
    """seed -> {epoch -> EpochTracker record} for the runs without an error."""
    return {r["seed"]: {e["epoch"]: e for e in r.get("by_epoch") or []}
            for r in runs if "error" not in r}  # fmt: skip


def claim_by_budget(groups: dict, epochs: int) -> list[dict]:
    """The claim after 5, 10, 20, 40, 80 epochs and at the end, from the per-epoch records of
    the runs that have them (EpochTracker: the first ``track_images`` test images, scored
    exactly): StepLogistic minus each other entry, discrete ELBO and log p(x), paired by seed
    with Student-t 95% intervals (two seeds at least)."""
    out = []
    main_entry, others = CLAIM
    for dataset in dict.fromkeys(d for d, _ in groups):
        a = _records_by_seed(groups.get((dataset, main_entry), []))
        for other in others:
            b = _records_by_seed(groups.get((dataset, other), []))
            for epoch in [e for e in BUDGETS if e < epochs] + [epochs]:
                seeds = sorted(s for s in a if s in b and epoch in a[s] and epoch in b[s])
                if len(seeds) < 2:
                    continue
                tracked = {r["track_images"] for r in groups[(dataset, main_entry)]
                           if r.get("track_images")}  # fmt: skip
                row = {"dataset": dataset, "versus": other, "epoch": epoch, "seeds": seeds,
                       "track_images": min(tracked)}  # fmt: skip
                for key in ("discrete_elbo", "log_px"):
                    p = stats.paired({s: a[s][epoch][key] for s in seeds},
                                     {s: b[s][epoch][key] for s in seeds})  # fmt: skip
                    # no interval only if NaN/inf left fewer than two seeds: nan, no verdict
                    d = {"mean": p["mean"], "ci95": p.get("ci95", [math.nan, math.nan]),
                         "n_seeds": p["n"], "diffs": p["diffs"], "p_t": p.get("p_t"),
                         "wilcoxon_p": p.get("wilcoxon_p")}  # fmt: skip
                    row[f"{key}_diff"], row[f"verdict_{key}"] = d, verdict(d)
                out.append(row)
    return out


def render(summary: dict) -> str:
    head = [
        "dataset",
        "family (objective)",
        "exact log p(x)",
        "discrete ELBO (exact)",
        "gap = KL(q || p(b|x))",
        "trained objective on test",
        "s / epoch",
        "seeds",
        "notes",
    ]
    rows = []
    for r in summary["rows"]:
        rows.append(
            [
                r["dataset"],
                r["entry"],
                _common.fmt_mean_se(r["log_px"]),
                _common.fmt_mean_se(r["discrete_elbo"]),
                _common.fmt_mean_se(r["gap"]),
                _common.fmt_mean_se(r["trained_objective_test"]) + f" ({r['objective_label']})",
                _common.fmt_mean_se(r["seconds_per_epoch"], 1),
                len(r["seeds"]),
                "; ".join(r["errors"] + r["failures"]),
            ]
        )
    lines = [
        # header lines end in two spaces: markdown line breaks, so the block pastes into docs
        f"Machine: {_common.machine_line(summary['machine'])}  ",
        f"{summary['runs_line']}  ",
        f"Command: `{summary['command']}`  ",
        f"{summary['latent_dim']} bits, 784-512-256-128 ReLU, grey levels, batch 128, Adam "
        f"{lr_text(summary.get('lr', DISSERTATION_LR))}, {summary['epochs']} epochs"
        + (f" of at most {summary['max_steps']} steps" if summary["max_steps"] else "")
        + "; test set; mean ± s.e. over seeds; nats per image, higher is better.  ",
        "",
        _common.markdown_table(head, rows),
        "",
    ]
    if summary["claim"]:
        head2 = [
            "dataset",
            "steplogistic minus",
            "trained objective diff (train set, last epoch: Fig. 5.5's reading)",
            "Wilcoxon p",
            "verdict",
            "discrete ELBO diff",
            "Wilcoxon p",
            "verdict",
            "log p(x) diff",
            "Wilcoxon p",
            "verdict",
            "gap reduction (other's gap - StepLogistic's)",
            "Wilcoxon p",
            "verdict",
        ]
        rows2, claims = [], []
        for c in summary["claim"]:

            def f(d):
                if not d:
                    return "n/a"
                lo, hi = d["ci95"]
                kind = (f"t, {d['n_seeds']} seeds" if d["n_seeds"] >= 2
                        else "normal, test images of 1 seed")  # fmt: skip
                return f"{d['mean']:+.2f} [{lo:+.2f}, {hi:+.2f}] (95%, {kind})"

            trained, gap = c.get("trained_objective_diff", {}), c.get("gap_reduction", {})
            rows2.append(
                [
                    c["dataset"],
                    c["versus"],
                    f(trained),
                    stats.format_p(trained.get("wilcoxon_p")),
                    c.get("verdict_trained_objective", "not measured"),
                    f(c["discrete_elbo_diff"]),
                    stats.format_p(c["discrete_elbo_diff"].get("wilcoxon_p")),
                    c["verdict_discrete_elbo"],
                    f(c["log_px_diff"]),
                    stats.format_p(c["log_px_diff"].get("wilcoxon_p")),
                    c["verdict_log_px"],
                    f(gap),
                    stats.format_p(gap.get("wilcoxon_p")),
                    c.get("verdict_gap", ""),
                ]
            )
            for what, d in (("trained objective", trained), ("discrete ELBO",
                            c["discrete_elbo_diff"]), ("log p(x)", c["log_px_diff"]),
                            ("gap", gap)):  # fmt: skip
                claims.append((f"{c['dataset']} vs {c['versus']} {what}", d.get("p_t")))
        lines += [
            "Claim (Figure 5.5, A.5): StepLogistic's bound is tighter than Logistic's and "
            "Concrete-with-Bernoulli-ELBO's. Differences paired by seed; 'tighter' read three "
            "ways: a higher trained objective (what the figures plot: a relaxed ELBO, or for "
            "Concrete the Bernoulli ELBO, which bounds nothing), a higher discrete ELBO (a "
            "valid bound of the same kind of model for all three), and a smaller gap "
            "log p(x) - ELBO to the model's own exact likelihood. Beside each interval the "
            "two-sided p-value of the Wilcoxon signed-rank test of the same differences (exact; "
            "— for one seed):",
            "",
            _common.markdown_table(head2, rows2),
        ]
        note = stats.multiple_comparison_note([q for _, q in claims], [c for c, _ in claims])
        if note:
            lines += ["", note]
    if summary.get("claim_by_budget"):
        head3 = ["dataset", "steplogistic minus", "after epoch", "seeds", "discrete ELBO diff",
                 "Wilcoxon p", "verdict", "log p(x) diff", "Wilcoxon p", "verdict"]  # fmt: skip
        rows3 = [
            [c["dataset"], c["versus"], c["epoch"], len(c["seeds"]),
             _fmt_interval(c["discrete_elbo_diff"]),
             stats.format_p(c["discrete_elbo_diff"].get("wilcoxon_p")), c["verdict_discrete_elbo"],
             _fmt_interval(c["log_px_diff"]), stats.format_p(c["log_px_diff"].get("wilcoxon_p")),
             c["verdict_log_px"]]  # fmt: skip
            for c in summary["claim_by_budget"]
        ]
        budget_claims = [
            (f"{c['dataset']} vs {c['versus']} epoch {c['epoch']} {what}",
             c[f"{key}_diff"].get("p_t"))
            for c in summary["claim_by_budget"]
            for key, what in (("discrete_elbo", "discrete ELBO"), ("log_px", "log p(x)"))
        ]  # fmt: skip
        n = min(c["track_images"] for c in summary["claim_by_budget"])
        lines += [
            "",
            f"The claim by budget: the same differences after each number of epochs, from the "
            f"runs that scored the first {n} test images exactly after every epoch (paired by "
            f"seed, Student-t 95% intervals and the Wilcoxon signed-rank p-values; the table "
            f"above uses the whole test set at the end):",
            "",
            _common.markdown_table(head3, rows3),
        ]
        note = stats.multiple_comparison_note(
            [q for _, q in budget_claims], [c for c, _ in budget_claims]
        )
        if note:
            lines += ["", note]
    return "\n".join(lines)


def _fmt_interval(d: dict) -> str:
    lo, hi = d["ci95"]
    return f"{d['mean']:+.2f} [{lo:+.2f}, {hi:+.2f}] (95%, t, {d['n_seeds']} seeds)"


if __name__ == "__main__":
    sys.exit(main())
