"""Shared helpers of the bench scripts: machine description, timing statistics, result files."""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import statistics
import subprocess
import sys
from collections import Counter
from pathlib import Path

__all__ = [
    "REPO",
    "machine_info",
    "machine_line",
    "runs_line",
    "median",
    "fmt_mean_se",
    "markdown_table",
    "write_json",
    "command_line",
    "busy_loop",
    "write_table",
    "quick_folders",
    "without_folders",
]

REPO = Path(__file__).resolve().parent.parent


def _cpu_model() -> str:
    """The CPU model as /proc/cpuinfo names it (Linux), else what platform reports."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _cpu_flags() -> list[str]:
    """The vector-unit flags that matter for float32 GEMM (AVX2, AVX-512, AMX)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                flags = line.split(":", 1)[1].split()
                keep = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile", "fma")
                return [f for f in flags if f in keep]
    except OSError:
        pass
    return []


def _git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=10,
        )
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def machine_info() -> dict:
    """CPU model, cores, torch version and threads, load and date: what every result carries."""
    import torch

    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count()
    try:
        load = os.getloadavg()
    except OSError:
        load = None
    return {
        "date_utc": _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": _cpu_model(),
        "cpu_flags": _cpu_flags(),
        "cores": cores,
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        "loadavg_1_5_15": None if load is None else [round(v, 2) for v in load],
        "git_commit": _git_commit(),
    }


def machine_line(info: dict) -> str:
    """One line for the head of a results table."""
    return (
        f"{info['date_utc']}; {info['cpu']} ({info['cores']} cores visible, "
        f"{' '.join(info['cpu_flags'])}); torch {info['torch']}, "
        f"{info['torch_threads']} thread(s); "
        f"Python {info['python']}; load average {info['loadavg_1_5_15']}; "
        f"commit {info['git_commit']}"
    )


def runs_line(machines: list[dict]) -> str:
    """One line saying where a table's result files came from, when they were made over hours
    or days: how many, first and last date, every commit (in order of first appearance), and
    how many files each CPU flag set and thread count made. The ``Machine:`` line above a
    table is the first file's record; this one covers all of them."""
    machines = [m for m in machines if m]
    if not machines:
        return "Runs: none"
    dates = sorted(m["date_utc"] for m in machines)
    commits = list(dict.fromkeys(m.get("git_commit") or "unknown" for m in machines))
    flags = Counter(" ".join(m.get("cpu_flags") or []) or "no flags recorded" for m in machines)
    threads = Counter(m["torch_threads"] for m in machines)
    span = dates[0] if dates[0] == dates[-1] else f"{dates[0]} to {dates[-1]}"
    return (
        f"Runs: {len(machines)} result file(s), made {span}; "
        f"commit(s) {', '.join(commits)}; "
        f"CPU flags {'; '.join(f'{k} ({v})' for k, v in flags.items())}; "
        f"torch threads {', '.join(f'{k} ({v})' for k, v in sorted(threads.items()))}"
    )


def median(values) -> float:
    return float(statistics.median(values))


def fmt_mean_se(values, digits: int = 2) -> str:
    """"mean ± s.e." of the finite ``values``, the value alone for one, "n/a" for none: the
    report's `binaryvae.report.document.fmt_mean_se` (one implementation, on
    `binaryvae.stats.mean_se`), with the bench tables' "n/a"."""
    from binaryvae.report.document import fmt_mean_se as report_fmt

    text = report_fmt(values, digits)
    return "n/a" if text == "—" else text


def markdown_table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for row in rows:
        lines.append("| " + " | ".join(str(c) for c in row) + " |")
    return "\n".join(lines)


def quick_folders(args, parser, names: tuple[str, ...] = ("out",)) -> Path | None:
    """A ``--quick`` (smoke) run writes nothing into the repository: each folder option in
    ``names`` left at a default that is not None becomes a subfolder of one new temporary
    folder (printed), so that the committed bench/results stay as they are. Folders given on
    the command line are kept. Returns the temporary folder (None when none was made)."""
    if not getattr(args, "quick", False):
        return None
    tmp = None
    for name in names:
        default = parser.get_default(name)
        value = getattr(args, name)
        if default is None or value is None or Path(value) != Path(default):
            continue
        if tmp is None:
            import tempfile

            tmp = Path(tempfile.mkdtemp(prefix="binaryvae-bench-quick-"))
        folder = tmp if len(names) == 1 else tmp / name.replace("_", "-")
        setattr(args, name, type(value)(folder) if isinstance(value, Path) else str(folder))
    if tmp is not None:
        print(f"--quick: writing to {tmp} (bench/results is left as it is)", flush=True)
    return tmp


def engine_tag(obj: dict, name: str | None = None) -> dict:
    """``obj`` with ``"engine"``: what made the result (``name``, default: this bench script,
    which trains through ``binaryvae train`` or times code) and the commit its machine record
    names; an existing tag is kept."""
    if "engine" in obj:
        return obj
    commit = (obj.get("machine") or {}).get("git_commit") or _git_commit()
    script = Path(sys.argv[0]).name
    return {**obj, "engine": {"name": name or f"bench/{script} (see bench/README.md)",
                              "commit": commit}}  # fmt: skip


def write_json(path: str | os.PathLike, obj) -> None:
    """Write ``obj`` as JSON atomically; a result (a dict) gets its `engine_tag`."""
    if isinstance(obj, dict):
        obj = engine_tag(obj)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")
    os.replace(tmp, path)


def command_line() -> str:
    """The command that produced a result, as a user would type it from the repository root."""
    script = Path(sys.argv[0])
    try:
        script = script.resolve().relative_to(REPO)
    except ValueError:
        pass
    env = " ".join(
        f"{k}={os.environ[k]}"
        for k in (
            "BINARYVAE_DATA_DIR",
            "OMP_WAIT_POLICY",
            "MALLOC_MMAP_THRESHOLD_",
            "MALLOC_TRIM_THRESHOLD_",
        )
        if k in os.environ
    )
    cmd = " ".join(["python", str(script), *sys.argv[1:]])
    return f"{env} {cmd}".strip()


def busy_loop(seconds: float) -> None:
    """A CPU-bound competitor for the contention benchmark (pure Python, one core)."""
    import time

    end = time.perf_counter() + seconds
    x = 0
    while time.perf_counter() < end:
        for _ in range(10_000):
            x += 1


def write_table(out: Path, name: str, summary: dict, text: str) -> None:
    """``out/name.json`` (the summary) and ``out/name.md`` (the rendered table); print it."""
    write_json(out / f"{name}.json", summary)
    (out / f"{name}.md").write_text(text + "\n")
    print(text)


def without_folders(value, folders: dict[str, str]):
    """``value`` (a result: dicts, lists, strings) with every string's mention of a folder of
    this machine (``folders``: path -> placeholder, longest first) replaced by its placeholder,
    so that a committed result names no folder of the machine that made it."""
    if isinstance(value, dict):
        return {k: without_folders(v, folders) for k, v in value.items()}
    if isinstance(value, list):
        return [without_folders(v, folders) for v in value]
    if isinstance(value, str):
        for path in sorted(folders, key=len, reverse=True):
            value = value.replace(path, folders[path])
    return value
