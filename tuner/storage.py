"""Opening study storages, and writing many finished trials in one transaction.

Optuna's RDB storage commits every trial (and every attribute) separately: about 25 to 60 trials
per second into SQLite on a 2-core machine. A search here samples in memory and hands finished
trials to :class:`TrialWriter`, which inserts them into Optuna's own tables in one transaction per
flush (every half second by default: a flush is due 0.5 s after the previous one began, checked
after each batch). A crash loses at most the trials since the last flush, under a second; a
transaction is all or nothing, so the database is never left half-written, and the rows are the
ones Optuna itself writes, so ``optuna.load_study`` and optuna-dashboard read them as usual.
"""

from __future__ import annotations

import errno
import fcntl
import json
import math
import os
import sqlite3
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import TypeVar

import optuna
from optuna.storages import RDBStorage
from optuna.trial import FrozenTrial
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Connection, make_url

from cost_models.errors import InvalidInputError
from tuner.optuna_internals import DamagedData, existing_storage, insert_trials
from tuner.shown_text import printable, shown_path, unusable_path_fix

EXIT_BAD_INPUT, EXIT_ENVIRONMENT = 2, 1
T = TypeVar("T")


class StorageError(InvalidInputError):
    """A database that cannot be used, said in one line: the problem with the URL (password
    masked) and the fix. ``exit_code`` is 2 when the input is wrong (URL scheme, a path that is a
    directory or not a database file) and 1 when the environment is (server down, driver not
    installed, file locked or read-only, disk full)."""

    def __init__(self, problem: str, fix: str, *, environment: bool = False) -> None:
        super().__init__("storage", problem, fix)
        self.exit_code = EXIT_ENVIRONMENT if environment else EXIT_BAD_INPUT


class NoStudies(StorageError):
    """A database a read command opened holds no Optuna tables (an empty SQLite file, another
    program's database, a new PostgreSQL database): it holds no study. Raised instead of opening
    it through ``RDBStorage``, whose ``create_all`` and version stamping would write Optuna's
    tables into it."""

    def __init__(self, where: str, url: str) -> None:
        super().__init__(f"{where} holds no tuner study, nor any Optuna table ({url})", "pass the --storage of a study")
        self.url = url


def mask_password(url: str) -> str:
    """The URL as it may be shown: any password replaced by ``***``."""
    try:
        parsed = make_url(url)
        # Without a password, the URL as given: SQLAlchemy's rendering escapes characters of the
        # database path (``sqlite:///file:x.db`` shown as ``sqlite:///file%3Ax.db``).
        return url if parsed.password is None else parsed.render_as_string(hide_password=True)
    except Exception:  # not parseable: mask ``scheme://user:password@`` by hand
        head, sep, rest = url.partition("://")
        userinfo, at, host = rest.rpartition("@")
        if sep and at and ":" in userinfo:
            return f"{head}://{userinfo.split(':', 1)[0]}:***@{host}"
        return url


#: (backend, driver) of a SQLAlchemy URL -> (the Python module it imports, what to install).
_DRIVERS: dict[tuple[str, str], tuple[str, str]] = {
    ("postgresql", "psycopg2"): ("psycopg2", "pip install psycopg2-binary (or pip install -e '.[postgres]')"),
    # postgresql:// means psycopg (3) to SQLAlchemy 2.1; this package's [postgres] extra is psycopg2.
    ("postgresql", "psycopg"): (
        "psycopg",
        "write postgresql+psycopg2:// and pip install psycopg2-binary (pip install -e '.[postgres]'), "
        "or pip install 'psycopg[binary]'",
    ),
    ("postgresql", "pg8000"): ("pg8000", "pip install pg8000"),
    ("mysql", "mysqldb"): ("MySQLdb", "pip install mysqlclient, or use mysql+pymysql:// with pip install pymysql"),
    ("mysql", "pymysql"): ("pymysql", "pip install pymysql"),
    ("mysql", "mysqlconnector"): ("mysql.connector", "pip install mysql-connector-python"),
    ("mariadb", "mysqldb"): ("MySQLdb", "pip install mysqlclient, or use mariadb+pymysql:// with pip install pymysql"),
    ("mariadb", "pymysql"): ("pymysql", "pip install pymysql"),
    ("mariadb", "mariadbconnector"): ("mariadb", "pip install mariadb"),
    ("mssql", "pyodbc"): ("pyodbc", "pip install pyodbc"),
    ("oracle", "oracledb"): ("oracledb", "pip install oracledb"),
    ("sqlite", "pysqlite"): ("sqlite3", "SQLite is built into Python: use a Python built with its sqlite3 module"),
}

#: Errors of workers racing to create Optuna's tables in a new server database: SQLSTATE
#: duplicate_table, duplicate_object, unique_violation (PostgreSQL); MySQL table exists, duplicate key.
_RACE_CODES = frozenset({"42P07", "42710", "23505", 1050, 1062})


