"""The estimator study at a real budget: the protocol of Dong, Mnih & Tucker (2020, DisARM,
section 6) through binaryvae's own training path, with replicas, resume and diagnostics.

Setting: Fashion-MNIST, dynamically binarized (a fresh draw every epoch; the test set binarized
once), 200 latent bits, linear (784-200) or nonlinear (784-200-200-200, LeakyReLU 0.3) networks
with mirrored decoders, batch 50, Adam (``--lr``, the paper's 1e-4), learned prior logits. One
``binaryvae train --seeds`` replica group per (network, family): all seeds of a family train at
once. Runs are resumable (``--resume`` is added when the group's directory exists), so a
stopped session loses at most the epoch in progress.

Logged along the way (metrics.jsonl of each replica): the training objective per epoch, the test
discrete ELBO per epoch, the test IWAE-100 every ``--iwae-every`` epochs, and the gradient
diagnostics (variance of the encoder gradient estimate) every ``--grad-every`` steps. For the
score-function families the learning signal is ``--signal`` (default "elbo": the papers'
f = log p(x, b) - log q(b|x); "reconstruction": log p(x|b) with the analytic KL).

When a group finishes, one JSON per replica goes to ``--results`` (the raw results this
repository commits): its config, final summary, the per-epoch curves, the gradient records,
and the training-set discrete ELBO (1 sample per image, the training set binarized once with a
fixed seed) computed here. ``--aggregate-only`` turns the JSON files into the tables of
docs/benchmarks.md (mean ± s.e. over seeds, and paired differences between families with
Student-t 95% intervals).

    BINARYVAE_DATA_DIR=<folder with fashion-mnist/> python bench/estimator_study.py \\
        --runs-dir ../study-runs --nets nonlinear,linear --steps 100000
    python bench/estimator_study.py --aggregate-only
    python bench/estimator_study.py --quick     # smoke test (mnist-mini, 2 families, 2 seeds)
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import _common  # noqa: E402
from binaryvae import stats  # noqa: E402
from binaryvae.config import LEARNING_SIGNALS  # noqa: E402
from binaryvae.models.families import SCORE_FUNCTION_FAMILIES as SIGNAL_FAMILIES  # noqa: E402

FAMILIES = (
    "bernoulli-disarm",
    "bernoulli-reinforce-loo",
    "bernoulli-arm",
    "bernoulli-st",
    "steplogistic",
    "logistic",
    "gaussian-sigmoid",
)
# the pairs docs/benchmarks.md ranks against each other besides "family minus DisARM":
# (family, minus)
RANKED_PAIRS = (
    ("bernoulli-arm", "bernoulli-reinforce-loo"),
    ("steplogistic", "bernoulli-reinforce-loo"),
    ("steplogistic", "bernoulli-arm"),
    ("steplogistic", "gaussian-sigmoid"),
)
NETS = {"linear": (), "nonlinear": (200, 200)}
BITS, BATCH = 200, 50


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", default="fashion-mnist")
    p.add_argument("--nets", default="nonlinear,linear")
    p.add_argument("--families", default=",".join(FAMILIES))
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--steps", type=int, default=100_000, help="training steps (whole epochs)")
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--signal", default="elbo", choices=LEARNING_SIGNALS)
    p.add_argument("--iwae-every", type=int, default=12, help="epochs between test IWAE-100s")
    p.add_argument("--grad-every", type=int, default=5000, help="steps between diagnostics")
    p.add_argument("--grad-samples", type=int, default=50)
    p.add_argument("--runs-dir", default=str(HERE.parent.parent / "study-runs"),
                   help="where the run directories (with checkpoints) live; not committed")
    p.add_argument("--results", default=str(HERE / "results" / "estimator_study"))
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--aggregate-only", action="store_true")
    p.add_argument("--quick", action="store_true",
                   help="smoke test: mnist-mini, 2 families, 2 seeds, 1 epoch of 40 steps")
    args = p.parse_args(argv)
    _common.quick_folders(args, p, ("results", "runs_dir"))
    if args.quick:
        args.dataset, args.steps, args.seeds = "mnist-mini", 40, "0,1"
        args.families = "bernoulli-disarm,steplogistic"
        args.nets, args.iwae_every, args.grad_every, args.grad_samples = "nonlinear", 1, 20, 3
    return args


def group_name(args, net: str, family: str) -> str:
    signal = f"_{args.signal}" if family in SIGNAL_FAMILIES else ""
    return f"{args.dataset}_{net}_{family}{signal}_lr{args.lr:g}_{args.steps}"


def _epochs(args, train_size: int) -> int:
    return math.ceil(args.steps / math.ceil(train_size / BATCH))


def config_for(args, net: str, family: str, epochs: int) -> dict:
    extra = {"learning_signal": args.signal} if family in SIGNAL_FAMILIES else {}
    return {
        "dataset": args.dataset, "family": family, "latent_dim": BITS, "hidden": list(NETS[net]),
        "activation": "leaky_relu", "prior": "learned", "binarize": "dynamic",
        "batch_size": BATCH, "lr": args.lr, "epochs": epochs, "eval_iwae_every": args.iwae_every,
        "eval_iwae_k": 100, "grad_every": args.grad_every, "grad_samples": args.grad_samples,
        "threads": args.threads, "device": "cpu", "extra": extra,
    }  # fmt: skip


def run_group(args, net: str, family: str, train_size: int) -> Path:
    out = Path(args.runs_dir) / group_name(args, net, family)
    cfg = config_for(args, net, family, _epochs(args, train_size))
    out.parent.mkdir(parents=True, exist_ok=True)
    cfg_file = out.parent / (out.name + ".config.json")
    cfg_file.write_text(json.dumps(cfg, indent=2) + "\n")
    cmd = [sys.executable, "-m", "binaryvae", "train", "--config", str(cfg_file),
           "--seeds", args.seeds, "--out", str(out), "--no-report",
           "--threads", str(args.threads)]  # fmt: skip
    if (out / "replicas.json").is_file():
        cmd += ["--resume", "--epochs", str(cfg["epochs"])]
    env = dict(os.environ, OMP_WAIT_POLICY="PASSIVE", OMP_NUM_THREADS=str(args.threads))
    print(" ".join(cmd), flush=True)
    proc = subprocess.run(cmd, env=env)
    if proc.returncode not in (0, 1):  # 1: a replica stopped on NaN/inf (recorded below)
        raise SystemExit(f"{out.name}: binaryvae train exited {proc.returncode}")
    return out


def collect(args, net: str, family: str, group: Path) -> list[Path]:
    """One raw-result JSON per replica of a finished group."""
    import torch

    from binaryvae.data import test_tensor
    from binaryvae.evaluation import discrete_elbo
    from binaryvae.runs import load_run

    written = []
    results = Path(args.results)
    results.mkdir(parents=True, exist_ok=True)
    for seed_dir in sorted(group.glob("seed-*")):
        seed = int(seed_dir.name.split("-", 1)[1])
        rows = [json.loads(line) for line in (seed_dir / "metrics.jsonl").read_text().splitlines()
                if line.strip()]  # fmt: skip
        summary_path = seed_dir / "summary.json"
        summary = json.loads(summary_path.read_text()) if summary_path.is_file() else {}
        record = {
            "dataset": args.dataset, "net": net, "family": family, "seed": seed,
            "signal": args.signal if family in SIGNAL_FAMILIES else None, "lr": args.lr,
            "steps_per_epoch": math.ceil(60000 / BATCH) if args.dataset != "mnist-mini" else
            math.ceil(8000 / BATCH), "epochs_done": len(rows),
            "config": json.loads((seed_dir / "config.json").read_text()),
            "finished": bool(summary), "summary": summary,
            # the family's own ELBO: test_elbo (no relaxation); test_relaxed_elbo in runs
            # written before test_elbo existed
            "curves": [{k: r.get(k) for k in ("epoch", "train_elbo", "train_loss",
                                               "test_discrete_elbo", "test_relaxed_elbo",
                                               "test_elbo", "test_iwae_k100", "train_seconds",
                                               "eval_seconds") if k in r} for r in rows],
            "gradient": [g for r in rows for g in r.get("gradient", [])],
            "machine": _common.machine_info(),
        }  # fmt: skip
        record["steps_done"] = record["epochs_done"] * record["steps_per_epoch"]
        if summary:  # the training-set discrete ELBO, the protocol's "train ELBO"
            prepared = load_run(seed_dir, device="cpu")
            x = test_tensor(prepared.dataset.train_x, binarize="dynamic", seed=1)
            g = torch.Generator().manual_seed(1234 + seed)
            with torch.no_grad():
                vals = [discrete_elbo(prepared.model, xb, samples=1, generator=g)
                        for xb in x.split(5000)]  # fmt: skip
            record["train_discrete_elbo"] = torch.cat(vals).mean().item()
        path = results / f"{group.name}_s{seed}.json"
        _common.write_json(path, record)
        written.append(path)
        print(f"{path.name}: {describe(record)}", flush=True)
    return written


def describe(r: dict) -> str:
    s = r["summary"]
    if not s:
        return f"unfinished ({r['epochs_done']} epochs)"
    return (f"train discrete ELBO {r.get('train_discrete_elbo', float('nan')):.2f}, test "
            f"IWAE-{s.get('iwae_k')} {s.get('test_iwae', float('nan')):.2f}, "
            f"{s.get('seconds_per_epoch', 0):.0f} s/epoch")  # fmt: skip


def finished_runs(args) -> list[dict]:
    """The raw results in ``--results`` whose group finished."""
    runs = [json.loads(f.read_text()) for f in sorted(Path(args.results).glob("*.json"))]
    return [r for r in runs if r.get("finished")]


def aggregate(args, runs: list[dict]) -> dict:
    groups: dict[tuple, list[dict]] = {}
    for r in runs:
        key = (r["dataset"], r["net"], r["family"], r.get("signal"), r["lr"], r["steps_done"])
        groups.setdefault(key, []).append(r)
    rows = []
    def order(item):  # the study's order: networks as in NETS, families as in FAMILIES
        dataset, net, family, signal, lr, steps = item[0]
        rank = FAMILIES.index(family) if family in FAMILIES else len(FAMILIES)
        return (dataset, list(NETS).index(net), rank, family, str(signal), lr, steps)

    for (dataset, net, family, signal, lr, steps), rs in sorted(groups.items(), key=order):
        rows.append({
            "dataset": dataset, "net": net, "family": family, "signal": signal, "lr": lr,
            "steps": steps, "seeds": sorted(r["seed"] for r in rs),
            "train_discrete_elbo": [r["train_discrete_elbo"] for r in rs],
            "test_iwae_100": [r["summary"]["test_iwae"] for r in rs],
            "seconds_per_epoch": [r["summary"]["seconds_per_epoch"] for r in rs],
            "final_grad_var": [r["gradient"][-1]["grad_var"] for r in rs if r["gradient"]],
        })  # fmt: skip
    pairs = []
    by = {(r["dataset"], r["net"], r["steps"], r["lr"], r["family"]): r for r in rows}
    for (dataset, net, steps, lr, family), r in by.items():
        if family == "bernoulli-disarm":
            continue
        ref = by.get((dataset, net, steps, lr, "bernoulli-disarm"))
        if ref is not None:
            pairs.append(paired(ref, r, "test_iwae_100")
                         | {"train_elbo": paired(ref, r, "train_discrete_elbo")})  # fmt: skip
    ranked = []
    for dataset, net, steps, lr in dict.fromkeys(k[:4] for k in by):
        for family, minus in RANKED_PAIRS:
            a = by.get((dataset, net, steps, lr, minus))
            b = by.get((dataset, net, steps, lr, family))
            if a is not None and b is not None:
                ranked.append(paired(a, b, "test_iwae_100")
                              | {"train_elbo": paired(a, b, "train_discrete_elbo")})  # fmt: skip
    machine = runs[0]["machine"] if runs else _common.machine_info()
    return {"benchmark": "estimator_study", "command": _common.command_line(),
            "machine": machine, "runs_line": _common.runs_line([r.get("machine") for r in runs]),
            "rows": rows, "paired_vs_disarm": pairs, "paired_ranked": ranked}  # fmt: skip


def paired(a: dict, b: dict, key: str) -> dict:
    """b - a of ``key`` paired by seed (`binaryvae.stats.paired`): mean, s.e., the Student-t 95%
    interval, the paired t test's and the Wilcoxon signed-rank test's p-values."""
    d = stats.paired(dict(zip(b["seeds"], b[key], strict=True)),
                     dict(zip(a["seeds"], a[key], strict=True)))  # fmt: skip
    out = {"net": b["net"], "family": b["family"], "minus": a["family"], "key": key,
           "n": d["n"], "diffs": d["diffs"]}  # fmt: skip
    if d["n"] >= 2:
        out.update({k: d[k] for k in ("mean", "se", "t", "ci95", "p_t", "wilcoxon_p")})
    return out


def _paired_table(pairs: list[dict], *, with_minus: bool) -> list[str]:
    """Lines of one table of paired differences (test IWAE-100 and train ELBO: mean ± s.e.,
    t interval, Wilcoxon p) and the multiple-comparison note (Holm) over its comparisons."""

    def cells(p):
        ci = p.get("ci95")
        diff = f"{p['mean']:+.2f} ± {p['se']:.2f}" if ci else "—"
        interval = f"t = {p['t']:.2f}: [{ci[0]:+.2f}, {ci[1]:+.2f}]" if ci else "—"
        return [diff, interval, stats.format_p(p.get("wilcoxon_p"))]

    prow, claims = [], []
    for p in pairs:
        name = f"{p['family']} minus {p['minus']}" if with_minus else p["family"]
        train = cells(p["train_elbo"]) if "train_elbo" in p else ["—", "—", "—"]
        prow.append([p["net"], name, p["n"], *cells(p), *train])
        claims.append((f"{p['net']} {name} IWAE", p.get("p_t")))
        if "train_elbo" in p:
            claims.append((f"{p['net']} {name} ELBO", p["train_elbo"].get("p_t")))
    head = ["net", "family minus other" if with_minus else "family", "seeds",
            "test IWAE-100 difference", "95% interval", "Wilcoxon p",
            "train ELBO difference", "95% interval", "Wilcoxon p"]  # fmt: skip
    lines = ["", _common.markdown_table(head, prow)]
    note = stats.multiple_comparison_note([q for _, q in claims], [c for c, _ in claims])
    if note:
        lines += ["", note]
    return lines


def render(summary: dict) -> str:
    head = ["net", "family (signal)", "steps", "seeds", "train ELBO (discrete)",
            "test IWAE-100 (discrete)", "s / epoch", "encoder gradient variance, last"]  # fmt: skip
    rows = []
    for r in summary["rows"]:
        fam = r["family"] + (f" ({r['signal']})" if r["signal"] else "")
        var = r["final_grad_var"]
        rows.append([r["net"], fam, f"{r['steps']:,}", len(r["seeds"]),
                     _common.fmt_mean_se(r["train_discrete_elbo"]),
                     _common.fmt_mean_se(r["test_iwae_100"]),
                     _common.fmt_mean_se(r["seconds_per_epoch"], 0),
                     f"{sum(var) / len(var):.3g}" if var else "—"])  # fmt: skip
    # header lines end in two spaces: markdown line breaks, so the block pastes into docs as is
    lines = [f"Machine: {_common.machine_line(summary['machine'])}  ",
             f"{summary['runs_line']}  ",
             f"Command: `{summary['command']}`", "",
             "Mean ± s.e. over seeds, nats per image, higher is better; the bounds are of the "
             "discrete (200-bit) model.", "", _common.markdown_table(head, rows), ""]  # fmt: skip
    if summary["paired_vs_disarm"]:
        lines.append(
            "Paired differences of the test IWAE-100 and the train ELBO (both of the discrete "
            "model), family minus DisARM, by seed (Student-t 95% interval; beside it the "
            "two-sided p-value of the Wilcoxon signed-rank test of the same differences, exact: "
            "with 3 seeds it cannot go below 0.25):"
        )
        lines += _paired_table(summary["paired_vs_disarm"], with_minus=False)
    if summary.get("paired_ranked"):
        lines += ["",
                  "The other pairs the text ranks, paired by seed the same way (family minus the "
                  "named one; Holm's adjustment over this table's comparisons):"]  # fmt: skip
        lines += _paired_table(summary["paired_ranked"], with_minus=True)
    return "\n".join(lines)


def _mean_se_series(runs: list[dict], rows_of, x_key: str, y_key: str):
    """x values present in every run, the mean of y over runs and its s.e. (0 for one run)."""
    import numpy as np

    per_run = [{r[x_key]: r[y_key] for r in rows_of(run) if r.get(y_key) is not None}
               for run in runs]  # fmt: skip
    xs = sorted(set.intersection(*(set(d) for d in per_run))) if per_run else []
    columns = [stats.mean_se([d[x] for d in per_run]) for x in xs]
    mean = np.array([m for m, _ in columns], dtype=float)
    se = np.array([s or 0.0 for _, s in columns], dtype=float)
    return np.array(xs, dtype=float), mean, se


def plot(args, runs: list[dict], path: Path) -> Path | None:
    """Curves along training from the raw results, laid out like Figure 5 of Dong, Mnih &
    Tucker (2020) but not all the same quantities (docs/benchmarks.md, section 6): one row per
    network; columns: the test discrete ELBO after every epoch (1 sample; every family scored
    as the discrete model; the paper's left column is the training-set ELBO), the test IWAE-100
    every ``--iwae-every`` epochs, and the variance of the per-image gradient with respect to
    the encoder's outputs (`binaryvae.diagnostics.gradients`; log scale). Mean over seeds, s.e.
    shaded."""
    from binaryvae.report.style import colour_of, context, figure_legend, new_figure, save

    if not runs:
        return None
    nets = [n for n in NETS if any(r["net"] == n for r in runs)]
    families = [f for f in FAMILIES if any(r["family"] == f for r in runs)]
    columns = (
        ("curves", "test_discrete_elbo", "test ELBO (discrete, 1 sample)", "linear"),
        ("curves", "test_iwae_k100", "test IWAE-100 (discrete)", "linear"),
        ("gradient", "grad_var", "encoder gradient variance", "log"),
    )
    handles, labels = [], []
    with context():
        fig = new_figure(12, 3.3 * len(nets) + 0.8)
        axes = fig.subplots(len(nets), 3, squeeze=False)
        for i, net in enumerate(nets):
            for j, (where, key, title, scale) in enumerate(columns):
                ax = axes[i][j]
                for k, family in enumerate(families):
                    group = [r for r in runs if r["net"] == net and r["family"] == family]
                    if not group:
                        continue
                    per_epoch = group[0]["steps_per_epoch"]

                    def rows_of(run, where=where, per_epoch=per_epoch):
                        if where == "gradient":
                            return run["gradient"]
                        return [dict(c, step=c["epoch"] * per_epoch) for c in run["curves"]]

                    xs, mean, se = _mean_se_series(group, rows_of, "step", key)
                    if not len(xs):
                        continue
                    (line,) = ax.plot(xs, mean, "-", color=colour_of(k), lw=1.2,
                                      marker="o" if len(xs) < 20 else None, ms=3)  # fmt: skip
                    ax.fill_between(xs, mean - se, mean + se, color=colour_of(k), alpha=0.25)
                    if family not in labels:
                        handles.append(line)
                        labels.append(family)
                ax.set_yscale(scale)
                ax.set_xlabel("training step")
                ax.set_title(f"{net} network: {title}")
                if j < 2:
                    ax.set_ylabel("nats per test image")
        figure_legend(fig, handles, labels, ncols=min(len(labels), 4))
        fig.suptitle(f"{args.dataset}, 200 bits: mean over seeds, s.e. shaded")
        return save(fig, path)


def main(argv=None) -> int:
    args = parse_args(argv)
    if not args.aggregate_only:
        from binaryvae.data import load_dataset

        train_size = len(load_dataset(args.dataset).train_x)
        for net in args.nets.split(","):
            for family in args.families.split(","):
                group = run_group(args, net, family, train_size)
                collect(args, net, family, group)
    runs = finished_runs(args)
    summary = aggregate(args, runs)
    name = "estimator_study" + ("_quick" if args.quick else "")
    _common.write_table(Path(args.results).parent, name, summary, render(summary))
    figure = plot(args, runs, Path(args.results).parent / f"{name}.png")
    if figure is not None:
        print(f"figure: {figure}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
