"""Reading a file the user named (a profile, a chip or model file, measurements, a study spec):
only a regular file is read.

A character device (``/dev/zero``, ``/dev/urandom``) never ends, so reading it filled the memory;
a FIFO with no writer blocked the open forever; a directory failed with whatever the platform
said. Each is refused before a byte is read, with one :class:`InvalidInputError` naming the field
and the fix. The path is looked at with ``stat`` before it is opened (opening a device can act on
it), and the opened descriptor is checked again with ``fstat`` (the path may have been swapped in
between); the open is non-blocking, so a FIFO put there in between cannot block it either.

``OSError`` (no such file, permission denied, a name too long) is left to the caller, whose
message for it names the file as before.
"""

from __future__ import annotations

import io
import os
import stat
from typing import BinaryIO

from cost_models.errors import InvalidInputError

_NON_BLOCKING = getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0)


def shown_path(path: str | os.PathLike[str]) -> str:
    """A path for an error line: at most 200 characters."""
    text = str(path)
    return text if len(text) <= 200 else text[:200] + "..."


def _kind(mode: int) -> str | None:
    """What a non-regular file is, in words; None for a regular file."""
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a file"


def _refuse(path: str | os.PathLike[str], kind: str, field: str, fix: str) -> InvalidInputError:
    return InvalidInputError(field, f"{shown_path(path)} is {kind}, not a regular file", fix)


def open_regular_file(path: str | os.PathLike[str], field: str, fix: str) -> BinaryIO:
    """``path`` opened for binary reading; anything but a regular file (a directory, a FIFO, a
    device, a socket) is an :class:`InvalidInputError` naming ``field``, with ``fix``."""
    kind = _kind(os.stat(path).st_mode)
    if kind is not None:
        raise _refuse(path, kind, field, fix)
    descriptor = os.open(path, os.O_RDONLY | _NON_BLOCKING)
    try:
        kind = _kind(os.fstat(descriptor).st_mode)
        if kind is not None:
            raise _refuse(path, kind, field, fix)
        if _NON_BLOCKING:
            os.set_blocking(descriptor, True)
        return os.fdopen(descriptor, "rb")
    except BaseException:
        os.close(descriptor)
        raise


def read_regular_bytes(path: str | os.PathLike[str], field: str, fix: str) -> bytes:
    """The bytes of the regular file ``path`` (:func:`open_regular_file`)."""
    with open_regular_file(path, field, fix) as handle:
        return handle.read()


def read_regular_text(path: str | os.PathLike[str], field: str, fix: str, encoding: str = "utf-8") -> str:
    """The text of the regular file ``path``, as ``Path.read_text`` reads it (universal newlines);
    ``UnicodeDecodeError`` is left to the caller."""
    with io.TextIOWrapper(open_regular_file(path, field, fix), encoding=encoding) as handle:
        return handle.read()
