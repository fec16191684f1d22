"""Cross-check against the reference implementation: the DisARM protocol run by the public
TensorFlow code of the DisARM / ARMS papers and by binaryvae, same data, steps and seeds.

The reference is github.com/alekdimi/arms (Dimitriev & Zhou, ICML 2021; a descendant of
google-research's ``disarm/binary``). This script never downloads it: give a checkout with
``--reference-dir`` and a Python that has TensorFlow, TensorFlow Probability, tf-keras, scipy,
absl-py and tensorboard with ``--reference-python`` (default ``$BINARYVAE_REFERENCE_PYTHON``).
The reference reads data through ``tfds.load``; `reference_loader.py` replaces that one function
by a loader of the same Fashion-MNIST IDX files binaryvae reads (``--data-dir``, a folder holding
``fashion-mnist/``; default ``$BINARYVAE_DATA_DIR``), and leaves the reference's training logic
untouched (its modules are imported as they are; their sha256 goes into each result).

Reference side, per seed: ``experiment_launcher`` with the DisARM flags of the published runs
(``--grad_type=disarm --num_pairs=1 --demean_input --initialize_with_bias``, batch 50, Adam 1e-4,
prior SGD 1e-2, 200 bits, ``--encoder_type`` = ``--net``), ``--steps`` updates; then, after exactly
that many updates, the reference's own ``evaluate`` on the test set with 1 sample (test ELBO) and
100 samples (test IWAE-100: the reference never computes it itself; its log holds 1-sample
losses every 1,000 steps, all kept in the result). Steps/s: the training loop's time without
the reference's periodic evaluations and without the first (tracing) step.

``--estimator rodeo`` checks RODEO (Shi et al. 2022) against its authors' code instead
(``--reference-dir``: a checkout of github.com/thjashin/rodeo; its
``experiment_launcher_singlelayer`` with ``--grad_type=discrete_stein_avg --K=2``) on the
protocol its README publishes for Fashion-MNIST (lr 3e-4, batch 100, the prior fixed, raw
inputs), binaryvae with the same options over its preset (`RODEO_BINARYVAE_OPTIONS`); its test
IWAE-100 is computed by `reference_loader.iwae_bound` (RODEO's own ``evaluate`` draws K only).

binaryvae side, per seed: ``binaryvae train --protocol disarm-<net> --family bernoulli-disarm
--steps N --seed S --threads 1``, reading ``test_discrete_elbo`` and ``test_iwae_k100`` from its
summary.json. When this binaryvae has no ``--protocol`` / ``--steps`` yet, it says so and exits 2.

Every run is one process on ``--threads`` threads (TF intra/inter-op pools and tf.data's pool,
``OMP_NUM_THREADS``), runs alternate (reference seed 0, binaryvae seed 0, reference seed 1, ...),
and a run whose result file exists is skipped (``--force`` reruns it): the raw JSON per run goes
to ``--results`` (committed) with ``crosscheck_<net>_steps<N>.md``, the table.

    BINARYVAE_REFERENCE_PYTHON=<venv>/bin/python BINARYVAE_DATA_DIR=$DATA \\
        nice -n 10 python bench/crosscheck_reference.py --reference-dir <arms checkout> \\
        --steps 12000 --seeds 0,1
    python bench/crosscheck_reference.py --aggregate-only
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import _common  # noqa: E402
from _common import without_folders  # noqa: E402

__all__ = [
    "main",
    "reference_flags",
    "result_name",
    "binaryvae_missing_options",
    "public_command",
    "without_folders",
]

REFERENCE_MODULES = ("experiment_launcher.py", "networks.py", "dataset.py")
# The reference code of each estimator: alekdimi/arms by default; RODEO's own code
# (github.com/thjashin/rodeo, modified from the arms code: the same DiscreteVAE, dataset.py and
# tfds.load) for rodeo, with its launcher module and the modules hashed into each result.
REFERENCES = {
    "arms": {"repository": "github.com/alekdimi/arms", "launcher": "experiment_launcher",
             "modules": REFERENCE_MODULES},
    "rodeo": {"repository": "github.com/thjashin/rodeo",
              "launcher": "experiment_launcher_singlelayer",
              "modules": ("experiment_launcher_singlelayer.py", "networks.py", "dataset.py")},
}  # fmt: skip
# --estimator: the reference's --grad_type and binaryvae's family for each estimator both
# implement. With --num-pairs P the reference's loorf and arms draw K = 2P samples and its
# disarm averages P pairs; binaryvae gets the same K (extra option in ESTIMATOR_OPTION).
ESTIMATORS = {
    "disarm": ("disarm", "bernoulli-disarm"),
    "loorf": ("loorf", "bernoulli-reinforce-loo"),
    "arm": ("arm", "bernoulli-arm"),
    "arms": ("arms", "bernoulli-arms"),
    # RELAX: both learn a control variate c = eta [f(sigma(z / lambda)) + r(.)], parametrised
    # differently (the reference's r reads the image and z, binaryvae's the logits and z; the
    # reference minimises the squared encoder-parameter gradient summed over the batch,
    # binaryvae the per-logit estimate's second moment): a cross-check of the protocol around
    # two RELAXes, not of one formula (docs/benchmarks.md, section 6).
    "relax": ("relax", "bernoulli-relax"),
    # RODEO (Shi et al. 2022) at K = 2: its code's discrete_stein_avg, on its own published
    # Fashion-MNIST protocol (`reference_flags`; binaryvae: `RODEO_BINARYVAE_OPTIONS`)
    "rodeo": ("discrete_stein_avg", "bernoulli-rodeo"),
}
ESTIMATOR_OPTION = {"loorf": "loo_samples", "arms": "samples"}
# each estimator's name in the table's title
ESTIMATOR_TITLES = {"disarm": "DisARM", "loorf": "REINFORCE-LOO", "arm": "ARM", "arms": "ARMS",
                    "relax": "RELAX", "rodeo": "RODEO"}  # fmt: skip
# RODEO's published protocol (the thjashin/rodeo README: fashion_mnist at lr 3e-4 for both
# networks, its defaults otherwise: batch 100, prior logits fixed at 0 (prior_lr 0), raw {0,1}
# input to both networks, Keras init with zero biases, Adam epsilon 1e-7, the control network
# and (alpha, beta) by their own Adams at 1e-3, decoder gradients from the K samples) as
# binaryvae options over the disarm-<net> preset (what the preset sets otherwise is the same:
# the split, dynamic binarization, 200 bits, LeakyReLU(0.3) 200-200 network, glorot init)
RODEO_BINARYVAE_OPTIONS = (
    "--batch-size", "100", "--lr", "3e-4", "--prior", "fixed", "--prior-sgd-lr", "none",
    "--encoder-input", "raw", "--decoder-input", "bits", "--decoder-bias", "default",
)  # fmt: skip
RODEO_EXTRA = {"samples": 2, "rodeo_lr": 1e-3}
BINARYVAE_OPTIONS = ("--protocol", "--steps")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--reference-dir", help="a checkout of github.com/alekdimi/arms "
                   "(of github.com/thjashin/rodeo for --estimator rodeo)")
    p.add_argument(
        "--reference-commit",
        help="its commit, when the checkout is not a git work tree (recorded in each result)",
    )
    p.add_argument(
        "--reference-python",
        default=os.environ.get("BINARYVAE_REFERENCE_PYTHON"),
        help="Python with TensorFlow for the reference (default $BINARYVAE_REFERENCE_PYTHON)",
    )
    p.add_argument(
        "--data-dir",
        default=os.environ.get("BINARYVAE_DATA_DIR"),
        help="folder holding fashion-mnist/ (default $BINARYVAE_DATA_DIR)",
    )
    p.add_argument("--net", default="nonlinear", choices=("nonlinear", "linear"))
    p.add_argument("--estimator", default="disarm", choices=tuple(ESTIMATORS),
                   help="the estimator both sides run (reference --grad_type; default disarm)")
    p.add_argument("--num-pairs", type=int, default=1,
                   help="the reference's --num_pairs (loorf, arms: K = 2 x this; default 1)")
    p.add_argument("--steps", type=int, default=12_000)
    p.add_argument("--seeds", default="0,1")
    p.add_argument("--side", default="both", choices=("both", "reference", "binaryvae"))
    p.add_argument("--iwae-k", type=int, default=100)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument(
        "--reference-flag",
        action="append",
        default=[],
        help="an extra flag for the reference (e.g. --nodemean_input), for ablations; needs --tag",
    )
    p.add_argument(
        "--binaryvae-flag",
        action="append",
        default=[],
        help="an extra option for binaryvae train, given as one --binaryvae-flag=--opt=value "
        "(e.g. --binaryvae-flag=--encoder-input=raw): the ablation of one protocol option; "
        "needs --tag",
    )
    p.add_argument("--tag", default="", help="suffix of the result files of this variant")
    p.add_argument("--results", default=str(HERE / "results" / "crosscheck"))
    p.add_argument(
        "--runs-dir",
        default=None,
        help="logs and run directories (not committed; default: a temporary folder)",
    )
    p.add_argument("--force", action="store_true", help="rerun runs whose result file exists")
    p.add_argument("--aggregate-only", action="store_true")
    args = p.parse_args(argv)
    try:
        args.seed_list = [int(s) for s in args.seeds.split(",") if s.strip()]
    except ValueError:
        p.error(f"--seeds: expected integers separated by commas, got {args.seeds!r}")
    if args.reference_flag and not args.tag:
        p.error("--reference-flag: give --tag to name the variant's result files")
    if args.binaryvae_flag and not args.tag:
        p.error("--binaryvae-flag: give --tag to name the variant's result files")
    for flag in args.binaryvae_flag:
        if not flag.startswith("--") or "=" not in flag:
            p.error(f"--binaryvae-flag: expected --option=value, got {flag!r}")
    if args.steps < 2:
        p.error("--steps: at least 2")
    if args.num_pairs < 1 or (args.num_pairs > 1 and args.estimator not in ESTIMATOR_OPTION):
        p.error(f"--num-pairs: 1, or more for {' / '.join(ESTIMATOR_OPTION)} only")
    return args


def reference_of(estimator: str) -> dict:
    """The reference code that runs ``estimator`` (`REFERENCES`)."""
    return REFERENCES["rodeo" if estimator == "rodeo" else "arms"]


def reference_flags(net: str, extra: list[str] = (), estimator: str = "disarm",
                    num_pairs: int = 1) -> list[str]:
    """The reference's flags for ``estimator`` on Fashion-MNIST as published (every value
    explicit, so the record does not depend on the reference's defaults)."""
    if estimator == "rodeo":  # RODEO's own code and protocol (`RODEO_BINARYVAE_OPTIONS`)
        return [
            "--dataset=fashion_mnist",
            f"--grad_type={ESTIMATORS[estimator][0]}",
            f"--encoder_type={net}",
            f"--K={2 * num_pairs}",
            "--D=200",
            "--batch_size=100",
            "--genmo_lr=3e-4",
            "--infnet_lr=3e-4",
            "--prior_lr=0",
            "--hyper_lr=1e-3",
            "--control_lr=1e-3",
            *extra,
        ]
    return [
        "--dataset=fashion_mnist",
        f"--grad_type={ESTIMATORS[estimator][0]}",
        f"--encoder_type={net}",
        f"--num_pairs={num_pairs}",
        "--batch_size=50",
        "--genmo_lr=1e-4",
        "--infnet_lr=1e-4",
        "--prior_lr=1e-2",
        "--demean_input",
        "--initialize_with_bias",
        *extra,
    ]


