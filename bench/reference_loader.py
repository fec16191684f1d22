"""Feed the reference DisARM/ARMS code our IDX files in place of ``tfds.load``, and run it.

The reference implementation (the public TensorFlow code of the DisARM and ARMS papers,
github.com/alekdimi/arms, a descendant of google-research's ``disarm/binary``) loads
MNIST / Fashion-MNIST with ``tensorflow_datasets.load``, which downloads. This module replaces
that one function and nothing else: a stand-in ``tensorflow_datasets`` module whose ``load``
returns ``tf.data.Dataset`` objects with the structure tfds gives (a dict with ``"image"``,
uint8 ``[28, 28, 1]``, and ``"label"``, int64) built from the same IDX files binaryvae reads,
honouring the split strings the reference asks for (``"train[:50000]"``, ``"train[50000:]"``,
``"test"``). The reference's own ``dataset.py`` then applies its own dynamic binarization,
shuffling, repetition and batching, and its ``experiment_launcher.main`` trains untouched.

One difference from tfds is unavoidable: tfds stores each split in an order of its own (examples
are shuffled by key when tfds builds the dataset), so its ``train[:50000]`` is a different set of
50,000 images from the first 50,000 rows of the IDX file that this loader (and binaryvae) use.
Both are 50,000 of the same 60,000 training images.

Two parts:

* numpy only, no TensorFlow (tested in the default suite): `read_idx_array`, `parse_split`,
  `dataset_folder`, `split_arrays`;
* TensorFlow (only under the reference's Python): `install_fake_tfds` and `run_reference`, the
  command line that `crosscheck_reference.py` starts, one process per run::

      REFERENCE_PYTHON bench/reference_loader.py --reference-dir DIR --data-dir DATA \\
          --steps 12000 --seed 0 --out result.json --logdir LOGDIR -- --grad_type=disarm ...

  It trains with the reference's flags (after ``--``), then, after exactly ``--steps`` updates,
  evaluates the reference's own ``evaluate`` on the test set with 1 sample (the test ELBO) and
  with ``--iwae-k`` samples (the IWAE bound; the reference itself never computes it), records
  every scalar the reference logs, and times the training loop; one JSON file.

  ``--launcher experiment_launcher_singlelayer`` runs RODEO's code instead (github.com/thjashin/
  rodeo, the same lineage: its ``dataset.py`` calls the same ``tfds.load``). Its ``main`` takes
  the gradient type, defines its training step inside itself (so a step is timed from one
  ``get_next`` of the training iterator to the next), and its ``evaluate`` draws ``--K`` samples
  whatever ``num_eval_samples`` says (with ``num_eval_samples > 1`` it returns the IWAE-K
  bound, K = 2 for RODEO's published runs): the test IWAE-``--iwae-k`` is computed here from the
  trained model's own ``sample_latent`` and ``get_loss`` (`iwae_bound`), the log-mean-exp of
  ``--iwae-k`` single-sample ELBOs per image, as binaryvae's IWAE.
"""

from __future__ import annotations

import gzip
import re
import struct
from pathlib import Path

import numpy as np

__all__ = [
    "IDX_FILES",
    "read_idx_array",
    "parse_split",
    "dataset_folder",
    "split_arrays",
    "install_fake_tfds",
    "run_reference",
    "iwae_bound",
]

# split name -> (images file, labels file), the IDX names without .gz
IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}

_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}

# tfds names the reference asks for -> the folder names binaryvae uses
_TFDS_NAMES = {"fashion_mnist": "fashion-mnist", "mnist": "mnist"}

_SPLIT = re.compile(r"^(?P<name>[a-z]+)(?:\[(?P<start>-?\d*)(?P<colon>:?)(?P<stop>-?\d*)\])?$")


