"""Limits from the machine, and every bad option refused up front (issue 24): the memory a run
needs is estimated before anything is allocated and refused above what the machine has; datasets
too small to train or score, or of another image shape than the model's, are refused before the
run directory exists; empty strings, non-finite resources and out-of-range seeds exit 2 in one
line with nothing written and Ray never started."""

from __future__ import annotations

import gzip
import json
import struct
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import torch

from _runs_helpers import TINY, TINY_NET, one_line_error
from binaryvae import resources
from binaryvae.cli import main
from binaryvae.config import TrainConfig
from binaryvae.errors import BadInput
from binaryvae.models.size import count_model
from binaryvae.runs.build import estimate_run

GIB = 1 << 30


def _tree(path: Path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*"))


@pytest.fixture
def machine(monkeypatch):
    """This machine's available memory, as the test sets it: MemAvailable is what
    ``machine(bytes)`` says, and no cgroup limits the process."""

    def set_available(n: int) -> None:
        monkeypatch.setattr(resources, "_meminfo_available", lambda path=None: n)
        monkeypatch.setattr(resources, "_cgroup_available", lambda root=None: None)

    set_available(64 * GIB)  # a generous machine unless a test says otherwise
    return set_available


@pytest.fixture
def no_ray(monkeypatch):
    """Fails the test if any executor starts: Ray imported or a cell run."""
    from binaryvae.runs import sweep_executors

    calls = []
    monkeypatch.setattr(sweep_executors.RayExecutor, "_import", lambda self: calls.append("ray"))
    monkeypatch.setattr(sweep_executors.LocalExecutor, "run",
                        lambda self, *a: calls.append("local"))  # fmt: skip
    return calls


# ------------------------------------------------------------------ the memory estimate
def _hand_count(data_dim: int, hidden: tuple[int, ...], encoder_out: int, n: int) -> int:
    """Weights and biases of the MLP pair, layer by layer: encoder data -> hidden -> encoder_out,
    decoder n -> reversed hidden -> data."""
    total = 0
    for sizes in ((data_dim, *hidden, encoder_out), (n, *reversed(hidden), data_dim)):
        total += sum((a + 1) * b for a, b in zip(sizes, sizes[1:], strict=False))
    return total


@pytest.mark.parametrize(
    "fields, encoder_out, extra",
    [
        (dict(family="bernoulli-sfe", hidden=(16,), latent_dim=4), 4, 0),
        (dict(family="gaussian", hidden=(16, 8), latent_dim=3), 6, 0),  # mean and scale
        (dict(family="logistic", hidden=(32,), latent_dim=5, prior="learned"), 5, 5),  # logits
        (dict(family="steplogistic", hidden=(8,), latent_dim=2, decoder="gaussian"), 2, 784),
    ],
)
def test_the_parameter_count_is_the_hand_count_and_the_built_models(fields, encoder_out, extra):
    from binaryvae.models import build_model
    from binaryvae.models.replicas import stack_models

    config = TrainConfig(**fields)
    parameters, _, _, element = count_model(config, 784, (28, 28), "image")
    assert element == 4
    hand = _hand_count(784, config.hidden, encoder_out, config.latent_dim) + extra
    assert parameters == hand
    models = []
    for seed in range(3):
        torch.manual_seed(seed)
        models.append(build_model(config, 784, (28, 28), "image"))
    assert sum(p.numel() for p in models[0].parameters()) == parameters
    stacked = stack_models(models)  # what train --seeds trains: every parameter per replica
    assert sum(p.numel() for p in stacked.parameters()) == 3 * parameters
    estimate = estimate_run(config, 784, (28, 28), "image", replicas=3)
    assert estimate.parameters == parameters and estimate.replicas == 3


def test_the_conv_network_is_counted_like_the_built_model():
    from binaryvae.models import build_model

    conv = dict(network="conv", family="logistic", latent_dim=6)
    gmm = dict(family="autoencoder-gmm", gmm_components=5, latent_dim=7, hidden=(8,))
    for fields in (conv, gmm):
        config = TrainConfig(**fields)
        model = build_model(config, 784, (28, 28), "image")
        parameters, buffers, _, _ = count_model(config, 784, (28, 28), "image")
        assert parameters == sum(p.numel() for p in model.parameters())
        assert buffers == sum(b.numel() for b in model.buffers())


def test_the_estimate_adds_model_activations_and_data_as_documented():
    config = TrainConfig(family="bernoulli-sfe", hidden=(16,), latent_dim=4, batch_size=600)
    p = _hand_count(784, (16,), 4, 4)
    buffers = 4 + 1 + 1  # the fixed prior's logits, the baseline's running mean and step count
    widths = 16 + 4 + 16 + 784  # every Linear layer's outputs
    one = estimate_run(config, 784, (28, 28), "image", sizes=(100, 30))
    assert one.model_bytes == 4 * (p * (4 + 3) + buffers)  # weights, grads, 2 moments; save
    assert one.activation_bytes == 4 * 600 * widths * 4  # batch 600 > the evaluation's 500
    assert one.data_bytes == (100 + 30) * 784 + 30 * 784 * 4  # uint8 both splits; float test
    group = estimate_run(config, 784, (28, 28), "image", replicas=5, sizes=(100, 30))
    assert group.model_bytes == 4 * (p * (5 * (4 + 3) + 3) + buffers * 5 * 2)
    assert group.activation_bytes == 5 * one.activation_bytes
    assert group.data_bytes == (100 + 30) * 784 + 5 * 30 * 784 * 4
    assert group.total == group.model_bytes + group.activation_bytes + group.data_bytes


def test_a_run_is_refused_exactly_above_the_available_memory(machine):
    from binaryvae.data import dataset_geometry
    from binaryvae.runs.build import check_run_memory

    config = TrainConfig(family="bernoulli-sfe", hidden=(16,), latent_dim=4, device="cpu")
    geometry = dataset_geometry("mnist-mini")
    need = estimate_run(config, *geometry, replicas=2, sizes=(8000, 2000)).total
    machine(need)
    check_run_memory(config, geometry, replicas=2, sizes=(8000, 2000))  # fits exactly
    machine(need - 1)
    with pytest.raises(BadInput) as info:
        check_run_memory(config, geometry, replicas=2, sizes=(8000, 2000))
    message = str(info.value)
    assert resources.format_bytes(need) in message
    assert resources.format_bytes(need - 1) in message and "available" in message


def test_on_a_gpu_the_model_is_checked_against_its_free_memory(machine, monkeypatch):
    """The model, its activations and the float test split against the GPU's free memory
    (torch.cuda.mem_get_info, set here: no GPU is needed), the stored data against the host's."""
    from binaryvae.data import dataset_geometry
    from binaryvae.runs.build import check_run_memory

    config = TrainConfig(family="bernoulli-sfe", hidden=(16,), latent_dim=4)
    geometry = dataset_geometry("mnist-mini")
    e = estimate_run(config, *geometry, replicas=3, sizes=(8000, 2000))
    on_gpu = e.model_bytes + e.activation_bytes + 3 * 2000 * 784 * 4
    free = {"bytes": on_gpu}
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (free["bytes"], 80 * GIB))
    gpu = torch.device("cuda")
    machine((8000 + 2000) * 784)  # exactly the images as stored
    check_run_memory(config, geometry, replicas=3, sizes=(8000, 2000), device=gpu)
    free["bytes"] = on_gpu - 1
    with pytest.raises(BadInput, match=r"on cuda needs about .* \(free memory of cuda\)"):
        check_run_memory(config, geometry, replicas=3, sizes=(8000, 2000), device=gpu)
    free["bytes"], host = on_gpu, (8000 + 2000) * 784 - 1
    machine(host)
    with pytest.raises(BadInput, match="the data of training 3 replicas"):
        check_run_memory(config, geometry, replicas=3, sizes=(8000, 2000), device=gpu)


