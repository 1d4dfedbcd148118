"""Text the tuner repeats to a terminal, made safe and short: control characters escaped, a long
path cut, and the fix for a path the system refused. Stdlib only, so any command may use it
without loading anything heavy (tests/tuner/test_cli_imports.py)."""

from __future__ import annotations

import errno


def shown_path(path: str) -> str:
    """A path as an error line shows it: a 5,000-character one cut to its ends and its length."""
    return path if len(path) <= 120 else f"{path[:60]}...{path[-40:]} ({len(path)} characters)"


def unusable_path_fix(error: OSError, otherwise: str) -> str:
    """The fix for a path the system refused: shorten a name too long (ENAMETOOLONG; Linux's
    NAME_MAX is 255 bytes a folder or file name), free space on a full disk, else ``otherwise``."""
    if error.errno == errno.ENAMETOOLONG:
        return "use a shorter path (each folder or file name at most 255 bytes)"
    if error.errno == errno.ENOSPC:
        return "free some space and run again"
    return otherwise


def printable(text: str) -> str:
    """``text`` safe for a terminal: control characters (escape sequences from a damaged file or
    a hostile name) shown as ``\\xNN`` instead of acting on the terminal."""
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)
