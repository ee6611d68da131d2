"""Progress of long steps (reference-model and masked-LM training, explaining a task's chunks):
a tqdm bar on a terminal, and elsewhere (logs, CI) one log line every :data:`EVERY_S` seconds, so
a long step never goes silent between its start and end lines."""

from __future__ import annotations

import logging
import sys
import time
from typing import Callable

EVERY_S = 20.0
"""Seconds between two progress lines when stderr is not a terminal."""


class Progress:
    """``update(n)`` as a step advances, ``close()`` at its end (also a context manager).

    On a terminal (``tty`` None: ``sys.stderr.isatty()``) it drives a tqdm bar; otherwise it logs
    ``"<desc>: <done>/<total> <unit> (<pct>%)[, <status>], <elapsed> s"`` to ``logger`` at most
    every ``every_s`` seconds of ``clock``, and once when it closes (unless the whole step took
    less than ``every_s``).  ``status`` (e.g. ``"epoch 2/3"``, set with :meth:`set_status`) is
    the bar's postfix on a terminal."""

    def __init__(self, total: int, desc: str, logger: logging.Logger, unit: str = "steps",
                 every_s: float = EVERY_S, tty: bool | None = None, leave: bool = False,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.total, self.desc, self.log, self.unit, self.every_s = int(total), desc, logger, unit, every_s
        self.done, self.clock, self.logged, self.status = 0, clock, 0, ""
        self.t0 = self.last = clock()
        self.bar = None
        if sys.stderr.isatty() if tty is None else tty:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=self.total, desc=desc, leave=leave, mininterval=1.0)

    def set_status(self, status: str) -> None:
        """What the step is at besides the count (``"epoch 2/3"``); shown from the next line on."""
        self.status = status
        if self.bar is not None:
            self.bar.set_postfix_str(status, refresh=False)

    def update(self, n: int = 1) -> None:
        self.done += n
        if self.bar is not None:
            self.bar.update(n)
            return
        now = self.clock()
        if now - self.last >= self.every_s:
            self.last = now
            self._line(now)

    def _line(self, now: float) -> None:
        self.logged = self.done
        pct = f" ({100.0 * self.done / self.total:.0f}%)" if self.total else ""
        status = f", {self.status}" if self.status else ""
        self.log.info("%s: %d/%d %s%s%s, %.0f s", self.desc, self.done, self.total, self.unit, pct, status,
                      now - self.t0)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        elif self.clock() - self.t0 >= self.every_s and self.logged != self.done:  # a short step: no line
            self._line(self.clock())

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
