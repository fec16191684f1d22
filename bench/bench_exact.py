"""Exact log p(x) by enumeration: decode each code once + one matrix product, against the
straightforward loop that decodes every (image, code) pair (evaluation issue; docs/benchmarks.md,
section 5).

Model: a VAE built by `binaryvae.models.build_model` with the dissertation's architecture
(encoder 784-512-256-128-n, decoder n-128-256-512-784, ReLU, Bernoulli decoder), random weights
(seed 0); images: the 2,000 mnist-mini test images (grey levels). For each n:
- fast: `binaryvae.evaluation.exact_log_px(model, x)` on all 2,000 images (2^n codes decoded once
  in chunks of 4,096, images x codes scored by one matrix product, running logsumexp);
- naive: for every image, decode all 2^n codes again (as one batch per image) and score them
  with `decoder.log_prob`: 2,000 x 2^n decoded (image, code) pairs. It is timed on a subset of
  `--naive-images` images and extrapolated linearly to 2,000 (its cost is exactly linear in the
  number of images); the table says so. Both are checked to agree on the subset.
Times are medians of `--repeats` runs after one warm-up, in one process, so the ratios hold on a
shared machine even when absolute times drift. Targets: n = 8 at most 10 ms per 1,000 images;
n = 16 on 2,000 images under a minute.

    python bench/bench_exact.py                    # n = 8, 12, 16 (ratios at 8 and 12), 2 threads
    python bench/bench_exact.py --bits 8,12,16,20  # and the n = 20 limit
    python bench/bench_exact.py --quick            # smoke run: tiny sizes, seconds
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import torch  # noqa: E402

import _common  # noqa: E402
from binaryvae.config import TrainConfig  # noqa: E402
from binaryvae.data import load_dataset, test_tensor  # noqa: E402
from binaryvae.evaluation import enumerate_codes, exact_evaluation, exact_log_px  # noqa: E402
from binaryvae.models import build_model  # noqa: E402

HIDDEN = (512, 256, 128)  # diss. 3.2 / Figure 3.3: encoder 784-512-256-128, decoder mirrored


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--bits", default="8,12,16", help="latent sizes n to time (comma separated)")
    p.add_argument("--images", type=int, default=2000, help="test images scored exactly")
    p.add_argument(
        "--naive-images",
        default="8:200,12:20",
        help="n:images of the naive loop's timed subset (extrapolated to --images)",
    )
    p.add_argument("--repeats", type=int, default=5, help="timed runs per measurement (median)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument(
        "--out",
        default=None,
        help="folder for the JSON result (default bench/results; none with --quick)",
    )
    p.add_argument("--quick", action="store_true", help="smoke run: n = 4, 6; few images")
    args = p.parse_args(argv)
    _common.quick_folders(args, p)
    if args.quick:
        args.bits, args.images, args.naive_images, args.repeats = "4,6", 50, "4:10,6:10", 1
    return args


def make_model(n: int):
    torch.manual_seed(0)
    config = TrainConfig(family="steplogistic", latent_dim=n, hidden=HIDDEN)
    return build_model(config, data_dim=784, image_shape=(28, 28), data_kind="image").eval()


@torch.no_grad()
def naive_log_px(model, x: torch.Tensor) -> torch.Tensor:
    """log p(x) decoding every (image, code) pair: for each image all 2^n codes again. [B]."""
    n = model.latent_dim
    codes = enumerate_codes(n)  # [2^n, n]
    prior = model.prior_bit_logits()  # [n]
    log_prior = (codes * prior - torch.nn.functional.softplus(prior)).sum(-1)  # [2^n]
    out = []
    for i in range(x.shape[0]):
        log_lik = model.decoder.log_prob(x[i : i + 1], model.decode(codes))  # [2^n]
        out.append(torch.logsumexp(log_lik + log_prior, 0))
    return torch.stack(out)


CPU_TIMES: dict[int, float] = {}  # id(fn) -> median process CPU time of its last `timed` call


def timed(fn, repeats: int, warmup: bool = True) -> tuple[float, object]:
    """Median wall time of `repeats` calls after one warm-up call; and the last result.

    The median process CPU time (all threads) is kept in CPU_TIMES: on a shared machine it moves
    much less than wall time when other processes compete for the cores."""
    result = fn() if warmup else None
    times, cpu = [], []
    for _ in range(repeats):
        t, c = time.perf_counter(), time.process_time()
        result = fn()
        times.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    CPU_TIMES[id(fn)] = _common.median(cpu)
    return _common.median(times), result


def main(argv=None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    info = _common.machine_info()
    print(f"machine: {_common.machine_line(info)}")
    ds = load_dataset("mnist-mini")
    x = test_tensor(ds.test_x)[: args.images]  # [B, 784] grey levels
    naive_subset = dict(
        tuple(int(v) for v in item.split(":")) for item in args.naive_images.split(",")
    )
    rows, results = [], []
    for n in (int(b) for b in args.bits.split(",")):
        model = make_model(n)
        # seconds per call at n >= 16: 3 repeats, and n = 20 once without warm-up
        repeats = args.repeats if n <= 12 else 1 if n >= 20 else max(1, min(args.repeats, 3))
        warmup = n < 20
        fast_fn = lambda m=model: exact_log_px(m, x)  # noqa: E731
        fast_s, log_px = timed(fast_fn, repeats, warmup)
        fast_cpu = CPU_TIMES[id(fast_fn)]
        full_s, _ = timed(
            lambda m=model: exact_evaluation(m, x), repeats, warmup
        )  # + exact ELBO, gap
        entry = {
            "n": n,
            "images": len(x),
            "fast_seconds": fast_s,
            "fast_ms_per_1000_images": 1000 * fast_s * 1000 / len(x),
            "fast_cpu_seconds": fast_cpu,
            "with_elbo_and_gap_seconds": full_s,
            "mean_log_px": float(log_px.mean()),
        }
        ratio_txt, naive_txt, diff_txt = "-", "-", "-"
        if n in naive_subset:
            sub = x[: naive_subset[n]]
            naive_s, naive = timed(lambda m=model, s=sub: naive_log_px(m, s), max(1, repeats // 2))
            naive_full = naive_s * len(x) / len(sub)  # linear in images: extrapolated
            fast_sub = exact_log_px(model, sub)
            diff = float((naive - fast_sub).abs().max())
            entry.update(
                naive_images_timed=len(sub),
                naive_seconds_subset=naive_s,
                naive_seconds_extrapolated=naive_full,
                ratio=naive_full / fast_s,
                max_abs_diff_nats=diff,
            )
            ratio_txt = f"{naive_full / fast_s:.0f}x"
            naive_txt = f"{naive_full:.2f} (timed on {len(sub)}, extrapolated)"
            diff_txt = f"{diff:.1e}"
        results.append(entry)
        rows.append(
            [
                n,
                1 << n,
                len(x),
                f"{fast_s * 1000:.1f}",
                f"{entry['fast_ms_per_1000_images']:.1f}",
                f"{fast_cpu * 1000:.1f}",
                f"{full_s * 1000:.1f}",
                naive_txt,
                ratio_txt,
                diff_txt,
            ]
        )
        print(f"n={n}: fast {fast_s:.4f} s for {len(x)} images", flush=True)
    print()
    print(
        _common.markdown_table(
            [
                "n",
                "codes",
                "images",
                "exact (ms, median)",
                "ms / 1,000 images",
                "exact CPU ms (all threads)",
                "+ exact ELBO and gap (ms)",
                "naive loop (s)",
                "naive / exact",
                "max |diff| (nats)",
            ],
            rows,
        )
    )
    print(f"\ncommand: {_common.command_line()}")
    if args.out is not None or not args.quick:
        out = Path(args.out) if args.out else _common.REPO / "bench" / "results"
        _common.write_json(
            out / "bench_exact.json",
            {"machine": info, "command": _common.command_line(), "results": results},
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
