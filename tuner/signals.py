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


def _is_the_command() -> bool:
    """This process is the ``tuner`` command (its console script or ``python -m tuner.cli``),
    not a program that imports the package: only the command may take over its signals."""
    import sys
    from pathlib import Path

    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    return Path(sys.argv[0]).name == "tuner" or getattr(spec, "name", None) == "tuner.cli"


def exit_quietly_on_signals() -> None:
    """Until a search takes them over (:func:`stop_on_signals`), SIGINT and SIGTERM end the
    command with one line and exit 130 / 143 instead of a ``KeyboardInterrupt`` traceback from
    whichever import was loading (start-up takes about 2 s). Nothing is being written then, and
    after a search its trials are; the line says how to go on. Only where the defaults are still
    in place, in the main thread of the command itself."""
    import sys

    if not _is_the_command() or threading.current_thread() is not threading.main_thread():
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        sys.stderr.write("interrupted: every finished trial is saved; run the same command to go on\n")
        raise SystemExit(128 + signum)

    for sig in SIGNALS:
        if signal.getsignal(sig) in (signal.SIG_DFL, signal.default_int_handler):
            signal.signal(sig, handler)
