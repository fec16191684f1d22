"""Training throughput of binaryvae's training step against a plain PyTorch loop (issue 7).

Both arms train the dissertation's network (784-512-256-128 ReLU encoder, 8 latent bits,
mirrored decoder, batch 128) on the same pre-built batches in the same process; data loading is
excluded (a pool of float32 batches is built once and cycled). Each repeat times every arm once,
the order reversed on alternate repeats; we report the median images/s of each arm and the
median of the per-repeat ratios binaryvae / plain.

- ``plain``: the loop anyone writes first (pytorch/examples vae/main.py): nn.Sequential MLPs,
  default ``torch.optim.Adam``, ``zero_grad()``, a Gaussian posterior with sigmoid(beta*z) to
  the decoder (the gaussian-sigmoid family), ``loss.item()`` logged every step.
- ``plain-fused``: the same loop with ``Adam(fused=True)`` (a reference, not a baseline).
- every binaryvae family: ``binaryvae.models.build_model`` + ``binaryvae.training.make_optimizer``
  + ``binaryvae.training.fit_epoch`` over the same batches (the code the CLI runs per epoch,
  minus evaluation and checkpoints).

The allocator: ``--allocator tuned`` (default) applies ``binaryvae.training.tune_allocator()``
as the run layer does, which then helps *both* arms (it is per-process); ``--allocator default``
leaves glibc as it is for both. Run both to separate the allocator lever from the rest.

Also measured (``--flops``): float32 GEMM throughput of this machine (``torch.mm`` at the step's
own shapes and on a big square) and the fraction of it each training step reaches, with step
FLOPs counted as 3 x the forward GEMM FLOPs (forward, grad-input, grad-weight).

    BINARYVAE_DATA_DIR=$DATA python bench/bench_train_speed.py --threads 2 --flops
    python bench/bench_train_speed.py --quick            # smoke test: tiny budget, mnist-mini
    python bench/bench_train_speed.py --profile steplogistic   # where a step's time goes
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--families",
        default="all",
        help="comma-separated binaryvae families, or 'all' (default) for the registry",
    )
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch threads (default: binaryvae.training.default_threads())",
    )
    p.add_argument("--repeats", type=int, default=7, help="timed rounds per arm (median taken)")
    p.add_argument("--steps", type=int, default=60, help="training steps per timed round")
    p.add_argument("--warmup", type=int, default=15, help="untimed steps per arm before timing")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--hidden", default="512,256,128")
    p.add_argument("--latent-dim", type=int, default=8)
    p.add_argument("--beta", type=float, default=10.0)
    p.add_argument("--dataset", default="fashion-mnist")
    p.add_argument("--allocator", choices=("tuned", "default"), default="tuned")
    p.add_argument(
        "--flops",
        action="store_true",
        help="also measure GEMM throughput and the fraction of it each step reaches",
    )
    p.add_argument(
        "--profile",
        metavar="FAMILY",
        default=None,
        help="profile FAMILY's step and the plain step with torch.profiler and exit",
    )
    p.add_argument(
        "--out",
        default=str(_common.REPO / "bench" / "results"),
        help="folder for speed_<threads>t_<allocator>.json",
    )
    p.add_argument(
        "--breakdown",
        default=None,
        metavar="FAMILY",
        help="time each part of a step alone (forward, backward, Adam default/fused, the "
        "training loop's guard) for the plain VAE and FAMILY, and exit",
    )
    p.add_argument(
        "--bf16",
        default=None,
        metavar="FAMILY",
        help="add a diagnostic arm: FAMILY trained by fit_epoch under CPU bfloat16 autocast",
    )
    p.add_argument(
        "--bare",
        default=None,
        metavar="FAMILY",
        help="add a diagnostic arm: FAMILY's model stepped by a bare loop instead of fit_epoch",
    )
    p.add_argument("--tag", default="", help="suffix of the result file name")
    p.add_argument(
        "--cross-process",
        type=int,
        default=0,
        metavar="N",
        help="run N pairs of fresh processes, --allocator default then tuned, and report "
        "binaryvae as the CLI runs it (tuned allocator) against the plain loop as a user's "
        "own script runs it (glibc default): a cross-process ratio, labelled as such",
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="tiny budget for the smoke test (mnist-mini, 2 families, 2 repeats)",
    )
    args = p.parse_args(argv)
    _common.quick_folders(args, p)
    if args.quick:
        args.repeats, args.steps, args.warmup = 2, 4, 2
        args.dataset = "mnist-mini"
        if args.families == "all":
            args.families = "steplogistic,bernoulli-disarm"
    args.hidden = tuple(int(h) for h in args.hidden.split(","))
    return args


# ---------------------------------------------------------------- the plain loop (baseline)
def build_plain(data_dim: int, hidden: tuple[int, ...], latent_dim: int, fused: bool):
    """nn.Sequential encoder (-> mean, log-variance) and mirrored decoder, default Adam."""
    import torch
    from torch import nn

    def mlp(sizes):
        layers = []
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
            layers.append(nn.Linear(a, b))
            if i < len(sizes) - 2:
                layers.append(nn.ReLU())
        return nn.Sequential(*layers)

    enc = mlp([data_dim, *hidden, 2 * latent_dim])
    dec = mlp([latent_dim, *reversed(hidden), data_dim])
    params = list(enc.parameters()) + list(dec.parameters())
    opt = (
        torch.optim.Adam(params, lr=1e-3, fused=True)
        if fused
        else torch.optim.Adam(params, lr=1e-3)
    )
    return enc, dec, opt


def plain_epoch(enc, dec, opt, batches, beta: float) -> float:
    """The idiomatic VAE loop; returns the summed loss (what such a loop logs)."""
    import torch
    import torch.nn.functional as F

    total = 0.0
    for x in batches:  # [B, D]
        opt.zero_grad()
        mu, logvar = enc(x).chunk(2, dim=-1)  # [B, n] each
        z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
        logits = dec(torch.sigmoid(beta * z))  # [B, D]
        recon = F.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(-1)  # [B]
        kl = 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).sum(-1)  # [B]
        loss = (recon + kl).mean()
        loss.backward()
        opt.step()
        total += loss.item()
    return total


# ---------------------------------------------------------------- arms
class Arm:
    """One thing to time: ``run(batches)`` trains over a list of batches."""

    def __init__(
        self,
        name,
        run,
        decoder_evaluations=1,
        binary=None,
        linear_shapes=(),
        decoder_shapes=(),
        note="",
    ):
        self.name, self.run = name, run
        self.decoder_evaluations = decoder_evaluations
        self.binary = binary
        self.linear_shapes = list(linear_shapes)  # (in, out) of every encoder Linear
        self.decoder_shapes = list(decoder_shapes)  # (in, out) of every decoder Linear
        self.note = note
        self.times: list[float] = []


def _linear_shapes(module):
    from torch import nn

    return [(m.in_features, m.out_features) for m in module.modules() if isinstance(m, nn.Linear)]


def make_plain_arm(args, data_dim, fused=False) -> Arm:
    enc, dec, opt = build_plain(data_dim, args.hidden, args.latent_dim, fused)
    return Arm(
        "plain-fused" if fused else "plain",
        lambda batches: plain_epoch(enc, dec, opt, batches, args.beta),
        decoder_evaluations=1,
        binary=None,
        linear_shapes=_linear_shapes(enc),
        decoder_shapes=_linear_shapes(dec),
        note="reference: Adam(fused=True)" if fused else "baseline",
    )


def make_library_arm(
    args, family: str, data_dim: int, image_shape, bare: bool = False, bf16: bool = False
) -> Arm:
    """binaryvae's model and optimizer; ``fit_epoch`` drives them, or with ``bare`` a diagnostic
    loop without fit_epoch's guard and logging (loss, backward, step), to split the step's cost
    into the model's and the training loop's."""
    import torch

    from binaryvae.config import TrainConfig
    from binaryvae.models import build_model
    from binaryvae.training import fit_epoch, make_optimizer

    config = TrainConfig(
        family=family,
        latent_dim=args.latent_dim,
        hidden=args.hidden,
        batch_size=args.batch_size,
        lr=1e-3,
        beta=args.beta,
        dataset=args.dataset,
    )
    model = build_model(config, data_dim=data_dim, image_shape=image_shape, data_kind="image")
    opt = make_optimizer(model, config.lr)
    state = {"epoch": 0}

    def run_bare(batches):
        for x in batches:
            opt.zero_grad(set_to_none=True)
            model.loss(x, objective=config.objective).surrogate.backward()
            opt.step()

    def run(batches, bf16: bool = False):
        state["epoch"] += 1
        # bf16 is a diagnostic: the forward under CPU bfloat16 autocast (the matrix products in
        # bf16, weights and Adam in fp32); not what binaryvae does today
        amp = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
        with amp:
            return fit_epoch(
                model,
                opt,
                batches,
                epoch=state["epoch"],
                objective=config.objective,
                kl_weight=config.kl_weight,
            )

    def run_bf16(batches):
        return run(batches, bf16=True)

    all_shapes = _linear_shapes(model)
    dec = getattr(model, "decoder", None)
    dec_shapes = _linear_shapes(dec) if dec is not None else []
    enc_shapes = list(all_shapes)
    for s in dec_shapes:
        if s in enc_shapes:
            enc_shapes.remove(s)
    if bf16:
        name, fn, note = f"{family} (bf16 autocast)", run_bf16, "diagnostic: bf16 autocast"
    elif bare:
        name, fn = f"{family} (bare loop)", run_bare
        note = "diagnostic: model.loss + backward + fused Adam, no fit_epoch"
    else:
        name, fn, note = family, run, ""
    return Arm(
        name,
        fn,
        note=note,
        decoder_evaluations=int(getattr(model, "decoder_evaluations_per_step", 1)),
        binary=bool(getattr(model.family, "binary", False)),
        linear_shapes=enc_shapes,
        decoder_shapes=dec_shapes,
    )


def step_flops(arm: Arm, batch_size: int) -> float:
    """3 x forward GEMM FLOPs of one step (decoder counted once per decoder evaluation)."""
    fwd = sum(2 * batch_size * a * b for a, b in arm.linear_shapes)
    fwd += arm.decoder_evaluations * sum(2 * batch_size * a * b for a, b in arm.decoder_shapes)
    return 3.0 * fwd


# ---------------------------------------------------------------- GEMM throughput
def gemm_gflops(shapes, batch_size: int, min_seconds: float) -> float:
    """GFLOP/s of torch.mm over the three GEMMs per Linear (forward, grad-input, grad-weight)."""
    import torch

    work = []
    for a, b in shapes:
        x = torch.randn(batch_size, a)
        w = torch.randn(b, a)
        g = torch.randn(batch_size, b)
        work.append((x, w, g))
    flops = sum(3 * 2 * batch_size * a * b for a, b in shapes)

    def once():
        for x, w, g in work:
            torch.mm(x, w.t())  # forward        [B, out]
            torch.mm(g, w)  # grad input         [B, in]
            torch.mm(g.t(), x)  # grad weight    [out, in]

    return _rate(once, flops, min_seconds)


def square_gflops(n: int, min_seconds: float, dtype=None) -> float:
    import torch

    dtype = dtype or torch.float32
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    return _rate(lambda: torch.mm(a, b), 2.0 * n**3, min_seconds)


def _rate(fn, flops: float, min_seconds: float) -> float:
    """Median GFLOP/s over 5 timed rounds of at least min_seconds/5 each."""
    for _ in range(3):
        fn()
    t0 = time.perf_counter()
    fn()
    one = max(time.perf_counter() - t0, 1e-6)
    reps = max(1, int(min_seconds / 5 / one))
    rates = []
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(reps):
            fn()
        rates.append(flops * reps / (time.perf_counter() - t0) / 1e9)
    return _common.median(rates)


# ---------------------------------------------------------------- main
def load_pool(args):
    """A pool of float32 [B, D] training batches built once (data loading excluded)."""
    from binaryvae.data import EpochBatches, load_dataset

    ds = load_dataset(args.dataset)
    batches = EpochBatches(ds.train_x, batch_size=args.batch_size, binarize="none", seed=0)
    pool = []
    for x in batches.epoch(0):
        if x.shape[0] == args.batch_size:
            pool.append(x.contiguous())
        if len(pool) == 32:
            break
    return ds, pool


def profile(args, arms) -> None:
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as tprofile

    pool = args._pool
    batches = [pool[i % len(pool)] for i in range(args.steps)]
    for arm in arms:
        arm.run(batches)  # warm
        with tprofile(activities=[ProfilerActivity.CPU]) as prof:
            arm.run(batches)
        table = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=30)
        print(f"\n=== {arm.name}: {args.steps} steps, sorted by self CPU time ===\n{table}")


def breakdown(args, family: str, data_dim: int, image_shape) -> int:
    """Where one step's time goes: each component timed alone (median of 7 rounds of
    ``--steps`` calls, after warm-up), for the plain nn.Sequential VAE and for ``family``."""
    import torch
    import torch.nn.functional as F

    from binaryvae.config import TrainConfig
    from binaryvae.models import build_model

    pool = args._pool
    x = pool[0]
    enc, dec, _ = build_plain(data_dim, args.hidden, args.latent_dim, fused=False)
    plain_params = list(enc.parameters()) + list(dec.parameters())
    config = TrainConfig(
        family=family,
        latent_dim=args.latent_dim,
        hidden=args.hidden,
        batch_size=args.batch_size,
        beta=args.beta,
    )
    model = build_model(config, data_dim=data_dim, image_shape=image_shape, data_kind="image")
    params = [p for p in model.parameters() if p.requires_grad]

    def plain_fwd_bwd():
        mu, logvar = enc(x).chunk(2, dim=-1)
        z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
        logits = dec(torch.sigmoid(args.beta * z))
        recon = F.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(-1)
        kl = 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).sum(-1)
        for p in plain_params:
            p.grad = None
        (recon + kl).mean().backward()

    def lib_fwd_bwd():
        for p in params:
            p.grad = None
        model.loss(x, objective=config.objective).surrogate.backward()

    def lib_fwd():
        with torch.no_grad():
            model.loss(x, objective=config.objective)

    def plain_fwd():
        with torch.no_grad():
            mu, logvar = enc(x).chunk(2, dim=-1)
            z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
            logits = dec(torch.sigmoid(args.beta * z))
            F.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(-1)

    lib_fwd_bwd()
    plain_fwd_bwd()
    grads = [p.grad for p in params]
    adam_default = torch.optim.Adam(params, lr=1e-9)
    adam_fused = torch.optim.Adam(params, lr=1e-9, fused=True)
    parts = [
        ("plain forward (no grad)", plain_fwd),
        ("plain forward + backward", plain_fwd_bwd),
        (f"{family} forward (no grad)", lib_fwd),
        (f"{family} forward + backward", lib_fwd_bwd),
        ("Adam step, default (foreach)", adam_default.step),
        ("Adam step, fused=True", adam_fused.step),
        (
            "fit_epoch guard: gradient norms (torch._foreach_norm + stack + sum)",
            lambda: torch.stack(torch._foreach_norm(grads)).sum(),
        ),
        (
            "fit_epoch log values: stack 6 scalars, .double().cpu()",
            lambda: torch.stack([g.sum() for g in grads[:6]]).double().cpu(),
        ),
    ]
    for _, fn in parts:  # warm-up (Adam state, allocator)
        for _ in range(5):
            fn()
    rows, out = [], []
    for name, fn in parts:
        times = []
        for _ in range(7):
            t0 = time.perf_counter()
            for _ in range(args.steps):
                fn()
            times.append((time.perf_counter() - t0) / args.steps)
        ms = 1e3 * _common.median(times)
        rows.append([name, f"{ms:.3f}"])
        out.append({"part": name, "ms": ms})
    gemm = gemm_gflops(_linear_shapes(enc) + _linear_shapes(dec), args.batch_size, 3.0)
    flops = 3 * sum(
        2 * args.batch_size * a * b for a, b in _linear_shapes(enc) + _linear_shapes(dec)
    )
    ideal = 1e3 * flops / (gemm * 1e9)
    rows.append([f"GEMM alone at the step's shapes ({gemm:.0f} GFLOP/s measured)", f"{ideal:.3f}"])
    result = {
        "benchmark": "train_step_breakdown",
        "command": _common.command_line(),
        "machine": _common.machine_info(),
        "family": family,
        "parts": out,
        "gemm_gflops_step_shapes": gemm,
        "gemm_ms_per_step": ideal,
    }
    _common.write_json(
        Path(args.out) / f"breakdown_{torch.get_num_threads()}t{args.tag}.json", result
    )
    print(
        "\n".join(
            [
                f"Machine: {_common.machine_line(result['machine'])}",
                f"Command: `{result['command']}`",
                f"batch {args.batch_size}, median of 7 rounds of {args.steps} calls",
                "",
                _common.markdown_table(["part of a step", "ms per call"], rows),
            ]
        )
    )
    return 0


def cross_process(args, argv) -> int:
    """Alternate fresh processes with the allocator left alone and tuned; compare across them."""
    import json
    import subprocess
    import tempfile

    argv = list(sys.argv[1:] if argv is None else argv)
    i = argv.index("--cross-process")
    del argv[i : i + 2]
    runs = {"default": [], "tuned": []}
    with tempfile.TemporaryDirectory() as tmp:
        for k in range(args.cross_process):
            for alloc in ("default", "tuned"):
                tag = f"_x{k}"
                cmd = [
                    sys.executable,
                    str(Path(__file__).resolve()),
                    *argv,
                    "--allocator",
                    alloc,
                    "--out",
                    tmp,
                    "--tag",
                    tag,
                ]
                proc = subprocess.run(cmd, capture_output=True, text=True)
                if proc.returncode != 0:
                    raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr[-2000:]}")
                name = next(Path(tmp).glob(f"speed_*t_{alloc}{tag}.json"))
                runs[alloc].append(json.loads(name.read_text()))
    plain_default = _common.median(
        [
            r["images_per_s_median"]
            for run in runs["default"]
            for r in run["results"]
            if r["arm"] == "plain"
        ]
    )
    rows, table = [], []
    for arm in [r["arm"] for r in runs["tuned"][0]["results"]]:
        tuned = _common.median(
            [
                r["images_per_s_median"]
                for run in runs["tuned"]
                for r in run["results"]
                if r["arm"] == arm
            ]
        )
        default = _common.median(
            [
                r["images_per_s_median"]
                for run in runs["default"]
                for r in run["results"]
                if r["arm"] == arm
            ]
        )
        rows.append(
            {
                "arm": arm,
                "images_per_s_default_allocator": default,
                "images_per_s_tuned_allocator": tuned,
                "tuned_vs_plain_default": tuned / plain_default,
            }
        )
        table.append([arm, f"{default:,.0f}", f"{tuned:,.0f}", f"{tuned / plain_default:.2f}"])
    out = {
        "benchmark": "train_speed_cross_process",
        "command": _common.command_line(),
        "machine": _common.machine_info(),
        "pairs": args.cross_process,
        "rows": rows,
        "processes": runs,
    }
    threads = runs["tuned"][0]["threads"]
    _common.write_json(Path(args.out) / f"speed_{threads}t_cross_process{args.tag}.json", out)
    print(
        "\n".join(
            [
                f"Machine: {_common.machine_line(out['machine'])}",
                f"Command: `{out['command']}`",
                f"{args.cross_process} pairs of processes (allocator default, tuned), alternating; "
                "medians over processes of each process's median images/s",
                "",
                _common.markdown_table(
                    [
                        "arm",
                        "images/s, glibc default",
                        "images/s, tune_allocator()",
                        "tuned / plain with glibc default (cross-process)",
                    ],
                    table,
                ),
            ]
        )
    )
    return 0


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.cross_process:
        return cross_process(args, argv)
    import torch

    from binaryvae.training import set_threads, tune_allocator

    threads = set_threads(args.threads)
    allocator = tune_allocator() if args.allocator == "tuned" else False
    torch.manual_seed(0)
    ds, pool = load_pool(args)
    args._pool = pool
    data_dim = pool[0].shape[1]

    if args.families == "all":
        from binaryvae.models import FAMILIES

        families = list(FAMILIES)
    else:
        families = [f for f in args.families.split(",") if f]

    if args.breakdown:
        return breakdown(args, args.breakdown, data_dim, ds.image_shape)
    if args.profile:
        profile(
            args,
            [
                make_plain_arm(args, data_dim, fused=False),
                make_library_arm(args, args.profile, data_dim, ds.image_shape),
            ],
        )
        return 0

    arms = [make_plain_arm(args, data_dim, fused=False), make_plain_arm(args, data_dim, fused=True)]
    for f in families:
        arms.append(make_library_arm(args, f, data_dim, ds.image_shape))
    if args.bare:
        arms.append(make_library_arm(args, args.bare, data_dim, ds.image_shape, bare=True))
    if args.bf16:
        arms.append(make_library_arm(args, args.bf16, data_dim, ds.image_shape, bf16=True))

    batches = [pool[i % len(pool)] for i in range(args.steps)]
    for arm in arms:  # warm-up: first Adam steps, allocator, OpenMP pool
        arm.run([pool[i % len(pool)] for i in range(args.warmup)])
    for r in range(args.repeats):
        order = arms if r % 2 == 0 else arms[::-1]
        for arm in order:
            t0 = time.perf_counter()
            arm.run(batches)
            arm.times.append(time.perf_counter() - t0)

    plain = arms[0]
    images = args.steps * args.batch_size
    results = []
    for arm in arms:
        ips = [images / t for t in arm.times]
        ratios = [p / t for p, t in zip(plain.times, arm.times, strict=True)]
        results.append(
            {
                "arm": arm.name,
                "note": arm.note,
                "binary": arm.binary,
                "decoder_evaluations_per_step": arm.decoder_evaluations,
                "images_per_s_median": _common.median(ips),
                "images_per_s_all": ips,
                "ms_per_step_median": 1e3 * _common.median(arm.times) / args.steps,
                "ratio_vs_plain_median": _common.median(ratios),
                "ratio_vs_plain_min": min(ratios),
                "ratio_vs_plain_max": max(ratios),
                "step_gflop": step_flops(arm, args.batch_size) / 1e9,
            }
        )

    gemm = None
    if args.flops:
        seconds = 0.2 if args.quick else 3.0
        shapes = plain.linear_shapes + plain.decoder_shapes
        gemm = {
            "step_shapes_gflops": gemm_gflops(shapes, args.batch_size, seconds),
            "square_n": 512 if args.quick else 2048,
        }
        gemm["square_gflops"] = square_gflops(gemm["square_n"], seconds)
        gemm["square_gflops_bf16"] = square_gflops(gemm["square_n"], seconds, torch.bfloat16)
        for row in results:
            achieved = row["step_gflop"] * row["images_per_s_median"] / args.batch_size
            row["achieved_gflops"] = achieved
            row["fraction_of_step_shape_gemm"] = achieved / gemm["step_shapes_gflops"]
            row["fraction_of_square_gemm"] = achieved / gemm["square_gflops"]

    info = _common.machine_info()
    out = {
        "benchmark": "train_speed",
        "command": _common.command_line(),
        "machine": info,
        "threads": threads,
        "allocator": args.allocator,
        "allocator_tuned": allocator,
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        "dataset": args.dataset,
        "batch_size": args.batch_size,
        "hidden": list(args.hidden),
        "latent_dim": args.latent_dim,
        "steps_per_round": args.steps,
        "repeats": args.repeats,
        "gemm": gemm,
        "results": results,
    }
    name = f"speed_{threads}t_{args.allocator}{args.tag}.json"
    _common.write_json(Path(args.out) / name, out)
    print(render(out))
    return 0


def render(out: dict) -> str:
    head = [
        "arm",
        "binary",
        "decoder evals/step",
        "images/s (median)",
        "ms/step",
        "ratio vs plain (median [min, max])",
    ]
    if out["gemm"]:
        head += ["step GFLOP", "GFLOP/s", "fraction of step-shape GEMM", "fraction of square GEMM"]
    rows = []
    for r in out["results"]:
        row = [
            r["arm"],
            {None: "-", True: "yes", False: "no"}[r["binary"]],
            r["decoder_evaluations_per_step"],
            f"{r['images_per_s_median']:,.0f}",
            f"{r['ms_per_step_median']:.2f}",
            f"{r['ratio_vs_plain_median']:.2f} [{r['ratio_vs_plain_min']:.2f}, "
            f"{r['ratio_vs_plain_max']:.2f}]",
        ]
        if out["gemm"]:
            row += [
                f"{r['step_gflop']:.3f}",
                f"{r['achieved_gflops']:.0f}",
                f"{r['fraction_of_step_shape_gemm']:.0%}",
                f"{r['fraction_of_square_gemm']:.0%}",
            ]
        rows.append(row)
    text = [
        f"Machine: {_common.machine_line(out['machine'])}",
        f"Command: `{out['command']}`",
        f"threads={out['threads']}, allocator={out['allocator']}, "
        f"OMP_WAIT_POLICY={out['omp_wait_policy']}, batch {out['batch_size']}, "
        f"{out['steps_per_round']} steps x {out['repeats']} rounds per arm, alternating order",
        "",
        _common.markdown_table(head, rows),
    ]
    if out["gemm"]:
        g = out["gemm"]
        text.append(
            f"\nfp32 GEMM: {g['step_shapes_gflops']:.0f} GFLOP/s at the step's shapes, "
            f"{g['square_gflops']:.0f} GFLOP/s on a {g['square_n']}^2 square "
            f"(bfloat16 on the same square: {g.get('square_gflops_bf16', float('nan')):.0f})"
        )
    return "\n".join(text)


if __name__ == "__main__":
    sys.exit(main())
