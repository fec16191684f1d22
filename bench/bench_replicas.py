"""Replicas: S seeds trained at once (stacked, batched matrix products) against S sequential runs.

Both arms do the same work, in one process, with binaryvae's own training step
(``binaryvae.training.fit_epoch``): the *sequential* arm trains S single models one after the
other for ``--steps`` steps each; the *stacked* arm trains the S replicas of one stacked model
(``binaryvae.models.replicas.stack_models``) for ``--steps`` steps. Rounds alternate and the
median of ``--repeats`` rounds is taken; the ratio is sequential time / stacked time, i.e. the
aggregate images/s of the stacked arm over the sequential one. Data loading is excluded (the
batches are built before timing). Settings:

- ``protocol``: the estimator protocol's network (784-200-200-200 LeakyReLU(0.3), batch 50,
  200 bits, dynamically binarized images), families bernoulli-disarm and steplogistic;
- ``thesis``: the dissertation's network (784-512-256-128 ReLU, batch 128, 8 bits, grey
  levels), family steplogistic; with ``--bf16`` also the stacked arm under bfloat16 autocast
  against the float32 single run (only where the CPU has bf16 instructions).

``--breakdown`` times the parts of one step of each arm (forward, backward, optimizer) to say
where the time goes; ``--memory`` measures peak resident memory of S = 1 and S = 8 replica
models in fresh processes (memory per replica = the difference / 7).

    python bench/bench_replicas.py --threads 2 --breakdown --memory
    python bench/bench_replicas.py --quick      # smoke test
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import _common  # noqa: E402

SETTINGS = {
    "protocol": dict(hidden=(200, 200), activation="leaky_relu", latent_dim=200, batch_size=50,
                     binarize="dynamic", families=("bernoulli-disarm", "steplogistic")),
    "thesis": dict(hidden=(512, 256, 128), activation="relu", latent_dim=8, batch_size=128,
                   binarize="none", families=("steplogistic",)),
}  # fmt: skip
TARGETS = {"protocol": 3.0, "thesis": 1.3, "thesis-bf16": 1.7}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--replicas", type=int, default=8)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--steps", type=int, default=40, help="steps per model per timed round")
    p.add_argument("--repeats", type=int, default=5, help="alternating rounds (median taken)")
    p.add_argument("--settings", default="protocol,thesis")
    p.add_argument("--bf16", action="store_true", help="add the bf16 stacked arm (thesis)")
    p.add_argument("--breakdown", action="store_true", help="time the parts of a step")
    p.add_argument("--memory", action="store_true", help="peak memory of S = 1 and S = 8")
    p.add_argument("--out", default=str(HERE / "results"))
    p.add_argument("--quick", action="store_true", help="smoke test: 2 replicas, 2 steps")
    p.add_argument("--child-memory", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    _common.quick_folders(args, p)
    if args.quick:
        args.replicas, args.steps, args.repeats = 2, 2, 1
    return args


def _config(setting: str, family: str, seed: int):
    from binaryvae.config import TrainConfig

    s = SETTINGS[setting]
    return TrainConfig(dataset="mnist-mini", family=family, latent_dim=s["latent_dim"],
                       hidden=s["hidden"], activation=s["activation"], batch_size=s["batch_size"],
                       binarize=s["binarize"], prior="learned" if setting == "protocol" else
                       "fixed", lr=1e-4 if setting == "protocol" else 1e-3, seed=seed,
                       threads=1)  # fmt: skip


class Arms:
    """The S single models and the stacked model of one (setting, family), with their batches."""

    def __init__(self, setting: str, family: str, replicas: int, steps: int, singles=True):
        import torch

        from binaryvae.data import EpochBatches, load_dataset
        from binaryvae.models.replicas import ReplicaGenerator, stack_models
        from binaryvae.runs.build import build_replica_model
        from binaryvae.training import make_optimizer

        ds = load_dataset("mnist-mini")
        configs = [_config(setting, family, seed) for seed in range(replicas)]
        self.configs = configs
        self.singles = [build_replica_model(c, ds) for c in configs] if singles else []
        self.single_opts = [make_optimizer(m, c.lr) for m, c in zip(self.singles, configs,
                                                                      strict=False)]  # fmt: skip
        self.stacked = stack_models([build_replica_model(c, ds) for c in configs])
        self.stacked_opt = make_optimizer(self.stacked, configs[0].lr)
        c = configs[0]
        loaders = [EpochBatches(ds.train_x, batch_size=c.batch_size, binarize=c.binarize,
                                seed=cfg.seed) for cfg in configs]  # fmt: skip
        per = [[x for _, x in zip(range(steps), b.epoch(1), strict=False)] for b in loaders]
        self.single_batches = per  # [S][steps] of [B, D]
        self.stacked_batches = [torch.stack(xs) for xs in zip(*per, strict=True)]  # [S, B, D]
        self.gens = [torch.Generator().manual_seed(s) for s in range(replicas)]
        self.replica_gen = ReplicaGenerator([torch.Generator().manual_seed(s)
                                             for s in range(replicas)])  # fmt: skip
        self.objective = c.objective
        self.replicas = replicas
        self.images = replicas * steps * c.batch_size

    def sequential(self) -> float:
        from binaryvae.training import fit_epoch

        t = time.perf_counter()
        for model, opt, batches, g in zip(self.singles, self.single_opts, self.single_batches,
                                          self.gens, strict=True):  # fmt: skip
            fit_epoch(model, opt, batches, epoch=1, objective=self.objective, generator=g)
        return time.perf_counter() - t

    def stacked_run(self, precision: str = "fp32") -> float:
        from binaryvae.training import fit_epoch

        t = time.perf_counter()
        fit_epoch(self.stacked, self.stacked_opt, self.stacked_batches, epoch=1,
                  objective=self.objective, generator=self.replica_gen,
                  replicas=self.replicas, precision=precision)  # fmt: skip
        return time.perf_counter() - t


def measure(args, setting: str, family: str) -> dict:
    arms = Arms(setting, family, args.replicas, args.steps)
    bf16 = args.bf16 and setting == "thesis" and _bf16_ok()
    arms.sequential(), arms.stacked_run()  # warm-up (first calls allocate, import, fuse)
    if bf16:
        arms.stacked_run("bf16")
    seq, stk, stk16 = [], [], []
    for _ in range(args.repeats):
        seq.append(arms.sequential())
        stk.append(arms.stacked_run())
        if bf16:
            stk16.append(arms.stacked_run("bf16"))
    out = {
        "setting": setting,
        "family": family,
        "replicas": args.replicas,
        "steps": args.steps,
        "sequential_images_per_s": arms.images / statistics.median(seq),
        "stacked_images_per_s": arms.images / statistics.median(stk),
        # paired: each round times both arms back to back; the median of the rounds' ratios
        "ratio": statistics.median(a / b for a, b in zip(seq, stk, strict=True)),
        "ratio_rounds": [a / b for a, b in zip(seq, stk, strict=True)],
        "target": TARGETS[setting],
    }
    if bf16:
        out["stacked_bf16_images_per_s"] = arms.images / statistics.median(stk16)
        out["ratio_bf16"] = statistics.median(seq) / statistics.median(stk16)
        out["target_bf16"] = TARGETS["thesis-bf16"]
    if args.breakdown:
        out["breakdown_ms"] = breakdown(arms)
    return out


def _bf16_ok() -> bool:
    import torch

    from binaryvae.training import bf16_support

    return bf16_support(torch.device("cpu"))[0]


def breakdown(arms: Arms, rounds: int = 5) -> dict:
    """Median milliseconds of a step's parts: forward (loss), backward, optimizer step, for one
    single model (times S) and for the stacked model."""
    def parts(model, opt, x, gen):
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        terms = model.loss(x, objective=arms.objective, generator=gen)
        t1 = time.perf_counter()
        terms.surrogate.backward()
        t2 = time.perf_counter()
        opt.step()
        t3 = time.perf_counter()
        return [t1 - t0, t2 - t1, t3 - t2]

    s = len(arms.stacked_batches[0])
    single, stacked = [], []
    for i in range(rounds):
        step = i % len(arms.stacked_batches)
        single.append([
            sum(v) for v in zip(*[parts(m, o, b[step], g) for m, o, b, g in
                                  zip(arms.singles, arms.single_opts, arms.single_batches,
                                      arms.gens, strict=True)], strict=True)
        ])  # fmt: skip
        stacked.append(parts(arms.stacked, arms.stacked_opt, arms.stacked_batches[step],
                             arms.replica_gen))  # fmt: skip
    names = ("forward", "backward", "optimizer")
    med = lambda rows, i: 1e3 * statistics.median(r[i] for r in rows)  # noqa: E731
    return {
        f"sequential_{s}x": {n: med(single, i) for i, n in enumerate(names)},
        "stacked": {n: med(stacked, i) for i, n in enumerate(names)},
    }


def memory_child(spec: str) -> None:
    """Peak RSS (MiB) while training ``replicas`` stacked models for 5 steps.

    Loading the dataset decompresses it, and that transient peak is larger than a small model's
    whole training state, so the high-water mark is reset (``/proc/self/clear_refs``, value 5:
    VmHWM := current VmRSS) after the models and batches are built and before the steps run;
    the peak then counts the models, their optimizer state and the steps' activations.
    """
    setting, family, replicas = spec.split(":")
    arms = Arms(setting, family, int(replicas), 5, singles=False)
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    arms.stacked_run()
    status = Path("/proc/self/status").read_text()
    peak_kib = int(next(line.split()[1] for line in status.splitlines()
                        if line.startswith("VmHWM:")))  # fmt: skip
    print(json.dumps({"peak_mib": peak_kib / 1024}))


def memory(setting: str, family: str, replicas: int) -> dict:
    peaks = {}
    for s in (1, replicas):
        proc = subprocess.run([sys.executable, __file__, "--child-memory",
                               f"{setting}:{family}:{s}"], capture_output=True, text=True,
                              check=True)  # fmt: skip
        peaks[s] = json.loads(proc.stdout.strip().splitlines()[-1])["peak_mib"]
    return {
        "peak_mib_1": peaks[1],
        f"peak_mib_{replicas}": peaks[replicas],
        "mib_per_extra_replica": (peaks[replicas] - peaks[1]) / max(replicas - 1, 1),
    }


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.child_memory:
        memory_child(args.child_memory)
        return 0
    import torch

    torch.set_num_threads(args.threads)
    info = _common.machine_info()
    info["cpu_capability"] = torch.backends.cpu.get_cpu_capability()
    print(f"Machine: {_common.machine_line(info)}; capability {info['cpu_capability']}", flush=True)
    rows = []
    for setting in args.settings.split(","):
        for family in SETTINGS[setting]["families"]:
            r = measure(args, setting, family)
            if args.memory:
                r["memory"] = memory(setting, family, args.replicas)
            rows.append(r)
            print(_line(r), flush=True)
    result = {"benchmark": "replicas", "command": _common.command_line(), "machine": info,
              "threads": args.threads, "rows": rows}  # fmt: skip
    name = f"replicas_{args.threads}t" + ("_quick" if args.quick else "")
    _common.write_table(Path(args.out), name, result, render(result))
    return 0


def _line(r: dict) -> str:
    text = (
        f"{r['setting']:8s} {r['family']:18s} S={r['replicas']}: sequential "
        f"{r['sequential_images_per_s']:,.0f} img/s, stacked {r['stacked_images_per_s']:,.0f} "
        f"img/s, ratio {r['ratio']:.2f}x (target {r['target']}x)"
    )
    if "ratio_bf16" in r:
        text += f"; bf16 stacked {r['ratio_bf16']:.2f}x (target {r['target_bf16']}x)"
    return text


def render(result: dict) -> str:
    head = ["setting", "family", "S", "sequential img/s", "stacked img/s",
            "ratio (median of rounds)",
            "ratio per round", "target", "MiB per extra replica"]  # fmt: skip
    rows = []
    for r in result["rows"]:
        mem = r.get("memory", {}).get("mib_per_extra_replica")
        rows.append([
            r["setting"], r["family"], r["replicas"], f"{r['sequential_images_per_s']:,.0f}",
            f"{r['stacked_images_per_s']:,.0f}", f"{r['ratio']:.2f}x",
            " ".join(f"{v:.2f}" for v in r["ratio_rounds"]), f"{r['target']}x",
            "—" if mem is None else f"{mem:.1f}",
        ])  # fmt: skip
    lines = [
        f"Machine: {_common.machine_line(result['machine'])}; "
        f"torch.backends.cpu.get_cpu_capability() = {result['machine']['cpu_capability']}",
        f"Command: `{result['command']}`",
        f"{result['threads']} thread(s). Same work in both arms: S models x "
        f"{result['rows'][0]['steps'] if result['rows'] else 0} steps; medians of alternating "
        "rounds; data loading excluded.",
        "",
        _common.markdown_table(head, rows),
    ]
    for r in result["rows"]:
        if "ratio_bf16" in r:
            lines.append(f"\nbf16 (stacked, autocast) vs fp32 sequential, {r['family']}: "
                         f"{r['ratio_bf16']:.2f}x (target {r['target_bf16']}x)")  # fmt: skip
        if "breakdown_ms" in r:
            b = r["breakdown_ms"]
            parts = "; ".join(f"{arm}: " + ", ".join(f"{k} {v:.1f} ms" for k, v in d.items())
                              for arm, d in b.items())  # fmt: skip
            lines.append(f"\nStep breakdown, {r['setting']} {r['family']} (median ms per step "
                         f"of all S replicas): {parts}")  # fmt: skip
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
