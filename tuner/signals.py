"""Stopping a search on a signal without losing work.

SIGINT (Ctrl-C) and SIGTERM (what a container runtime or a scheduler sends) only set a flag; the
search loop checks it between batches, writes every finished trial, and the command exits 130 or
143 (128 + the signal) saying how to resume. Nothing is raised inside library code (an exception
raised from a handler can land in a garbage-collection callback, where Python ignores it and the
search runs on). A second Ctrl-C, for a user who will not wait for the batch in hand, raises
``KeyboardInterrupt`` as Python's default handler does; the search still flushes what it holds.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopRequest:
    """Callable: True once a stop signal arrived (``signum`` says which)."""

    def __init__(self) -> None:
        self.signum: int | None = None

    def __call__(self) -> bool:
        return self.signum is not None

    @property
    def exit_code(self) -> int:
        """The shell's convention for a process stopped by a signal: 128 + its number."""
        return 128 + (self.signum if self.signum is not None else signal.SIGINT)


@contextmanager
def stop_on_signals() -> Iterator[StopRequest]:
    """Within the block, SIGINT and SIGTERM set the request instead of killing the process (the
    previous handlers come back after it). Outside the main thread, signals cannot be handled:
    the request never fires and the defaults stay."""
    request = StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield request
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        if request.signum is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # the second Ctrl-C
        request.signum = signum

    previous = {sig: signal.getsignal(sig) for sig in SIGNALS}
    for sig in SIGNALS:
        signal.signal(sig, handler)
    try:
        yield request
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