def read_idx_array(path: str | Path) -> np.ndarray:
    """The array an IDX file holds (gzip detected by its magic bytes), native-endian; ValueError
    naming the file for a bad magic number or a size that does not match the header."""
    path = Path(path)
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    if len(raw) < 4 or raw[:2] != b"\x00\x00" or raw[2] not in _IDX_DTYPES or raw[3] == 0:
        raise ValueError(f"{path}: not an IDX file (magic 0x{raw[:4].hex()})")
    ndim = raw[3]
    shape = struct.unpack(f">{ndim}I", raw[4 : 4 + 4 * ndim])
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(raw) - 4 - 4 * ndim != expected:
        raise ValueError(
            f"{path}: header says shape {shape} ({expected} data bytes), "
            f"found {len(raw) - 4 - 4 * ndim}"
        )
    data = np.frombuffer(raw, dtype=dtype, offset=4 + 4 * ndim).reshape(shape)
    return data.astype(dtype.newbyteorder("="))


def parse_split(spec: str, n: int) -> tuple[str, int, int]:
    """``(split name, start, stop)`` that a tfds split string selects from a split of ``n`` rows:
    ``"train"`` is all of it, ``"train[:50000]"`` the first 50,000, ``"train[50000:]"`` the
    rest, ``"train[-10:]"`` the last 10 (Python slice semantics, clipped to ``[0, n]``). A
    single index (``"train[5]"``), percentages and anything else raise ValueError."""
    m = _SPLIT.match(spec.replace(" ", ""))
    if m is None or (m.group("start") is not None and not m.group("colon")):
        raise ValueError(f"split {spec!r}: only NAME or NAME[start:stop] with integers")
    start, stop, _ = slice(
        int(m.group("start")) if m.group("start") else None,
        int(m.group("stop")) if m.group("stop") else None,
    ).indices(n)
    return m.group("name"), start, max(start, stop)


def dataset_folder(data_dir: str | Path, tfds_name: str) -> Path:
    """The folder of IDX files for the tfds dataset name the reference asks for
    (``"fashion_mnist"``, ``"mnist:3.*.*"``): ``data_dir/<name>`` when that folder exists (the
    layout of ``$BINARYVAE_DATA_DIR``), else ``data_dir`` itself, as binaryvae's ``--data-dir``."""
    base = tfds_name.split(":", 1)[0]
    if base not in _TFDS_NAMES:
        raise ValueError(f"dataset {tfds_name!r}: the loader knows {sorted(_TFDS_NAMES)}")
    d = Path(data_dir).expanduser()
    sub = d / _TFDS_NAMES[base]
    return sub if sub.is_dir() else d


def _idx_path(folder: Path, name: str) -> Path:
    for candidate in (folder / (name + ".gz"), folder / name):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"{folder / name}[.gz]: not found")


def split_arrays(folder: str | Path, spec: str) -> tuple[np.ndarray, np.ndarray]:
    """``(images uint8 [k, 28, 28, 1], labels int64 [k])`` of the tfds split string ``spec``
    read from the IDX files in ``folder``, rows in file order (see `parse_split`)."""
    folder = Path(folder)
    name = spec.split("[", 1)[0].strip()
    if name not in IDX_FILES:
        raise ValueError(f"split {spec!r}: the IDX files hold {sorted(IDX_FILES)}")
    images = read_idx_array(_idx_path(folder, IDX_FILES[name][0]))
    labels = read_idx_array(_idx_path(folder, IDX_FILES[name][1]))
    if images.dtype != np.uint8 or images.ndim != 3 or labels.shape != images.shape[:1]:
        raise ValueError(f"{folder}: images {images.shape} {images.dtype}, labels {labels.shape}")
    _, start, stop = parse_split(spec, len(images))
    return images[start:stop, :, :, None], labels[start:stop].astype(np.int64)


# ------------------------------------------------------------------ TensorFlow from here on


