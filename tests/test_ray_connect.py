"""Which authentication token the Ray driver sends (binaryvae.runs.ray_connect), without Ray:
Ray's order of token sources, and RAY_AUTH_MODE=token set for a connection only when the user
set no mode and a token is present, announced in one line and undone afterwards. The
connection itself, to a real `ray start --head`, is in test_sweep_ray.py (``-m ray``)."""

from __future__ import annotations

import io
import os
from types import SimpleNamespace

import pytest

from binaryvae.runs import ray_connect
from binaryvae.runs.ray_connect import token_auth, token_source

AUTH_VARS = ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH")


@pytest.fixture
def home(tmp_path, monkeypatch):
    """An empty HOME and none of Ray's auth variables; Ray's cached config is not touched
    (the calls that would refresh it are counted instead)."""
    monkeypatch.setenv("HOME", str(tmp_path))
    for var in AUTH_VARS:
        monkeypatch.delenv(var, raising=False)
    refreshed = []
    monkeypatch.setattr(
        ray_connect, "_refresh_ray_config", lambda: refreshed.append(os.environ.get(AUTH_VARS[0]))
    )
    return SimpleNamespace(path=tmp_path, refreshed=refreshed)


def _default_token(home, text="a" * 64):
    (home.path / ".ray").mkdir(exist_ok=True)
    (home.path / ".ray" / "auth_token").write_text(text)


def test_token_sources_in_rays_order(home, monkeypatch):
    assert token_source() is None
    _default_token(home, "\n")  # an empty file holds no token
    assert token_source() is None
    _default_token(home)
    assert token_source() == "~/.ray/auth_token"
    path = home.path / "elsewhere"
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(path))
    assert token_source() == f"{path} ($RAY_AUTH_TOKEN_PATH)"
    monkeypatch.setenv("RAY_AUTH_TOKEN", "  ")  # blank: not a token
    assert token_source() == f"{path} ($RAY_AUTH_TOKEN_PATH)"
    monkeypatch.setenv("RAY_AUTH_TOKEN", "b" * 64)
    assert token_source() == "$RAY_AUTH_TOKEN"


def test_a_present_token_is_sent_for_the_connection_only_and_said_in_one_line(home):
    _default_token(home)
    said = io.StringIO()
    with token_auth("10.0.0.5:6379", said) as sent:
        assert sent == "~/.ray/auth_token"
        assert os.environ["RAY_AUTH_MODE"] == "token"
    assert "RAY_AUTH_MODE" not in os.environ
    assert home.refreshed == ["token", None]  # Ray's config re-read on the way in and out
    assert said.getvalue() == (
        "Ray: connecting to 10.0.0.5:6379 with the authentication token in ~/.ray/auth_token "
        "(as RAY_AUTH_MODE=token would; set RAY_AUTH_MODE=disabled to send none)\n"
    )


@pytest.mark.parametrize("mode, token, sent", [
    (None, False, None),  # nothing to send
    ("disabled", True, None),  # the user's choice stands
    ("token", True, "~/.ray/auth_token"),  # the user's choice, and the token Ray will send
    ("TOKEN", False, None),  # no token: Ray itself says it found none
])  # fmt: skip
def test_a_mode_the_user_set_or_no_token_changes_nothing(home, monkeypatch, mode, token, sent):
    if token:
        _default_token(home)
    if mode is not None:
        monkeypatch.setenv("RAY_AUTH_MODE", mode)
    said = io.StringIO()
    with token_auth("10.0.0.5:6379", said) as got:
        assert got == sent
        assert os.environ.get("RAY_AUTH_MODE") == mode
    assert os.environ.get("RAY_AUTH_MODE") == mode
    assert said.getvalue() == "" and home.refreshed == []