def is_creation_race(error: BaseException) -> bool:
    """Another process created the same tables or rows first (matched on types and codes)."""
    if isinstance(error, sa_exc.IntegrityError):
        return True
    if isinstance(error, (sa_exc.ProgrammingError, sa_exc.OperationalError)):
        orig = error.orig
        args = getattr(orig, "args", None)
        code = getattr(orig, "pgcode", None) or (args[0] if args else None)
        return code in _RACE_CODES
    return False


def storage_error(error: BaseException, url: str) -> StorageError:
    """What a database error means for the user, as one :class:`StorageError` (types and error
    codes decide, never message text)."""
    if isinstance(error, StorageError):
        return error
    error = _database_cause(error)
    shown = mask_password(url)
    if isinstance(error, (json.JSONDecodeError, UnicodeDecodeError)):  # a stored value is garbage
        return _damaged(url, shown, type(error).__name__)
    if isinstance(error, DamagedData):
        return _damaged(url, shown, str(error))
    if isinstance(error, ImportError):
        module, install = _driver(url)
        return StorageError(
            f"no database driver for {shown} (Python module {module} is not installed)", install, environment=True
        )
    if isinstance(error, sa_exc.NoSuchModuleError):
        return StorageError(
            f"unknown database type {_dialect(url)!r} in {shown}",
            "use sqlite:///path.db, postgresql+psycopg2://user@host/db or mysql+pymysql://user@host/db",
        )
    if isinstance(error, sa_exc.ArgumentError):
        return StorageError(
            f"not a database URL: {shown}", "use e.g. sqlite:///studies/name.db or postgresql+psycopg2://user@host/db"
        )
    if isinstance(error, sa_exc.DBAPIError):
        code = getattr(error.orig, "sqlite_errorname", None)
        if code is not None:
            return _sqlite_error(code, url, shown)
        if _sqlite_path(url) is not None and isinstance(error.orig, sqlite3.Error):
            # Raised by Python's sqlite3 module, not SQLite (no error code): a stored text that
            # is not UTF-8, i.e. bytes overwritten inside the file.
            return _damaged(url, shown, type(error.orig).__name__)
        if isinstance(error, sa_exc.OperationalError):
            return StorageError(
                f"cannot connect to the database server of {shown} ({_first_line(error.orig)})",
                "check that the server is running and the host, port, user, password and database name",
                environment=True,
            )
    return StorageError(
        f"database error on {shown}: {type(error).__name__}: {_first_line(error)}",
        "check the database and the server",
        environment=True,
    )


def _database_cause(error: BaseException) -> BaseException:
    """The driver's error under Optuna's ``StorageInternalError`` (Optuna's storage wraps every
    SQLAlchemy error in one, with the real one as its cause)."""
    if isinstance(error, optuna.exceptions.StorageInternalError) and error.__cause__ is not None:
        return error.__cause__
    return error


def _lost_cause(error: BaseException) -> BaseException:
    """What went wrong first, for the retry line: a PendingRollbackError ("Can't reconnect until
    invalid transaction is rolled back") is raised by a query Optuna runs again in the session
    whose connection was just lost (``RDBStorage._get_trials`` falls back to a slower query after
    an OperationalError); the loss itself (its ``__context__``) says what happened."""
    cause = _database_cause(error)
    lost = cause.__context__ if isinstance(cause, sa_exc.PendingRollbackError) else None
    if isinstance(lost, sa_exc.DBAPIError) and lost.orig is not None:
        return lost.orig
    return cause


#: SQLSTATEs worth retrying (PostgreSQL appendix A): connection exceptions (class 08),
#: admin_shutdown / crash_shutdown / cannot_connect_now (the server restarting), too many
#: connections, serialization failure and deadlock (the transaction may simply be run again).
_TRANSIENT_SQLSTATES = frozenset({"57P01", "57P02", "57P03", "53300", "40001", "40P01"})


def is_transient(error: BaseException) -> bool:
    """A database error that may go away by itself: a lost connection, a server restarting, a
    serialization failure, a busy or locked SQLite file (types and codes decide, not text)."""
    cause = _database_cause(error)
    if isinstance(error, sa_exc.PendingRollbackError) or isinstance(cause, sa_exc.PendingRollbackError):
        # A session whose connection dropped mid-read and was not rolled back (Optuna's
        # _get_trials catches the first OperationalError and queries again in the same session):
        # the whole action, run again, opens a new session.
        return True
    if not isinstance(cause, sa_exc.DBAPIError):
        return False
    if cause.connection_invalidated:  # SQLAlchemy recognised a disconnect
        return True
    orig = cause.orig
    sqlite_code = getattr(orig, "sqlite_errorname", None)
    if sqlite_code is not None:
        return str(sqlite_code).startswith(("SQLITE_BUSY", "SQLITE_LOCKED"))
    code = getattr(orig, "pgcode", None) or getattr(orig, "sqlstate", None)
    if code:
        return str(code).startswith("08") or code in _TRANSIENT_SQLSTATES
    # No SQLSTATE: the driver failed below SQL (connection refused, reset or closed by the
    # server). Only workers retry the first connection (open_storage's ``wait``), so a wrong host
    # or password given to ``tuner search`` still fails at once.
    return isinstance(cause, (sa_exc.OperationalError, sa_exc.InterfaceError))


