"""The gradient-estimator benchmark protocol of Dong, Mnih & Tucker (2020, DisARM, section 6).

A 200-bit Bernoulli VAE on dynamically binarized images; linear (784-200) or nonlinear
(784-200-200-200, LeakyReLU 0.3, mirrored decoder) networks; batch 50; Adam, learning rate 1e-4;
learned factorized prior logits; training objective with 1 sample. Reported per run, all in
nats per image (higher is better):

- train ELBO: the *discrete* ELBO (hard codes b ~ Bernoulli(lambda(x)), 1 sample, analytic
  Bernoulli KL; ``binaryvae.evaluation.discrete_elbo``) on the training set, binarized once
  with a fixed seed, after the last step;
- test bound: the 100-sample importance-weighted bound of the discrete model (proposal
  Bernoulli(lambda(x)), hard codes; ``binaryvae.evaluation.iwae_bound(..., proposal="discrete")``)
  on the test set, binarized once with a fixed seed;
- the value of the trained objective averaged over the last epoch (for relaxed families the
  relaxed ELBO: a bound of the *relaxed* model only, never reported as a bound of the discrete one);
- decoder evaluations per step (``model.decoder_evaluations_per_step``) and seconds per 1,000
  steps (the training loop alone, as ``fit_epoch`` times it);
- the variance of the encoder gradient estimate at the trained parameters
  (``binaryvae.diagnostics.gradient_diagnostics``: 50 estimates on the first 50 test images),
  for the estimators without a learned baseline (REINFORCE-LOO, ARM, DisARM) under both learning
  signals at the same parameters, so the signal's effect on variance is paired.

``--signal`` is the score-function estimators' learning signal f(b): "reconstruction" (default:
log p(x|b), the Bernoulli KL analytic), "elbo" (the whole single-sample ELBO
log p(x, b) - log q(b|x), the DisARM paper's configuration) or "both" (each such family twice;
the table then adds their paired differences by seed with Student-t intervals).

Runs are independent processes (``--jobs`` at a time, 1 thread each); each writes
``<out>/runs/<dataset>_<net>_<family>_s<seed>_<steps>.json`` and is skipped when that file exists
(so a long table can be resumed); the aggregate is ``<out>/protocol_<dataset>.json`` + ``.md``
(mean ± standard error over seeds).

    BINARYVAE_DATA_DIR=$DATA python bench/protocol.py --net nonlinear --seeds 0,1,2
    # the paper's budget:
    python bench/protocol.py --steps 1000000 --net linear,nonlinear --seeds 0,1,2,3,4
    python bench/protocol.py --net nonlinear --families bernoulli-disarm,bernoulli-arm \
        --signal both --steps 6000 --out bench/results/learning_signal
    python bench/protocol.py --quick        # smoke test
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import _common  # noqa: E402
from binaryvae import stats  # noqa: E402
from binaryvae.config import LEARNING_SIGNALS as SIGNALS  # noqa: E402
from binaryvae.models.families import SCORE_FUNCTION_FAMILIES as SIGNAL_FAMILIES  # noqa: E402
from binaryvae.runs.labels import parse_family_spec  # noqa: E402

FAMILIES = (
    "bernoulli-disarm",
    "bernoulli-reinforce-loo",
    "bernoulli-sfe",
    "bernoulli-st",
    "concrete",
    "logistic",
    "gaussian-sigmoid",
    "steplogistic",
    "smoothsteplogistic",
)
NETS = {"linear": (), "nonlinear": (200, 200)}  # hidden layers; latent 200 -> 784-200-200-200
LATENT_BITS = 200
BATCH_SIZE = 50
LR = 1e-4
DEFAULT_STEPS = 20_000
# the estimators that take a learning signal (SIGNAL_FAMILIES); those without a learned
# baseline (all but sfe) can be measured under either signal at the same parameters
BASELINE_FREE = tuple(f for f in SIGNAL_FAMILIES if f != "bernoulli-sfe")
GRAD_IMAGES, GRAD_SAMPLES = 50, 50


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--families",
        default=",".join(FAMILIES),
        help="comma-separated families, each optionally FAMILY:OBJECTIVE",
    )
    p.add_argument(
        "--steps",
        type=int,
        default=DEFAULT_STEPS,
        help=f"training steps per run (default {DEFAULT_STEPS:,}; the paper: 1,000,000)",
    )
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument(
        "--signal",
        default="reconstruction",
        choices=(*SIGNALS, "both"),
        help="learning signal of the score-function estimators (default reconstruction)",
    )
    p.add_argument("--net", default="nonlinear", help="linear, nonlinear or both (comma list)")
    p.add_argument("--dataset", default="fashion-mnist", help="fashion-mnist (default) or mnist")
    p.add_argument("--iwae-k", type=int, default=100)
    p.add_argument(
        "--eval-images",
        type=int,
        default=0,
        help="evaluate on the first N train/test images (0: all)",
    )
    p.add_argument("--jobs", type=int, default=None, help="runs at a time (default: cores)")
    p.add_argument("--out", default=str(_common.REPO / "bench" / "results"))
    p.add_argument(
        "--aggregate-only",
        action="store_true",
        help="run nothing: tabulate the result files that exist among the requested runs",
    )
    p.add_argument("--force", action="store_true", help="rerun runs whose result file exists")
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument(
        "--quick",
        action="store_true",
        help="smoke test: mnist-mini, 2 families, 1 seed, 20 steps, 200 images",
    )
    args = p.parse_args(argv)
    _common.quick_folders(args, p)
    if args.quick:
        args.dataset, args.steps, args.seeds = "mnist-mini", 20, "0"
        args.eval_images = 200
        if args.families == ",".join(FAMILIES):
            args.families = "steplogistic,bernoulli-disarm"
    return args


# ---------------------------------------------------------------- one run (child process)
def run_one(spec: dict) -> dict:
    import torch

    from binaryvae.config import TrainConfig
    from binaryvae.data import load_dataset, test_tensor
    from binaryvae.evaluation import discrete_elbo, iwae_bound

    ds = load_dataset(spec["dataset"])
    signal = spec.get("signal")
    config = TrainConfig(
        dataset=spec["dataset"],
        family=spec["family"],
        objective=spec["objective"],
        latent_dim=LATENT_BITS,
        hidden=tuple(NETS[spec["net"]]),  # () for the linear net 784-200: no hidden layer
        activation="leaky_relu",
        prior="learned",
        binarize="dynamic",
        batch_size=BATCH_SIZE,
        lr=LR,
        seed=spec["seed"],
        threads=1,
        extra={"learning_signal": signal} if signal else {},
    )
    wall = time.perf_counter()
    model, done = _common.train_steps(
        config, ds, max_steps=spec["steps"], checkpoint=_common.resume_file()
    )
    wall = time.perf_counter() - wall
    steps, epoch, failure = done["steps"], done["epochs"], done["failure"]
    train_seconds, last_objective = done["train_seconds"], done["last_train_elbo"]

    # evaluation of the discrete model, in chunks so memory stays bounded
    n = spec["eval_images"] or None
    g = torch.Generator().manual_seed(1234 + spec["seed"])
    x_train = test_tensor(ds.train_x[:n], binarize="dynamic", seed=1)  # train set, binarized once
    x_test = test_tensor(ds.test_x[:n], binarize="dynamic", seed=0)
    t0 = time.perf_counter()
    train_elbo = (
        torch.cat([discrete_elbo(model, x, samples=1, generator=g) for x in x_train.split(5000)])
        .mean()
        .item()
    )
    test_bound = (
        torch.cat(
            [
                iwae_bound(model, x, k=spec["iwae_k"], proposal="discrete", generator=g)
                for x in x_test.split(1000)
            ]
        )
        .mean()
        .item()
    )
    eval_seconds = time.perf_counter() - t0
    grad_var = final_gradient_variance(config, model, ds, x_test[:GRAD_IMAGES], spec["seed"])
    return spec | {
        "decoder_evaluations_per_step": int(getattr(model, "decoder_evaluations_per_step", 1)),
        "objective_label": config.objective_label(),
        "steps_done": steps,
        "epochs": epoch,
        "failure": failure,
        "train_discrete_elbo": train_elbo,
        "test_iwae_discrete": test_bound,
        "train_objective_last_epoch": last_objective,
        "train_seconds": train_seconds,
        "seconds_per_1000_steps": 1000 * train_seconds / max(steps, 1),
        "wall_seconds": wall,
        "eval_seconds": eval_seconds,
        "eval_train_images": int(x_train.shape[0]),
        "eval_test_images": int(x_test.shape[0]),
        "final_grad_var": grad_var,
        "machine": _common.machine_info(),
    }


def final_gradient_variance(config, model, ds, x, seed: int) -> dict[str, float]:
    """Encoder-gradient variance of the trained ``model`` (trained on dataset ``ds``) on ``x``:
    under its own objective ("own"), and for the baseline-free score-function estimators under
    each learning signal at these same parameters (the model rebuilt with the other signal and
    the trained state)."""
    import dataclasses

    import torch

    from binaryvae.diagnostics import gradient_diagnostics
    from binaryvae.models import build_model

    def measure(m) -> float:
        g = torch.Generator().manual_seed(777 + seed)
        return gradient_diagnostics(m, x, samples=GRAD_SAMPLES, generator=g)["grad_var"]

    own = measure(model)
    if config.family not in BASELINE_FREE:
        return {"own": own}
    out = {"own": own, config.options.learning_signal: own}
    for signal in SIGNALS:
        if signal not in out:
            other = dataclasses.replace(config, extra={**config.extra, "learning_signal": signal})
            twin = build_model(other, data_dim=x.shape[1], image_shape=ds.image_shape,
                               data_kind=ds.kind)  # fmt: skip
            twin.load_state_dict(model.state_dict())
            out[signal] = measure(twin)
    return out


# ---------------------------------------------------------------- driver
def run_file(out: Path, spec: dict) -> Path:
    fam = spec["family"] + ("" if spec["objective"] == "elbo" else f"-{spec['objective']}")
    fam += "-elbo-signal" if spec.get("signal") == "elbo" else ""
    return (
        out
        / "runs"
        / (f"{spec['dataset']}_{spec['net']}_{fam}_s{spec['seed']}_{spec['steps']}.json")
    )


def specs_from(args) -> list[dict]:
    """Seed-major order: a table stopped early still has every family at the first seeds."""
    specs = []
    for net in args.net.split(","):
        if net not in NETS:
            raise SystemExit(f"unknown net {net!r}; choose linear or nonlinear")
        for seed in (int(s) for s in args.seeds.split(",")):
            for entry in args.families.split(","):
                family, objective = parse_family_spec(entry)  # the one parser
                spec = {
                    "dataset": args.dataset,
                    "net": net,
                    "family": family,
                    "objective": objective or "elbo",
                    "seed": seed,
                    "steps": args.steps,
                    "iwae_k": args.iwae_k,
                    "eval_images": args.eval_images,
                }
                if family not in SIGNAL_FAMILIES:
                    specs.append(spec)
                    continue
                signals = SIGNALS if args.signal == "both" else (args.signal,)
                specs += [spec | {"signal": signal} for signal in signals]
    return specs


def signal_of(r: dict) -> str | None:
    """The run's learning signal (results written before ``--signal`` existed used the
    reconstruction signal)."""
    return r.get("signal", "reconstruction") if r["family"] in SIGNAL_FAMILIES else None


def describe(r: dict) -> str:
    return (
        f"train ELBO {r['train_discrete_elbo']:.2f}, test IWAE-{r['iwae_k']} "
        f"{r['test_iwae_discrete']:.2f}, {r['seconds_per_1000_steps']:.2f} s/1000 steps"
        + (f" [{r['failure']}]" if r["failure"] else "")
    )


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.child:
        print(json.dumps(run_one(json.loads(args.child)), default=str))
        return 0
    out = Path(args.out)
    specs = specs_from(args)
    results = _common.run_or_load(
        Path(__file__).resolve(), specs, lambda spec: run_file(out, spec), describe,
        jobs=args.jobs, force=args.force, aggregate_only=args.aggregate_only,
    )  # fmt: skip
    summary = aggregate(args, results)
    name = f"protocol_{args.dataset}" + ("_quick" if args.quick else "")
    _common.write_table(out, name, summary, render(summary))
    return 1 if any("error" in r for r in results) else 0


def aggregate(args, results: list[dict]) -> dict:
    groups: dict[tuple, list[dict]] = {}
    for r in results:
        key = (r["net"], r["family"], r["objective"], signal_of(r))
        groups.setdefault(key, []).append(r)
    rows = []
    for (net, family, objective, signal), rs in groups.items():
        ok = [r for r in rs if "error" not in r]
        rows.append(
            {
                "net": net,
                "family": family,
                "objective": objective,
                "signal": signal,
                "seeds": [r["seed"] for r in ok],
                "errors": [r["error"] for r in rs if "error" in r],
                "failures": [r["failure"] for r in ok if r.get("failure")],
                "decoder_evaluations_per_step": ok[0]["decoder_evaluations_per_step"]
                if ok
                else None,
                "train_discrete_elbo": [r["train_discrete_elbo"] for r in ok],
                "test_iwae_discrete": [r["test_iwae_discrete"] for r in ok],
                "train_objective_last_epoch": [r["train_objective_last_epoch"] for r in ok],
                "objective_label": ok[0]["objective_label"] if ok else objective,
                "seconds_per_1000_steps": [r["seconds_per_1000_steps"] for r in ok],
                "steps_done": [r["steps_done"] for r in ok],
                "final_grad_var": [r["final_grad_var"]["own"] for r in ok if "final_grad_var" in r],
            }
        )
    machine = next((r["machine"] for r in results if "machine" in r), _common.machine_info())
    return {
        "benchmark": "protocol",
        "command": _common.command_line(),
        "machine": machine,
        "dataset": args.dataset,
        "steps": args.steps,
        "iwae_k": args.iwae_k,
        "eval_images": args.eval_images or "all",
        "rows": rows,
        "signal_pairs": signal_pairs(results),
    }


def signal_pairs(results: list[dict]) -> list[dict]:
    """Per (net, family) run under both signals: elbo minus reconstruction of the test bound
    and train ELBO, paired by seed (`binaryvae.stats.paired`: Student-t 95% interval, paired t
    and Wilcoxon signed-rank p-values), and the ratio of the gradient
    variance under the elbo signal to that under the reconstruction signal at the same trained
    parameters (every run of the family, both signals' runs, contributes its ratio)."""
    by: dict[tuple, dict[str, dict[int, dict]]] = {}
    for r in results:
        if "error" in r or signal_of(r) is None:
            continue
        by.setdefault((r["net"], r["family"]), {}).setdefault(signal_of(r), {})[r["seed"]] = r
    out = []
    for (net, family), sig in by.items():
        if set(sig) != set(SIGNALS):
            continue
        seeds = sorted(set(sig["elbo"]) & set(sig["reconstruction"]))
        row = {"net": net, "family": family, "seeds": seeds}
        for key in ("test_iwae_discrete", "train_discrete_elbo"):
            d = stats.paired({s: sig["elbo"][s][key] for s in seeds},
                             {s: sig["reconstruction"][s][key] for s in seeds})  # fmt: skip
            row[key] = {k: v for k, v in d.items() if k != "keys"}
        ratios = [
            r["final_grad_var"]["elbo"] / r["final_grad_var"]["reconstruction"]
            for runs in sig.values()
            for r in runs.values()
            if "elbo" in r.get("final_grad_var", {})
        ]
        row["grad_var_ratio_elbo_over_reconstruction"] = ratios
        out.append(row)
    return out


def render(summary: dict) -> str:
    head = [
        "net",
        "family (objective)",
        "decoder evals/step",
        "train ELBO (discrete)",
        f"test IWAE-{summary['iwae_k']} (discrete)",
        "trained objective, last epoch",
        "s / 1,000 steps",
        "gradient variance, end",
        "seeds",
        "notes",
    ]
    rows = []
    for r in summary["rows"]:
        notes = "; ".join(r["errors"] + r["failures"])
        fam = r["family"] + ("" if r["objective"] == "elbo" else f" ({r['objective']})")
        fam += f" [signal {r['signal']}]" if r.get("signal") else ""
        var = r.get("final_grad_var") or []
        rows.append(
            [
                r["net"],
                fam,
                r["decoder_evaluations_per_step"],
                _common.fmt_mean_se(r["train_discrete_elbo"]),
                _common.fmt_mean_se(r["test_iwae_discrete"]),
                _common.fmt_mean_se(r["train_objective_last_epoch"]),
                _common.fmt_mean_se(r["seconds_per_1000_steps"]),
                f"{sum(var) / len(var):.3g}" if var else "—",
                len(r["seeds"]),
                notes,
            ]
        )
    lines = [
            f"Machine: {_common.machine_line(summary['machine'])}",
            f"Command: `{summary['command']}`",
            f"Dataset {summary['dataset']} (dynamically binarized), {summary['steps']:,} steps, "
            f"batch {BATCH_SIZE}, Adam {LR:g}, {LATENT_BITS} bits, learned prior logits; "
            "evaluation images: "
            f"{summary['eval_images']}. Mean ± s.e. over seeds; nats per image, higher is better. "
            "The trained objective of a relaxed family is its relaxed ELBO (a bound of the relaxed "
            "model, not of the discrete one).",
            "",
            _common.markdown_table(head, rows),
    ]  # fmt: skip
    pairs = summary.get("signal_pairs") or []
    if pairs:
        prow, claims = [], []
        for p in pairs:
            cells = [p["net"], p["family"], len(p["seeds"])]
            for key in ("test_iwae_discrete", "train_discrete_elbo"):
                d = p[key]
                ci = d.get("ci95")
                cells.append(f"{d['mean']:+.2f} [{ci[0]:+.2f}, {ci[1]:+.2f}]" if ci else
                             f"{d['mean']:+.2f}")  # fmt: skip
                cells.append(stats.format_p(d.get("wilcoxon_p")))
                claims.append((f"{p['net']} {p['family']} {key}", d.get("p_t")))
            ratios = p["grad_var_ratio_elbo_over_reconstruction"]
            cells.append(f"{sum(ratios) / len(ratios):.2f} ({min(ratios):.2f}–{max(ratios):.2f}, "
                         f"{len(ratios)} models)" if ratios else "—")  # fmt: skip
            prow.append(cells)
        lines += [
            "",
            "Learning signal, elbo minus reconstruction, paired by seed (Student-t 95% interval, "
            "and beside it the two-sided p-value of the Wilcoxon signed-rank test of the same "
            "differences, exact); gradient variance ratio elbo / reconstruction at the same "
            "trained parameters (mean, range):",
            "",
            _common.markdown_table(["net", "family", "seeds", f"test IWAE-{summary['iwae_k']}",
                                    "Wilcoxon p", "train ELBO", "Wilcoxon p",
                                    "gradient variance ratio"], prow),
        ]  # fmt: skip
        note = stats.multiple_comparison_note([q for _, q in claims], [c for c, _ in claims])
        if note:
            lines += ["", note]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
