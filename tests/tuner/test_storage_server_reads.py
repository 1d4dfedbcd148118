"""Read commands on a server database (PostgreSQL) write nothing, as on SQLite
(test_storage_errors.test_reading_a_file_that_holds_no_study_writes_nothing_into_it).

The server comes from test_workers' ``_server_url`` (``TUNER_TEST_POSTGRES_URL``, or one started
from the distribution's binaries); without one the test is skipped, as the workers' tests are.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from test_workers import _server_url, fresh_database

from cli_helpers import run_cli


@pytest.fixture
def empty_postgres_url() -> Iterator[str]:
    """A new, empty database on the server, dropped afterwards (the workers' fixture is shared by
    its module's tests, which write studies into it)."""
    yield from fresh_database(_server_url())


def _tables(url: str) -> list[str]:
    import sqlalchemy

    engine = sqlalchemy.create_engine(url)
    try:
        return sorted(sqlalchemy.inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_reading_an_empty_server_database_creates_no_table(empty_postgres_url: str, capsys) -> None:
    """pareto, show, export, report and studies on an empty PostgreSQL database opened it through
    RDBStorage, whose create_all and version stamping made Optuna's tables in it (a typo in
    --storage left a database that then looked like one of studies). They write nothing now,
    and answer as they do for an empty SQLite file: one line, exit 2; `studies` lists none."""
    url = empty_postgres_url
    reads = (("pareto", "x"), ("pareto", "x", "--json"), ("show", "x", "1"), ("export", "x", "--trial", "1"))
    for command in (*reads, ("report", "x")):
        code, out, err = run_cli(capsys, *command, "--storage", url)
        assert code == 2 and err == f"error: study: no study named 'x' in {url}; use one of: none\n", (command, err)
        assert out == ""
        assert _tables(url) == [], command
    code, out, err = run_cli(capsys, "studies", "--storage", url, "--json")
    assert code == 0 and json.loads(out) == [], err
    assert _tables(url) == []