def install_fake_tfds(data_dir: str | Path, threads: int = 1, record: list | None = None):
    """Put a module ``tensorflow_datasets`` into ``sys.modules`` whose ``load(name, split=...,
    shuffle_files=...)`` returns ``tf.data.Dataset`` objects (one, or a list for a list of
    splits) built from the IDX files under ``data_dir``; each dataset runs its tf.data work on a
    private pool of ``threads`` threads. ``record``: each call's (name, split) is appended."""
    import sys
    import types

    import tensorflow as tf

    def load(name, split=None, shuffle_files=False, **kwargs):
        if split is None:
            raise ValueError(f"tfds.load({name!r}) without split: the loader needs the split names")
        if record is not None:
            record.append({"name": name, "split": split, "shuffle_files": shuffle_files})
        folder = dataset_folder(data_dir, name)

        def one(spec):
            images, labels = split_arrays(folder, spec)
            ds = tf.data.Dataset.from_tensor_slices({"image": images, "label": labels})
            options = tf.data.Options()
            options.threading.private_threadpool_size = threads
            options.threading.max_intra_op_parallelism = 1
            return ds.with_options(options)

        return [one(s) for s in split] if isinstance(split, (list, tuple)) else one(split)

    module = types.ModuleType("tensorflow_datasets")
    module.__doc__ = (
        "Stand-in for tensorflow_datasets (bench/reference_loader.py): local IDX files."
    )
    module.load = load
    sys.modules["tensorflow_datasets"] = module
    return module


