"""Where the cells of a sweep run: in this process (`LocalExecutor`) or on Ray (`RayExecutor`).

An executor gets the cells' specs (plain dicts, `binaryvae.runs.sweep_grid.Cell.spec`) and calls
``on_start(specs)`` when it hands cells over and ``on_done(spec, result)`` with the dict
`binaryvae.runs.sweep.run_cell` returned (or a failure it made up when the worker was lost).
Neither executor keeps any state of its own: the run directories are the only record of how far
a cell got, and a cell that runs again (a retried Ray task, a rerun sweep) resumes from them.

Ray is used through its core API only: one task per cell, ``@ray.remote`` with the cell's
resources (``num_cpus``, ``num_gpus``), ``max_retries`` for a worker or node that dies (Ray
resubmits the task; it resumes from the cell's checkpoints) and ``retry_exceptions=False`` (a
cell that fails for its own reason reports it and is not retried); ``ray.wait`` hands results
to the driver as they arrive. docs/internals.md says why this and not Ray Tune.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

from binaryvae.config import DEFAULT_MAX_RETRIES, EXECUTORS
from binaryvae.errors import BadInput

__all__ = [
    "EXECUTORS",
    "RAY_INSTALL",
    "LocalExecutor",
    "RayExecutor",
    "check_resources",
    "make_executor",
    "one_line",
]

RAY_INSTALL = "pip install 'binaryvae[ray]'"

Spec = dict[str, Any]
OnStart = Callable[[list[Spec]], None]
OnDone = Callable[[Spec, dict[str, Any]], None]


def one_line(error: BaseException | str, limit: int = 500) -> str:
    """An error as one line: whitespace collapsed, at most ``limit`` characters."""
    text = " ".join(str(error).split()) or type(error).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


class LocalExecutor:
    """Runs the cells one after the other in this process (no Ray needed); their progress
    lines go to ``stream`` (default stderr)."""

    name = "local"
    remote = False

    def __init__(self, stream=None):
        self.stream = stream

    def describe(self) -> dict[str, Any]:
        return {"name": self.name}

    def check(self) -> None:
        """Nothing to check: the local executor needs nothing beyond binaryvae."""

    @contextmanager
    def session(self) -> Iterator[None]:
        yield

    def run(self, specs: list[Spec], on_start: OnStart, on_done: OnDone) -> None:
        from binaryvae.runs.sweep import run_cell

        for spec in specs:
            on_start([spec])
            on_done(spec, run_cell(spec, stream=self.stream))


class RayExecutor:
    """One Ray task per cell, on the cluster at ``address`` or on a local instance.

    ``address``: ``None`` starts a local Ray instance with every core of this machine (and
    stops it at the end); ``"auto"``, ``"HOST:PORT"`` or ``"ray://HOST:PORT"`` connect to a
    running cluster (Ray's own `ray.init` resolution). An already initialised Ray (a caller that
    ran ``ray.init`` itself) is used as it is and left running.
    """

    name = "ray"

    def __init__(
        self,
        address: str | None = None,
        *,
        cpus_per_run: float = 1,
        gpus_per_run: float = 0,
        max_retries: int = DEFAULT_MAX_RETRIES,
    ):
        if address is not None and not address.strip():
            address = None
        self.address = address
        check_resources(cpus_per_run, gpus_per_run, max_retries)
        self.cpus_per_run = cpus_per_run
        self.gpus_per_run = gpus_per_run
        self.max_retries = max_retries
        self._ray = None
        self._started = False

    @property
    def remote(self) -> bool:
        """True when the cells may run on other machines (an address was given)."""
        return self.address is not None

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "address": self.address,
            "cpus_per_run": self.cpus_per_run,
            "gpus_per_run": self.gpus_per_run,
            "max_retries": self.max_retries,
        }

    def check(self) -> None:
        """BadInput with the install command when Ray is not installed."""
        self._import()

    def _import(self):
        if self._ray is None:
            try:
                import ray
            except ImportError:
                raise BadInput(
                    f"--executor ray needs Ray, which is not installed: {RAY_INSTALL}"
                ) from None
            self._ray = ray
        return self._ray

    @contextmanager
    def session(self) -> Iterator[None]:
        """Connect to (or start) Ray for the block; stop what this call started."""
        ray = self._import()
        with ExitStack() as stack:
            if not ray.is_initialized():
                # a fresh local instance ("local": never someone else's cluster by accident),
                # or the cluster at the address (with its token, or one line saying what is
                # missing); our own lines report the cells, not the workers' logs
                if self.address is None:
                    ray.init(address="local", include_dashboard=False, log_to_driver=False)
                else:
                    from binaryvae.runs.ray_connect import connected

                    stack.enter_context(connected(ray, self.address, log_to_driver=False))
                self._started = True
            try:
                yield
            finally:
                if self._started:
                    ray.shutdown()
                    self._started = False

    def run(self, specs: list[Spec], on_start: OnStart, on_done: OnDone) -> None:
        from binaryvae.runs.sweep import run_cell

        ray = self._import()
        task = ray.remote(
            num_cpus=self.cpus_per_run,
            num_gpus=self.gpus_per_run,
            max_retries=self.max_retries,
            retry_exceptions=False,
        )(run_cell)
        refs = {task.remote(spec): spec for spec in specs}
        on_start(specs)  # handed to Ray: each runs as soon as a node has its resources
        pending = list(refs)
        try:
            while pending:
                done, pending = ray.wait(pending, num_returns=1)
                for ref in done:
                    on_done(refs[ref], self._result(ray, ref))
        finally:
            for ref in pending:  # interrupted: stop what is still queued or running
                ray.cancel(ref, force=True)

    def _result(self, ray, ref) -> dict[str, Any]:
        try:
            return ray.get(ref)
        except ray.exceptions.TaskCancelledError:
            return {"status": "pending", "reason": "cancelled", "runs": {}}
        except (ray.exceptions.WorkerCrashedError, ray.exceptions.NodeDiedError) as e:
            reason = f"the Ray worker died {self.max_retries + 1} times ({one_line(e, 200)})"
            return {"status": "failed", "reason": reason, "runs": {}}
        except ray.exceptions.RayError as e:
            return {"status": "failed", "reason": f"Ray: {one_line(e)}", "runs": {}}


def check_resources(cpus_per_run: Any, gpus_per_run: Any, max_retries: Any) -> None:
    """BadInput naming the option unless the resources of a run are finite numbers >= 0, not
    both 0, and ``max_retries`` an integer >= 0 (checked for every executor: a bad value is
    refused before anything starts, even where the local executor would not use it)."""
    for label, value in (("--cpus-per-run", cpus_per_run), ("--gpus-per-run", gpus_per_run)):
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
            or value < 0
        ):
            raise BadInput(f"{label} must be a finite number >= 0, got {value!r}")
    if cpus_per_run == 0 and gpus_per_run == 0:
        raise BadInput("a run needs some resource: --cpus-per-run or --gpus-per-run > 0")
    if isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 0:
        raise BadInput(f"--max-retries must be an integer >= 0, got {max_retries!r}")


def make_executor(
    name: str = "local",
    *,
    address: str | None = None,
    cpus_per_run: float = 1,
    gpus_per_run: float = 0,
    max_retries: int = DEFAULT_MAX_RETRIES,
) -> LocalExecutor | RayExecutor:
    """The executor called ``name``; for Ray, ``address`` defaults to ``$RAY_ADDRESS``."""
    check_resources(cpus_per_run, gpus_per_run, max_retries)
    if name == "local":
        if address:
            raise BadInput("--address needs --executor ray")
        return LocalExecutor()
    if name == "ray":
        address = address or os.environ.get("RAY_ADDRESS") or None
        return RayExecutor(
            address,
            cpus_per_run=cpus_per_run,
            gpus_per_run=gpus_per_run,
            max_retries=max_retries,
        )
    raise BadInput(f"unknown executor {name!r}; choose one of {', '.join(EXECUTORS)}")
