"""A serving study without serving.max_batch_size scores each of a trial's DP ranks at the engine's
default (cost_models.serving.default_max_batch_size): vLLM's 256 a rank, 512 for the deployment at
DP 2, which `tuner export` writes back as --max-num-seqs 256 a rank ("512 sequences over 2 ranks").
`tuner show`, `tuner pareto` (its table, its "same on every front trial:" line and --json) show that 512, the value
`tuner estimate --dp 2 --max-batch-size` takes for the same trial.

Measured before (2026-12-05, this worktree): Mixtral-8x7B bf16 on H200s (vLLM, TP1 DP2 EP2, 10
requests/s, 2048/256 tokens) was shown max_batch_size 256 everywhere; the QA pass fed a shown 256 to
`tuner estimate --dp 2 --max-batch-size 256` and got 1470 tokens/s/chip against the trial's 1886."""

from __future__ import annotations

import json

import pytest
import yaml

from tuner.cli import main

SPEC = {
    "name": "dp-batch",
    "model": "mixtral-8x7b",
    "hardware": "h200",
    "backend": "vllm",
    "workload": {"prompt_len": 2048, "gen_len": 256},
    "space": {"tp": [1], "dp": [2], "ep": [2], "weight_bits": [16], "kv_bits": [16]},
    "objectives": [{"metric": "serving.tokens_per_s_per_chip"}, {"metric": "serving.tokens_per_s_per_user"}],
    "constraints": {"fits": True},
    "serving": {"request_rate": [5.0, 10.0]},
    "sampler": "exhaustive",
    "trials": 2,
}
VLLM_MAX_NUM_SEQS = 256  # vLLM's --max-num-seqs default, each DP rank's (its own engine core)


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> str:
    where = tmp_path_factory.mktemp("dpbatch")
    spec = where / "spec.yaml"
    spec.write_text(yaml.safe_dump(SPEC))
    url = f"sqlite:///{where / 's.db'}"
    assert main(["search", str(spec), "--storage", url, "--json"]) == 0
    return url


