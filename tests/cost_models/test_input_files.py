"""cost_models.input_files: a file the user named is read only when it is a regular file; a
directory, a FIFO or a device is one InvalidInputError naming the field, before any read.

The FIFO is opened on a daemon thread with a time limit: a regression (an open that waits for a
writer) fails the test instead of hanging it."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from cost_models.errors import InvalidInputError
from cost_models.input_files import open_regular_file, read_regular_bytes, read_regular_text


def _outcome(function, *args) -> object:
    """What ``function(*args)`` returned or raised, within 10 s (a hang is a failure)."""
    box: list[object] = []

    def run() -> None:
        try:
            box.append(function(*args))
        except BaseException as error:
            box.append(error)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(10)
    assert box, f"{function.__name__}{args} did not return within 10 s"
    return box[0]


@pytest.mark.parametrize("reader", [open_regular_file, read_regular_bytes, read_regular_text])
def test_a_fifo_is_refused_without_waiting_for_a_writer(tmp_path: Path, reader) -> None:
    pipe = tmp_path / "pipe.csv"
    os.mkfifo(pipe)
    error = _outcome(reader, pipe, "--points", "pass a CSV file")
    assert isinstance(error, InvalidInputError)
    assert str(error) == f"--points: {pipe} is a FIFO (named pipe), not a regular file; pass a CSV file"


def test_a_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match=r"^spec: .* is a directory, not a regular file; pass a YAML$"):
        read_regular_text(tmp_path, "spec", "pass a YAML")


@pytest.mark.skipif(not os.path.exists("/dev/null"), reason="no /dev/null")
def test_a_character_device_is_refused() -> None:
    # /dev/null, not /dev/zero: a regression reads it to its (immediate) end instead of forever.
    with pytest.raises(InvalidInputError, match="is a character device, not a regular file"):
        read_regular_bytes("/dev/null", "profile", "pass a profile file")


def test_a_regular_file_reads_as_path_read_text_does(tmp_path: Path) -> None:
    file = tmp_path / "profile.yaml"
    file.write_bytes(b"a: 1\r\nb: \xc3\xa9\r\n")
    assert read_regular_text(file, "profile", "") == file.read_text(encoding="utf-8") == "a: 1\nb: é\n"
    assert read_regular_bytes(file, "profile", "") == file.read_bytes()


def test_a_missing_file_is_left_to_the_caller(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        read_regular_text(tmp_path / "missing.yaml", "profile", "")
