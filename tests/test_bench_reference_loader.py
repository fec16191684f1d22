"""The pure-Python part of bench/reference_loader.py, the loader that feeds the reference DisARM
code our IDX files in place of ``tfds.load``: split strings against Python's own slicing, the
IDX reader against binaryvae's (`binaryvae.data.idx.read_idx`) and hand-written bytes, and the
folder layout. TensorFlow is not needed (nor imported)."""

from __future__ import annotations

import gzip
import json
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from binaryvae.data.idx import read_idx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
import crosscheck_reference  # noqa: E402
import reference_loader as rl  # noqa: E402

MNIST_MINI = Path(__file__).resolve().parent.parent / "src" / "binaryvae" / "data" / "mnist_mini"


def _idx_bytes(array: np.ndarray) -> bytes:
    """An IDX file written by hand: magic 00 00 08 NDIM, big-endian dims, uint8 data."""
    assert array.dtype == np.uint8
    head = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return head + array.tobytes()


def _write_split(folder: Path, name: str, images: np.ndarray, labels: np.ndarray, gz: bool):
    img_name, lbl_name = rl.IDX_FILES[name]
    for fname, arr in ((img_name, images), (lbl_name, labels)):
        data = _idx_bytes(arr)
        if gz:
            (folder / (fname + ".gz")).write_bytes(gzip.compress(data))
        else:
            (folder / fname).write_bytes(data)


@pytest.mark.parametrize(
    ("spec", "n"),
    [("train[:50000]", 60000), ("train[50000:]", 60000), ("test", 10000), ("train", 7),
     ("train[-10:]", 60000), ("train[2:5]", 7), ("train[:-3]", 7), ("train[5:2]", 7),
     ("train[:100]", 7)],
)  # fmt: skip
def test_parse_split_selects_what_python_slicing_selects(spec, n):
    """``NAME[a:b]`` selects rows ``range(n)[a:b]`` (an empty selection for b < a)."""
    name, start, stop = rl.parse_split(spec, n)
    inside = spec[spec.index("[") + 1 : -1] if "[" in spec else ":"
    a, b = (int(x) if x else None for x in inside.split(":"))
    expected = list(range(n))[a:b]
    assert name == spec.split("[")[0]
    assert list(range(start, stop)) == expected


def test_parse_split_the_references_split_is_the_first_50000_rows():
    """The reference asks for train[:50000] / train[50000:]: rows 0-49,999 and 50,000-59,999."""
    assert rl.parse_split("train[:50000]", 60000) == ("train", 0, 50000)
    assert rl.parse_split("train[50000:]", 60000) == ("train", 50000, 60000)


@pytest.mark.parametrize("spec", ["train[5]", "train[:50%]", "train[a:b]", "train[1:2:3]", ""])
def test_parse_split_refuses_what_it_does_not_implement(spec):
    with pytest.raises(ValueError, match="split"):
        rl.parse_split(spec, 100)


@pytest.mark.parametrize("gz", [True, False])
def test_read_idx_array_is_binaryvaes_reader_on_hand_written_files(tmp_path, gz):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(5, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, size=5, dtype=np.uint8)
    _write_split(tmp_path, "train", images, labels, gz)
    suffix = ".gz" if gz else ""
    got_x = rl.read_idx_array(tmp_path / ("train-images-idx3-ubyte" + suffix))
    got_y = rl.read_idx_array(tmp_path / ("train-labels-idx1-ubyte" + suffix))
    np.testing.assert_array_equal(got_x, images)
    np.testing.assert_array_equal(got_y, labels)
    np.testing.assert_array_equal(got_x, read_idx(tmp_path / ("train-images-idx3-ubyte" + suffix)))


def test_read_idx_array_is_binaryvaes_reader_on_the_shipped_mnist_mini():
    for name in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        ours, theirs = rl.read_idx_array(MNIST_MINI / name), read_idx(MNIST_MINI / name)
        assert ours.dtype == theirs.dtype and ours.shape == theirs.shape
        np.testing.assert_array_equal(ours, theirs)