#: How long a worker keeps retrying a database that went away: longer than the 60 s restart a
#: shared server may take (issue 13), short enough that a server gone for good ends the run.
RETRY_FOR_S = 120.0
#: The longest one connection attempt to a PostgreSQL server may take (libpq's connect_timeout).
CONNECT_TIMEOUT_S = 10
#: Backoff between tries: 0.1 s doubling up to 5 s, so a quick restart costs a fraction of a second.
_FIRST_WAIT_S, _LONGEST_WAIT_S = 0.1, 5.0


def with_retries(
    action: Callable[[], T], url: str, *, patience_s: float = RETRY_FOR_S, stop: Callable[[], bool] | None = None
) -> T:
    """``action()``, run again after transient database errors with bounded exponential backoff
    for up to ``patience_s``; the first failure of an episode prints one line on stderr. The
    action must be a whole transaction (a retry runs all of it again). Other errors, a transient
    one that outlasts the patience, and one met once ``stop()`` is true (a command told to stop
    by a signal while it waits: :mod:`tuner.signals`) propagate (:func:`storage_errors` makes
    them one line)."""
    began: float | None = None
    attempt = 0
    while True:
        try:
            return action()
        except (sa_exc.SQLAlchemyError, optuna.exceptions.StorageInternalError) as error:
            if not is_transient(error) or (stop is not None and stop()):
                raise
            now = time.monotonic()
            if began is None:
                began = now
                print(
                    f"tuner: database {mask_password(url)} unavailable ({_first_line(_lost_cause(error))}); "
                    f"retrying for up to {patience_s:g} s",
                    file=sys.stderr,
                    flush=True,
                )
            if now - began >= patience_s:
                raise
            time.sleep(min(_FIRST_WAIT_S * 2**attempt, _LONGEST_WAIT_S, max(0.0, began + patience_s - now)))
            attempt += 1


def _sqlite_error(code: str, url: str, shown: str) -> StorageError:
    path = _sqlite_path(url) or shown
    if code == "SQLITE_NOTADB":
        return StorageError(
            f"{path} is not a SQLite database ({shown})", "pass the path of a study database, or a new file name"
        )
    if code == "SQLITE_CANTOPEN" and os.access(path, os.R_OK) and Path(path).is_file():
        # The file opens, so what SQLite could not create is its journal beside it: the
        # directory is read-only (a write to a study there, not a wrong path).
        return StorageError(
            f"{path} is read-only: its directory {Path(path).parent} does not let SQLite create its journal ({shown})",
            "make the directory writable, or copy the study to a writable place",
            environment=True,
        )
    if code == "SQLITE_CANTOPEN":
        return StorageError(
            f"cannot open or create a database file at {path} ({shown})", "pass a file path in a writable directory"
        )
    if code.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")):
        return StorageError(
            f"{path} is locked by another process ({shown})",
            "wait for it to finish or stop it, then run again",
            environment=True,
        )
    if code == "SQLITE_READONLY_DBMOVED":
        # SQLite's answer to a write once the file it opened was deleted or renamed: "read-only"
        # sent a user who deleted a study's file mid-search to its permissions.
        return StorageError(
            f"{path} was deleted or moved while this command wrote to it ({shown}); what it wrote "
            "since went with the file",
            "put the file back and run again to resume, or run again to start the study anew",
            environment=True,
        )
    if code.startswith("SQLITE_READONLY"):
        return StorageError(
            f"{path} is read-only ({shown})",
            "make the file and its directory writable, or copy the study to a writable place",
            environment=True,
        )
    if code.startswith("SQLITE_CORRUPT"):
        return _damaged(url, shown, code)
    if code == "SQLITE_FULL":
        return StorageError(
            f"the disk holding {path} is full ({shown})", "free some space and run again", environment=True
        )
    return StorageError(f"cannot use {path} ({shown}): {code}", "check the disk and the file", environment=True)


def _damaged(url: str, shown: str, what: str) -> StorageError:
    path = _sqlite_path(url)
    if path is None:
        return StorageError(
            f"the database {shown} holds damaged data ({what})", "restore it from a backup", environment=True
        )
    return StorageError(
        f"{path} is damaged ({what}): part of the file is not what SQLite wrote ({shown})",
        f"restore it from a backup, or save what is readable: sqlite3 {path} .recover | sqlite3 recovered.db",
        environment=True,
    )


def _driver(url: str) -> tuple[str, str]:
    try:
        parsed = make_url(url)
        key = (parsed.get_backend_name(), parsed.get_driver_name())
    except Exception:
        key = (url.split(":", 1)[0], "")
    fallback = f"install the Python driver {key[1]} for {key[0]}" if key[1] else f"install a {key[0]} driver"
    return _DRIVERS.get(key, (key[1] or key[0], fallback))


def _dialect(url: str) -> str:
    """The database type a URL names: the scheme before any ``+driver``."""
    return url.split(":", 1)[0].split("+", 1)[0]


