"""`binaryvae datasets`: list every dataset, where it resolves (or why not), its sizes; --verify
checks the sha256 of the decompressed files. Never downloads."""

from __future__ import annotations

import argparse
from pathlib import Path

from binaryvae.errors import BadInput

__all__ = ["add_parser", "run_datasets"]


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "datasets",
        help="list datasets, where they resolve, their sizes; --verify checks checksums",
        description="List every dataset, the folder it resolves to (or why it does not), and its "
        "sizes. Nothing is downloaded; training commands download missing files on first use.",
    )
    p.add_argument("names", nargs="*", metavar="NAME", help="only these datasets (default: all)")
    p.add_argument(
        "--verify", action="store_true", help="check the sha256 of every file's decompressed bytes"
    )
    p.add_argument(
        "--data-dir",
        default=None,
        metavar="DIR",
        help="search DIR/NAME (or DIR) first, before $BINARYVAE_DATA_DIR and the cache",
    )
    p.set_defaults(func=run_datasets)


def _check(files, paths, verify: bool) -> tuple[bool, list[str]]:
    """(all ok, report lines) for files with their found paths."""
    from binaryvae.data.idx import sha256_decompressed

    ok, lines = True, []
    for file, path in zip(files, paths, strict=True):
        if path is None:
            ok = False
            lines.append(f"    {file.name}: missing")
            continue
        status = ""
        if verify:
            good = sha256_decompressed(path) == file.sha256
            ok = ok and good
            status = "  sha256 ok" if good else "  SHA256 MISMATCH"
        lines.append(f"    {Path(path).name}{status}")
    return ok, lines


def run_datasets(args: argparse.Namespace) -> int:
    # imported here, not at the top: `binaryvae --help` must not import torch
    from binaryvae.cli._common import path_option
    from binaryvae.data.datasets import DATASETS, MNIST_MINI_DIR
    from binaryvae.data.sources import FILES, candidate_dirs, find_file, locate

    path_option(args.data_dir, "--data-dir")
    mini_files = FILES["mnist"][2:]  # the shipped files of mnist-mini are the MNIST test files
    names = args.names or list(DATASETS)
    unknown = [n for n in names if n not in DATASETS]
    if unknown:
        raise BadInput(
            f"unknown dataset {', '.join(map(repr, unknown))}; choose from {', '.join(DATASETS)}"
        )
    failed: list[str] = []
    for name in names:
        info = DATASETS[name]
        n_train, n_test = info.sizes
        print(f"{name}: {info.description}; {n_train:,} train / {n_test:,} test, {info.shape}")
        if name == "mnist-mini":
            paths = [MNIST_MINI_DIR / (f.name + ".gz") for f in mini_files]
            paths = [p if p.is_file() else None for p in paths]
            ok, lines = _check(mini_files, paths, args.verify)
            print(f"  available: shipped in the package ({MNIST_MINI_DIR})")
        elif name in FILES:
            found = locate(name, args.data_dir)
            if found is None:
                print(
                    "  not found (downloaded on first use); searched: "
                    + "; ".join(
                        f"{reason} {folder}"
                        for reason, folder in candidate_dirs(name, args.data_dir)
                    )
                )
                for reason, folder in candidate_dirs(name, args.data_dir):
                    have = [f.name for f in FILES[name] if find_file(folder, f) is not None]
                    if have:
                        print(f"  partial: {folder} ({reason}) holds only {', '.join(have)}")
                continue
            reason, folder = found
            print(f"  available: {folder} (via {reason})")
            paths = [find_file(folder, f) for f in FILES[name]]
            ok, lines = _check(FILES[name], paths, args.verify)
        else:
            print("  available: generated on demand")
            continue
        if not ok:
            failed.append(name)
        for line in lines:
            print(line)
    if failed:
        raise BadInput(
            f"verification failed for {', '.join(failed)} (files missing or with a "
            f"wrong sha256; delete them to download again)"
        )
    return 0