def estimator_name(estimator: str = "disarm", num_pairs: int = 1) -> str:
    """The estimator's part of result file names: ``disarm``, ``loorf``, ``arms-pairs2``, ..."""
    return estimator + (f"-pairs{num_pairs}" if num_pairs > 1 else "")


def result_name(side: str, net: str, steps: int, seed: int, tag: str = "",
                estimator: str = "disarm", num_pairs: int = 1) -> str:
    """File name of one run's raw result."""
    name = estimator_name(estimator, num_pairs)
    return f"{side}-{name}-{net}-steps{steps}-seed{seed}{'-' + tag if tag else ''}.json"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _reference_commit(args) -> str | None:
    if args.reference_commit:
        return args.reference_commit
    out = subprocess.run(["git", "-C", args.reference_dir, "rev-parse", "HEAD"],
                         capture_output=True, text=True)  # fmt: skip
    return out.stdout.strip() or None if out.returncode == 0 else None


def _machine(threads: int) -> dict:
    import torch

    torch.set_num_threads(threads)  # the record's thread count is the runs' (1 by default)
    info = _common.machine_info()
    info["cpu_capability"] = torch.backends.cpu.get_cpu_capability()
    return info


def _child_env(threads: int) -> dict:
    env = dict(os.environ)
    env.update(
        OMP_NUM_THREADS=str(threads),
        MKL_NUM_THREADS=str(threads),
        TF_NUM_INTRAOP_THREADS=str(threads),
        TF_NUM_INTEROP_THREADS=str(threads),
        TF_USE_LEGACY_KERAS="1",  # the reference is Keras 2 code: tf.keras = tf_keras
        TF_CPP_MIN_LOG_LEVEL="2",
    )
    return env