def _first_line(error: BaseException | None) -> str:
    text = str(error).strip() if error is not None else ""
    return printable(text.splitlines()[0][:200]) if text else type(error).__name__


@contextmanager
def storage_errors(url: str) -> Iterator[None]:
    """Turn database errors raised inside into one :class:`StorageError` naming ``url``."""
    try:
        yield
    except StorageError:
        raise
    except (
        sa_exc.SQLAlchemyError,
        optuna.exceptions.StorageInternalError,
        json.JSONDecodeError,
        UnicodeDecodeError,
        DamagedData,
    ) as error:
        raise storage_error(error, url) from None


def sqlite_glob(url: str) -> tuple[str, str] | None:
    """A SQLite URL whose path is a glob pattern (``*``, ``?``, ``[``: ``tuner studies``), as the
    pattern and the URL's query to keep on each file it matches; None for any other URL. The
    query (key=value pairs after the first ``?``: ``mode=ro``, ``timeout=5``) is no part of the
    pattern: ``sqlite:///studies/x.db?mode=ro`` was taken for a glob matching nothing, and listed
    no study."""
    if not url.startswith("sqlite:///"):
        return None
    rest = url.removeprefix("sqlite:///")
    path, sep, query = rest.partition("?")
    pattern, kept = (path, f"?{query}") if sep and query and all("=" in a for a in query.split("&")) else (rest, "")
    return (pattern, kept) if any(ch in pattern for ch in "*?[") else None


def default_storage_url(study_name: str) -> str:
    """``sqlite:///studies/<name>.db``, relative to the working directory."""
    return f"sqlite:///studies/{study_name}.db"


def with_installed_driver(url: str) -> str:
    """``postgresql://`` with the driver this package installs: SQLAlchemy 2.1 reads a bare
    ``postgresql://`` as psycopg (3), while the ``[postgres]`` extra installs psycopg2. When only
    psycopg2 is importable, the URL names it; every other URL is returned as given."""
    import importlib.util

    if not url.startswith("postgresql://") or importlib.util.find_spec("psycopg") is not None:
        return url
    if importlib.util.find_spec("psycopg2") is None:
        return url  # neither: the connection error names the driver to install
    return "postgresql+psycopg2://" + url.removeprefix("postgresql://")


#: The ``tuner`` commands that only read a study, and so work with a read-only URL (``?mode=ro``):
#: named by the refusal below, and each run with one by tests/tuner/test_storage_locks.py
#: (``test_every_read_command_works_read_only``), which also checks that every command taking
#: ``--storage`` is one of these or a writer. The refusal listed "pareto, show, studies and
#: export" while report and dashboard read a mode=ro study too.
READ_ONLY_COMMANDS = ("studies", "pareto", "show", "export", "report", "dashboard")


def open_storage(
    url: str, *, create: bool = True, wait: bool = False, stop: Callable[[], bool] | None = None
) -> RDBStorage:
    """An Optuna RDB storage for any SQLAlchemy URL; unusable ones become :class:`StorageError`.

    ``create=False`` (for commands that only read) refuses a SQLite file that does not exist
    instead of creating an empty database. ``wait=True`` (``tuner worker``) retries a transient
    error of the first connection like every later one (:func:`with_retries`: one line at once,
    then up to :data:`RETRY_FOR_S`): a worker started while its server restarts, or before it is
    up, waits for it, until ``stop()`` (a signal). Without it a server that cannot be reached
    fails at once, for a mistyped host or port is far likelier at a terminal than a restart.
    """
    if not isinstance(url, str) or "://" not in url:
        raise StorageError(
            f"not a database URL: {mask_password(str(url))!r}",
            "use e.g. sqlite:///studies/name.db or postgresql+psycopg2://user@host/db",
        )
    given, url = url, _honour_read_only(url)
    if create and _read_only(url):
        raise StorageError(
            # The URL as typed, not the file:...&uri=true spelling made of it.
            f"{mask_password(given)} opens the database read-only (mode=ro), and this command adds trials",
            "remove mode=ro from the URL to write; read-only URLs work with tuner "
            f"{', '.join(READ_ONLY_COMMANDS[:-1])} and {READ_ONLY_COMMANDS[-1]}",
        )
    if url.startswith("sqlite:"):
        _check_sqlite_timeout(given)
    if url.startswith("sqlite:") and _sqlite_path(url) is None:
        raise StorageError(
            f"{url if '@' not in url else mask_password(url)} is an in-memory database: the study would be "
            "thrown away when the command ends",
            "use a database file, e.g. sqlite:///studies/name.db",
        )
    path = _sqlite_path(url)
    if path is not None:
        try:
            _check_sqlite_path(path, url, create)
        except OSError as error:  # e.g. a 5,000-character path: File name too long
            raise StorageError(
                f"cannot use the database path {shown_path(path)}: {error.strerror}",
                unusable_path_fix(error, "use a path in a writable directory"),
                environment=error.errno != errno.ENAMETOOLONG,
            ) from None
    try:
        if wait:
            return with_retries(lambda: _connect(url, path, create, stop), url, stop=stop)
        return _connect(url, path, create, stop)
    except StorageError:
        raise
    except Exception as error:
        raise storage_error(error, url) from None


