"""Locating and downloading mnist / fashion-mnist: lookup order, a local HTTP server, checksums,
atomic writes. Small fake IDX files stand in for the real ones (FILES is monkeypatched)."""

from __future__ import annotations

import gzip
import hashlib
import http.server
import struct
import threading
from pathlib import Path

import numpy as np
import pytest

from _runs_helpers import DATASETS
from binaryvae.data import load_dataset, sources
from binaryvae.errors import BadInput

N_TRAIN, N_TEST = 6, 4


def _idx(array: np.ndarray) -> bytes:
    return (struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
            + array.astype(np.uint8).tobytes())


def _fake_files(marker: int = 0) -> dict[str, bytes]:
    """Decompressed IDX bytes of a tiny 4x4-pixel dataset; ``marker`` goes into the first label."""
    rng = np.random.default_rng(marker)
    tr_y = rng.integers(0, 10, N_TRAIN)
    tr_y[0] = marker
    return {
        "train-images-idx3-ubyte": _idx(rng.integers(0, 256, (N_TRAIN, 4, 4))),
        "train-labels-idx1-ubyte": _idx(tr_y),
        "t10k-images-idx3-ubyte": _idx(rng.integers(0, 256, (N_TEST, 4, 4))),
        "t10k-labels-idx1-ubyte": _idx(rng.integers(0, 10, N_TEST)),
    }


def _spec(files: dict[str, bytes]) -> tuple[sources.RemoteFile, ...]:
    return tuple(sources.RemoteFile(name, len(data), hashlib.sha256(data).hexdigest())
                 for name, data in files.items())


def _write(folder: Path, files: dict[str, bytes], compress: bool = True) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        if compress:
            (folder / (name + ".gz")).write_bytes(gzip.compress(data))
        else:
            (folder / name).write_bytes(data)
    return folder