def run_reference(argv=None) -> dict:
    """Train the reference once (see the module docstring); returns and writes the result."""
    import argparse
    import sys
    import time

    p = argparse.ArgumentParser(description="run the reference DisARM/ARMS code on our IDX files")
    p.add_argument("--reference-dir", required=True)
    p.add_argument("--data-dir", required=True)
    p.add_argument("--steps", type=int, required=True)
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--iwae-k", type=int, default=100)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--logdir", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--launcher", default="experiment_launcher",
                   help="the reference's launcher module (experiment_launcher_singlelayer: RODEO)")
    p.add_argument("flags", nargs="*", help="the reference's own flags, after --")
    args = p.parse_args(argv)

    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    loads: list = []
    install_fake_tfds(args.data_dir, args.threads, loads)
    sys.path.insert(0, str(Path(args.reference_dir).resolve()))
    import importlib

    import dataset as ref_dataset  # noqa: E402  (the reference's modules)

    ref = importlib.import_module(args.launcher)
    flags = [
        args.launcher,
        *args.flags,
        f"--num_steps={args.steps}",
        f"--seed={args.seed}",
        f"--logdir={args.logdir}",
    ]
    ref.FLAGS(flags)
    if not hasattr(ref, "train_one_step"):  # RODEO's launcher: see the module docstring
        return _run_singlelayer(args, flags, ref, ref_dataset, loads)

    # Observe, without changing, what main does: the model and test set it builds, the time of
    # each training step and evaluation, every scalar it logs.
    seen: dict = {"datasets": None, "model": None, "step_times": [], "evals": []}
    logged: list[dict] = []
    original_batches = ref_dataset.get_dynamic_mnist_batch
    original_step = ref.train_one_step

    def batches(*a, **kw):
        seen["datasets"] = original_batches(*a, **kw)
        return seen["datasets"]

    def step(*a, **kw):
        seen["model"] = a[1]
        t = time.perf_counter()
        out = original_step(*a, **kw)
        seen["step_times"].append((t, time.perf_counter()))
        return out

    ref_dataset.get_dynamic_mnist_batch = batches
    ref.train_one_step = step
    original_evaluate, original_scalar = _observe(ref, seen, logged)

    t0 = time.perf_counter()
    ref.main([])
    t_end = time.perf_counter()
    times = seen["step_times"]
    if len(times) != args.steps:
        raise RuntimeError(f"the reference made {len(times)} steps, asked {args.steps}")
    loop_seconds = t_end - times[0][0]
    first_step = times[0][1] - times[0][0]  # includes tracing the tf.function
    eval_seconds = sum(b - a for a, b in seen["evals"])
    train_seconds = loop_seconds - eval_seconds - first_step
    # steady state: from the end of step `warm` to the end of the last, the reference's periodic
    # evaluations in that window taken out (the first steps trace and retrace the tf.function)
    warm = min(100, args.steps // 10)
    t_warm = times[warm][1]
    steady_seconds = (times[-1][1] - t_warm) - sum(b - a for a, b in seen["evals"] if a >= t_warm)
    steady_steps = args.steps - 1 - warm

    # after exactly args.steps updates: the reference's own evaluation of the test set
    tf.summary.scalar = original_scalar
    _, valid_ds, test_ds = seen["datasets"]
    model = seen["model"]
    t = time.perf_counter()
    test_elbo = -float(original_evaluate(model, test_ds, num_eval_samples=1))
    valid_elbo = -float(original_evaluate(model, valid_ds, num_eval_samples=1))
    test_iwae = -float(original_evaluate(model, test_ds, num_eval_samples=args.iwae_k))
    final_eval_seconds = time.perf_counter() - t

    return _write_result(
        args, flags, loads, logged,
        final={"test_elbo_1sample": test_elbo, "valid_elbo_1sample": valid_elbo,
               f"test_iwae_k{args.iwae_k}": test_iwae, "seconds": final_eval_seconds},
        timing={"setup_seconds": times[0][0] - t0, "first_step_seconds": first_step,
                "loop_seconds": loop_seconds, "logged_eval_seconds": eval_seconds,
                "train_seconds": train_seconds, "warmup_steps": warm,
                "steady_seconds": steady_seconds, "steady_steps": steady_steps},
    )  # fmt: skip


def _observe(ref, seen: dict, logged: list) -> tuple:
    """Wrap, without changing what they do, the reference's ``evaluate`` (each call's start and
    end appended to ``seen["evals"]``; a wrapped training dataset is given back as the
    ``tf.data.Dataset`` it holds) and ``tf.summary.scalar`` (each scalar appended to
    ``logged``); returns the two originals."""
    import time

    import tensorflow as tf

    original_evaluate, original_scalar = ref.evaluate, tf.summary.scalar

    def evaluate(model, ds, *a, **kw):
        t = time.perf_counter()
        out = original_evaluate(model, getattr(ds, "dataset", ds), *a, **kw)
        seen["evals"].append((t, time.perf_counter()))
        return out

    def scalar(name, data, step=None, **kw):
        logged.append({"step": int(step), "name": name, "value": float(np.asarray(data))})
        return original_scalar(name, data, step=step, **kw)

    ref.evaluate = evaluate
    tf.summary.scalar = scalar
    return original_evaluate, original_scalar


def _write_result(args, flags: list[str], loads: list, logged: list[dict], final: dict,
                  timing: dict, extra: dict | None = None) -> dict:
    """The result of one reference run (`run_reference`), written to ``args.out``: ``final``
    (after exactly ``args.steps`` updates), every scalar the reference ``logged`` by its step
    (step i comes after i + 1 updates), and ``timing`` with the rates derived from it."""
    import json
    import os

    import tensorflow as tf

    history: dict[int, dict] = {}
    for row in logged:
        history.setdefault(row["step"], {"step": row["step"], "updates": row["step"] + 1})
        history[row["step"]][row["name"]] = row["value"]
    steps, t = args.steps, dict(timing)
    t["steps_per_s_after_first"] = (steps - 1) / t["train_seconds"]
    t["seconds_per_1000_steps_with_logged_eval"] = 1000 * t["loop_seconds"] / steps
    t["steps_per_s"] = t["steady_steps"] / t["steady_seconds"]
    t["seconds_per_1000_steps"] = 1000 * t["steady_seconds"] / t["steady_steps"]
    result = {
        "side": "reference",
        **(extra or {}),
        "steps": steps,
        "seed": args.seed,
        "reference_flags": flags[1:],
        "tfds_loads": loads,
        "final": {"updates": steps, **final},
        "logged": [history[k] for k in sorted(history)],
        "timing": t,
        "tensorflow": tf.__version__,
        "tf_threads": {
            "intra_op": tf.config.threading.get_intra_op_parallelism_threads(),
            "inter_op": tf.config.threading.get_inter_op_parallelism_threads(),
            "tfdata_private_pool": args.threads,
            "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
        },
    }
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    return result


def iwae_bound(model, dataset, k: int) -> float:
    """Mean over ``dataset``'s images of log (1/k) sum_j exp ELBO_j (the IWAE bound, Burda et
    al. 2016, eq. 8) of a reference ``DiscreteVAE``: ``k`` codes per image from its own
    ``sample_latent(batch, k)`` (``b [k, B, D]``), each ELBO_j = -``get_loss(b, eta, x)
    [k, B]``; images in batches as ``dataset`` yields them (flattened to ``[B, 784]``)."""
    import tensorflow as tf

    @tf.function
    def per_batch(batch):
        x = tf.cast(tf.reshape(batch, [tf.shape(batch)[0], -1]), tf.float32)
        b, eta, _, _ = model.sample_latent(x, k)
        elbo = -model.get_loss(b, eta, x)  # [k, B]
        return tf.reduce_logsumexp(elbo, axis=0) - tf.math.log(float(k))  # [B]

    total, count = 0.0, 0
    for batch in dataset:
        bound = per_batch(batch).numpy()
        total += float(bound.sum())
        count += bound.shape[0]
    return total / count


def _run_singlelayer(args, flags: list[str], ref, ref_dataset, loads: list) -> dict:
    """`run_reference` for RODEO's ``experiment_launcher_singlelayer`` (module docstring)."""
    import time

    import tensorflow as tf

    seen: dict = {"datasets": None, "model": None, "next_times": [], "evals": []}
    logged: list[dict] = []
    original_batches = ref_dataset.get_dynamic_mnist_batch
    original_model = ref.networks.DiscreteVAE

    class TimedIterator:
        """The training iterator, each ``get_next`` (one per training step) timed."""

        def __init__(self, it):
            self._it = it

        def get_next(self):
            seen["next_times"].append(time.perf_counter())
            return self._it.get_next()

        def __iter__(self):
            return self

        def __next__(self):
            return self.get_next()

    class TimedTrain:
        """The training dataset: ``iter`` of it is timed; `evaluate` gets the dataset itself."""

        def __init__(self, ds):
            self.dataset = ds

        def __iter__(self):
            return TimedIterator(iter(self.dataset))

    def batches(*a, **kw):
        seen["datasets"] = original_batches(*a, **kw)
        train, valid, test = seen["datasets"]
        return TimedTrain(train), valid, test

    def model(*a, **kw):
        seen["model"] = original_model(*a, **kw)
        return seen["model"]

    ref_dataset.get_dynamic_mnist_batch = batches
    ref.networks.DiscreteVAE = model
    original_evaluate, original_scalar = _observe(ref, seen, logged)

    t0 = time.perf_counter()
    ref.main(ref.FLAGS.grad_type)
    t_end = time.perf_counter()
    starts = seen["next_times"]
    if len(starts) != args.steps:
        raise RuntimeError(f"the reference made {len(starts)} steps, asked {args.steps}")
    ends = [*starts[1:], t_end]  # step i: from its get_next to the next one's (or the end)
    loop_seconds = t_end - starts[0]
    eval_seconds = sum(b - a for a, b in seen["evals"])
    first_step = ends[0] - starts[0] - sum(b - a for a, b in seen["evals"] if a < ends[0])
    warm = min(100, args.steps // 10)
    t_warm = ends[warm]
    steady_seconds = (t_end - t_warm) - sum(b - a for a, b in seen["evals"] if a >= t_warm)
    steady_steps = args.steps - 1 - warm

    tf.summary.scalar = original_scalar
    _, valid_ds, test_ds = seen["datasets"]
    trained = seen["model"]
    t = time.perf_counter()
    test_elbo = -float(original_evaluate(trained, test_ds, num_eval_samples=1))
    valid_elbo = -float(original_evaluate(trained, valid_ds, num_eval_samples=1))
    test_iwae = iwae_bound(trained, test_ds, args.iwae_k)
    final_eval_seconds = time.perf_counter() - t

    return _write_result(
        args, flags, loads, logged,
        final={"test_elbo_1sample": test_elbo, "valid_elbo_1sample": valid_elbo,
               f"test_iwae_k{args.iwae_k}": test_iwae,
               "test_iwae_computed_by": "bench/reference_loader.py iwae_bound (the reference's "
               "evaluate draws --K samples only)", "seconds": final_eval_seconds},
        timing={"setup_seconds": starts[0] - t0, "first_step_seconds": first_step,
                "loop_seconds": loop_seconds, "logged_eval_seconds": eval_seconds,
                "train_seconds": loop_seconds - eval_seconds - first_step, "warmup_steps": warm,
                "steady_seconds": steady_seconds, "steady_steps": steady_steps,
                "step_timed_by": "get_next of the training iterator"},
        extra={"launcher": args.launcher},
    )  # fmt: skip


if __name__ == "__main__":
    run_reference()