def _check_sqlite_timeout(url: str) -> None:
    """A SQLite URL's ``timeout=`` (seconds to wait for a busy file) is a number of seconds: the
    driver would fail on any other with a ValueError, reported as a database error (exit 1)."""
    for arg in url.partition("?")[2].split("&"):
        key, _, value = arg.partition("=")
        if key != "timeout":
            continue
        try:
            seconds = float(value)
        except ValueError:
            seconds = math.nan
        if not (math.isfinite(seconds) and seconds >= 0):
            raise StorageError(
                f"timeout={value} in {mask_password(url)} is not a number of seconds",
                "write seconds >= 0, e.g. ?timeout=60, or leave it out (60 s)",
            )


def _connect(url: str, path: str | None, create: bool, stop: Callable[[], bool] | None = None) -> RDBStorage:
    """:func:`open_storage`'s connection; database errors propagate as they are (the caller
    decides whether to retry them and makes them one line)."""
    for attempt in range(_OPEN_ATTEMPTS):
        try:
            # Several workers may open a new SQLite file at once: one creates the schema at a
            # time. Readers open an existing file and take no lock: a writer that stopped
            # responding cannot block them, and a read-only directory does not stop them.
            if path is not None and not create:
                _wait_until_readable(path)
                if _holds_no_optuna_tables(path):
                    raise NoStudies(path, mask_password(url))
            if path is None and not create and not _server_holds_optuna_tables(url):
                raise NoStudies(f"database {make_url(url).database}", mask_password(url))
            with _file_lock(path, stop) if create else nullcontext():
                # A database in Optuna's current schema opens without create_all or the Alembic
                # import (tuner.optuna_internals.existing_storage); a new one through RDBStorage.
                return existing_storage(with_installed_driver(url), _engine_kwargs(url))
        except OSError as error:  # the lock file beside the database
            if (
                error.errno in (errno.EACCES, errno.EPERM, errno.EROFS)
                and path is not None
                and Path(path).is_file()
                and os.access(path, os.R_OK)
            ):
                # The database is there and reads; what could not be made is <db>.lock beside it
                # (a study copied into a read-only directory has none yet): the same read-only
                # directory as SQLite's journal meets once the lock file exists.
                raise StorageError(
                    f"{path} is read-only: its directory {Path(path).parent} does not let this command create "
                    f"{Path(path).name}.lock, the writers' lock ({error.strerror}; {mask_password(url)})",
                    "make the directory writable, or copy the study to a writable place",
                    environment=True,
                ) from None
            environment = error.errno not in (errno.ENOENT, errno.ENOTDIR, errno.EISDIR, errno.ENAMETOOLONG)
            raise StorageError(
                f"cannot use {path}: {error.strerror} ({mask_password(url)})",
                unusable_path_fix(error, "use a path in a writable directory"),
                environment=environment,
            ) from None
        except Exception as error:
            # Workers starting together on a new server database race to create Optuna's
            # tables; the losers find them made a moment later.
            if is_creation_race(error) and attempt + 1 < _OPEN_ATTEMPTS:
                time.sleep(min(0.1 * 2**attempt, 2.0))
                continue
            raise
    raise RuntimeError("unreachable: the last attempt raises")


_OPEN_ATTEMPTS = 6


def _check_sqlite_path(path: str, url: str, create: bool) -> None:
    """A SQLite path that can be used (its folder made when ``create``); OSError passes up."""
    if Path(path).is_dir():
        raise StorageError(
            f"{path} is a directory, not a database file ({mask_password(url)})",
            "pass the path of a database file, e.g. sqlite:///studies/name.db",
        )
    if not create and not Path(path).is_file():
        raise StorageError(
            f"no database at {path}", "run tuner search first, or pass the --storage the study was saved in"
        )
    if create:
        folder = Path(path).parent
        if not folder.is_absolute() and not folder.exists() and (Path("/") / folder).is_dir():
            # sqlite:///tmp/x.db is tmp/x.db here (three slashes: a relative path; SQLAlchemy's
            # absolute one takes four): it made ./tmp without a word, the study beside the
            # working directory, where the user looked in /tmp.
            print(
                f"tuner: {mask_password(url)} is the path {path} relative to this directory ({folder}/ made "
                f"here); for /{path} write sqlite:////{path}",
                file=sys.stderr,
                flush=True,
            )
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise StorageError(f"cannot create {folder}: {error.strerror}", "use a writable path") from None


def _read_only(url: str) -> bool:
    """The URL opens a SQLite file read-only (``mode=ro``, honoured by :func:`_honour_read_only`)."""
    return url.startswith("sqlite:") and "mode=ro" in url.partition("?")[2].split("&")