def _fail(message: str) -> None:
    print(f"crosscheck_reference.py: {message}", file=sys.stderr)
    sys.exit(2)


def binaryvae_missing_options(help_text: str | None = None) -> list[str]:
    """The options of ``binaryvae train`` this cross-check needs (`BINARYVAE_OPTIONS`) that its
    ``--help`` (``help_text``, default: asked of this Python's binaryvae) does not list."""
    if help_text is None:
        help_text = subprocess.run([sys.executable, "-m", "binaryvae", "train", "--help"],
                                   capture_output=True, text=True).stdout  # fmt: skip
    return [
        o
        for o in BINARYVAE_OPTIONS
        if not re.search(rf"(?<![\w-]){re.escape(o)}(?![\w-])", help_text)
    ]


def run_reference_side(args, seed: int, runs: Path) -> dict:
    """One reference run in its own process; its result dict."""
    ref_dir = Path(args.reference_dir).resolve()
    est = estimator_name(args.estimator, args.num_pairs)
    logdir = runs / f"reference-{est}-{args.net}-steps{args.steps}-seed{seed}{args.tag}"
    logdir.mkdir(parents=True, exist_ok=True)
    out = logdir / "result.json"
    cmd = [
        args.reference_python, str(HERE / "reference_loader.py"),
        "--reference-dir", str(ref_dir), "--data-dir", str(args.data_dir),
        "--steps", str(args.steps), "--seed", str(seed), "--iwae-k", str(args.iwae_k),
        "--threads", str(args.threads), "--logdir", str(logdir / "tb"), "--out", str(out),
        "--launcher", reference_of(args.estimator)["launcher"],
        "--", *reference_flags(args.net, args.reference_flag, args.estimator, args.num_pairs),
    ]  # fmt: skip
    t0 = time.perf_counter()
    with open(logdir / "output.txt", "w") as log:
        proc = subprocess.run(cmd, env=_child_env(args.threads), stdout=log,
                              stderr=subprocess.STDOUT)  # fmt: skip
    if proc.returncode != 0:
        tail = (logdir / "output.txt").read_text().splitlines()[-15:]
        print("\n".join(tail), file=sys.stderr)
        raise SystemExit(f"reference run seed {seed} failed (exit {proc.returncode}); "
                         f"log: {logdir / 'output.txt'}")  # fmt: skip
    result = json.loads(out.read_text())
    result["wall_seconds"] = time.perf_counter() - t0
    reference = reference_of(args.estimator)
    result["reference"] = {
        "repository": reference["repository"],
        "commit": _reference_commit(args),
        "sha256": {m: _sha256(ref_dir / m) for m in reference["modules"]},
    }
    result["reference_flags"] = [
        f for f in result["reference_flags"] if not f.startswith("--logdir")
    ]
    result["test_elbo"] = result["final"]["test_elbo_1sample"]
    result[f"test_iwae_k{args.iwae_k}"] = result["final"][f"test_iwae_k{args.iwae_k}"]
    result["steps_per_s"] = result["timing"]["steps_per_s"]
    return result


