"""Nothing binaryvae writes reaches outside the run directory (docs/reliability.md): a linked
lock file, report, figures/ or checkpoints/ folder is refused with exit code 2 naming the link
and the user's file stays byte-identical; a full disk keeps the old report; every OSError is one
line naming its path; a failed first write of a new run leaves nothing."""

from __future__ import annotations

import errno
import functools
import os
import shutil

import pytest

from _runs_helpers import TINY_NET, fail_fsync_of, file_bytes, one_line_error, train_argv
from binaryvae.cli import main
from binaryvae.runs.ownership import LOCK_FILE, MARKER, DirLock
from binaryvae.storage import (
    LinkRefused,
    StorageError,
    append_line,
    atomic_write_bytes,
    atomic_write_text,
)

# every file under a folder, symbolic links left out
_no_links = functools.partial(file_bytes, follow_links=False)

USER_BYTES = b"my thesis, chapter 3: the only copy\n"


@pytest.fixture(scope="module")
def reported(tmp_path_factory):
    """One tiny finished run with its report (report.html, report.md, figures/)."""
    out = tmp_path_factory.mktemp("fs") / "run"
    assert main(train_argv(out, "--family", "bernoulli-sfe", epochs="1")) == 0
    assert main(["report", str(out), "--no-theory"]) == 0
    assert (out / "report.html").is_file() and any((out / "figures").glob("*.png"))
    return out


@pytest.fixture
def run(reported, tmp_path):
    dst = tmp_path / "run"
    shutil.copytree(reported, dst)
    return dst


@pytest.fixture
def user(tmp_path):
    """A folder of the user's, outside the run: a file and two PNG/PT files named like the
    ones binaryvae writes."""
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "precious.txt").write_bytes(USER_BYTES)
    (folder / "last.pt").write_bytes(b"my own checkpoint")
    (folder / "curves.png").write_bytes(b"my own figure")
    return folder


# ------------------------------------------------------------------ the lock file
@pytest.mark.parametrize("command", ["evaluate", "resume", "force"])
def test_a_symlinked_lock_file_is_refused_and_its_target_untouched(run, user, capsys, command):
    lock = run / LOCK_FILE
    lock.unlink()
    precious = user / "precious.txt"
    lock.symlink_to(precious)
    before = _no_links(run)
    argv = {
        "evaluate": ["evaluate", str(run)],
        "resume": train_argv(run, "--resume", epochs="2"),
        "force": train_argv(run, "--force"),
    }[command]
    assert main(argv) == 2
    err = one_line_error(capsys)
    assert str(lock) in err and "symbolic link" in err
    assert precious.read_bytes() == USER_BYTES  # not truncated, no pid written into it
    assert os.readlink(lock) == str(precious)
    assert _no_links(run) == before


def test_a_hard_linked_lock_file_is_refused_and_its_other_name_untouched(run, user, capsys):
    lock = run / LOCK_FILE
    lock.unlink()
    precious = user / "precious.txt"
    os.link(precious, lock)
    assert main(["evaluate", str(run)]) == 2
    err = one_line_error(capsys)
    assert str(lock) in err and "2 hard links" in err
    assert precious.read_bytes() == USER_BYTES


def test_a_lock_file_holding_more_than_a_pid_is_not_truncated(run, capsys):
    lock = run / LOCK_FILE
    lock.write_bytes(USER_BYTES)  # a user's file renamed there: binaryvae did not write it
    summary = (run / "summary.json").read_bytes()
    assert main(["evaluate", str(run)]) == 2
    err = one_line_error(capsys)
    assert str(lock) in err and "not a pid" in err
    assert lock.read_bytes() == USER_BYTES
    assert (run / "summary.json").read_bytes() == summary


def test_the_lock_itself_refuses_a_link_and_reuses_an_earlier_runs_lock(run, user):
    """`DirLock` on its own (below the commands' up-front check): a link is refused and its
    target untouched; a lock file of an earlier binaryvae process gets this pid."""
    lock = run / LOCK_FILE
    lock.unlink()
    lock.symlink_to(user / "precious.txt")
    with pytest.raises(LinkRefused, match="symbolic link"):
        DirLock(run).acquire()
    assert (user / "precious.txt").read_bytes() == USER_BYTES
    lock.unlink()
    lock.write_bytes(b"4242\n")
    with DirLock(run):
        assert lock.read_bytes() == f"{os.getpid()}\n".encode()