def test_train_above_the_available_memory_exits_2_and_writes_nothing(machine, tmp_path, capsys):
    machine(10 << 20)  # 10 MiB: less than mnist-mini alone
    assert main(["train", "--out", str(tmp_path / "run"), *TINY, "--quiet"]) == 2
    err = one_line_error(capsys)
    assert "needs about" in err and "10.0 MiB are available" in err
    assert _tree(tmp_path) == []


@pytest.mark.parametrize(
    "argv",
    [
        ["train", "--latent-dim", "4096", "--hidden", ",".join(["65536"] * 16)],
        ["train", "--seeds", "0-255", "--hidden", "4096,4096"],
        ["compare", "--families", "logistic", "--seeds", "0-255", "--hidden", "4096,4096"],
    ],
)
def test_models_beyond_the_machine_are_refused_before_allocation(machine, tmp_path, capsys,
                                                                 no_ray, argv):  # fmt: skip
    tracemalloc.start()
    try:
        code = main([*argv, "--out", str(tmp_path / "out"), "--device", "cpu", "--quiet"])
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert code == 2
    err = one_line_error(capsys)
    assert "needs about" in err and "64.0 GiB are available" in err, err
    assert peak < 256 << 20  # counted on the meta device: nothing of the model was allocated
    assert _tree(tmp_path) == [] and no_ray == []


