"""Peak resident memory of a 60,000-image training run, against the dataset's own uint8 size.

Each stage runs in a fresh process and reports its peak RSS (``resource.getrusage``,
``ru_maxrss``): ``import`` (torch + binaryvae), ``dataset`` (+ the training set in memory),
``step`` (+ model, optimizer and a single training step: the fixed cost of the torch runtime,
e.g. the first Adam step imports torch._dynamo), ``train`` (+ one epoch of binaryvae training
through ``fit_epoch``: 469 steps at batch 128 on Fashion-MNIST's 60,000 training images), and
``cli`` (``binaryvae train ... --epochs 1``, which adds per-epoch evaluation, checkpoints, the
summary and the report).

    BINARYVAE_DATA_DIR=$DATA python bench/bench_memory.py
    python bench/bench_memory.py --quick        # smoke test: mnist-mini, 20 steps, 'train' only
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import _common  # noqa: E402

STAGES = ("import", "dataset", "step", "train", "cli")
MB = 1024 * 1024


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", default="fashion-mnist")
    p.add_argument("--family", default="steplogistic")
    p.add_argument("--steps", type=int, default=0, help="training steps (0: one full epoch)")
    p.add_argument("--stages", default=",".join(STAGES))
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--out", default=str(_common.REPO / "bench" / "results"))
    p.add_argument("--child", choices=STAGES, help=argparse.SUPPRESS)
    p.add_argument("--quick", action="store_true")
    args = p.parse_args(argv)
    _common.quick_folders(args, p)
    if args.quick:
        args.dataset, args.steps, args.stages = "mnist-mini", 20, "train"
    return args


def peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def child(args) -> dict:
    import itertools

    import torch

    import binaryvae  # noqa: F401
    from binaryvae.training import set_threads, tune_allocator

    set_threads(args.threads)
    tune_allocator()
    info: dict = {"stage": args.child}
    if args.child == "import":
        return info | {"peak_rss": peak_rss_bytes()}
    if args.child == "cli":
        from binaryvae.cli import main as cli_main

        with tempfile.TemporaryDirectory() as tmp:
            argv = [
                "train",
                "--dataset",
                args.dataset,
                "--family",
                args.family,
                "--epochs",
                "1",
                "--seed",
                "0",
                "--out",
                str(Path(tmp) / "run"),
            ]
            if args.threads:
                argv += ["--threads", str(args.threads)]
            code = cli_main(argv)
        return info | {"peak_rss": peak_rss_bytes(), "exit_code": code, "argv": argv}

    from binaryvae.data import EpochBatches, load_dataset

    ds = load_dataset(args.dataset)
    info["dataset_uint8_bytes"] = int(
        ds.train_x.numel() * ds.train_x.element_size()
        + ds.test_x.numel() * ds.test_x.element_size()
    )
    info["train_images"] = int(ds.train_x.shape[0])
    if args.child == "dataset":
        return info | {"peak_rss": peak_rss_bytes()}

    from binaryvae.config import TrainConfig
    from binaryvae.models import build_model
    from binaryvae.training import fit_epoch, make_optimizer

    config = TrainConfig(dataset=args.dataset, family=args.family)
    torch.manual_seed(0)
    model = build_model(
        config, data_dim=ds.train_x.shape[1], image_shape=ds.image_shape, data_kind=ds.kind
    )
    opt = make_optimizer(model, config.lr)
    batches = EpochBatches(
        ds.train_x, batch_size=config.batch_size, binarize=config.binarize, seed=0
    )
    it = batches.epoch(0)
    if args.child == "step":
        it = itertools.islice(it, 1)
    elif args.steps:
        it = itertools.islice(it, args.steps)
    stats = fit_epoch(model, opt, it, epoch=1, objective=config.objective)
    return info | {
        "peak_rss": peak_rss_bytes(),
        "steps": stats.batches,
        "images": stats.images,
        "train_seconds": stats.train_seconds,
    }


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.child:
        print(json.dumps(child(args)))
        return 0
    rows = []
    for stage in args.stages.split(","):
        cmd = [
            sys.executable,
            str(Path(__file__).resolve()),
            "--child",
            stage,
            "--dataset",
            args.dataset,
            "--family",
            args.family,
            "--steps",
            str(args.steps),
        ]
        if args.threads:
            cmd += ["--threads", str(args.threads)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            print(
                f"stage {stage} failed (exit {proc.returncode}):\n{proc.stderr[-2000:]}",
                file=sys.stderr,
            )
            rows.append({"stage": stage, "error": proc.stderr.strip().splitlines()[-1:]})
            continue
        rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
        print(f"{stage:8s} peak RSS {rows[-1]['peak_rss'] / MB:8.1f} MiB", flush=True)
    info = _common.machine_info()
    out = {
        "benchmark": "memory",
        "command": _common.command_line(),
        "machine": info,
        "dataset": args.dataset,
        "family": args.family,
        "stages": rows,
        "malloc_env": {
            k: os.environ.get(k) for k in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")
        },
    }
    _common.write_json(Path(args.out) / ("memory_quick.json" if args.quick else "memory.json"), out)
    print(render(out))
    return 1 if any("error" in r for r in rows) else 0


def render(out: dict) -> str:
    base = next(
        (r["peak_rss"] for r in out["stages"] if r.get("stage") == "import" and "peak_rss" in r),
        None,
    )
    data = next(
        (r["dataset_uint8_bytes"] for r in out["stages"] if "dataset_uint8_bytes" in r), None
    )
    head = ["stage", "peak RSS (MiB)", "above import (MiB)", "what ran"]
    rows = []
    for r in out["stages"]:
        if "peak_rss" not in r:
            rows.append([r["stage"], "failed", "", " ".join(r.get("error", []))])
            continue
        what = {
            "import": "import torch, binaryvae",
            "dataset": f"+ load {out['dataset']} (uint8)",
            "step": f"+ model, Adam and 1 training step ({out['family']})",
            "train": f"+ {r.get('steps')} training steps ({r.get('images')} images), "
            f"{out['family']}",
            "cli": "binaryvae train --epochs 1 (training + evaluation + checkpoint)",
        }[r["stage"]]
        rows.append(
            [
                r["stage"],
                f"{r['peak_rss'] / MB:.1f}",
                "" if base is None else f"{(r['peak_rss'] - base) / MB:.1f}",
                what,
            ]
        )
    lines = [
        f"Machine: {_common.machine_line(out['machine'])}",
        f"Command: `{out['command']}`",
        "",
        _common.markdown_table(head, rows),
    ]
    if data:
        lines.append(f"\nDataset held as uint8 (train + test): {data / MB:.1f} MiB")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