def _honour_read_only(url: str) -> str:
    """``sqlite:///PATH?mode=ro`` as SQLite honours it: pysqlite ignores ``mode`` (with only a
    warning) unless the path is a ``file:`` URI with ``uri=true``, and the database was written
    to; this spells it that way."""
    if not _read_only(url) or not url.startswith("sqlite:///"):
        return url
    path, _, query = url.removeprefix("sqlite:///").partition("?")
    args = [a for a in query.split("&") if a and a != "uri=true"]
    if not path.startswith("file:"):
        path = "file:" + path
    return f"sqlite:///{path}?{'&'.join([*args, 'uri=true'])}"


def _engine_kwargs(url: str) -> dict:
    if url.startswith("sqlite"):
        # Wait for a busy database instead of failing at once (unless the URL says how long).
        return {} if "timeout=" in url.partition("?")[2] else {"connect_args": {"timeout": 60}}
    engine_kwargs: dict = {"pool_pre_ping": True}
    if url.startswith("postgresql") and "connect_timeout=" not in url.partition("?")[2]:
        # A host that drops packets would hold each connection attempt for the OS's TCP timeout
        # (about 2 minutes), past with_retries' patience and a signal's prompt stop: libpq's
        # connect_timeout (psycopg2 and psycopg 3 both pass it on) ends an attempt after 10 s.
        engine_kwargs["connect_args"] = {"connect_timeout": CONNECT_TIMEOUT_S}
    return engine_kwargs


def storage_url(storage: RDBStorage) -> str:
    """The database URL of ``storage`` with its password, as the user gave it (for messages and retries)."""
    return storage.engine.url.render_as_string(hide_password=False)


class TrialWriter:
    """Buffers finished trials and writes each buffer to one study in a single transaction."""

    def __init__(
        self, storage: RDBStorage, study_id: int, flush_interval_s: float = 0.5, budget: int | None = None
    ) -> None:
        self.storage = storage
        self.study_id = study_id
        self.flush_interval_s = flush_interval_s
        self.budget = budget  # the most trials the study may hold (several workers share it)
        self.pending: list[FrozenTrial] = []
        self.written = 0
        self.budget_reached = False
        self._last_flush = time.monotonic()

    def add(self, trials: list[FrozenTrial]) -> None:
        """Queue trials; flush when the interval has passed."""
        self.pending.extend(trials)
        if time.monotonic() - self._last_flush >= self.flush_interval_s:
            self.flush()

    def flush(self) -> int:
        """Write every queued trial now; returns how many were written."""
        # The interval counts from the start of a flush, so a write's own time is inside it.
        self._last_flush = time.monotonic()
        if not self.pending:
            return 0
        batch, self.pending = self.pending, []
        written = write_trials(self.storage, self.study_id, batch, self.budget)
        self.written += written
        if written < len(batch):
            self.budget_reached = True
        return written


def write_trials(storage: RDBStorage, study_id: int, trials: list[FrozenTrial], budget: int | None = None) -> int:
    """Insert finished trials (values, params, user and system attributes) in one transaction;
    returns how many were written.

    Trial numbers continue from the study's current count, in the order given. With a
    ``budget``, only as many as keep the study at or under it are written. Writers of one study
    are serialized (PostgreSQL: a row lock on the study; SQLite: a lock file beside the
    database), so numbers are unique and the budget holds with any number of workers.
    """
    url = storage_url(storage)
    with sqlite_writer_lock(storage):
        with storage_errors(url):
            # One transaction: after a lost connection it is run again whole. (Should the
            # connection drop during the commit itself, the rows may be stored twice; the budget
            # still holds, as the count is read again in the new transaction.)
            return with_retries(lambda: insert_trials(storage, study_id, trials, budget), url)


def hold_sqlite_write_lock(connection: Connection) -> None:
    """Begin a SQLite write transaction with SQLite's own write lock (``BEGIN IMMEDIATE``), before
    the study's count is read: the ``<db>.lock`` file alone serialized writers, and Python's
    sqlite3 begins a transaction only at the first INSERT, so a count read before it was outside
    any transaction. With the lock file deleted mid-run (the holder keeps its lock on the unlinked
    file, the next writer locks a new one), three workers on one file counted alike: two stored
    trials under one number or ended with a traceback. Readers are not blocked (a reserved lock
    lets them read); another writer waits the connection's busy timeout, then counts again.
    ``connection``: a SQLAlchemy Connection before its first statement; a server database locks
    the study row instead (``SELECT ... FOR UPDATE``)."""
    if connection.dialect.name == "sqlite":
        connection.exec_driver_sql("BEGIN IMMEDIATE")


@contextmanager
def sqlite_writer_lock(storage: RDBStorage) -> Iterator[None]:
    """Serialize writers of a SQLite database (processes on one machine); server databases lock
    the study row in the transaction instead."""
    url = storage.engine.url
    path = None
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
        path = url.database
        if path.startswith("file:") and url.query.get("uri") == "true":
            path = path.removeprefix("file:")
    with _file_lock(path):
        yield