def test_read_idx_array_refuses_a_truncated_file(tmp_path):
    data = _idx_bytes(np.zeros((3, 4, 4), np.uint8))
    (tmp_path / "x").write_bytes(data[:-1])
    with pytest.raises(ValueError, match="header says shape"):
        rl.read_idx_array(tmp_path / "x")
    (tmp_path / "y").write_bytes(b"\x08\x03" + data[2:])
    with pytest.raises(ValueError, match="not an IDX file"):
        rl.read_idx_array(tmp_path / "y")


def test_split_arrays_gives_tfds_structure_rows_in_file_order(tmp_path):
    """images uint8 [k, 28, 28, 1] (tfds's layout), labels int64, rows a..b of the file."""
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, size=(12, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, size=12, dtype=np.uint8)
    _write_split(tmp_path, "train", images, labels, gz=True)
    x, y = rl.split_arrays(tmp_path, "train[:9]")
    assert x.shape == (9, 28, 28, 1) and x.dtype == np.uint8 and y.dtype == np.int64
    np.testing.assert_array_equal(x[..., 0], images[:9])
    np.testing.assert_array_equal(y, labels[:9])
    x, y = rl.split_arrays(tmp_path, "train[9:]")
    np.testing.assert_array_equal(x[..., 0], images[9:])
    np.testing.assert_array_equal(y, labels[9:])
    with pytest.raises(ValueError, match="validation"):
        rl.split_arrays(tmp_path, "validation")


def test_dataset_folder_follows_the_data_dir_layout(tmp_path):
    """``DATA/fashion-mnist`` when that folder exists (``$BINARYVAE_DATA_DIR``'s layout), else
    ``DATA`` itself; tfds's ``mnist:3.*.*`` is mnist; other names are refused."""
    assert rl.dataset_folder(tmp_path, "fashion_mnist") == tmp_path
    (tmp_path / "fashion-mnist").mkdir()
    assert rl.dataset_folder(tmp_path, "fashion_mnist") == tmp_path / "fashion-mnist"
    (tmp_path / "mnist").mkdir()
    assert rl.dataset_folder(tmp_path, "mnist:3.*.*") == tmp_path / "mnist"
    with pytest.raises(ValueError, match="binarized_mnist"):
        rl.dataset_folder(tmp_path, "binarized_mnist")


def test_crosscheck_reference_flags_are_the_published_disarm_setting():
    flags = crosscheck_reference.reference_flags("nonlinear", ["--nodemean_input"])
    assert flags == [
        "--dataset=fashion_mnist", "--grad_type=disarm", "--encoder_type=nonlinear",
        "--num_pairs=1", "--batch_size=50", "--genmo_lr=1e-4", "--infnet_lr=1e-4",
        "--prior_lr=1e-2", "--demean_input", "--initialize_with_bias", "--nodemean_input",
    ]  # fmt: skip
    assert (crosscheck_reference.result_name("reference", "linear", 12000, 1, "abl")
            == "reference-disarm-linear-steps12000-seed1-abl.json")  # fmt: skip


def test_crosscheck_other_estimators_get_the_same_sample_count_on_both_sides(tmp_path):
    """REINFORCE-LOO with --num-pairs 2: the reference's loorf draws K = 2 x 2 samples, and
    binaryvae's run gets loo_samples = 4 through its config file."""
    flags = crosscheck_reference.reference_flags("linear", [], "loorf", 2)
    assert "--grad_type=loorf" in flags and "--num_pairs=2" in flags
    assert (crosscheck_reference.result_name("binaryvae", "linear", 12000, 0, "", "loorf", 2)
            == "binaryvae-loorf-pairs2-linear-steps12000-seed0.json")  # fmt: skip
    args = crosscheck_reference.parse_args(["--estimator", "loorf", "--num-pairs", "2"])
    path = crosscheck_reference._samples_config(tmp_path / "run", args)
    assert json.loads(path.read_text()) == {"extra": {"loo_samples": 4}}
    with pytest.raises(SystemExit):  # ARM has no sample count
        crosscheck_reference.parse_args(["--estimator", "arm", "--num-pairs", "2"])


