"""Cost of each registered Bernoulli estimator: decoder evaluations per step and steps/s here.

Every ``bernoulli-*`` family of the registry (`binaryvae.models.FAMILIES`, entry points
included) at one fixed small setting (mnist-mini, 200 latent bits, one hidden layer of 200,
batch 50, each estimator's default options, 1 thread), trained with `binaryvae.training.fit_epoch`
in one process: ``--repeats`` timed rounds of ``--steps`` steps, the families alternating
within each round (so load drifts hit them alike), after ``--warmup`` untimed steps each;
steps/s is the median over rounds of the steps divided by `fit_epoch`'s own training seconds
(data loading excluded). Decoder evaluations per step are per image, from the model
(`decoder_evaluations_per_step`). Prints the CPU model and torch's CPU capability.

    python bench/estimator_cost.py
    python bench/estimator_cost.py --quick          # smoke test
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import _common  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", default="mnist-mini")
    p.add_argument("--latent-dim", type=int, default=200)
    p.add_argument("--hidden", default="200")
    p.add_argument("--batch-size", type=int, default=50)
    p.add_argument("--steps", type=int, default=40, help="training steps per timed round")
    p.add_argument("--repeats", type=int, default=5, help="timed rounds (median taken)")
    p.add_argument("--warmup", type=int, default=10, help="untimed steps per family first")
    p.add_argument("--out", default=str(HERE / "results"))
    p.add_argument("--quick", action="store_true", help="smoke test: 2 rounds of 3 steps")
    args = p.parse_args(argv)
    _common.quick_folders(args, p, ("out",))
    if args.quick:
        args.steps, args.repeats, args.warmup = 3, 2, 1
    return args


def main(argv=None) -> int:
    import torch

    from binaryvae.config import TrainConfig
    from binaryvae.data import EpochBatches, load_dataset
    from binaryvae.models import FAMILIES, build_model
    from binaryvae.training import fit_epoch, make_optimizer, seed_everything, set_threads

    args = parse_args(argv)
    set_threads(1)
    dataset = load_dataset(args.dataset)
    hidden = tuple(int(h) for h in args.hidden.split(","))
    arms = {}
    for family in (f for f in FAMILIES if f.startswith("bernoulli-")):
        config = TrainConfig(family=family, dataset=args.dataset, latent_dim=args.latent_dim,
                             hidden=hidden, batch_size=args.batch_size, seed=0)  # fmt: skip
        seed_everything(0)
        model = build_model(config, data_dim=dataset.train_x.shape[1],
                            image_shape=dataset.image_shape, data_kind=dataset.kind)  # fmt: skip
        batches = EpochBatches(dataset.train_x, batch_size=args.batch_size,
                               binarize=config.binarize, seed=0)  # fmt: skip
        arms[family] = {"config": config, "model": model, "batches": batches,
                        "opt": make_optimizer(model, config.lr), "rates": []}  # fmt: skip

    def run(arm: dict, epoch: int, steps: int) -> float:
        it = itertools.islice(arm["batches"].epoch(epoch - 1), steps)
        stats = fit_epoch(arm["model"], arm["opt"], it, epoch=epoch,
                          objective=arm["config"].objective)  # fmt: skip
        return stats.batches / stats.train_seconds

    for arm in arms.values():
        run(arm, 1, args.warmup)
    for r in range(args.repeats):
        for arm in arms.values():
            arm["rates"].append(run(arm, r + 2, args.steps))
    rows = [{"family": family, "decoder_evaluations_per_step":
             int(arm["model"].decoder_evaluations_per_step),
             "steps_per_second": statistics.median(arm["rates"]), "rates": arm["rates"]}
            for family, arm in arms.items()]  # fmt: skip
    summary = {"benchmark": "estimator_cost", "command": _common.command_line(),
               "machine": _common.machine_info(),
               "cpu_capability": torch.backends.cpu.get_cpu_capability(),
               "setting": {"dataset": args.dataset, "latent_dim": args.latent_dim,
                           "hidden": list(hidden), "batch_size": args.batch_size,
                           "steps": args.steps, "repeats": args.repeats, "threads": 1},
               "rows": rows}  # fmt: skip
    name = "estimator_cost" + ("_quick" if args.quick else "")
    _common.write_table(Path(args.out), name, summary, render(summary))
    return 0


def render(summary: dict) -> str:
    s = summary["setting"]
    fastest = max(r["steps_per_second"] for r in summary["rows"])
    head = ["family", "decoder evaluations per image and step", "steps/s (median)",
            "rounds (min-max steps/s)", "relative to the fastest"]  # fmt: skip
    rows = [[r["family"], r["decoder_evaluations_per_step"], f"{r['steps_per_second']:.1f}",
             f"{min(r['rates']):.1f}-{max(r['rates']):.1f}",
             f"{r['steps_per_second'] / fastest:.2f}"] for r in summary["rows"]]  # fmt: skip
    return "\n".join([
        f"Machine: {_common.machine_line(summary['machine'])}; torch CPU capability "
        f"{summary['cpu_capability']}",
        f"Command: `{summary['command']}`", "",
        f"{s['dataset']}, {s['latent_dim']} bits, hidden {s['hidden']}, batch {s['batch_size']}, "
        f"1 thread, each estimator's default options; {s['repeats']} rounds of {s['steps']} "
        "steps, families alternating within a round.", "",
        _common.markdown_table(head, rows),
    ])  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