@contextmanager
def one_search_per_study(url: str, study_name: str) -> Iterator[None]:
    """Refuse a second ``tuner search`` of one study in one database while the first runs.
    Both would start from the same stored trials with the same seed, so the second drew the
    first's trials again: two searches of a 20,000-trial budget on one file stored 20,000 trials
    of which 10,350 distinct, each saying the study held its own half. ``tuner worker`` is the
    way to search in parallel (a seed each, the budget read before every write), and is not
    refused. Other studies of the database are not refused, and the lock goes with the process,
    however it ends. Taken once the database is opened (``run_search``'s ``after_open``).

    - SQLite: a POSIX lock on one byte of ``<db>.search.lock`` per study name (its CRC-32). A
      file whose directory cannot hold the lock file (a read-only one) is not guarded.
    - PostgreSQL: a session-level advisory lock (``pg_try_advisory_lock``, keyed by
      :data:`SEARCH_LOCK_SPACE` and the name's CRC-32, so it is per database) on a connection of
      its own held for the whole search; the server releases it when that connection closes, a
      killed process's too. Before, two searches of one study on PostgreSQL ran side by side. A
      pooler in transaction mode (PgBouncer's) does not keep session locks, and a connection
      lost mid-search (a server restart) loses the lock: neither is detected.
    - Other servers (MySQL, MariaDB) are not guarded."""
    import zlib

    key = zlib.crc32(study_name.encode("utf-8"))
    if _dialect(url) == "postgresql":
        with _postgres_search_lock(url, study_name, key):
            yield
        return
    path = _sqlite_path(url)
    try:
        handle = open(f"{path}.search.lock", "a") if path is not None else None  # held for the whole search
    except OSError:
        handle = None
    if path is None or handle is None:
        yield
        return
    try:
        try:
            fcntl.lockf(handle, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, key)
        except OSError as error:
            if error.errno not in (errno.EACCES, errno.EAGAIN):
                raise
            raise _another_search(study_name, path) from None
        yield
    finally:
        handle.close()  # releases the lock


#: The first key of tuner's PostgreSQL advisory locks ("tunr" in ASCII): the second is the study
#: name's CRC-32, so another program's advisory locks on the same database do not meet them.
SEARCH_LOCK_SPACE = 0x74756E72


@contextmanager
def _postgres_search_lock(url: str, study_name: str, key: int) -> Iterator[None]:
    import sqlalchemy
    from sqlalchemy.pool import NullPool

    engine_kwargs = _engine_kwargs(url)
    engine_kwargs.pop("pool_pre_ping", None)
    # AUTOCOMMIT: the session lock outlives transactions, and a connection held idle inside
    # one for a whole search would meet a server's idle_in_transaction_session_timeout.
    engine = sqlalchemy.create_engine(
        with_installed_driver(url), poolclass=NullPool, isolation_level="AUTOCOMMIT", **engine_kwargs
    )
    try:
        with engine.connect() as connection:
            signed = key - 2**32 if key >= 2**31 else key  # the int4 PostgreSQL takes
            query = sqlalchemy.text("SELECT pg_try_advisory_lock(:space, :key)")
            held = connection.execute(query, {"space": SEARCH_LOCK_SPACE, "key": signed}).scalar()
            if not held:
                raise _another_search(study_name, f"database {make_url(url).database}")
            yield  # closing the connection releases the lock
    finally:
        engine.dispose()


def _another_search(study_name: str, where: str) -> StorageError:
    return StorageError(
        f"another tuner search is adding to study {study_name!r} in {where} (a second would draw the same "
        "trials again)",
        "wait for it to finish and run again, or run tuner worker processes to search in parallel",
        environment=True,
    )


def database_file(url: str) -> Path | None:
    """The SQLite file a URL opens; None for a server database (or an in-memory one)."""
    path = _sqlite_path(url)
    return Path(path) if path is not None else None


def _sqlite_path(url: str) -> str | None:
    if not url.startswith("sqlite:///"):
        return None
    path, _, query = url.removeprefix("sqlite:///").partition("?")
    if path.startswith("file:") and "uri=true" in query:  # sqlite:///file:PATH?mode=ro&uri=true
        path = path.removeprefix("file:")
    return path if path and path != ":memory:" else None


#: How long a writer waits for another process's ``<db>.lock`` (a flush holds it well under a
#: second) before saying who holds it; ``TUNER_LOCK_TIMEOUT_S`` overrides it.
LOCK_TIMEOUT_S = 60.0


def _lock_timeout_s() -> float:
    try:
        return float(os.environ.get("TUNER_LOCK_TIMEOUT_S", LOCK_TIMEOUT_S))
    except ValueError:
        return LOCK_TIMEOUT_S