def test_crosscheck_rodeo_runs_rodeos_code_on_its_published_protocol(tmp_path):
    """--estimator rodeo: the reference is thjashin/rodeo's single-layer launcher with its
    README's Fashion-MNIST flags, and binaryvae's options over the preset give the same
    protocol field by field (batch 100, lr 3e-4, the prior fixed at 0 logits, raw inputs,
    default decoder bias, glorot init, Adam epsilon 1e-7, K = 2, control network at 1e-3)."""
    from binaryvae.cli import build_parser
    from binaryvae.cli.train import config_from_args

    ref = crosscheck_reference.reference_of("rodeo")
    assert ref["repository"] == "github.com/thjashin/rodeo"
    assert ref["launcher"] == "experiment_launcher_singlelayer"
    assert crosscheck_reference.reference_of("disarm")["launcher"] == "experiment_launcher"
    flags = crosscheck_reference.reference_flags("nonlinear", [], "rodeo")
    assert flags == [
        "--dataset=fashion_mnist", "--grad_type=discrete_stein_avg",
        "--encoder_type=nonlinear", "--K=2", "--D=200", "--batch_size=100", "--genmo_lr=3e-4",
        "--infnet_lr=3e-4", "--prior_lr=0", "--hyper_lr=1e-3", "--control_lr=1e-3",
    ]  # fmt: skip
    args = crosscheck_reference.parse_args(["--estimator", "rodeo"])
    config = crosscheck_reference._samples_config(tmp_path / "run", args)
    argv = ["train", "--out", "unused", "--protocol", "disarm-nonlinear", "--family",
            "bernoulli-rodeo", *crosscheck_reference.RODEO_BINARYVAE_OPTIONS,
            "--config", str(config)]  # fmt: skip
    c = config_from_args(build_parser().parse_args(argv))
    assert (c.dataset, c.binarize, c.validation, c.batch_size, c.lr, c.adam_eps) == (
        "fashion-mnist", "dynamic", 10_000, 100, 3e-4, 1e-7)
    assert (c.latent_dim, tuple(c.hidden), c.activation) == (200, (200, 200), "leaky_relu")
    assert (c.prior, c.prior_sgd_lr, c.encoder_input, c.decoder_input, c.decoder_bias,
            c.init, c.decoder_sample) == (
        "fixed", None, "raw", "bits", "default", "glorot", "shared")  # fmt: skip
    assert c.extra == {"samples": 2, "rodeo_lr": 1e-3, "learning_signal": "elbo"}
    assert c.summary_iwae_k == 100


@pytest.mark.parametrize("estimator", sorted(crosscheck_reference.ESTIMATORS))
def test_crosscheck_aggregates_a_table_for_every_estimator_it_runs(estimator, tmp_path):
    """--aggregate-only over binaryvae-side results alone (the reference's not run yet): the
    table names the estimator and the run (a KeyError here once lost the RELAX table)."""
    args = crosscheck_reference.parse_args(["--estimator", estimator, "--results",
                                            str(tmp_path), "--steps", "12000"])  # fmt: skip
    name = crosscheck_reference.result_name("binaryvae", "nonlinear", 12000, 0, "", estimator)
    (tmp_path / name).write_text(json.dumps({
        "side": "binaryvae", "steps": 12000, "seed": 0, "test_elbo": -268.45,
        "test_iwae_k100": -257.80, "steps_per_s": 50.5, "wall_seconds": 300.0,
        "timing": {"train_seconds": 237.6, "wall_seconds": 300.0},
        "machine": crosscheck_reference._machine(1),
    }))  # fmt: skip
    table = crosscheck_reference.aggregate(args)
    assert crosscheck_reference.ESTIMATOR_TITLES[estimator] in table.splitlines()[0]
    assert "-257.80" in table


