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
import sys
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
    previous handlers come back after it); one the parent ignores (SIG_IGN) stays ignored.
    Outside the main thread, signals cannot be handled: the request never fires and the
    defaults stay."""
    request = StopRequest()
    request.signum = EARLY.signum  # a signal during start-up stops the search before it begins
    if threading.current_thread() is not threading.main_thread():
        yield request
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        if request.signum is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # the second Ctrl-C
        request.signum = signum

    previous = {sig: signal.getsignal(sig) for sig in SIGNALS}
    for sig in SIGNALS:
        # A signal the parent set to be ignored stays ignored, as Python and the start-up handler
        # leave it (exit_quietly_on_signals): a shell's background job starts with SIGINT ignored
        # so that a Ctrl-C meant for the script spares it. Taken over here, the same `kill -INT`
        # was ignored during the imports and stopped the search once it ran.
        if previous[sig] is not signal.SIG_IGN:
            signal.signal(sig, handler)
    try:
        yield request
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _is_the_command() -> bool:
    """This process is the ``tuner`` command (its console script or ``python -m tuner.cli``),
    not a program that imports the package: only the command may take over its signals."""
    from pathlib import Path

    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    return Path(sys.argv[0]).name == "tuner" or getattr(spec, "name", None) == "tuner.cli"


class Terminated(SystemExit):
    """SIGTERM after ``main()`` began and outside a search: unwinds like ``sys.exit(143)`` (no
    ``except Exception`` swallows it), and ``main()`` turns it into its one line."""

    def __init__(self) -> None:
        super().__init__(128 + signal.SIGTERM)


#: A signal that came before a search took the signals over (see :func:`exit_quietly_on_signals`).
EARLY = StopRequest()
_started = False  # main() has begun: the imports are done


def exit_quietly_on_signals() -> None:
    """From the command's first import until a search takes them over (:func:`stop_on_signals`),
    SIGINT and SIGTERM are handled without a traceback. While the imports load (about 2 s) the
    handler only records the signal (raising there could land in an import or a garbage
    collection callback that swallows it, and the search would run on): ``main()`` then exits at
    once with 130 / 143, and a search that starts sees it as already requested. Once ``main()``
    runs (:func:`commands_started`), SIGINT is Python's ``KeyboardInterrupt`` again (click says
    "interrupted", exit 130) and SIGTERM raises :class:`Terminated` (one line, exit 143). Only
    where the defaults are still in place, in the main thread of the command itself."""
    if not _is_the_command() or threading.current_thread() is not threading.main_thread():
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        # Recorded in every case: should the exception below be raised inside a garbage-collection
        # callback or a destructor (Python prints "Exception ignored" and runs on), the search that
        # starts next still sees the request and stops before its first trial.
        EARLY.signum = EARLY.signum or signum
        if not _started:
            return
        if signum == signal.SIGINT:
            raise KeyboardInterrupt
        raise Terminated

    for sig in SIGNALS:
        if signal.getsignal(sig) in (signal.SIG_DFL, signal.default_int_handler):
            signal.signal(sig, handler)
    previous_hook = sys.unraisablehook

    def unraisable(info: sys.UnraisableHookArgs) -> None:
        # A KeyboardInterrupt Python could not raise (it landed in a callback): a stop request,
        # not a message. A full CI run once saw Ctrl-C at 0.3 s swallowed and the search run on.
        if info.exc_type is not None and issubclass(info.exc_type, KeyboardInterrupt):
            EARLY.signum = EARLY.signum or signal.SIGINT
            return
        previous_hook(info)

    sys.unraisablehook = unraisable


def commands_started() -> int | None:
    """Called first in ``main()``: the imports are done. Returns the exit code when a signal
    came while they loaded (the command should not start), else None."""
    global _started
    _started = True
    return EARLY.exit_code if EARLY() else None
