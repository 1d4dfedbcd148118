"""tuner.storage: the default URL, opening storages, writing trials in bulk with TrialWriter and
reading them back with plain Optuna, and masking passwords. (How unusable databases are reported
through the CLI is in test_storage_errors.py.)"""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, IntDistribution
from optuna.trial import TrialState, create_trial

from tuner.storage import (
    StorageError,
    TrialWriter,
    default_storage_url,
    find_study_id,
    mask_password,
    open_storage,
    study_names,
    write_trials,
)

DISTRIBUTIONS = {"chips": IntDistribution(1, 64), "layout": CategoricalDistribution(["ws_1d", "ws_2d"])}


def trial(i: int) -> optuna.trial.FrozenTrial:
    return create_trial(
        values=[0.5 * i, 100.0 - i],
        params={"chips": i + 1, "layout": "ws_2d" if i % 2 else "ws_1d"},
        distributions=DISTRIBUTIONS,
        user_attrs={"estimate": {"latency_s": 0.25 * i, "mesh": [1, 2, i]}, "tag": f"t{i}"},
        constraints={"memory": float(i) - 3.0},
    )


def new_study(tmp_path: Path, name: str = "bulk"):
    url = f"sqlite:///{tmp_path / 'studies' / 'bulk.db'}"
    storage = open_storage(url)
    optuna.create_study(study_name=name, storage=storage, directions=["minimize", "maximize"])
    return url, storage, find_study_id(storage, name)


def test_default_storage_url() -> None:
    assert default_storage_url("llama-l4") == "sqlite:///studies/llama-l4.db"


def test_open_storage_creates_the_folder_and_file(tmp_path: Path) -> None:
    url, storage, study_id = new_study(tmp_path)
    assert (tmp_path / "studies" / "bulk.db").is_file()
    assert study_names(storage) == ["bulk"]
    assert study_id is not None and find_study_id(storage, "other") is None
    # Opened again read-only (create=False): the same study.
    assert study_names(open_storage(url, create=False)) == ["bulk"]


def test_open_missing_file_without_create_is_one_line_and_creates_nothing(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "missing.db"
    with pytest.raises(StorageError) as caught:
        open_storage(f"sqlite:///{missing}", create=False)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("storage: ") and str(missing) in message
    assert caught.value.exit_code == 2
    assert not missing.exists() and not missing.parent.exists()


def test_trial_writer_bulk_write_reads_back_intact(tmp_path: Path) -> None:
    url, storage, study_id = new_study(tmp_path)
    writer = TrialWriter(storage, study_id, flush_interval_s=3600.0)
    writer.add([trial(i) for i in range(5)])
    assert writer.written == 0 and len(writer.pending) == 5  # nothing before the interval or a flush
    assert writer.flush() == 5
    writer.add([trial(i) for i in range(5, 12)])
    assert writer.flush() == 7 and writer.written == 12 and not writer.budget_reached
    assert writer.flush() == 0

    study = optuna.load_study(study_name="bulk", storage=url)  # plain Optuna, a fresh connection
    trials = study.get_trials()
    assert [t.number for t in trials] == list(range(12))  # contiguous, in the order given
    for i, t in enumerate(trials):
        assert t.state == TrialState.COMPLETE
        assert t.values == [0.5 * i, 100.0 - i]
        assert t.params == {"chips": i + 1, "layout": "ws_2d" if i % 2 else "ws_1d"}
        assert t.distributions == DISTRIBUTIONS
        assert t.user_attrs == {"estimate": {"latency_s": 0.25 * i, "mesh": [1, 2, i]}, "tag": f"t{i}"}
        assert t.constraints == {"memory": float(i) - 3.0}
    # Optuna's own view of the front agrees: trials 0..3 feasible (memory <= 0); values
    # (0, 100) dominates the other feasible ones (minimize, maximize).
    assert [t.number for t in study.best_trials] == [0]


def test_a_budget_caps_what_is_written(tmp_path: Path) -> None:
    url, storage, study_id = new_study(tmp_path)
    assert write_trials(storage, study_id, [trial(i) for i in range(3)]) == 3
    writer = TrialWriter(storage, study_id, flush_interval_s=3600.0, budget=5)
    writer.add([trial(i) for i in range(3, 7)])
    assert writer.flush() == 2 and writer.budget_reached  # 3 already there, 5 at most
    trials = optuna.load_study(study_name="bulk", storage=url).get_trials()
    assert [t.number for t in trials] == [0, 1, 2, 3, 4]
    assert [t.params["chips"] for t in trials] == [1, 2, 3, 4, 5]


def test_trial_writer_flushes_when_the_interval_has_passed(tmp_path: Path) -> None:
    _, storage, study_id = new_study(tmp_path)
    writer = TrialWriter(storage, study_id, flush_interval_s=0.0)
    writer.add([trial(0), trial(1)])
    assert writer.written == 2 and not writer.pending


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (
            "postgresql+psycopg2://tuner:secret@db.example:5432/studies",
            "postgresql+psycopg2://tuner:***@db.example:5432/studies",
        ),
        ("mysql+pymysql://root:p%40ss@localhost/db", "mysql+pymysql://root:***@localhost/db"),
        ("postgresql://tuner@host/db", "postgresql://tuner@host/db"),  # no password: unchanged
        ("sqlite:///studies/x.db", "sqlite:///studies/x.db"),
        # Not parseable by SQLAlchemy: masked by hand.
        ("weird scheme://user:secret@host/db", "weird scheme://user:***@host/db"),
        ("notaurl", "notaurl"),
    ],
)
def test_mask_password(url: str, shown: str) -> None:
    assert mask_password(url) == shown


def test_a_relative_path_whose_absolute_twin_exists_is_said_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """sqlite:///tmp/x.db is tmp/x.db in the working directory (three slashes: SQLAlchemy's relative
    path), not /tmp/x.db: it made ./tmp without a word. Said when the folder is made here while
    its absolute twin exists; not for a folder only the relative path names (studies/), nor again
    once the folder is there."""
    monkeypatch.chdir(tmp_path)
    open_storage("sqlite:///tmp/x.db").engine.dispose()
    err = capsys.readouterr().err
    assert "sqlite:///tmp/x.db is the path tmp/x.db relative to this directory" in err
    assert "for /tmp/x.db write sqlite:////tmp/x.db" in err
    assert (tmp_path / "tmp" / "x.db").is_file()
    open_storage("sqlite:///tmp/x.db").engine.dispose()
    open_storage("sqlite:///studies/y.db").engine.dispose()
    assert "relative to this directory" not in capsys.readouterr().err
