"""The constants behind compare's expected-duration line (`binaryvae.runs.duration`): per
family, seconds per 1,000 images of training (per epoch), of the per-epoch test evaluation, and
of the final summary evaluation, read from the summary.json files of a finished compare
directory; and seconds per run of its report, timed here.

    binaryvae compare --out runs/compare --threads 1
    python bench/compare_duration.py runs/compare
    python bench/compare_duration.py --quick      # a 1-epoch, 1-family compare in a temp dir

Its output table goes into docs/benchmarks.md and the dictionary into
src/binaryvae/runs/duration.py, with the machine and load they were measured under.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    REPO,
    command_line,
    machine_info,
    machine_line,
    markdown_table,
    quick_folders,
    write_json,
)


def per_run_constants(compare_dir: Path) -> dict[str, dict]:
    """{family spec: seconds per 1,000 images} of every run under ``compare_dir``."""
    from binaryvae.data import DATASETS
    from binaryvae.runs.directory import read_compare_listing

    listing = read_compare_listing(compare_dir)
    out = {}
    for name, spec in zip(listing["runs"], listing["families"], strict=True):
        config = json.loads((compare_dir / name / "config.json").read_text())
        s = json.loads((compare_dir / name / "summary.json").read_text())
        n_train, n_test = DATASETS[config["dataset"]].sizes
        out[spec] = {
            "train_per_1000": s["seconds_per_epoch"] / (n_train / 1000),
            "eval_per_1000": s["eval_seconds_per_epoch"] / (n_test / 1000),
            "summary_per_1000": s["summary_seconds"] / (n_test / 1000),
            "dataset": config["dataset"],
            "epochs": s["epochs"],
            "threads": s.get("threads"),
            "hidden": config["hidden"],
            "latent_dim": config["latent_dim"],
        }
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dir", nargs="?", help="a finished compare directory")
    parser.add_argument(
        "--quick", action="store_true", help="a tiny compare in a temp dir (the smoke test)"
    )
    parser.add_argument("--no-report", action="store_true", help="do not time the report")
    parser.add_argument("--out", default=str(REPO / "bench" / "results"), metavar="DIR")
    args = parser.parse_args()
    quick_folders(args, parser)
    with tempfile.TemporaryDirectory() as tmp:
        if args.quick:
            from binaryvae.config import TrainConfig
            from binaryvae.runs import compare, parse_families

            folder = Path(tmp) / "cmp"
            base = TrainConfig(epochs=1, hidden=(16,), latent_dim=4, batch_size=500, threads=1,
                               device="cpu")  # fmt: skip
            compare(parse_families("steplogistic"), base, folder, progress=False)
        elif args.dir:
            folder = Path(args.dir)
        else:
            parser.error("give a compare directory or --quick")
        constants = per_run_constants(folder)
        report_s = None
        if not args.no_report:
            from binaryvae.report import write_report

            start = time.perf_counter()
            write_report(folder, theory=not args.quick)  # --quick: the runs' figures only
            report_s = (time.perf_counter() - start) / len(constants)
    info = machine_info()
    rows = [
        [spec, f"{c['train_per_1000']:.3f}", f"{c['eval_per_1000']:.3f}",
         f"{c['summary_per_1000']:.3f}"]
        for spec, c in constants.items()
    ]  # fmt: skip
    first = next(iter(constants.values()))
    header = ["family", "train s / 1,000 images / epoch", "test eval s / 1,000 images / epoch",
              "summary s / 1,000 test images"]  # fmt: skip
    literal = {spec: tuple(round(c[k], 3) for k in ("train_per_1000", "eval_per_1000",
                                                    "summary_per_1000"))
               for spec, c in constants.items()}  # fmt: skip
    text = "\n".join([
        f"Machine: {machine_line(info)}  ",
        f"Command: `{command_line()}`  ",
        f"runs of {first['dataset']}, {first['epochs']} epochs, {first['threads']} thread(s), "
        f"hidden {first['hidden']}, {first['latent_dim']}-dimensional codes  ",
        "",
        markdown_table(header, rows),
        "",
        f"report: {report_s:.2f} s per run" if report_s is not None else "report: not timed",
        "",
        f"SECONDS_PER_1000 = {literal!r}",
    ])  # fmt: skip
    print(text)
    write_json(Path(args.out) / "compare_duration.json",
               {"machine": info, "command": command_line(), "constants": constants,
                "report_seconds_per_run": report_s})  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