def run_binaryvae_side(args, seed: int, runs: Path) -> dict:
    """One ``binaryvae train --protocol`` run in its own process; its result dict."""
    est = estimator_name(args.estimator, args.num_pairs)
    out = runs / f"binaryvae-{est}-{args.net}-steps{args.steps}-seed{seed}{args.tag}"
    family = ESTIMATORS[args.estimator][1]
    cmd = [
        sys.executable, "-m", "binaryvae", "train", "--protocol", f"disarm-{args.net}",
        "--family", family, "--steps", str(args.steps), "--seed", str(seed),
        "--threads", str(args.threads), "--out", str(out), "--quiet", "--no-report",
    ]  # fmt: skip
    if args.estimator == "rodeo":  # RODEO's own protocol over the preset
        cmd += [*RODEO_BINARYVAE_OPTIONS, "--config", str(_samples_config(out, args))]
    elif args.estimator in ESTIMATOR_OPTION:  # the reference's K = 2 x num_pairs samples
        cmd += ["--config", str(_samples_config(out, args))]
    for flag in args.binaryvae_flag:  # an ablation: one preset option set back (recorded)
        cmd += flag.split("=", 1)
    if args.data_dir:
        cmd += ["--data-dir", str(args.data_dir)]
    if out.exists():
        cmd.append("--force")
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=_child_env(args.threads), capture_output=True, text=True)
    if proc.returncode != 0:
        print((proc.stdout + proc.stderr)[-3000:], file=sys.stderr)
        raise SystemExit(f"binaryvae run seed {seed} failed (exit {proc.returncode})")
    wall = time.perf_counter() - t0
    summary = json.loads((out / "summary.json").read_text())
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if line]
    train_seconds = sum(r.get("train_seconds", 0.0) for r in rows) or None
    key = f"test_iwae_k{args.iwae_k}"
    folders = {str(runs): "<runs>"}
    if args.data_dir:
        folders[str(args.data_dir)] = "$DATA"
    return without_folders({
        "side": "binaryvae",
        "steps": args.steps,
        "seed": seed,
        "command": " ".join(cmd[2:]),
        "config": json.loads((out / "config.json").read_text()),
        "summary": summary,
        "metrics": rows,
        "test_elbo": summary.get("test_discrete_elbo"),
        key: summary.get(key),
        "timing": {"train_seconds": train_seconds, "wall_seconds": wall},
        "steps_per_s": args.steps / train_seconds if train_seconds else None,
        "wall_seconds": wall,
    }, folders)


