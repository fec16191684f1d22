"""A checkpoint is validated before anything uses it (docs/reliability.md): against the model and
Adam that the run's config.json builds -- every tensor's shape, dtype and finiteness, the
optimizer's structure and hyperparameters, the run's family, seed and configuration fingerprint
-- and its zip's declared sizes are bounded before anything is decompressed."""

from __future__ import annotations

import io
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from _runs_helpers import file_bytes, one_line_error, train_argv
from binaryvae.cli import main
from binaryvae.config import TrainConfig
from binaryvae.training import make_optimizer
from binaryvae.training.checkpoint import (
    FORMAT,
    CheckpointError,
    checkpoint_schema,
    config_fingerprint,
    load_checkpoint,
)

REPO = Path(__file__).resolve().parent.parent
GIB = 1 << 30


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Two tiny trainings: a replica group of seeds 0 and 1 (steplogistic; each seed-<s> is a
    complete run directory) and a logistic run of seed 0, the same shapes throughout."""
    root = tmp_path_factory.mktemp("ckpt")
    assert main(train_argv(root / "group", "--seeds", "0,1")) == 0
    assert main(train_argv(root / "logistic", "--family", "logistic")) == 0
    return root


@pytest.fixture
def runs(trained, tmp_path):
    dst = tmp_path / "runs"
    shutil.copytree(trained, dst)
    return dst


@pytest.fixture
def run(runs):
    """A complete single run directory (steplogistic, seed 0, one epoch)."""
    return runs / "group" / "seed-0"


def _ckpt(run: Path) -> Path:
    return run / "checkpoints" / "last.pt"


def _edit(path: Path, change) -> None:
    """Rewrite checkpoint ``path`` with ``change(payload)`` applied, as torch.save writes it."""
    payload = torch.load(path, weights_only=True)
    change(payload)
    torch.save(payload, path)


def _env() -> dict[str, str]:
    path = os.pathsep.join(p for p in (str(REPO / "src"), os.environ.get("PYTHONPATH")) if p)
    return dict(os.environ, PYTHONPATH=path, OMP_WAIT_POLICY="PASSIVE")


def _fresh(run: Path):
    """The config, the freshly built model and the checkpoint schema of ``run``."""
    from binaryvae.data import dataset_geometry
    from binaryvae.models import build_model

    config = TrainConfig.load(run / "config.json")
    dim, shape, kind = dataset_geometry(config.dataset)
    model = build_model(config, data_dim=dim, image_shape=shape, data_kind=kind)
    return config, model, checkpoint_schema(config, model)


# ------------------------------------------------------------- malformed optimizer state
def _zeros3(p):
    for entry in p["optimizer"]["state"].values():
        entry["exp_avg"] = torch.zeros(3)


def test_a_malformed_adam_state_exits_2_before_the_fused_kernel(run, capsys):
    """The issue's High 2: every exp_avg replaced by zeros(3) crashed `_fused_adam` (SIGSEGV,
    exit 139). Here in this process (a native crash would end the test session);
    `test_a_malformed_adam_state_exits_2_in_a_child_process` (slow) runs the command in a fresh
    interpreter, where such a crash shows as -11/139."""
    _edit(_ckpt(run), _zeros3)
    before = file_bytes(run)
    assert main(train_argv(run, "--resume", epochs="2")) == 2
    err = one_line_error(capsys)
    assert str(_ckpt(run)) in err and "optimizer.state[0].exp_avg" in err and "[3]" in err
    after = file_bytes(run)
    after.pop(".binaryvae.lock", None), before.pop(".binaryvae.lock", None)
    assert after == before  # nothing written, nothing lost


@pytest.mark.slow
def test_a_malformed_adam_state_exits_2_in_a_child_process(run):
    """The same as the test above, through `python -m binaryvae` in a child process, so a
    native crash would show as -11/139 here (slow: a fresh interpreter imports torch)."""
    _edit(_ckpt(run), _zeros3)
    before = file_bytes(run)
    proc = subprocess.run(
        [sys.executable, "-m", "binaryvae", *train_argv(run, "--resume", epochs="2")],
        env=_env(), capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    err = proc.stderr.strip()
    assert len(err.splitlines()) == 1, err
    assert str(_ckpt(run)) in err and "optimizer.state[0].exp_avg" in err and "[3]" in err
    after = file_bytes(run)
    after.pop(".binaryvae.lock", None), before.pop(".binaryvae.lock", None)
    assert after == before  # nothing written, nothing lost


def test_a_replica_group_checks_each_replica_checkpoint(runs, capsys):
    """`train --seeds --resume` stacks the replicas' Adam states: seed 1's malformed one is
    refused, naming its file, before anything is stacked."""
    group = runs / "group"

    def widen(p):
        p["optimizer"]["state"][1]["exp_avg_sq"] = torch.zeros(17)

    _edit(_ckpt(group / "seed-1"), widen)
    before = file_bytes(group)
    assert main(train_argv(group, "--seeds", "0,1", "--resume", epochs="2")) == 2
    err = one_line_error(capsys)
    assert str(_ckpt(group / "seed-1")) in err and "optimizer.state[1].exp_avg_sq" in err
    assert file_bytes(group) == before


# ------------------------------------------------------------- hyperparameters from the config
def test_a_checkpoint_lr_other_than_the_configs_is_refused_naming_both(run, capsys):
    """Medium 3: an lr of 1e6 in the checkpoint trained at 1e6 while config.json said 1e-3.
    The config decides: a checkpoint that disagrees is refused (exit 2, both values)."""
    assert json.loads((run / "config.json").read_text())["lr"] == 1e-3

    def edit(p):
        p["optimizer"]["param_groups"][0]["lr"] = 1e6

    _edit(_ckpt(run), edit)
    before = file_bytes(run)
    assert main(train_argv(run, "--resume", epochs="2")) == 2
    err = one_line_error(capsys)
    assert str(_ckpt(run)) in err and "param_groups[0].lr" in err
    assert "1000000.0" in err and "0.001" in err
    after = file_bytes(run)
    after.pop(".binaryvae.lock", None), before.pop(".binaryvae.lock", None)
    assert after == before


def test_the_optimizer_after_resume_has_the_configs_settings(run, monkeypatch):
    """Every other param_group entry of the checkpoint (which kernel runs: fused, foreach,
    capturable, ...) is replaced by the freshly built optimizer's: asserted on the optimizer
    that the resumed training steps with."""

    def edit(p):
        group = p["optimizer"]["param_groups"][0]
        group.update(fused=False, foreach=True, capturable=True, differentiable=True)

    _edit(_ckpt(run), edit)
    seen = []
    import binaryvae.runs.engine as engine

    real = engine.fit_epoch

    def spy(model, optimizer, *args, **kwargs):
        seen.append([{k: v for k, v in g.items() if k != "params"} for g in optimizer.param_groups])
        return real(model, optimizer, *args, **kwargs)

    monkeypatch.setattr(engine, "fit_epoch", spy)
    assert main(train_argv(run, "--resume", epochs="2")) == 0
    model = torch.nn.Linear(2, 2)
    fresh = make_optimizer(model, 1e-3).param_groups[0]
    expected = {k: v for k, v in fresh.items() if k != "params"}
    assert seen == [[expected]]
    assert expected["lr"] == 1e-3 and expected["capturable"] is False


# ------------------------------------------------------------- the zip's declared sizes
def _patch_declared_size(data: bytes, name: str, size: int) -> bytes:
    """``data`` (a zip) with record ``name``'s uncompressed size set to ``size`` in both its
    local header and its central directory entry (what a crafted archive would declare)."""
    out = bytearray(data)
    encoded = name.encode()
    local = out.index(b"PK\x03\x04")
    while True:  # local headers: uncompressed size at offset 22, name at 30
        n = struct.unpack_from("<H", out, local + 26)[0]
        if bytes(out[local + 30 : local + 30 + n]) == encoded:
            struct.pack_into("<I", out, local + 22, size)
            break
        local = out.index(b"PK\x03\x04", local + 4)
    central = out.index(b"PK\x01\x02")
    while True:  # central entries: uncompressed size at offset 24, name at 46
        n = struct.unpack_from("<H", out, central + 28)[0]
        if bytes(out[central + 46 : central + 46 + n]) == encoded:
            struct.pack_into("<I", out, central + 24, size)
            return bytes(out)
        central = out.index(b"PK\x01\x02", central + 4)


def _deflated_copy(checkpoint: Path, name: str, declared: int) -> bytes:
    """The checkpoint's archive with record ``name`` deflated and declaring ``declared``."""
    buf = io.BytesIO()
    with zipfile.ZipFile(checkpoint) as zin, zipfile.ZipFile(buf, "w") as zout:
        for info in zin.infolist():
            method = zipfile.ZIP_DEFLATED if info.filename == name else zipfile.ZIP_STORED
            zout.writestr(info.filename, zin.read(info), compress_type=method)
    return _patch_declared_size(buf.getvalue(), name, declared)