# ------------------------------------------------------------------ linked report and figures
@pytest.mark.parametrize("name", ["report.html", "report.md"])
def test_a_symlinked_report_is_refused_and_the_users_file_untouched(run, user, capsys, name):
    thesis = user / "precious.txt"
    (run / name).unlink()
    (run / name).symlink_to(thesis)
    figures = _no_links(run / "figures")
    assert main(["report", str(run), "--no-theory"]) == 2
    err = one_line_error(capsys)
    assert str(run / name) in err and "symbolic link" in err
    assert thesis.read_bytes() == USER_BYTES
    assert _no_links(run / "figures") == figures  # refused before anything was drawn


def test_a_symlinked_figures_folder_is_refused_and_the_users_folder_untouched(run, user,
                                                                            capsys):  # fmt: skip
    shutil.rmtree(run / "figures")
    (run / "figures").symlink_to(user, target_is_directory=True)
    before = _no_links(user)
    html = (run / "report.html").read_bytes()
    assert main(["report", str(run), "--no-theory"]) == 2
    err = one_line_error(capsys)
    assert str(run / "figures") in err and "symbolic link" in err
    assert _no_links(user) == before  # no old figure deleted, none written
    assert (run / "report.html").read_bytes() == html


def test_the_figure_writer_refuses_a_linked_folder_on_its_own(run, user):
    """Below every up-front check, the one writer refuses too (a figure saved directly)."""
    shutil.rmtree(run / "figures")
    (run / "figures").symlink_to(user, target_is_directory=True)
    before = _no_links(user)
    with pytest.raises(LinkRefused, match="figures"):
        atomic_write_bytes(run / "figures" / "curves.png", b"new figure")
    assert _no_links(user) == before


@pytest.mark.parametrize("command", ["force", "resume", "evaluate"])
def test_a_symlinked_checkpoints_folder_is_refused_and_the_users_folder_untouched(
    run, user, capsys, command
):
    (run / "checkpoints" / "last.pt").replace(user / "last.pt")  # as if the user moved it
    shutil.rmtree(run / "checkpoints")
    (run / "checkpoints").symlink_to(user, target_is_directory=True)
    before_user, before_run = _no_links(user), _no_links(run)
    argv = {
        "force": train_argv(run, "--force"),
        "resume": train_argv(run, "--resume", epochs="2"),
        "evaluate": ["evaluate", str(run)],
    }[command]
    assert main(argv) == 2
    err = one_line_error(capsys)
    assert str(run / "checkpoints") in err and "symbolic link" in err
    assert "nothing was touched" in err  # --force deletes neither the link nor its target
    assert _no_links(user) == before_user
    assert _no_links(run) == before_run
    assert (run / "checkpoints").is_symlink()


def test_compare_force_refuses_a_link_in_a_marked_sub_directory(tmp_path, user, capsys):
    top = tmp_path / "cmp"
    sub = top / "bernoulli-sfe"
    sub.mkdir(parents=True)
    for d, kind in ((top, "compare"), (sub, "run")):
        (d / MARKER).write_text(f'{{"binaryvae": "0", "format": 1, "kind": "{kind}"}}\n')
    (sub / "config.json").write_text("{}")
    (sub / "figures").symlink_to(user, target_is_directory=True)
    before_user, before_top = _no_links(user), _no_links(top)
    argv = ["compare", "--out", str(top), "--force", "--families", "bernoulli-sfe", "--epochs",
            "1", "--latent-dim", "4", *TINY_NET, "--quiet", "--no-report"]  # fmt: skip
    assert main(argv) == 2
    err = one_line_error(capsys)
    assert str(sub / "figures") in err and "neither follows nor deletes" in err
    assert _no_links(user) == before_user and _no_links(top) == before_top


