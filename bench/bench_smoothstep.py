"""SmoothStepLogistic rsample cost relative to StepLogistic's (issue 3).

StepLogistic samples by a closed-form inverse CDF (eq. 5.7); SmoothStepLogistic (eq. 5.8) by a
safeguarded Newton solve on its tabulated CDF, with implicit-reparameterization gradients. This
times both (and the Logistic for reference) on the same number of samples: a logits tensor of
shape [batch, bits] drawn once, `rsample((k,))` giving one million values in all, alone ("fwd")
and followed by backward of their sum ("fwd+bwd"). Each repeat times every arm once, the order
reversed on alternate repeats; we report the median seconds per million samples and the median
of the per-repeat ratios SmoothStepLogistic / StepLogistic.

    python bench/bench_smoothstep.py                 # 1 thread, float32, 7 repeats
    python bench/bench_smoothstep.py --threads 2 --dtype float64
    python bench/bench_smoothstep.py --quick         # smoke run (100k samples, 2 repeats)
    python bench/bench_smoothstep.py --out bench/results   # also writes smoothstep.json
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402

import _common  # noqa: E402
from binaryvae.distributions import Logistic, SmoothStepLogistic, StepLogistic  # noqa: E402


def _arms(logits: torch.Tensor, beta: float):
    return {
        "logistic": lambda x: Logistic(x, torch.ones_like(x)),
        "steplogistic": lambda x: StepLogistic(logits=x),
        "smoothsteplogistic": lambda x: SmoothStepLogistic(logits=x, beta=beta),
    }


def _time_once(make, logits: torch.Tensor, k: int, backward: bool, device: str) -> float:
    x = logits.detach().requires_grad_(backward)
    if device == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    z = make(x).rsample((k,))  # [k, batch, bits]
    if backward:
        z.sum().backward()
    if device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--samples", type=int, default=1_000_000, help="values per timed call")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--bits", type=int, default=8)
    p.add_argument("--beta", type=float, default=10.0)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    p.add_argument("--device", default="cpu")
    p.add_argument("--quick", action="store_true", help="smoke run: 100k samples, 2 repeats")
    p.add_argument("--out", default=None, metavar="DIR", help="also write smoothstep.json to DIR")
    args = p.parse_args(argv)
    _common.quick_folders(args, p)
    if args.quick:
        args.samples, args.repeats = 100_000, 2
    torch.set_num_threads(args.threads)
    dtype = getattr(torch, args.dtype)
    gen = torch.Generator().manual_seed(0)
    # logits spread like an encoder's: mostly moderate, some saturated
    logits = (4 * torch.randn(args.batch, args.bits, generator=gen, dtype=torch.float64)).to(
        dtype=dtype, device=args.device
    )
    k = max(1, args.samples // (args.batch * args.bits))
    n = k * args.batch * args.bits
    arms = _arms(logits, args.beta)
    info = _common.machine_info()
    print(_common.machine_line(info))
    print(f"{n:,} samples per call ([{k}, {args.batch}, {args.bits}]), {args.dtype}, "
          f"device {args.device}, beta {args.beta}, {args.repeats} repeats")  # fmt: skip
    # warm-up: builds the G_beta table and any lazy kernels
    for make in arms.values():
        _time_once(make, logits, 1, True, args.device)
    results = {}
    for backward in (False, True):
        times = {name: [] for name in arms}
        for r in range(args.repeats):
            order = list(arms) if r % 2 == 0 else list(arms)[::-1]
            for name in order:
                times[name].append(_time_once(arms[name], logits, k, backward, args.device))
        per_m = {name: [t * 1e6 / n for t in ts] for name, ts in times.items()}
        ratios = [
            s / t for s, t in zip(times["smoothsteplogistic"], times["steplogistic"], strict=True)
        ]
        label = "fwd+bwd" if backward else "fwd"
        results[label] = {name: _common.median(v) for name, v in per_m.items()}
        results[label]["ratio_smooth_over_step"] = _common.median(ratios)
    rows = [
        [label] + [f"{r[name]:.3f}" for name in arms] + [f"{r['ratio_smooth_over_step']:.1f}x"]
        for label, r in results.items()
    ]
    print(_common.markdown_table(
        ["pass", *(f"{name} s/1M" for name in arms), "smooth / step"], rows
    ))  # fmt: skip
    print(f"command: {_common.command_line()}")
    if args.out is not None:
        _common.write_json(Path(args.out) / "smoothstep.json", {
            "machine": info, "command": _common.command_line(), "samples_per_call": n,
            "dtype": args.dtype, "device": args.device, "beta": args.beta,
            "repeats": args.repeats, "seconds_per_million_median": results,
        })  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
