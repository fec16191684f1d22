"""Start-up time of the command line: `binaryvae --help` and `binaryvae --version` against
`python -c pass` (the interpreter's own start-up), wall time, medians of alternating runs.

Each run is a fresh process, as a user's command is. `--help` must import neither torch nor
scipy (tests/test_cli.py checks it); this measures what that buys. The CPU model and torch's CPU
capability are read in a separate process after the timings, so no timed process imports torch.

    python bench/bench_cli_startup.py            # 21 runs of each
    python bench/bench_cli_startup.py --quick    # 3 runs of each (the smoke test)
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    REPO,
    command_line,
    machine_info,
    machine_line,
    markdown_table,
    median,
    quick_folders,
    write_json,
)


def _binaryvae() -> list[str]:
    """The console script next to this interpreter (what `binaryvae` runs after pip install),
    else the module."""
    script = Path(sys.executable).parent / "binaryvae"
    if script.is_file():
        return [str(script)]
    found = shutil.which("binaryvae")
    return [found] if found else [sys.executable, "-m", "binaryvae"]


def _wall(cmd: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def _torch_facts() -> dict:
    """torch's version and CPU capability, from a process of their own."""
    code = (
        "import json, torch; print(json.dumps({'torch': torch.__version__, "
        "'cpu_capability': torch.backends.cpu.get_cpu_capability()}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=21, help="runs of each command (default 21)")
    parser.add_argument("--quick", action="store_true", help="3 runs of each")
    parser.add_argument("--out", default=str(REPO / "bench" / "results"), metavar="DIR")
    args = parser.parse_args()
    quick_folders(args, parser)
    runs = 3 if args.quick else args.runs
    cli = _binaryvae()
    arms = {
        "python -c pass": [sys.executable, "-c", "pass"],
        "binaryvae --help": [*cli, "--help"],
        "binaryvae --version": [*cli, "--version"],
    }
    for cmd in arms.values():  # warm the file cache once
        _wall(cmd)
    times: dict[str, list[float]] = {name: [] for name in arms}
    for r in range(runs):
        order = list(arms) if r % 2 == 0 else list(reversed(arms))
        for name in order:
            times[name].append(_wall(arms[name]))
    base = median(times["python -c pass"])
    rows = [
        [name, f"{1000 * median(t):.0f}", f"{1000 * min(t):.0f}", f"{1000 * max(t):.0f}",
         f"{1000 * (median(t) - base):+.0f}"]
        for name, t in times.items()
    ]  # fmt: skip
    info = machine_info()
    info.update(_torch_facts())
    header = ["command", "median ms", "min ms", "max ms", "median - python -c pass, ms"]
    text = "\n".join(
        [
            f"Machine: {machine_line(info)}; torch CPU capability {info['cpu_capability']}  ",
            f"Command: `{command_line()}`  ",
            f"{runs} runs of each command, alternating order, wall time of a fresh process  ",
            "",
            markdown_table(header, rows),
        ]
    )
    print(text)
    write_json(
        Path(args.out) / "cli_startup.json",
        {"machine": info, "command": command_line(), "runs": runs, "seconds": times},
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