def test_clearing_old_figures_removes_a_link_not_its_target(tmp_path, user):
    from binaryvae.storage import reset_folder

    figures = tmp_path / "run" / "figures"
    figures.mkdir(parents=True)
    (figures / "old.png").write_bytes(b"old")
    (figures / "linked.png").symlink_to(user / "curves.png")
    (figures / "keep.txt").write_bytes(b"a note")
    reset_folder(figures, ".png")
    assert sorted(p.name for p in figures.iterdir()) == ["keep.txt"]
    assert (user / "curves.png").read_bytes() == b"my own figure"


def test_the_checkpoint_and_metrics_writers_refuse_links_on_their_own(run, user):
    (run / "checkpoints" / "last.pt").unlink()
    (run / "checkpoints" / "last.pt").symlink_to(user / "last.pt")
    with pytest.raises(LinkRefused, match="last.pt"):
        atomic_write_bytes(run / "checkpoints" / "last.pt", b"new weights")
    (run / "metrics.jsonl").unlink()
    (run / "metrics.jsonl").symlink_to(user / "precious.txt")
    with pytest.raises(LinkRefused, match="metrics.jsonl"):
        append_line(run / "metrics.jsonl", '{"epoch": 9}')
    assert (user / "last.pt").read_bytes() == b"my own checkpoint"
    assert (user / "precious.txt").read_bytes() == USER_BYTES


def test_append_refuses_a_file_with_another_hard_link(tmp_path, user):
    metrics = tmp_path / "metrics.jsonl"
    os.link(user / "precious.txt", metrics)
    with pytest.raises(LinkRefused, match="hard links"):
        append_line(metrics, '{"epoch": 1}')
    assert (user / "precious.txt").read_bytes() == USER_BYTES


def test_a_symlinked_sample_in_the_run_is_refused(run, user, capsys):
    target = run / "samples_probs.png"
    target.symlink_to(user / "curves.png")
    assert main(["sample", str(run), "--n", "4"]) == 2
    assert str(target) in one_line_error(capsys)
    assert (user / "curves.png").read_bytes() == b"my own figure"


# ------------------------------------------------------------------ full disk
def _fail_writes_of(monkeypatch, name, err=errno.ENOSPC):
    """Make every write into a file whose path holds ``name`` fail with ``err`` after its
    first byte (a disk that fills up mid-file): FileIO.write goes through os.write's C call,
    so the buffered file object's raw writer is wrapped instead."""
    import io

    real_write = io.FileIO.write

    class Full(io.FileIO):
        def write(self, b):
            if name in str(self.name):
                real_write(self, bytes(b)[:1])
                raise OSError(err, os.strerror(err))
            return real_write(self, b)

    real_fdopen = os.fdopen

    def fdopen(fd, mode="r", *args, **kwargs):
        if "w" in mode and "b" in mode:
            return io.BufferedWriter(Full(fd, "wb"))
        return real_fdopen(fd, mode, *args, **kwargs)

    monkeypatch.setattr(os, "fdopen", fdopen)


@pytest.mark.parametrize("how", ["write", "fsync"])
def test_a_full_disk_keeps_the_old_report_and_names_it(run, capsys, monkeypatch, how):
    html, md = (run / "report.html").read_bytes(), (run / "report.md").read_bytes()
    if how == "write":
        _fail_writes_of(monkeypatch, "report.html")
    else:
        fail_fsync_of(monkeypatch, lambda p: "report.html" in p)
    assert main(["report", str(run), "--no-theory"]) == 2
    err = one_line_error(capsys)
    assert str(run / "report.html") in err and "No space left on device" in err
    monkeypatch.undo()
    assert (run / "report.html").read_bytes() == html  # byte for byte: not torn, not gone
    assert (run / "report.md").read_bytes() == md
    assert list(run.glob("*.tmp")) == []


def test_a_full_disk_keeps_the_old_sample_outside_the_run(reported, tmp_path, capsys,
                                                         monkeypatch):  # fmt: skip
    out = tmp_path / "grid.png"
    out.write_bytes(b"yesterday's grid")
    _fail_writes_of(monkeypatch, "grid.png")
    assert main(["sample", str(reported), "--n", "4", "--out", str(out)]) == 2
    err = one_line_error(capsys)
    assert str(out) in err and "No space left on device" in err
    monkeypatch.undo()
    assert out.read_bytes() == b"yesterday's grid"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["grid.png"]


