"""A study is created with its attributes in one transaction (tuner.optuna_internals), and reads
back through Optuna's public API exactly as ``create_study`` + ``set_user_attr`` +
``set_metric_names`` would have left it."""

from __future__ import annotations

from pathlib import Path

import optuna

from tuner.optuna_internals import create_study_with_attrs
from tuner.storage import open_storage


def test_created_with_attrs_in_one_go_and_a_second_creation_is_refused(tmp_path: Path) -> None:
    storage = open_storage(f"sqlite:///{tmp_path / 's.db'}")
    directions = [optuna.study.StudyDirection.MINIMIZE, optuna.study.StudyDirection.MAXIMIZE]
    attrs = {"spec": {"name": "s", "space": {"batch": [1, 2]}}, "spec_hash": "abc"}
    study_id = create_study_with_attrs(storage, "s", directions, attrs, ["latency_s", "tokens_per_s"])
    assert study_id is not None
    study = optuna.load_study(study_name="s", storage=storage)
    assert study.user_attrs == attrs
    assert study.directions == directions
    assert study.metric_names == ["latency_s", "tokens_per_s"]
    assert create_study_with_attrs(storage, "s", directions, {"spec_hash": "other"}, ["a", "b"]) is None
    assert optuna.load_study(study_name="s", storage=storage).user_attrs["spec_hash"] == "abc"
    assert len(optuna.get_all_study_summaries(storage)) == 1