def test_a_sweep_checks_each_cell_with_all_its_seeds_before_ray_starts(machine, tmp_path,
                                                                       capsys, no_ray):  # fmt: skip
    argv = ["sweep", "--out", str(tmp_path / "sweep"), "--families", "logistic",
            "--latent-dims", "4,8", "--seeds", "0-255", "--hidden", "4096,4096", "--epochs", "1",
            "--executor", "ray", "--quiet", "--device", "cpu"]  # fmt: skip
    assert main(argv) == 2
    err = one_line_error(capsys)
    assert "256 replicas" in err and "needs about" in err and "4bit" in err
    assert _tree(tmp_path) == [] and no_ray == []


def test_available_memory_is_the_lower_of_meminfo_and_the_cgroup(tmp_path, monkeypatch):
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:  16000000 kB\nMemAvailable:    2000000 kB\n")
    cgroup = tmp_path / "cgroup"
    cgroup.mkdir()
    (cgroup / "memory.max").write_text("max\n")  # no limit
    monkeypatch.setattr(resources, "_MEMINFO", meminfo)
    monkeypatch.setattr(resources, "_CGROUP_ROOT", cgroup)
    assert resources.available_memory() == (2_000_000 * 1024, "MemAvailable")
    (cgroup / "memory.max").write_text(f"{1 << 30}\n")
    (cgroup / "memory.current").write_text(f"{(1 << 30) - 5000}\n")
    assert resources.available_memory()[0] == 5000
    meminfo.unlink()
    (cgroup / "memory.max").unlink()
    monkeypatch.setattr(resources, "_sysconf_available", lambda: 1234)
    assert resources.available_memory() == (1234, "free physical pages")


# ------------------------------------------------------------------ datasets
@pytest.fixture(autouse=True)
def standins_are_known(monkeypatch):
    """The stand-in datasets below are random bytes, not the files binaryvae knows: their
    checksum check (tests/test_reliability_data.py tests it) is off in this module."""
    from binaryvae.data import sources

    monkeypatch.setattr(sources, "check_known", lambda *args, **kwargs: None)


def _idx(array: np.ndarray) -> bytes:
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(np.uint8).tobytes()


def _standin(root: Path, n_train: int, n_test: int, shape=(28, 28)) -> Path:
    """A fashion-mnist folder of random uint8 images (uncompressed IDX)."""
    folder = root / "fashion-mnist"
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for split, n in (("train", n_train), ("t10k", n_test)):
        (folder / f"{split}-images-idx3-ubyte").write_bytes(_idx(rng.integers(0, 256, (n, *shape))))
        (folder / f"{split}-labels-idx1-ubyte").write_bytes(_idx(rng.integers(0, 10, n)))
    return root


def _train_on(data: Path, out: Path, *extra: str) -> list[str]:
    return ["train", "--dataset", "fashion-mnist", "--data-dir", str(data), "--out", str(out),
            "--family", "bernoulli-sfe", "--epochs", "1", "--latent-dim", "3", *TINY,
            "--batch-size", "20", "--quiet", "--no-report", *extra]  # fmt: skip


@pytest.mark.parametrize(
    "n_train, n_test, extra, message",
    [
        (0, 20, [], "the training split holds 0 images, fewer than one batch (batch size 20)"),
        (60, 0, [], "the test split holds 0 images"),
        (1, 1, ["--batch-size", "1"], "the test split holds 1 image;"),  # the FD needs 2
        (1, 5, [], "the training split holds 1 image, fewer than one batch"),
        (4, 5, ["--family", "autoencoder-gmm", "--batch-size", "2", "--gmm-components", "5"],
         "fewer than the 5 mixture components"),
    ],
)  # fmt: skip
def test_datasets_too_small_are_refused_before_the_run_directory_exists(
    tmp_path, capsys, n_train, n_test, extra, message
):
    data = _standin(tmp_path / "data", n_train, n_test)
    assert main(_train_on(data, tmp_path / "run", *extra)) == 2
    err = one_line_error(capsys)
    assert message in err and "fashion-mnist" in err, err
    assert not (tmp_path / "run").exists()


