"""Connecting the sweep driver to a running Ray cluster: token authentication, one-line errors.

Ray (2.52 and later) authenticates every call to a cluster started with token authentication:
the driver must run with ``RAY_AUTH_MODE=token`` and the cluster's token, which Ray reads from
``$RAY_AUTH_TOKEN``, else the file ``$RAY_AUTH_TOKEN_PATH`` names, else ``~/.ray/auth_token``.
Ray 2.60 (2.59, by Ray's documentation) turns it on for ``ray start --head`` whenever a token
already exists there (and ``ray.init()`` writes one when it starts a local instance), but a
driver given an explicit address never turns it on by itself: it connects without the token
and, refused with ``InvalidAuthToken`` about once a second, gives up after about 20 s with a
``ConnectionError`` that does not say why.

`connected` therefore sends the token whenever one is present and ``RAY_AUTH_MODE`` is not set
(saying so in one line), keeps the refusals Ray's C++ core writes to stderr while it retries
from reaching the user, and turns an authentication failure into one `BadInput` line that
says what to do.
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from binaryvae.errors import BadInput
from binaryvae.runs.sweep_executors import one_line

__all__ = [
    "AUTH_MODE",
    "DEFAULT_TOKEN_FILE",
    "REFUSED",
    "connected",
    "token_source",
]

AUTH_MODE = "RAY_AUTH_MODE"
TOKEN = "RAY_AUTH_TOKEN"
TOKEN_PATH = "RAY_AUTH_TOKEN_PATH"
DEFAULT_TOKEN_FILE = "~/.ray/auth_token"
# the status Ray's servers answer a call without the cluster's token with (gcs_client.cc)
REFUSED = "InvalidAuthToken"
GET_TOKEN = "`ray get-auth-token` on the head node prints its token"


def token_source(environ: dict[str, str] | None = None) -> str | None:
    """Where Ray would read an authentication token from, in Ray's order of precedence
    (``$RAY_AUTH_TOKEN``, the file ``$RAY_AUTH_TOKEN_PATH`` names, ``~/.ray/auth_token``),
    for a message; None when none of them holds one."""
    environ = os.environ if environ is None else environ
    if environ.get(TOKEN, "").strip():
        return f"${TOKEN}"
    if environ.get(TOKEN_PATH):
        return f"{environ[TOKEN_PATH]} (${TOKEN_PATH})"  # Ray reads it or says why not
    default = Path(environ.get("HOME") or Path.home()) / ".ray" / "auth_token"
    try:
        return DEFAULT_TOKEN_FILE if default.read_text().strip() else None
    except OSError:
        return None


def _refresh_ray_config() -> None:
    """Make Ray's cached configuration (read from the environment when Ray was imported)
    see the current ``RAY_AUTH_MODE``, as Ray itself does when it turns token auth on."""
    try:
        from ray._raylet import Config
    except ImportError:  # a Ray without it reads the environment when it connects
        return
    Config.initialize("")


@contextmanager
def token_auth(address: str, stream=None) -> Iterator[str | None]:
    """``RAY_AUTH_MODE=token`` for the block when it is not set and a token is present (one
    line on ``stream``, default stderr, says so), restored afterwards. Yields the token's
    source when the driver sends one, else None."""
    mode = os.environ.get(AUTH_MODE)
    source = token_source()
    if mode is not None:
        yield source if mode.strip().lower() == "token" else None
        return
    if source is None:
        yield None
        return
    print(
        f"Ray: connecting to {address} with the authentication token in {source} (as "
        f"{AUTH_MODE}=token would; set {AUTH_MODE}=disabled to send none)",
        file=sys.stderr if stream is None else stream,
    )
    os.environ[AUTH_MODE] = "token"
    _refresh_ray_config()
    try:
        yield source
    finally:
        os.environ.pop(AUTH_MODE, None)
        _refresh_ray_config()


@contextmanager
def _stderr_kept() -> Iterator[list[str]]:
    """What is written to file descriptor 2 during the block (Ray's C++ core logs there, out
    of Python's reach), kept instead of shown; the yielded list then holds it as one text."""
    kept: list[str] = []
    for f in (sys.stdout, sys.stderr, sys.__stderr__):
        if f is not None:
            f.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield kept
        finally:
            if sys.__stderr__ is not None:
                sys.__stderr__.flush()
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            kept.append(tmp.read().decode(errors="replace"))


def _authentication_error(ray) -> type[BaseException]:
    """Ray's exception for a token it cannot find or that is refused (Ray 2.52 and later)."""
    return getattr(ray.exceptions, "AuthenticationError", ConnectionError)


def _chain(error: BaseException) -> Iterator[BaseException]:
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        yield error
        error = error.__cause__ or error.__context__


def _refused(error: BaseException, log: str) -> bool:
    """Whether the cluster refused the driver's token (or its lack of one): Ray's
    ``InvalidAuthToken`` status in the exception chain or in what its core logged."""
    return REFUSED in log or any(REFUSED in str(e) for e in _chain(error))


def _auth_message(address: str, sent: str | None) -> str:
    if sent is not None:
        return (
            f"the Ray cluster at {address} refused the authentication token in {sent} "
            f"({AUTH_MODE}=token): it is not the cluster's token ({GET_TOKEN})"
        )
    mode = os.environ.get(AUTH_MODE)
    if mode is not None:
        return (
            f"the Ray cluster at {address} requires token authentication and {AUTH_MODE}={mode} "
            f"here sends no token: set {AUTH_MODE}=token, with the cluster's token in "
            f"{DEFAULT_TOKEN_FILE} or ${TOKEN} ({GET_TOKEN})"
        )
    return (
        f"the Ray cluster at {address} requires token authentication and this machine has no "
        f"token: copy the head node's {DEFAULT_TOKEN_FILE} to {DEFAULT_TOKEN_FILE} here (or set "
        f"${TOKEN}; {GET_TOKEN}) and binaryvae sends it with {AUTH_MODE}=token"
    )


@contextmanager
def connected(ray, address: str, stream=None, **kwargs: Any) -> Iterator[None]:
    """For the block: ``ray.init(address=address, **kwargs)`` to a running cluster, with the
    token when one is present (`token_auth`, restored when the block ends: the caller shuts
    Ray down inside it). An authentication failure, or a cluster that cannot be reached, is
    one `BadInput` line. What Ray writes to stderr meanwhile is dropped when the cluster
    refused the driver (one line says it all) and shown otherwise."""
    with token_auth(address, stream) as sent:
        _connect(ray, address, sent, **kwargs)
        yield


def _connect(ray, address: str, sent: str | None, **kwargs: Any) -> None:
    failure: BaseException | None = None
    kept: list[str] = []
    try:
        with _stderr_kept() as kept:
            ray.init(address=address, **kwargs)
    except (ConnectionError, _authentication_error(ray)) as e:
        failure = e
    except BaseException:  # anything else is Ray's to report, with its log
        sys.stderr.write("".join(kept))
        raise
    if failure is None:
        sys.stderr.write(kept[0])
        return
    if isinstance(failure, _authentication_error(ray)) and not _refused(failure, ""):
        # raised before connecting: token auth is on here but Ray found no usable token
        text = one_line(getattr(failure, "message", failure), 200)
        raise BadInput(
            f"cannot use token authentication with the Ray cluster at {address}: {text} (put "
            f"the cluster's token in {DEFAULT_TOKEN_FILE} or ${TOKEN}; {GET_TOKEN})"
        )
    if _refused(failure, kept[0]):
        raise BadInput(_auth_message(address, sent))
    sys.stderr.write(kept[0])
    raise BadInput(f"cannot reach a Ray cluster at {address}: {one_line(failure)}")