def _samples_config(out: Path, args) -> Path:
    """A config file beside the run giving the family's sample count (the reference's K):
    ``binaryvae train`` takes family options from ``--config``'s ``extra``."""
    path = out.parent / f"{out.name}.config.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    if args.estimator == "rodeo":
        extra = dict(RODEO_EXTRA, samples=2 * args.num_pairs)
    else:
        extra = {ESTIMATOR_OPTION[args.estimator]: 2 * args.num_pairs}
    path.write_text(json.dumps({"extra": extra}))
    return path


PATH_OPTIONS = {
    "--reference-dir": "<arms checkout>",
    "--reference-python": "<reference python>",
    "--data-dir": "$DATA",
    "--runs-dir": "<runs>",
    "--results": "<results>",
}


def public_command(argv: list[str]) -> str:
    """The bench command as recorded in a committed result: the values of the options that name
    folders of this machine (`PATH_OPTIONS`) replaced by placeholders."""
    out, skip = ["python", "bench/crosscheck_reference.py"], False
    for arg in argv:
        if skip:
            skip = False
            continue
        name = arg.split("=", 1)[0]
        if name in PATH_OPTIONS:
            out += [name, PATH_OPTIONS[name]]
            skip = "=" not in arg
        else:
            out.append(arg)
    return " ".join(out)