@pytest.fixture
def env(tmp_path, monkeypatch):
    """Isolated lookup places and the fake 'mnist' spec; no real mirror is ever contacted."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.delenv("BINARYVAE_DATA_DIR", raising=False)
    monkeypatch.setattr(sources, "DEBIAN_DIR", tmp_path / "debian")
    monkeypatch.setitem(sources.FILES, "mnist", _spec(_fake_files()))
    monkeypatch.setitem(sources.MIRRORS, "mnist", ())
    return tmp_path


class _Server:
    """A local HTTP server on 127.0.0.1 serving a folder; optionally cutting responses short."""

    def __init__(self, root: Path, truncate: bool = False):
        outer = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def __init__(self, *args, **kwargs):
                super().__init__(*args, directory=str(root), **kwargs)

            def log_message(self, *args):  # keep test output quiet
                pass

            def do_GET(self):
                outer.requests.append(self.path)
                if not truncate:
                    return super().do_GET()
                body = (root / self.path.lstrip("/")).read_bytes()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body[: len(body) // 2])  # then the connection closes
                self.close_connection = True

        self.requests: list[str] = []
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


def _cache(env_root: Path) -> Path:
    return env_root / "home" / ".cache" / "binaryvae" / "mnist"


def test_download_from_local_server(env, monkeypatch):
    served = _write(env / "www", _fake_files())
    with _Server(served) as server:
        monkeypatch.setitem(sources.MIRRORS, "mnist", ("http://127.0.0.1:9/", server.url))
        ds = load_dataset("mnist")  # the first mirror refuses the connection; the second serves
        assert len(server.requests) == 4
    assert ds.train_x.shape == (N_TRAIN, 16) and ds.test_x.shape == (N_TEST, 16)
    assert ds.image_shape == (4, 4) and ds.source == str(_cache(env))
    assert sorted(p.name for p in _cache(env).iterdir()) == sorted(
        n + ".gz" for n in _fake_files())
    # a second load finds the cache and contacts nobody
    monkeypatch.setitem(sources.MIRRORS, "mnist", ())
    assert load_dataset("mnist", download=False).source == str(_cache(env))


def test_checksum_mismatch_leaves_nothing(env, monkeypatch):
    served = _write(env / "www", _fake_files(marker=9))  # other content than the checksums
    with _Server(served) as server:
        monkeypatch.setitem(sources.MIRRORS, "mnist", (server.url,))
        with pytest.raises(BadInput) as info:
            load_dataset("mnist")
    message = str(info.value)
    assert "sha256 mismatch" in message and "train-images-idx3-ubyte" in message
    assert "\n" not in message
    assert not _cache(env).exists()  # no file, no temp file, no empty folder


def test_interrupted_download_leaves_nothing(env, monkeypatch):
    served = _write(env / "www", _fake_files())
    with _Server(served, truncate=True) as server:
        monkeypatch.setitem(sources.MIRRORS, "mnist", (server.url,))
        with pytest.raises(BadInput, match="IncompleteRead"):
            load_dataset("mnist")
    assert not _cache(env).exists()


def test_failure_after_partial_success_keeps_only_verified_files(env, monkeypatch):
    files = _fake_files()
    www = _write(env / "www", {k: v for k, v in files.items() if "train" in k})
    with _Server(www) as server:
        monkeypatch.setitem(sources.MIRRORS, "mnist", (server.url,))
        with pytest.raises(BadInput, match="t10k-images-idx3-ubyte"):
            load_dataset("mnist")
    assert sorted(p.name for p in _cache(env).iterdir()) == [
        "train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"]


def test_no_network_lists_missing_files_and_places(env):
    with pytest.raises(BadInput) as info:
        load_dataset("mnist", download=False)
    message = str(info.value)
    for name in _fake_files():
        assert name in message
    assert str(_cache(env)) in message and str(env / "debian" / "mnist") in message
    assert "BINARYVAE_DATA_DIR" in message


def test_lookup_order(env, monkeypatch):
    arg = _write(env / "arg" / "mnist", _fake_files(1), compress=False)  # raw files accepted
    var = _write(env / "var" / "mnist", _fake_files(2))
    cache = _write(_cache(env), _fake_files(3))
    debian = _write(env / "debian" / "mnist", _fake_files(4))
    monkeypatch.setenv("BINARYVAE_DATA_DIR", str(env / "var"))
    # the files are checked against the registry when loaded: it is made to know each folder's
    # files in turn, so that each folder's marker shows
    expect = [("--data-dir", arg, 1), ("$BINARYVAE_DATA_DIR", var, 2), ("user cache", cache, 3),
              ("Debian", debian, 4)]
    for reason, folder, marker in expect:
        assert sources.locate("mnist", env / "arg") == (reason, folder)
        monkeypatch.setitem(sources.FILES, "mnist", _spec(_fake_files(marker)))
        ds = load_dataset("mnist", data_dir=env / "arg", download=False)
        assert ds.source == str(folder) and ds.train_y[0] == marker
        for f in folder.iterdir():  # remove one file: the folder no longer counts
            f.unlink()
            break
    assert sources.locate("mnist", env / "arg") is None


def test_data_dir_may_hold_the_files_directly(env):
    folder = _write(env / "flat", _fake_files())
    assert sources.locate("mnist", folder) == ("--data-dir", folder)


def test_xdg_cache_home(env, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(env / "xdg"))
    assert sources.cache_dir("mnist") == env / "xdg" / "binaryvae" / "mnist"


def test_verify_dir(env):
    files = _fake_files()
    folder = _write(env / "v", files)
    assert all(ok for _, _, ok in sources._verify_dir("mnist", folder))
    (folder / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(_fake_files(5)[
        "t10k-labels-idx1-ubyte"]))
    (folder / "train-labels-idx1-ubyte.gz").unlink()
    result = {f.name: ok for f, _, ok in sources._verify_dir("mnist", folder)}
    assert result == {"train-images-idx3-ubyte": True, "train-labels-idx1-ubyte": None,
                      "t10k-images-idx3-ubyte": True, "t10k-labels-idx1-ubyte": False}


SHARED = DATASETS


@pytest.mark.skipif(not (SHARED / "fashion-mnist").is_dir(), reason="shared datasets absent")
def test_real_fashion_mnist_via_env(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("BINARYVAE_DATA_DIR", str(SHARED))
    ds = load_dataset("fashion-mnist", download=False)
    assert ds.train_x.shape == (60000, 784) and ds.test_x.shape == (10000, 784)
    assert ds.train_y.bincount().tolist() == [6000] * 10
    assert ds.source == str(SHARED / "fashion-mnist")