def test_a_small_file_declaring_2_gib_is_refused_before_allocating(run, tmp_path):
    """Medium 4: a small deflated checkpoint declaring a 2 GiB record took 2.3 GB before it
    was refused. Now the declared sizes are summed first: exit 2 with both numbers, and the
    process's peak memory stays far below what the file declares."""
    ckpt = _ckpt(run)
    name = next(n for n in zipfile.ZipFile(ckpt).namelist() if n.endswith("/data/0"))
    ckpt.write_bytes(_deflated_copy(ckpt, name, 2 * GIB))
    assert ckpt.stat().st_size < 1 << 20
    assert zipfile.ZipFile(ckpt).getinfo(name).file_size == 2 * GIB  # really declared
    _, _, schema = _fresh(run)
    code = (
        "import sys\n"
        "from binaryvae.cli import main\n"
        f"rc = main(['sample', {str(run)!r}, '--out', {str(tmp_path / 's.png')!r}])\n"
        # VmHWM: this process's own peak (ru_maxrss would carry over pytest's, across exec)
        "print(next(line.split()[1] for line in open('/proc/self/status')"
        " if line.startswith('VmHWM:')))\n"
        "sys.exit(rc)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], env=_env(), capture_output=True,
                          text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    err = proc.stderr.strip()
    assert len(err.splitlines()) == 1, err
    assert str(ckpt) in err and str(schema.max_bytes) in err
    declared = sum(i.file_size for i in zipfile.ZipFile(ckpt).infolist())
    assert declared > 2 * GIB and str(declared) in err
    peak_mib = int(proc.stdout.strip().splitlines()[-1]) / 1024
    assert peak_mib < 1024, peak_mib  # python + torch + the model; 2 GiB never allocated
    assert not (tmp_path / "s.png").exists()


def test_the_bound_is_what_the_configs_model_needs(run):
    """The bound follows the model: twice its state and Adam's two moments (float32), plus
    1 MiB; a checkpoint of the run itself is well inside it."""
    config, model, schema = _fresh(run)
    params = sum(p.numel() for p in model.parameters())
    state = sum(t.numel() for t in model.state_dict().values())
    assert schema.max_bytes == 2 * (4 * state + 2 * 4 * params + 8 * len(schema.params)) + 2**20
    declared = sum(i.file_size for i in zipfile.ZipFile(_ckpt(run)).infolist())
    assert declared < schema.max_bytes
    wider = checkpoint_schema(config, torch.nn.Linear(1000, 1000))
    assert wider.max_bytes > 2 * 3 * 4 * 1000 * 1000


def test_other_archive_tricks_are_refused_in_one_line(run):
    """A record that inflates past what it declares, more records than the model can need,
    more declared bytes than the file holds, and a non-zip (legacy pickle) file."""
    ckpt = _ckpt(run)
    _, _, schema = _fresh(run)
    name = next(n for n in zipfile.ZipFile(ckpt).namelist() if n.endswith("/data/0"))
    original = ckpt.read_bytes()
    real = zipfile.ZipFile(ckpt).getinfo(name).file_size
    cases = {
        "lies small": _deflated_copy(ckpt, name, real // 2),
        "lies large": _deflated_copy(ckpt, name, len(original) * 2),
    }
    crowded = io.BytesIO()
    with zipfile.ZipFile(ckpt) as zin, zipfile.ZipFile(crowded, "w") as zout:
        for info in zin.infolist():
            zout.writestr(info.filename, zin.read(info))
        for i in range(schema.max_entries):
            zout.writestr(f"archive/pad/{i}", b"")
    cases["crowded"] = crowded.getvalue()
    legacy = io.BytesIO()
    torch.save(torch.load(ckpt, weights_only=True), legacy, _use_new_zipfile_serialization=False)
    cases["legacy"] = legacy.getvalue()
    expected = {"lies small": "broken zip", "lies large": "in a", "crowded": "records",
                "legacy": "not a zip archive"}  # fmt: skip
    for case, data in cases.items():
        ckpt.write_bytes(data)
        with pytest.raises(CheckpointError) as info:
            load_checkpoint(ckpt, schema=schema)
        message = str(info.value)
        assert len(message.splitlines()) == 1 and str(ckpt) in message, (case, message)
        assert expected[case] in message, (case, message)


# ------------------------------------------------------------- another configuration
@pytest.mark.parametrize(
    "source, named",
    [
        ("logistic", ["family 'logistic'", "'steplogistic'"]),
        ("group/seed-1", ["seed 1 in the checkpoint", "0 in"]),
    ],
)
def test_a_checkpoint_of_another_configuration_is_refused(runs, capsys, source, named):
    """Medium 7: logistic weights in a steplogistic run, seed 1's in seed 0's -- the same
    shapes, so they loaded and were scored into summary.json."""
    run = runs / "group" / "seed-0"
    shutil.copyfile(_ckpt(runs / source), _ckpt(run))
    before = file_bytes(run)
    assert main(["evaluate", str(run)]) == 2
    err = one_line_error(capsys)
    assert str(_ckpt(run)) in err and "another configuration" in err
    assert all(n in err for n in named), err
    assert file_bytes(run) == before  # summary.json untouched


def test_an_edited_config_no_longer_matches_its_checkpoint(run, capsys):
    """The fingerprint covers every field but RESUMABLE_FIELDS: config.json edited to another
    beta (same family, seed and shapes) is refused, naming both fingerprints; a resumable
    field (threads) changes nothing."""
    config_path = run / "config.json"
    stored = json.loads(config_path.read_text())
    stored["threads"] = 2
    config_path.write_text(json.dumps(stored))
    assert main(["evaluate", str(run)]) == 0
    capsys.readouterr()
    old = config_fingerprint(TrainConfig.from_dict(stored))
    stored["beta"] = 5.0
    config_path.write_text(json.dumps(stored))
    new = config_fingerprint(TrainConfig.from_dict(stored))
    assert main(["evaluate", str(run)]) == 2
    err = one_line_error(capsys)
    assert f"fingerprint {old!r} in the checkpoint" in err and repr(new) in err


def test_format_2_checkpoints_are_refused_with_a_retrain_message(run, capsys):
    def older(p):
        p["format"] = 2
        del p["identity"]

    assert FORMAT == 3
    _edit(_ckpt(run), older)
    assert main(["evaluate", str(run)]) == 2
    err = one_line_error(capsys)
    assert "older binaryvae" in err and "format 2" in err and "retrain" in err


# ------------------------------------------------------------- non-finite weights
@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
@pytest.mark.parametrize("command", ["evaluate", "sample"])
def test_non_finite_weights_exit_2_naming_the_tensor(run, tmp_path, capsys, value, command):
    def poison(p):
        p["model"]["decoder.net.net.2.bias"][5] = value

    _edit(_ckpt(run), poison)
    before = file_bytes(run)
    argv = {"evaluate": ["evaluate", str(run)],
            "sample": ["sample", str(run), "--out", str(tmp_path / "s.png")]}[command]  # fmt: skip
    assert main(argv) == 2
    err = one_line_error(capsys)
    assert str(_ckpt(run)) in err and "model.decoder.net.net.2.bias" in err
    assert "non-finite" in err
    assert file_bytes(run) == before and not (tmp_path / "s.png").exists()


# ------------------------------------------------------------- property: exit 2 or a run
_DTYPES = [torch.float64, torch.float16, torch.bfloat16, torch.int64, torch.bool, torch.float32]
_VALUES = st.one_of(
    st.floats(width=32, allow_nan=True, allow_infinity=True),
    st.sampled_from([float("nan"), float("inf"), -float("inf"), -1.0, 0.0, 2.5, 7.0, 3e38]),
)


@pytest.fixture(scope="module")
def property_case(trained):
    run = trained / "group" / "seed-0"
    config, _, _ = _fresh(run)
    return run, config, torch.load(_ckpt(run), weights_only=True)


def _targets(payload) -> list[tuple]:
    out = [("model", k) for k in payload["model"]]
    for index, entry in payload["optimizer"]["state"].items():
        out += [("optimizer", index, key) for key in entry]
    return out


def _get(payload, target):
    if target[0] == "model":
        return payload["model"][target[1]]
    return payload["optimizer"]["state"][target[1]][target[2]]


def _set(payload, target, value):
    if target[0] == "model":
        payload["model"][target[1]] = value
    else:
        payload["optimizer"]["state"][target[1]][target[2]] = value


def _acceptable(target, tensor: torch.Tensor, like: torch.Tensor) -> bool:
    """The independent oracle: what a checkpoint of this run may hold at ``target``."""
    step = target[0] == "optimizer" and target[2] == "step"
    if step:
        if tensor.dtype not in (torch.float32, torch.float64) or tensor.dim() != 0:
            return False
        v = float(tensor)
        return v == v and abs(v) != float("inf") and v >= 0 and v == int(v)
    if tensor.dtype != like.dtype or tensor.shape != like.shape:
        return False
    if not bool(torch.isfinite(tensor).all()):
        return False
    if target[0] == "optimizer" and target[2] == "exp_avg_sq":
        return bool((tensor >= 0).all())
    return True


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow,
          HealthCheck.function_scoped_fixture])  # fmt: skip
