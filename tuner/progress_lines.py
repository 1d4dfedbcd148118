"""Progress on stderr when stderr is no terminal (a pipe, a log file, ``2>&1 | tee``): plain lines,
each with the time elapsed, where a terminal gets a rich bar. A QA user ran ``tuner calibrate``
with its output redirected and waited 6 min 44 s with nothing printed: the bars were drawn only
when both stdout and stderr were terminals. stdout is left to the command's result (``--json``
stays one clean JSON document there)."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

#: The least seconds between two throttled lines (a search's trials, a measurement's points): a
#: line at least this often while work goes on, and not one per trial in a log of 30,000 trials.
PLAIN_INTERVAL_S = 10.0


class ProgressLines:
    """``what: text (12 s elapsed)`` lines on stderr. :meth:`say` writes one now; :meth:`update`
    writes ``done of total`` at most every ``interval_s`` (the first after ``interval_s``: a
    command done within it prints nothing)."""

    def __init__(self, what: str, interval_s: float | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.what, self.clock = what, clock
        self.interval_s = PLAIN_INTERVAL_S if interval_s is None else interval_s
        self.started_s = self.last_s = clock()

    def elapsed_s(self) -> float:
        return self.clock() - self.started_s

    def say(self, text: str) -> None:
        self.last_s = self.clock()
        # sys.stderr read at each line: the stream of the moment (pytest's capture, a redirection).
        print(f"{self.what}: {text} ({self.elapsed_s():.0f} s elapsed)", file=sys.stderr, flush=True)

    def update(self, done: int, total: int | None) -> None:
        if self.clock() - self.last_s >= self.interval_s:
            self.say(f"{done:,} of {total:,}" if total else f"{done:,}")