# ------------------------------------------------------------------ one line per OSError
def test_oserrors_are_one_line_naming_the_path(reported, tmp_path, capsys):
    long_name = tmp_path / ("a" * 300 + ".png")
    assert main(["sample", str(reported), "--n", "4", "--out", str(long_name)]) == 2
    err = one_line_error(capsys)
    assert str(long_name) in err and os.strerror(errno.ENAMETOOLONG) in err

    folder = tmp_path / "dir.png"
    folder.mkdir()
    assert main(["sample", str(reported), "--n", "4", "--out", str(folder)]) == 2
    err = one_line_error(capsys)
    assert str(folder) in err and os.strerror(errno.EISDIR) in err
    assert list(folder.iterdir()) == []

    file = tmp_path / "file"
    file.write_bytes(b"x")
    assert main(["sample", str(reported), "--n", "4", "--out", str(file / "x.png")]) == 2
    err = one_line_error(capsys)
    assert str(file) in err and os.strerror(errno.ENOTDIR) in err
    assert file.read_bytes() == b"x"

    assert main(train_argv(tmp_path / ("b" * 300))) == 2
    err = one_line_error(capsys)
    assert "b" * 300 in err and os.strerror(errno.ENAMETOOLONG) in err


def test_a_regular_file_where_figures_go_is_one_line(run, capsys):
    shutil.rmtree(run / "figures")
    (run / "figures").write_bytes(b"not a folder")
    assert main(["report", str(run), "--no-theory"]) == 2
    err = one_line_error(capsys)
    assert str(run / "figures") in err
    assert (run / "figures").read_bytes() == b"not a folder"


@pytest.mark.parametrize("code", [errno.EEXIST, errno.EISDIR, errno.ENAMETOOLONG, errno.EIO])
def test_the_cli_turns_any_oserror_into_one_line_with_exit_2(reported, capsys, monkeypatch,
                                                             code):  # fmt: skip
    import binaryvae.report

    def fail(*args, **kwargs):
        raise OSError(code, os.strerror(code), "/some/where.png")

    monkeypatch.setattr(binaryvae.report, "sample_figure", fail)
    assert main(["sample", str(reported), "--n", "4"]) == 2
    err = one_line_error(capsys)
    assert "/some/where.png" in err and os.strerror(code) in err
    assert errno.errorcode[code] in err


# ------------------------------------------------------------------ a failed first write
@pytest.mark.parametrize("where", [MARKER, LOCK_FILE, "config.json"])
def test_a_failed_first_write_leaves_nothing(tmp_path, capsys, monkeypatch, where):
    out = tmp_path / "new" / "deeper" / "run"  # and the folders made for it go too
    if where == LOCK_FILE:
        real_open = os.open

        def open_(path, flags, *args, **kwargs):
            if os.fspath(path) == LOCK_FILE:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            return real_open(path, flags, *args, **kwargs)

        monkeypatch.setattr(os, "open", open_)
    else:
        fail_fsync_of(monkeypatch, lambda p: where in p)
    assert main(train_argv(out)) == 2
    assert "No space left on device" in one_line_error(capsys)
    monkeypatch.undo()
    assert list(tmp_path.iterdir()) == []


def test_writes_outside_a_run_still_follow_the_users_own_path(tmp_path):
    """The run directory itself (or any folder given by the user) may be reached through a
    link: only links below it are refused."""
    real = tmp_path / "scratch" / "run"
    real.mkdir(parents=True)
    (real / MARKER).write_text("{}")
    alias = tmp_path / "alias"
    alias.symlink_to(real, target_is_directory=True)
    atomic_write_text(alias / "checkpoints" / "x.txt", "ok")
    assert (real / "checkpoints" / "x.txt").read_text() == "ok"
    (real / "checkpoints" / "inner").symlink_to(tmp_path, target_is_directory=True)
    with pytest.raises(StorageError, match="inner"):
        atomic_write_text(alias / "checkpoints" / "inner" / "y.txt", "no")
    assert not (tmp_path / "y.txt").exists()