def test_crosscheck_binaryvae_ablation_flags_need_a_tag_and_the_option_form():
    ok = crosscheck_reference.parse_args(["--binaryvae-flag=--encoder-input=raw", "--tag", "raw"])
    assert ok.binaryvae_flag == ["--encoder-input=raw"]
    for argv in (["--binaryvae-flag=--encoder-input=raw"], ["--binaryvae-flag=raw", "--tag", "t"]):
        with pytest.raises(SystemExit):
            crosscheck_reference.parse_args(argv)


def test_loader_pure_part_works_with_tensorflow_blocked():
    """In a fresh process where importing tensorflow fails, the module imports and splits."""
    code = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('tensorflow', 'tensorflow_datasets'):\n"
        "            raise ImportError('blocked: ' + name)\n"
        "sys.meta_path.insert(0, Block())\n"
        f"sys.path.insert(0, {str(Path(rl.__file__).parent)!r})\n"
        "import reference_loader as rl\n"
        "print(rl.parse_split('train[50000:]', 60000))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "('train', 50000, 60000)"


def test_crosscheck_recorded_command_names_no_folder_of_this_machine():
    argv = ["--reference-dir", "/home/u/arms", "--data-dir=/data", "--steps", "12000",
            "--runs-dir", "/tmp/r", "--reference-python", "/v/bin/python",
            "--seeds", "0,1"]  # fmt: skip
    assert crosscheck_reference.public_command(argv) == (
        "python bench/crosscheck_reference.py --reference-dir <arms checkout> --data-dir $DATA "
        "--steps 12000 --runs-dir <runs> --reference-python <reference python> --seeds 0,1"
    )


def test_crosscheck_finds_the_binaryvae_options_it_needs_in_the_help_text():
    have = "usage: binaryvae train [--protocol NAME] [--steps N]\n  --steps N  training steps"
    assert crosscheck_reference.binaryvae_missing_options(have) == []
    lacking = "usage: binaryvae train [--grad-steps N] [--protocols]\n  --epochs N"
    assert crosscheck_reference.binaryvae_missing_options(lacking) == ["--protocol", "--steps"]


def test_crosscheck_binaryvae_side_without_the_options_exits_2_with_one_line(
    tmp_path, monkeypatch, capsys
):
    """Until ``binaryvae train`` has --protocol / --steps: exit 2, one line naming them,
    nothing written."""
    monkeypatch.setattr(crosscheck_reference, "binaryvae_missing_options", lambda: ["--protocol"])
    results = tmp_path / "results"
    with pytest.raises(SystemExit) as e:
        crosscheck_reference.main(["--side", "binaryvae", "--data-dir", str(tmp_path),
                                   "--results", str(results),
                                   "--runs-dir", str(tmp_path / "r")])  # fmt: skip
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "--protocol" in err
    assert not results.exists() and not (tmp_path / "r").exists()


def test_a_committed_result_names_no_folder_of_this_machine():
    """Every string of a binaryvae-side result (its command, config.json's data_dir and
    data_source, summary fields) has the runs and data folders replaced by placeholders; other
    values are kept as they are."""
    result = {
        "command": "binaryvae train --out /m/runs/run-0 --data-dir /m/data",
        "config": {"data_dir": "/m/data", "data_source": "/m/data/fashion-mnist", "seed": 0},
        "metrics": [{"epoch": 1, "note": "/m/runs/run-0/checkpoints"}],
        "test_elbo": -271.3,
    }
    out = crosscheck_reference.without_folders(result, {"/m/runs": "<runs>", "/m/data": "$DATA"})
    assert out == {
        "command": "binaryvae train --out <runs>/run-0 --data-dir $DATA",
        "config": {"data_dir": "$DATA", "data_source": "$DATA/fashion-mnist", "seed": 0},
        "metrics": [{"epoch": 1, "note": "<runs>/run-0/checkpoints"}],
        "test_elbo": -271.3,
    }
    # the longer of two nested folders is replaced first
    nested = crosscheck_reference.without_folders("/m/data/x", {"/m": "<m>", "/m/data": "$D"})
    assert nested == "$D/x"
