"""How an error line shows a path the system refused, and what it tells the user to do: stdlib
only, so the commands that check an output path before their work load nothing heavy for it
(tests/tuner/test_cli_imports.py)."""

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