def test_show_gives_the_batch_limit_the_dp_ranks_ran(study: str, capsys) -> None:
    capsys.readouterr()
    assert main(["show", SPEC["name"], "0", "--storage", study]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["params"]["max_batch_size"] == 2 * VLLM_MAX_NUM_SEQS
    assert shown["estimate"]["params"]["max_batch_size"] == 2 * VLLM_MAX_NUM_SEQS
    assert shown["estimate"]["serving"]["max_concurrency"] <= 2 * VLLM_MAX_NUM_SEQS


def test_pareto_shows_it_in_its_table_and_json(study: str, capsys) -> None:
    capsys.readouterr()
    assert main(["pareto", SPEC["name"], "--storage", study, "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows and all(row["params"]["max_batch_size"] == 2 * VLLM_MAX_NUM_SEQS for row in rows)
    assert main(["pareto", SPEC["name"], "--storage", study]) == 0
    out = capsys.readouterr().out
    # Both rates are on the front (more tokens a chip at 10/s, a user at 5/s): the batch limit is
    # in the line of what every front trial shares.
    constant = next(line for line in out.splitlines() if line.startswith("same on every front trial:"))
    assert f"max batch {2 * VLLM_MAX_NUM_SEQS}," in constant


# ---------------------------------------------------------------------------------------------
# The dashboard. Optuna's param max_batch_size stays the label the sampler drew (one rank's
# default here: the spec's one choice, what a resumed search matches its trials against); a
# trial read through the tuner (`tuner dashboard`, tuner.pareto.load_study) carries the value as
# scored in the user attribute max_batch_size_as_scored, computed on read. Before (2026-12-05,
# this study): the dashboard showed max_batch_size 256 and nothing else saying 512.

SCORED_ATTR = "max_batch_size_as_scored"


def _served_detail(url: str, monkeypatch: pytest.MonkeyPatch) -> dict:
    """The study page's data as ``tuner dashboard`` serves it (its app, over the study's storage
    as the command opens it), through the HTTP API the frontend reads. The app replaces
    optuna-dashboard's Pareto function for the process (feasible_dashboard): restored after the
    test (``monkeypatch``), or tests/tuner/test_dashboard.py's plain dashboard would be fixed too."""
    from wsgiref.util import setup_testing_defaults

    pytest.importorskip("optuna_dashboard")
    from optuna_dashboard import _app

    monkeypatch.setattr(_app, "get_pareto_front_trials", _app.get_pareto_front_trials)
    from tuner.optuna_internals import feasible_dashboard, rdb_storage
    from tuner.pareto import load_study

    loaded = load_study(SPEC["name"], url)
    app = feasible_dashboard(rdb_storage(loaded))
    environ: dict = {"PATH_INFO": f"/api/studies/{loaded._study_id}", "QUERY_STRING": "after=0"}
    setup_testing_defaults(environ)
    statuses: list[str] = []
    body = b"".join(app(environ, lambda status, headers, exc_info=None: statuses.append(status)))
    assert statuses == ["200 OK"], body[:300]
    return json.loads(body)


def _shown_batch(url: str, number: int, capsys) -> int:
    capsys.readouterr()
    assert main(["show", SPEC["name"], str(number), "--storage", url]) == 0
    return json.loads(capsys.readouterr().out)["params"]["max_batch_size"]


def test_the_dashboard_gives_the_batch_limit_show_gives(study: str, capsys, monkeypatch) -> None:
    detail = _served_detail(study, monkeypatch)
    assert len(detail["trials"]) == 2
    for trial in detail["trials"]:
        attrs = {a["key"]: a["value"] for a in trial["user_attrs"]}
        params = {p["name"]: p["param_external_value"] for p in trial["params"]}
        assert attrs[SCORED_ATTR] == str(_shown_batch(study, trial["number"], capsys)) == str(2 * VLLM_MAX_NUM_SEQS)
        assert params["max_batch_size"] == str(VLLM_MAX_NUM_SEQS)  # the sampled label, as stored
        # First among the user attributes: the trial page lists them in order, above the long
        # serving/estimate JSON.
        assert trial["user_attrs"][0]["key"] == SCORED_ATTR
    # A number, so the trial table sorts and filters by it.
    assert {"key": SCORED_ATTR, "sortable": True} in detail["union_user_attrs"]


def test_optunas_trials_read_through_the_tuner_carry_it_unstored(study: str, capsys) -> None:
    from tuner.pareto import load_study
    from tuner.storage import open_storage

    for trial in load_study(SPEC["name"], study).trials:
        assert trial.user_attrs[SCORED_ATTR] == _shown_batch(study, trial.number, capsys) == 2 * VLLM_MAX_NUM_SEQS
        assert trial.params["max_batch_size"] == VLLM_MAX_NUM_SEQS
    # Computed on read: the database holds no such attribute (a compact trial stays under 1 KB).
    import optuna

    raw = optuna.load_study(study_name=SPEC["name"], storage=open_storage(study, create=False))
    assert raw.trials and all(SCORED_ATTR not in t.user_attrs for t in raw.trials)


def test_a_study_in_the_whole_format_carries_it_on_read(tmp_path, monkeypatch, capsys) -> None:
    """Studies written before compact trials (or of a space over 2**53 configurations) store
    their params and breakdown whole: the attribute is added when they are read, not stored."""
    import optuna

    from tuner import compact
    from tuner.pareto import load_study
    from tuner.storage import open_storage

    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump(SPEC))
    url = f"sqlite:///{tmp_path / 'whole.db'}"
    with monkeypatch.context() as patch:
        patch.setattr(compact, "compact_possible", lambda sizes: False)
        assert main(["search", str(spec), "--storage", url, "--json"]) == 0
    raw = optuna.load_study(study_name=SPEC["name"], storage=open_storage(url, create=False))
    assert "serving" in raw.trials[0].user_attrs and SCORED_ATTR not in raw.trials[0].user_attrs
    for trial in load_study(SPEC["name"], url).trials:
        assert trial.user_attrs[SCORED_ATTR] == _shown_batch(url, trial.number, capsys) == 2 * VLLM_MAX_NUM_SEQS
    for trial in _served_detail(url, monkeypatch)["trials"]:
        assert {"key": SCORED_ATTR, "value": str(2 * VLLM_MAX_NUM_SEQS)} in trial["user_attrs"]


def test_a_listed_batch_limit_is_the_label(tmp_path, capsys) -> None:
    """With serving.max_batch_size listed, the choice is the deployment's and scored as such:
    the attribute equals the param."""
    from tuner.pareto import load_study

    listed = {**SPEC, "serving": {**SPEC["serving"], "max_batch_size": [64, 512]}}
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump(listed))
    url = f"sqlite:///{tmp_path / 'listed.db'}"
    assert main(["search", str(spec), "--storage", url, "--json"]) == 0
    trials = load_study(SPEC["name"], url).trials
    assert sorted(t.params["max_batch_size"] for t in trials) == [64, 64, 512, 512]
    for trial in trials:
        shown = _shown_batch(url, trial.number, capsys)
        assert trial.user_attrs[SCORED_ATTR] == trial.params["max_batch_size"] == shown
