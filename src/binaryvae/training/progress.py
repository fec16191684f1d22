"""Progress of an epoch: a tqdm bar on a terminal, one plain line per epoch elsewhere."""

from __future__ import annotations

import shutil
import sys
from typing import TextIO

__all__ = ["EpochProgress"]


class EpochProgress:
    """Reports one epoch's progress to ``stream`` (stderr by default).

    On a terminal: a tqdm bar over the epoch's images with the running loss and ELBO. Off a
    terminal (CI, log files): nothing while the epoch runs and one line when `close` is called,
    so logs get one line per epoch. ``enabled=False`` silences it.
    """

    def __init__(
        self,
        epoch: int,
        epochs: int,
        total_images: int,
        *,
        label: str = "",
        stream: TextIO | None = None,
        enabled: bool = True,
        tty: bool | None = None,
        value_name: str = "train elbo",
    ) -> None:
        self.epoch, self.epochs, self.label = epoch, epochs, label
        # what the running value is: "train elbo", "train bernoulli-elbo", "train recon", ...
        self.value_name = value_name
        self.stream = sys.stderr if stream is None else stream
        self.enabled = enabled
        if tty is None:
            tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.loss = float("nan")
        self.elbo = float("nan")
        self._bar = None
        self._steps = 0
        if enabled and tty:
            from tqdm import tqdm

            # measured once per epoch: a terminal that reports 0 x 0 (some ptys, CI runners)
            # gets 100 x 20, where tqdm's own detection would draw nothing at all
            size = shutil.get_terminal_size((100, 20))
            prefix = f"{label} " if label else ""
            self._bar = tqdm(
                total=total_images,
                desc=f"{prefix}epoch {epoch}/{epochs}",
                unit="img",
                unit_scale=True,
                leave=False,
                file=self.stream,
                ncols=size.columns,
                nrows=size.lines,
            )

    @property
    def draws(self) -> bool:
        """Whether a bar is drawn while the epoch runs (a terminal): only then does it show
        the running values of every step; otherwise `close` shows the last ones."""
        return self._bar is not None

    def update(self, images: int, *, loss: float, elbo: float) -> None:
        self.loss, self.elbo = loss, elbo
        if self._bar is not None:
            self._bar.update(images)
            self._steps += 1
            if self._steps % 10 == 1:  # formatting every step costs more than it shows
                self._bar.set_postfix(loss=f"{loss:.2f}", elbo=f"{elbo:.2f}", refresh=False)

    def close(self, summary: str = "") -> None:
        """End the epoch; print its one-line summary (both modes)."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        if self.enabled:
            prefix = f"{self.label} " if self.label else ""
            head = f"{prefix}epoch {self.epoch}/{self.epochs}"
            line = f"{head}  train loss {self.loss:.3f}  {self.value_name} {self.elbo:.3f}"
            print(f"{line}  {summary}".rstrip(), file=self.stream, flush=True)