@given(data=st.data())
def test_mutated_checkpoints_are_refused_or_train(property_case, data):
    """Any mutation of a valid checkpoint's tensors -- shape, dtype, a value (nan, inf,
    negative, huge) -- is refused as a CheckpointError exactly when the oracle says this run
    cannot hold it; otherwise it loads into the model and Adam and a fused step runs."""
    run, config, original = property_case
    import copy

    payload = copy.deepcopy(original)
    target = data.draw(st.sampled_from(_targets(payload)), label="target")
    old = _get(payload, target)
    kind = data.draw(st.sampled_from(["shape", "dtype", "value", "zeros3", "drop"]), label="kind")
    if kind == "shape":
        how = data.draw(st.sampled_from(["unsqueeze", "flatten", "narrow", "sum"]), label="how")
        if how == "narrow" and old.dim():
            new = old.narrow(-1, 0, 1)
        elif how == "unsqueeze":
            new = old.unsqueeze(0)
        elif how == "flatten":
            new = old.reshape(-1)
        else:
            new = old.sum()
    elif kind == "dtype":
        new = old.to(data.draw(st.sampled_from(_DTYPES), label="dtype"))
    elif kind == "value":
        new = old.clone()
        flat = new.view(-1) if new.dim() else new.view(1)
        i = data.draw(st.integers(0, flat.numel() - 1), label="index")
        flat[i] = data.draw(_VALUES, label="value")
    elif kind == "zeros3":
        new = torch.zeros(3)
    else:
        new = None
    if new is None:
        if target[0] == "model":
            del payload["model"][target[1]]
        else:
            del payload["optimizer"]["state"][target[1]][target[2]]
        acceptable = False
    else:
        _set(payload, target, new)
        acceptable = _acceptable(target, new, old)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "last.pt"
        torch.save(payload, path)
        _, model, schema = _fresh(run)
        if not acceptable:
            with pytest.raises(CheckpointError) as info:
                load_checkpoint(path, schema=schema)
            assert str(path) in str(info.value) and len(str(info.value).splitlines()) == 1
            return
        state = load_checkpoint(path, schema=schema)
    model.load_state_dict(state["model"])
    optimizer = make_optimizer(model, config.lr)
    optimizer.load_state_dict(state["optimizer"])
    for p in model.parameters():
        p.grad = torch.ones_like(p)
    optimizer.step()  # the native (fused) Adam on what the checkpoint held