def test_images_of_another_shape_are_refused_naming_both(tmp_path, capsys):
    data = _standin(tmp_path / "data", 60, 20, shape=(28, 29))
    assert main(_train_on(data, tmp_path / "run")) == 2
    err = one_line_error(capsys)
    assert "28x29" in err and "28x28" in err and "train-images" in err
    assert not (tmp_path / "run").exists()


@pytest.fixture
def raw_features(monkeypatch):
    """The finished runs below score the sample FD in 8 raw pixels: the feature classifier (or
    all 784 pixels) would take seconds, and the FD is not what these tests are about."""
    from binaryvae.training import classifier

    def features(x):
        return x[:, 300:308].double().cpu().numpy()

    def feature_network(dataset, cache_dir=None):
        return classifier.Features(features, "raw", None)

    monkeypatch.setattr(classifier, "feature_network", feature_network)


def test_evaluate_and_resume_refuse_a_dataset_that_changed_shape_or_size(tmp_path, capsys,
                                                                  raw_features):  # fmt: skip
    data = _standin(tmp_path / "data", 60, 20)
    run = tmp_path / "run"
    assert main(_train_on(data, run)) == 0
    summary = (run / "summary.json").read_bytes()
    _standin(data, 60, 20, shape=(28, 29))  # the folder now holds other images
    for argv in (["evaluate", str(run)], _train_on(data, run, "--resume", "--epochs", "2")):
        capsys.readouterr()
        assert main(argv) == 2
        err = one_line_error(capsys)
        assert "28x29" in err and "28x28" in err, err
    _standin(data, 60, 1)  # the right shape, but other data: their fingerprint says so first
    assert main(["evaluate", str(run)]) == 2
    assert "are not the data it was trained on" in one_line_error(capsys)
    assert (run / "summary.json").read_bytes() == summary
    assert [json.loads(line)["epoch"] for line in (run / "metrics.jsonl").open()] == [1]


def test_a_declared_32000x32000_image_is_refused_from_the_header(tmp_path, capsys):
    """The header declares one 32000x32000 image (1.02 GB, under the reader's 1 GiB bound);
    the file holds only the header. Refused by its shape before any data are read."""
    data = _standin(tmp_path / "data", 60, 20)
    header = struct.pack(">HBB3I", 0, 0x08, 3, 1, 32000, 32000)
    (data / "fashion-mnist" / "train-images-idx3-ubyte").write_bytes(gzip.compress(header))
    tracemalloc.start()
    try:
        code = main(_train_on(data, tmp_path / "run"))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert code == 2
    err = one_line_error(capsys)
    assert "32000x32000" in err and "28x28" in err and "truncated" not in err, err
    assert peak < 64 << 20
    assert not (tmp_path / "run").exists()


def test_the_idx_reader_refuses_a_header_above_the_available_memory(tmp_path, machine):
    """Below the constant bound the machine decides: 1.02 GB declared, read twice over (bytes,
    then the parsed array), against 1 GiB available; the data are never read (the file holds
    a few bytes of them, which would otherwise be reported as truncated)."""
    from binaryvae.data.idx import IdxError, read_idx, read_idx_header

    path = tmp_path / "big-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(struct.pack(">HBB3I", 0, 0x08, 3, 1, 32000, 32000) + b"\0" * 9))
    assert read_idx_header(path)[1] == (1, 32000, 32000)
    machine(GIB)
    with pytest.raises(IdxError) as info:
        read_idx(path)
    message = str(info.value)
    assert "1,024,000,000 data bytes" in message and "1.0 GiB are available" in message
    assert str(path) in message
    machine(64 * GIB)
    with pytest.raises(IdxError, match="truncated"):  # the premise: readable, it is short
        read_idx(path)