def _steady(result: dict) -> bool:
    """Whether a reference result's steps/s is the steady-state measure (binaryvae's: always)."""
    return result["side"] != "reference" or "steady_steps" in result["timing"]


def _fmt(v, digits=2):
    return "n/a" if v is None else f"{v:.{digits}f}"


def aggregate(args) -> str:
    """The markdown table of every result file of this (net, steps, tag)."""
    res_dir = Path(args.results)
    key = f"test_iwae_k{args.iwae_k}"
    per_side: dict[str, list[dict]] = {}
    for side in ("reference", "binaryvae"):
        est = estimator_name(args.estimator, args.num_pairs)
        for path in sorted(res_dir.glob(f"{side}-{est}-{args.net}-steps{args.steps}-seed*.json")):
            tagged = path.stem.split("-seed", 1)[1]
            if tagged.partition("-")[2] != args.tag:
                continue
            per_side.setdefault(side, []).append(json.loads(path.read_text()))
    machines = [r["machine"] for rs in per_side.values() for r in rs if r.get("machine")]
    k = f" (K = {2 * args.num_pairs})" if args.estimator in ESTIMATOR_OPTION else ""
    lines = [f"# Cross-check against the reference: {ESTIMATOR_TITLES[args.estimator]}{k}, "
             f"{args.net} net, "
             f"{args.steps:,} steps{' (' + args.tag + ')' if args.tag else ''}", ""]  # fmt: skip
    if machines:
        m = machines[0]
        lines += [f"Machine: {_common.machine_line(m)}; "
                  f"torch.backends.cpu.get_cpu_capability() = {m.get('cpu_capability')}",
                  "", _common.runs_line(machines), ""]  # fmt: skip
    ref = per_side.get("reference", [])
    if ref:
        r0 = ref[0]
        lines += [
            f"Reference: {r0['reference']['repository']} at {r0['reference']['commit']}, "
            f"TensorFlow {r0['tensorflow']}, threads {r0['tf_threads']}; flags "
            f"`{' '.join(r0['reference_flags'])}`; data through bench/reference_loader.py "
            f"(tfds.load replaced; splits {r0['tfds_loads'][0]['split']}).",
            "",
        ]
    rows = []
    for side, rs in per_side.items():
        rows.append([
            side,
            ", ".join(str(r["seed"]) for r in rs),
            _common.fmt_mean_se([r["test_elbo"] for r in rs if r["test_elbo"] is not None]),
            _common.fmt_mean_se([r[key] for r in rs if r.get(key) is not None]),
            _common.fmt_mean_se([r["steps_per_s"] for r in rs if r["steps_per_s"]]),
            _common.fmt_mean_se([1000 / r["steps_per_s"] for r in rs if r["steps_per_s"]], 1),
        ])  # fmt: skip
    lines += [_common.markdown_table(
        ["side", "seeds", "test ELBO (1 sample)", f"test IWAE-{args.iwae_k}", "steps/s",
         "s / 1,000 steps"], rows), ""]  # fmt: skip
    per_run = []
    for side, rs in per_side.items():
        for r in rs:
            logged = r.get("logged") or []
            last = logged[-1] if logged else {}
            per_run.append([
                side, r["seed"], _fmt(r["test_elbo"]), _fmt(r.get(key)),
                _fmt(r["steps_per_s"]) + ("" if _steady(r) else " (a)"),
                _fmt(-last["eval_metric/test"]) + f" (after {last['updates']:,})"
                if "eval_metric/test" in last else "",
                r["machine"]["date_utc"] if r.get("machine") else "",
                r["machine"]["loadavg_1_5_15"] if r.get("machine") else "",
            ])  # fmt: skip
    note = (
        "Bounds in nats per image, higher is better; mean ± s.e. over seeds; the reference's "
        "final bounds are its own `evaluate` after exactly the steps given (its log stops at "
        "the step before). steps/s: the training loop alone, 1 thread per run; reference: after "
        "a warm-up of min(100, steps/10) steps, its periodic evaluations taken out ((a): runs "
        "recorded before that measure, timed from the second step instead); binaryvae: its "
        "train_seconds. Load average at the start of each run: the machine is shared."
    )
    header = ["side", "seed", "test ELBO", f"test IWAE-{args.iwae_k}", "steps/s",
              "last logged test ELBO", "date", "load 1/5/15"]  # fmt: skip
    lines += ["Per run (reference's last logged 1-sample test ELBO beside the final one):", "",
              _common.markdown_table(header, per_run), "", note]  # fmt: skip
    text = "\n".join(lines) + "\n"
    est = "" if args.estimator == "disarm" else estimator_name(args.estimator, args.num_pairs) + "_"
    name = f"crosscheck_{est}{args.net}_steps{args.steps}{'_' + args.tag if args.tag else ''}.md"
    res_dir.mkdir(parents=True, exist_ok=True)
    (res_dir / name).write_text(text)
    print(text)
    return text


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.aggregate_only:
        aggregate(args)
        return 0
    sides = ["reference", "binaryvae"] if args.side == "both" else [args.side]
    if "reference" in sides:
        reference = reference_of(args.estimator)
        if not args.reference_dir or not all(
            (Path(args.reference_dir) / m).is_file() for m in reference["modules"]
        ):
            _fail(f"--reference-dir: {args.reference_dir!r} is not a checkout of "
                  f"{reference['repository']} (needs {', '.join(reference['modules'])})")
        if not args.reference_python:
            _fail("--reference-python: not given and $BINARYVAE_REFERENCE_PYTHON is not set")
    if args.data_dir is None:
        _fail("--data-dir: not given and $BINARYVAE_DATA_DIR is not set")
    if "binaryvae" in sides:
        missing = binaryvae_missing_options()
        if missing:
            _fail(f"binaryvae train has no {' / '.join(missing)} option yet (issue 28): "
                  "run the reference side alone with --side reference")  # fmt: skip
    runs = Path(args.runs_dir) if args.runs_dir else Path(tempfile.mkdtemp(prefix="crosscheck-"))
    results = Path(args.results)
    command = public_command(sys.argv[1:] if argv is None else list(argv))
    for seed in args.seed_list:
        for side in sides:
            path = results / result_name(side, args.net, args.steps, seed, args.tag,
                                         args.estimator, args.num_pairs)
            if path.exists() and not args.force:
                print(f"{path.name}: exists, skipped", flush=True)
                continue
            print(f"{side} seed {seed}: {args.steps:,} steps ...", flush=True)
            machine = _machine(args.threads)
            run = run_reference_side if side == "reference" else run_binaryvae_side
            result = run(args, seed, runs)
            result.update(machine=machine, bench_command=command)
            engine = (f"reference implementation: {reference_of(args.estimator)['repository']} "
                      "(bench/crosscheck_reference.py)" if side == "reference" else
                      "binaryvae train (driven by bench/crosscheck_reference.py)")  # fmt: skip
            _common.write_json(path, _common.engine_tag(result, engine))
            print(f"{path.name}: test ELBO {_fmt(result['test_elbo'])}, test IWAE-"
                  f"{args.iwae_k} {_fmt(result.get(f'test_iwae_k{args.iwae_k}'))}, "
                  f"{_fmt(result['steps_per_s'])} steps/s", flush=True)  # fmt: skip
    aggregate(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