@contextmanager
def _file_lock(database: str | None, stop: Callable[[], bool] | None = None) -> Iterator[None]:
    """An exclusive lock on ``<database>.lock``, holding this process's id; nothing when there
    is no database file. A writer that cannot have it within :data:`LOCK_TIMEOUT_S` (its holder
    stopped with SIGSTOP, or hung) gets one line naming the holder's PID. Once ``stop()`` is true
    (a signal: :mod:`tuner.signals`) it stops waiting: a command opening its study holds nothing
    to write yet, and waited out the whole timeout before (SIGTERM to a worker opening a file
    whose lock a stopped process held: exit 143 after 57 s, qa-ops)."""
    if not database:
        yield
        return
    lock_path = f"{database}.lock"
    with open(lock_path, "a+") as handle:
        deadline = time.monotonic() + _lock_timeout_s()
        wait_s = 0.001
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if stop is not None and stop():
                    handle.seek(0)
                    holder = handle.read().strip() or "unknown"
                    raise StorageError(
                        f"stopped while waiting for {lock_path}, held by process {holder}", "run again"
                    ) from None
                if time.monotonic() >= deadline:
                    handle.seek(0)
                    holder = handle.read().strip() or "unknown"
                    raise StorageError(
                        f"{database} is locked by process {holder} (waited {_lock_timeout_s():.0f} s for {lock_path})",
                        f"if process {holder} is stopped or hung, resume it (kill -CONT {holder}) or end it "
                        f"(kill {holder}), then run again",
                        environment=True,
                    ) from None
                time.sleep(wait_s)
                wait_s = min(wait_s * 2, 0.05)  # short waits: writers of one study take turns often
        try:
            handle.seek(0)
            handle.truncate()
            handle.write(str(os.getpid()))
            handle.flush()
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _wait_until_readable(path: str) -> None:
    """Return once a reader can take SQLite's shared lock on ``path``. A writer holds SQLite's own
    lock only while it commits, but one stopped then (``kill -STOP``, Ctrl-Z) holds it until it is
    resumed, and SQLite's busy handler would keep a reader waiting in C (60 s per query, deaf to
    Ctrl-C) and then fail without a cause. Waits here in short, interruptible steps, and names the
    writer (its PID is in ``<db>.lock``) at once when it is stopped, else after
    :data:`LOCK_TIMEOUT_S`. Other errors are left to the open that follows."""
    uri = Path(path).absolute().as_uri() + "?mode=ro"
    deadline = time.monotonic() + _lock_timeout_s()
    while True:
        try:
            probe = sqlite3.connect(uri, uri=True, timeout=0)
            try:
                probe.execute("SELECT count(*) FROM sqlite_master").fetchone()
            finally:
                probe.close()
            return
        except sqlite3.Error as error:
            if not str(getattr(error, "sqlite_errorname", "")).startswith(("SQLITE_BUSY", "SQLITE_LOCKED")):
                return
        holder = _lock_holder(path)
        stopped = holder is not None and _process_state(holder) in ("T", "t")
        if stopped or time.monotonic() >= deadline:
            who = f"process {holder}" if holder is not None else "another process"
            raise StorageError(
                f"{path} is being written by {who}, which holds SQLite's lock"
                + (" and is stopped" if stopped else f" (waited {_lock_timeout_s():.0f} s)"),
                f"resume it (kill -CONT {holder}) or end it (kill {holder}), then run again"
                if holder is not None
                else "wait for it to finish or stop it, then run again",
                environment=True,
            )
        time.sleep(0.05)


def _holds_no_optuna_tables(path: str) -> bool:
    """``path`` opens as a SQLite database (read-only) with no ``studies`` table: a 0-byte file
    or another program's database. False where it holds one, or cannot be read so (the open that
    follows names the problem: not a database, damaged, locked)."""
    uri = Path(path).absolute().as_uri() + "?mode=ro"
    try:
        probe = sqlite3.connect(uri, uri=True, timeout=0)
        try:
            found = probe.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'studies'").fetchone()
        finally:
            probe.close()
    except sqlite3.Error:
        return False
    return found is None


def _server_holds_optuna_tables(url: str) -> bool:
    """A server database (PostgreSQL, MySQL) has Optuna's ``studies`` table: asked through
    SQLAlchemy's inspector before ``RDBStorage`` is built, for on a new database its
    ``create_all`` and version stamping made Optuna's 13 tables during a read (``tuner pareto``
    on an empty PostgreSQL 15 database, tests/tuner/test_storage_server_reads.py). Connection
    errors propagate (the caller makes them one line)."""
    import sqlalchemy

    engine = sqlalchemy.create_engine(with_installed_driver(url), **_engine_kwargs(url))
    try:
        return sqlalchemy.inspect(engine).has_table("studies")
    finally:
        engine.dispose()


def _lock_holder(database: str) -> int | None:
    """The PID the last writer wrote into ``<database>.lock`` while it holds the lock, if any."""
    try:
        with open(f"{database}.lock") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:  # held: the PID inside is the holder's
                text = handle.read().strip()
                return int(text) if text.isdigit() else None
            fcntl.flock(handle, fcntl.LOCK_UN)  # free: the PID inside is a past writer's
            return None
    except OSError:
        return None


def _process_state(pid: int) -> str | None:
    """A process's state letter from ``/proc/PID/stat`` (``T``: stopped; Linux), or None."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rpartition(")")[2].split()[0]
    except (OSError, IndexError):
        return None


def find_study_id(storage: RDBStorage, name: str) -> int | None:
    try:
        return storage.get_study_id_from_name(name)
    except KeyError:
        return None


def study_names(storage: RDBStorage) -> list[str]:
    return [s.study_name for s in storage.get_all_studies()]