# ------------------------------------------------------------------ options
BAD_OPTIONS = [
    (["train", "--out", ""], "--out is empty"),
    (["train", "--out", "{tmp}/r", "--data-dir", ""], "--data-dir is empty"),
    (["train", "--out", "{tmp}/r", "--hidden", ""], "--hidden is empty"),
    (["train", "--out", "{tmp}/r", "--hidden", "16,"], "--hidden has an empty element"),
    (["train", "--out", "{tmp}/r", "--seeds", ""], "--seeds is empty"),
    (["train", "--out", "{tmp}/r", "--seeds", "0,,1"], "--seeds has an empty element"),
    (["compare", "--out", "{tmp}/c", "--families", ""], "--families is empty"),
    (["compare", "--out", "{tmp}/c", "--families", "logistic,"], "--families has an empty"),
    (["compare", "--out", "{tmp}/c", "--families", "logistic:"], "no objective"),
    (["compare", "--out", ""], "--out is empty"),
    (["compare", "--out", "{tmp}/c", "--cpus-per-run", "nan"], "--cpus-per-run"),
    (["sweep", "--out", "{tmp}/s", "--latent-dims", "4,"], "has an empty element"),
    (["sweep", "--out", "{tmp}/s", "--seeds", ""], "the axis seeds is empty"),
    (["sweep", "--out", ""], "--out is empty"),
    (["sweep", "--out", "{tmp}/s", "--gpus-per-run", "nan"], "--gpus-per-run"),
    (["sweep", "--out", "{tmp}/s", "--gpus-per-run", "nan", "--executor", "ray"],
     "--gpus-per-run"),
    (["sweep", "--out", "{tmp}/s", "--cpus-per-run", "nan", "--executor", "ray"],
     "--cpus-per-run"),
    (["sweep", "--out", "{tmp}/s", "--cpus-per-run", "inf", "--executor", "ray"],
     "--cpus-per-run"),
    (["sweep", "--out", "{tmp}/s", "--cpus-per-run", "-1", "--executor", "ray"],
     "--cpus-per-run"),
    (["sweep", "--out", "{tmp}/s", "--gpus-per-run=-inf"], "--gpus-per-run"),
    (["sample", "{tmp}/r", "--seed", "-1"], "--seed must be in [0, 4294967295]"),
    (["sample", "{tmp}/r", "--seed", str(2**70)], "--seed must be in [0, 4294967295]"),
    (["sample", "", "--out", "{tmp}/a.png"], "RUN_DIR is empty"),
    (["evaluate", ""], "RUN_DIR is empty"),
    (["report", ""], "DIR is empty"),
]  # fmt: skip


@pytest.mark.parametrize("argv, message", BAD_OPTIONS)
def test_bad_options_exit_2_in_one_line_writing_nothing(tmp_path, monkeypatch, capsys, no_ray,
                                                        argv, message):  # fmt: skip
    work = tmp_path / "cwd"  # where an empty path would have pointed
    work.mkdir()
    monkeypatch.chdir(work)
    argv = [a.format(tmp=tmp_path) for a in argv]
    if argv[0] in ("train", "compare", "sweep"):
        argv += ["--quiet", "--epochs", "1", *TINY_NET[4:]]  # threads and device: a cheap run
    assert main(argv) == 2
    err = one_line_error(capsys)
    assert message in err, err
    assert _tree(tmp_path) == ["cwd"] and no_ray == []


def test_an_empty_data_dir_in_a_config_file_is_refused(tmp_path, capsys):
    config = tmp_path / "c.json"
    config.write_text(json.dumps({"data_dir": " "}))
    assert main(["train", "--out", str(tmp_path / "r"), "--config", str(config)]) == 2
    assert "data_dir" in one_line_error(capsys)
    assert _tree(tmp_path) == ["c.json"]


def test_sample_takes_the_seed_range_and_refuses_a_model_beyond_the_machine(
    tmp_path, capsys, raw_features, machine
):
    """The ends of the --seed range are accepted (the check refuses only what is outside); a
    run directory whose config.json describes a model of terabytes is refused before it is
    built."""
    run = tmp_path / "run"
    assert main(["train", "--out", str(run), "--family", "bernoulli-sfe", "--epochs", "1",
                 "--latent-dim", "3", *TINY, "--quiet", "--no-report"]) == 0  # fmt: skip
    for seed in ("0", str(2**32 - 1)):
        assert main(["sample", str(run), "--n", "4", "--seed", seed,
                     "--out", str(tmp_path / f"s{seed}.png")]) == 0  # fmt: skip
        assert (tmp_path / f"s{seed}.png").is_file()
    config = json.loads((run / "config.json").read_text())
    config.update(latent_dim=4096, hidden=[65536] * 16)
    (run / "config.json").write_text(json.dumps(config))
    capsys.readouterr()
    assert main(["sample", str(run), "--n", "4", "--out", str(tmp_path / "big.png")]) == 2
    err = one_line_error(capsys)
    assert "needs about" in err and "64.0 GiB are available" in err
    assert not (tmp_path / "big.png").exists()
