"""Searching: ``run_search`` with Optuna's samplers and exhaustive enumeration, studies persisted in
SQLite and read back with plain Optuna, resuming, Pareto fronts checked by brute force, and the
``tuner search/studies/pareto/show/export`` commands (including bad input: exit 2, one line,
nothing written).

Every study here is small (PaLM 540B on 64/128 TPU v4 chips, a handful of choices) and stored in a
SQLite file under ``tmp_path``.
"""

from __future__ import annotations

import copy
import csv
import io
import json
import math
import shutil
from pathlib import Path

import numpy as np
import optuna
import pytest
import yaml

from cli_helpers import assert_one_error_line, run_cli
from cost_models.calibration import load_profile
from cost_models.errors import InvalidInputError
from cost_models.hardware import get_hardware
from cost_models.topology import network_for
from search_spaces.space import compile_study, evaluate
from search_spaces.spec import METRICS, parse_spec
from tuner.pareto import load_study, study_front, trial_breakdown
from tuner.storage import open_storage
from tuner.study import run_search, run_worker

pytestmark = pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
OBJECTIVES = ["decode.step_latency_s", "decode.cost_chip_s_per_token"]

SMALL: dict = {
    "name": "small",
    "model": "palm-540b",
    "hardware": "tpu-v4",
    "workload": {"prompt_len": 128, "gen_len": 8},
    # 528 configurations: a sampled search never repeats one, so the space outlasts the budgets here.
    "space": {
        "chips": [64, 128],
        "batch": [1, 4, 16, 32, 64, 128],
        "decode_ffn_layout": ["ws_1d", "ws_2d"],
        "weight_bits": [16, 8],
    },
    "objectives": [{"metric": m} for m in OBJECTIVES],
    "constraints": {"fits": True, "max_tpot_s": 0.5},
    "sampler": "random",
    "seed": 0,
    "trials": 100,
}

# 64 chips only, two batches, two decode layouts: every mesh multiplies to 64.
TINY: dict = {
    **SMALL,
    "name": "tiny",
    "space": {"chips": [64], "batch": [1, 64], "decode_ffn_layout": ["ws_1d", "ws_2d"]},
}


def spec_dict(base: dict = SMALL, **changes) -> dict:
    data = copy.deepcopy(base)
    data.update(changes)
    return data


def url_of(tmp_path: Path, name: str = "s.db") -> str:
    return f"sqlite:///{tmp_path}/{name}"


@pytest.fixture(scope="session")
def empty_db(tmp_path_factory) -> Path:
    """An SQLite file with Optuna's schema and no study: creating the schema takes ~0.5 s, copying
    the file does not."""
    path = tmp_path_factory.mktemp("template") / "empty.db"
    open_storage(f"sqlite:///{path}").engine.dispose()
    return path


@pytest.fixture
def url(tmp_path: Path, empty_db: Path) -> str:
    """A fresh study database (no study yet) in tmp_path/s.db."""
    shutil.copyfile(empty_db, tmp_path / "s.db")
    return url_of(tmp_path)


def write_spec(tmp_path: Path, data: dict, name: str = "spec.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def stored(name: str, url: str) -> list[optuna.trial.FrozenTrial]:
    return load_study(name, url).get_trials(deepcopy=False)


def feasible(trial: optuna.trial.FrozenTrial) -> bool:
    constraints = [v for k, v in trial.system_attrs.items() if k.startswith("constraints:")]
    assert constraints
    return all(v <= 0 for v in constraints)


def minimized(values, directions) -> np.ndarray:
    signs = np.array([1.0 if d == "minimize" else -1.0 for d in directions])
    return np.asarray(values, dtype=np.float64) * signs


def dominates(a: np.ndarray, b: np.ndarray) -> bool:
    """a dominates b (both minimized): no worse anywhere, better somewhere."""
    return bool(np.all(a <= b) and np.any(a < b))


def brute_front(points: np.ndarray) -> set[tuple]:
    """Distinct objective vectors that no point dominates, by brute force."""
    front = set()
    for i, p in enumerate(points):
        if not any(dominates(q, p) for j, q in enumerate(points) if j != i):
            front.add(rounded(p))
    return front


def rounded(values) -> tuple:
    return tuple(float(f"{float(v):.12g}") for v in values)


# --- run_search and what it stores -------------------------------------------------------------


@pytest.mark.parametrize("sampler", ["random", "nsga2"])
def test_run_search_stores_exactly_the_requested_trials(url: str, sampler: str) -> None:
    spec = parse_spec(spec_dict(sampler=sampler))
    result = run_search(spec, url, trials=120)
    assert (result.study_name, result.storage_url) == ("small", url)
    assert (result.trials_before, result.trials_added, result.interrupted) == (0, 120, False)

    study = load_study("small", url)
    trials = study.get_trials(deepcopy=False)
    assert len(trials) == 120
    assert sorted(t.number for t in trials) == list(range(120))
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    assert study.metric_names == OBJECTIVES
    assert [d.name for d in study.directions] == ["MINIMIZE", "MINIMIZE"]
    assert study.user_attrs["spec"] == json.loads(spec.canonical_json())
    assert study.user_attrs["spec_hash"] == spec.spec_hash

    compiled = compile_study(spec)
    constraint_keys = {f"constraints:{n}" for n in compiled.constraint_names}
    assert constraint_keys == {"constraints:structurally_valid", "constraints:fits_in_memory", "constraints:max_tpot_s"}
    for trial in trials:
        assert constraint_keys <= set(trial.system_attrs)
        assert all(math.isfinite(trial.system_attrs[k]) for k in constraint_keys)
        assert len(trial.values) == 2 and all(math.isfinite(v) for v in trial.values)
        assert set(trial.params) == set(compiled.space.dimensions)
        for name, value in trial.params.items():
            assert value in compiled.space.dimensions[name]
        estimate = trial.user_attrs["estimate"]
        for section in ("prefill", "decode", "memory"):
            assert isinstance(estimate[section], dict) and estimate[section]
        # The mesh carries the chip count; the breakdown names it as well.
        mesh_chips = math.prod(int(a) for a in trial.params["mesh"].split("x"))
        assert estimate["params"] == {"chips": mesh_chips, **trial.params}
        valid = trial.system_attrs["constraints:structurally_valid"] <= 0
        assert estimate["structurally_valid"] is valid
        if valid:
            assert trial.values[0] == pytest.approx(estimate["decode"]["step_latency_s"], rel=1e-12)
            assert trial.values[1] == pytest.approx(estimate["decode"]["cost_chip_s_per_token"], rel=1e-12)
            assert trial.system_attrs["constraints:max_tpot_s"] == pytest.approx(
                estimate["decode"]["step_latency_s"] - 0.5, rel=1e-9, abs=1e-12
            )
            assert (trial.system_attrs["constraints:fits_in_memory"] <= 0) is estimate["memory"]["fits"]


def test_run_search_accepts_a_dict_and_defaults_to_the_spec_budget(url: str) -> None:
    result = run_search(spec_dict(trials=70), url)
    assert result.trials_added == 70
    assert len(stored("small", url)) == 70


@pytest.mark.parametrize("sampler", ["random", "nsga2"])
def test_resuming_adds_trials_up_to_the_new_total(url: str, sampler: str) -> None:
    spec = parse_spec(spec_dict(sampler=sampler))
    first = run_search(spec, url, trials=100)
    assert first.trials_added == 100
    second = run_search(spec, url, trials=250)
    assert (second.trials_before, second.trials_added) == (100, 150)
    numbers = [t.number for t in stored("small", url)]
    assert len(numbers) == 250
    assert sorted(numbers) == list(range(250))
    # Asking for no more than the study holds adds nothing.
    third = run_search(spec, url, trials=200)
    assert (third.trials_before, third.trials_added) == (250, 0)
    assert len(stored("small", url)) == 250


def test_stored_trials_have_start_and_completion_times(url: str) -> None:
    """Optuna requires them of every finished trial (FrozenTrial._validate); resuming re-adds the
    stored trials to an in-memory study, which validates them."""
    run_search(spec_dict(), url, trials=60)
    for trial in stored("small", url):
        assert trial.datetime_start is not None
        assert trial.datetime_complete is not None
        assert trial.datetime_start <= trial.datetime_complete
        trial._validate()


def test_resuming_with_a_changed_spec_is_refused(url: str) -> None:
    run_search(spec_dict(), url, trials=60)
    before = [(t.number, t.params, t.values) for t in stored("small", url)]
    changed = spec_dict()
    changed["space"]["batch"] = [1, 16, 128]
    with pytest.raises(InvalidInputError) as info:
        run_search(changed, url, trials=120)
    message = str(info.value)
    assert "space.batch" in message
    assert "small" in message
    assert [(t.number, t.params, t.values) for t in stored("small", url)] == before
    study = load_study("small", url)
    assert study.user_attrs["spec_hash"] == parse_spec(spec_dict()).spec_hash


# --- exhaustive enumeration --------------------------------------------------------------------


def test_exhaustive_enumerates_every_structurally_possible_candidate_once(url: str) -> None:
    meshes = network_for(get_hardware("tpu-v4")).legal_meshes(64)
    expected = len(meshes) * 2 * 2  # meshes x batch [1, 64] x decode layout [ws_1d, ws_2d]
    result = run_search(spec_dict(TINY), url, sampler="exhaustive")
    assert (result.trials_before, result.trials_added) == (0, expected)
    trials = stored("tiny", url)
    assert len(trials) == expected
    assert sorted(t.number for t in trials) == list(range(expected))
    keys = {(t.params["mesh"], t.params["batch"], t.params["decode_ffn_layout"]) for t in trials}
    assert keys == {
        ("x".join(map(str, m)), b, layout) for m in meshes for b in (1, 64) for layout in ("ws_1d", "ws_2d")
    }
    assert all(t.system_attrs["constraints:structurally_valid"] == 0 for t in trials)

    again = run_search(spec_dict(TINY), url, sampler="exhaustive")
    assert (again.trials_before, again.trials_added) == (expected, 0)
    assert len(stored("tiny", url)) == expected


def test_exhaustive_says_when_the_study_holds_the_whole_space(url: str) -> None:
    """As a sampled search says it (`exhausted`, and 'stopped early: the study holds every
    configuration'): before, an exhaustive run that stored every candidate said exhausted false,
    and its resume read '0 trials added' with no reason (studies/llama-3.1-70b-h100-serving.yaml:
    360 candidates; the random sampler said it)."""
    assert run_search(spec_dict(TINY), url, sampler="exhaustive").exhausted
    again = run_search(spec_dict(TINY), url, sampler="exhaustive")
    assert again.trials_added == 0 and again.exhausted
    size = again.trials_before
    budgeted = url.replace(".db", "-budget.db")
    assert not run_search(spec_dict(TINY), budgeted, sampler="exhaustive", trials=size).exhausted
    other = url.replace(".db", "-share.db")
    assert not run_worker(spec_dict(TINY), other, share=2, sampler="exhaustive").exhausted  # its share stopped it
    # Only the front and a sample stored: the space was scored, but the study does not hold it.
    sampled = url.replace(".db", "-front.db")
    assert not run_search(spec_dict(TINY), sampled, sampler="exhaustive", store_all=False).exhausted


@pytest.mark.parametrize("base", [TINY, SMALL], ids=["tiny", "small"])
def test_exhaustive_front_equals_the_brute_force_front(url: str, base: dict) -> None:
    spec = parse_spec(spec_dict(base))
    compiled = compile_study(spec)
    network = network_for(compiled.hardware)
    # Every legal mesh of each chip count the spec lists, times every choice of the rest.
    possible = sum(len(network.legal_meshes(c)) for c in spec.space.chips)
    assert len(compiled.space.dimensions["mesh"]) == possible
    others = compiled.space.size // possible
    run_search(spec, url, sampler="exhaustive")
    assert len(stored(spec.name, url)) == possible * others

    evaluation = evaluate(compiled, compiled.space.all_indices())
    rows = evaluation.values[evaluation.feasible]
    assert len(rows) > 0
    expected = brute_front(minimized(rows, compiled.directions))

    front = study_front(load_study(spec.name, url))
    assert front.n_trials == possible * others
    assert front.n_feasible == len(rows)
    got = [rounded(t.values) for t in front.trials]
    assert len(got) == len(set(got))  # one trial per distinct point
    assert set(got) == expected


def test_exhaustive_after_sampling_adds_only_the_candidates_not_yet_stored(url: str) -> None:
    spec = parse_spec(
        spec_dict(space={"chips": [64, 128], "batch": [1, 16, 64], "decode_ffn_layout": ["ws_1d", "ws_2d"]})
    )
    compiled = compile_study(spec)
    network = network_for(compiled.hardware)
    meshes = {c: ["x".join(map(str, m)) for m in network.legal_meshes(c)] for c in (64, 128)}
    possible = {
        (c, m, b, layout) for c in (64, 128) for m in meshes[c] for b in (1, 16, 64) for layout in ("ws_1d", "ws_2d")
    }
    run_search(spec, url, trials=60)

    def key(t):
        chips = math.prod(int(a) for a in t.params["mesh"].split("x"))
        return (chips, t.params["mesh"], t.params["batch"], t.params["decode_ffn_layout"])

    sampled = {key(t) for t in stored("small", url) if t.system_attrs["constraints:structurally_valid"] <= 0}
    assert sampled and sampled < possible
    result = run_search(spec, url, sampler="exhaustive")
    assert (result.trials_before, result.trials_added) == (60, len(possible - sampled))
    trials = stored("small", url)
    added = [key(t) for t in trials if t.number >= 60]
    assert len(added) == len(set(added)) and set(added) == possible - sampled
    assert sorted(t.number for t in trials) == list(range(60 + len(possible - sampled)))


def test_progress_is_reported(url: str) -> None:
    seen: list[tuple[int, int]] = []
    run_search(spec_dict(), url, trials=150, batch_size=64, on_progress=lambda d, t: seen.append((d, t)))
    assert seen == [(64, 150), (128, 150), (150, 150)]


# --- fronts of sampled studies -----------------------------------------------------------------


def test_every_sampled_mesh_is_legal_for_its_chip_count(url: str) -> None:
    """The mesh dimension lists legal meshes of the spec's chip counts only: no sampled trial
    pairs a chip count with a mesh it does not have."""
    run_search(spec_dict(), url, trials=150)
    network = network_for(get_hardware("tpu-v4"))
    legal = {"x".join(map(str, m)) for c in (64, 128) for m in network.legal_meshes(c)}
    trials = stored("small", url)
    assert {t.params["mesh"] for t in trials} <= legal
    assert all(t.system_attrs["constraints:structurally_valid"] <= 0 for t in trials)


def test_tpe_trials_with_impossible_kv_heads_are_infeasible(url: str) -> None:
    """PaLM 540B has 48 heads: 5 KV heads cannot exist; such trials are stored as infeasible and
    never reach the front. TPE's: since 2026-12-06 the random sampler draws none of them
    (test_random_valid_draws.py), and NSGA-II replaces them by other children."""
    run_search(spec_dict(space={**SMALL["space"], "kv_heads": ["model", 5]}), url, trials=150, sampler="tpe")
    trials = stored("small", url)
    impossible = [t for t in trials if t.params["kv_heads"] == 5]
    assert impossible
    for trial in impossible:
        assert trial.system_attrs["constraints:structurally_valid"] > 0
        assert not feasible(trial)
        assert trial.user_attrs["estimate"]["structurally_valid"] is False
    possible = [t for t in trials if t not in impossible]
    assert all(t.system_attrs["constraints:structurally_valid"] <= 0 for t in possible)
    front = study_front(load_study("small", url))
    assert front.trials
    assert not {t.number for t in front.trials} & {t.number for t in impossible}


@pytest.mark.parametrize("sampler", ["random", "nsga2"])
def test_front_is_feasible_and_undominated_by_brute_force(url: str, sampler: str) -> None:
    spec = parse_spec(
        spec_dict(
            sampler=sampler,
            space={
                "chips": [64, 128],
                "batch": [1, 4, 16, 64, 256],
                "decode_ffn_layout": ["ws_1d", "ws_2d"],
                "weight_bits": [16, 8],
                "kv_bits": [16, 8],
            },
        )
    )
    run_search(spec, url, trials=300)
    study = load_study("small", url)
    front = study_front(study)
    trials = study.get_trials(deepcopy=False)
    directions = ["minimize", "minimize"]
    feasible_trials = [t for t in trials if feasible(t)]
    assert front.n_trials == 300 and front.n_feasible == len(feasible_trials)
    assert front.trials
    points = {t.number: minimized(t.values, directions) for t in feasible_trials}
    for trial in front.trials:
        assert feasible(trial)
        for other in feasible_trials:
            assert not dominates(points[other.number], points[trial.number]), (other.number, trial.number)
    # Complete: every undominated feasible point is on the front (once).
    expected = brute_front(np.array(list(points.values())))
    assert {rounded(minimized(t.values, directions)) for t in front.trials} == expected
    assert len(front.trials) == len(expected)
    assert [t.values[0] for t in front.trials] == sorted(t.values[0] for t in front.trials)


def test_trial_breakdown_matches_the_stored_trial(url: str) -> None:
    run_search(spec_dict(), url, trials=50)
    study = load_study("small", url)
    trial = study.get_trials(deepcopy=False)[7]
    report = trial_breakdown(study, 7)
    assert report["trial"] == 7 and report["study"] == "small" and report["state"] == "COMPLETE"
    assert report["params"] == trial.params
    assert report["objectives"] == dict(zip(OBJECTIVES, trial.values, strict=True))
    assert set(report["constraints"]) == {"structurally_valid", "fits_in_memory", "max_tpot_s"}
    assert report["feasible"] is feasible(trial)
    assert report["estimate"] == trial.user_attrs["estimate"]
    for bad in (-1, 50):
        with pytest.raises(InvalidInputError, match="trial"):
            trial_breakdown(study, bad)


# Specs whose defaults depend on tp or on the model (fused attention with tp, a quantized
# checkpoint's stored format): `show`, `pareto` and `export` recompile the stored spec, and once
# scored another problem than the search had (flash_attention [false], weight_bits ["16"]).
DEFAULTED = {
    "tp, fused attention by default": {
        "model": "qwen3-235b-a22b",
        "hardware": "h200",
        "space": {"tp": [2, 4, 8], "ep": [1, 2, 8], "dp": [1, 2, 4], "batch": [8, 64, 256]},
    },
    "fp8 checkpoint": {"model": "deepseek-v3", "hardware": "h200", "space": {"chips": [16, 32], "batch": [8, 64]}},
}


@pytest.mark.parametrize("sampler", ["nsga2", "random"])
@pytest.mark.parametrize("fields", list(DEFAULTED.values()), ids=list(DEFAULTED))
def test_a_trial_read_back_is_the_trial_searched(url: str, fields: dict, sampler: str) -> None:
    spec = {
        **spec_dict(),
        **copy.deepcopy(fields),
        "workload": {"prompt_len": 2048, "gen_len": 512},
        "constraints": {"fits": True, "max_ttft_s": 2.0},
        "sampler": sampler,
    }
    run_search(spec, url, trials=40)
    study = load_study("small", url)
    for number in range(40):
        report = trial_breakdown(study, number)
        if not report["estimate"]["structurally_valid"]:  # stored with the penalty values
            continue
        for metric, stored_value in report["objectives"].items():
            phase, name = metric.split(".")
            assert report["estimate"][phase][name] == pytest.approx(stored_value, rel=1e-12), (number, metric)
        assert report["feasible"] is all(v <= 0 for v in report["constraints"].values()), number


def test_a_block_what_if_trial_is_reproduced_by_tuner_estimate(url: str, capsys) -> None:
    """`tuner estimate --block` scores a trial's block what-if by hand (it had --kv-heads but no
    --block, so a serial-block PaLM trial could not be reproduced)."""
    space = {"chips": [64], "mesh": ["4x4x4"], "batch": [16], "block": ["serial", "parallel"], "kv_heads": ["mha"]}
    run_search(spec_dict(space=space, sampler="exhaustive", constraints={}), url, trials=2)
    study = load_study("small", url)
    shown = {trial_breakdown(study, n)["params"]["block"]: trial_breakdown(study, n) for n in (0, 1)}
    assert set(shown) == {"serial", "parallel"}
    for block, report in shown.items():
        args = ("--model", "palm-540b", "--hardware", "tpu-v4", "--mesh", "4x4x4", "--batch", "16")
        args += ("--prompt-len", "128", "--gen-len", "8", "--kv-heads", "48", "--block", block, "--json")
        code, out, err = run_cli(capsys, "estimate", *args)
        assert code == 0, err
        by_hand = json.loads(out)
        assert by_hand["block"] == block
        assert by_hand["decode"]["step_latency_s"] == pytest.approx(report["objectives"][OBJECTIVES[0]], rel=1e-9)
    assert shown["serial"]["objectives"] != shown["parallel"]["objectives"]


# --- the CLI -----------------------------------------------------------------------------------


@pytest.fixture
def searched(tmp_path: Path, url: str, capsys) -> tuple[Path, str]:
    """A study 'small' of 60 random trials made with `tuner search ... --json`."""
    code, out, err = run_cli(
        capsys, "search", str(write_spec(tmp_path, spec_dict())), "--storage", url, "--trials", "60", "--json"
    )
    assert code == 0, err
    assert "Traceback" not in err
    data = json.loads(out)
    assert data["study"] == "small" and data["storage"] == url
    assert (data["trials_before"], data["trials_added"], data["interrupted"]) == (0, 60, False)
    assert data["front"]
    for row in data["front"]:
        assert set(row) >= {"trial", "params", "objectives"}
        assert list(row["objectives"]) == OBJECTIVES
        assert row["params"]["chips"] in (64, 128)
    return tmp_path, url


def test_cli_search_json_front_matches_the_study(searched, capsys) -> None:
    _, url = searched
    front = study_front(load_study("small", url))
    code, out, _ = run_cli(capsys, "pareto", "small", "--storage", url, "--json")
    assert code == 0
    rows = json.loads(out)
    assert [r["trial"] for r in rows] == [t.number for t in front.trials]
    assert [list(r["objectives"].values()) for r in rows] == [t.values for t in front.trials]
    assert len(stored("small", url)) == 60


def test_cli_studies_lists_the_study(searched, capsys) -> None:
    _, url = searched
    code, out, _ = run_cli(capsys, "studies", "--storage", url, "--json")
    assert code == 0
    rows = json.loads(out)
    assert len(rows) == 1
    row = rows[0]
    assert (row["study"], row["storage"], row["trials"]) == ("small", url, 60)
    assert row["objectives"] == OBJECTIVES
    assert 0 < row["front_size"] <= row["feasible"] <= 60


def test_cli_pareto_csv_and_plot(searched, capsys) -> None:
    tmp_path, url = searched
    code, out, _ = run_cli(capsys, "pareto", "small", "--storage", url, "--csv")
    assert code == 0
    table = list(csv.reader(io.StringIO(out)))
    header = table[0]
    assert header[0] == "trial"
    assert header[-2:] == OBJECTIVES
    front = study_front(load_study("small", url))
    assert len(table) - 1 == len(front.trials)
    assert [int(r[0]) for r in table[1:]] == [t.number for t in front.trials]

    plot = tmp_path / "front.png"
    code, out, _ = run_cli(capsys, "pareto", "small", "--storage", url, "--plot", str(plot))
    assert code == 0
    assert plot.read_bytes().startswith(PNG_SIGNATURE)
    assert plot.stat().st_size > 1000


def test_cli_show_prints_a_trial_with_its_estimate(searched, capsys) -> None:
    _, url = searched
    code, out, _ = run_cli(capsys, "show", "small", "0", "--storage", url)
    assert code == 0
    data = json.loads(out)
    assert data["trial"] == 0 and data["study"] == "small"
    assert set(data["estimate"]) >= {"prefill", "decode", "memory"}
    assert list(data["objectives"]) == OBJECTIVES
    assert data["params"] == stored("small", url)[0].params
    assert data["calibration"] == "tpu-v4-jax"  # the spec's 'auto' on tpu-v4, as stored with the study


def test_cli_pareto_names_the_calibration(searched, capsys) -> None:
    _, url = searched
    code, out, _ = run_cli(capsys, "pareto", "small", "--storage", url, "--json")
    assert code == 0
    assert {row["calibration"] for row in json.loads(out)} == {"tpu-v4-jax"}
    code, out, _ = run_cli(capsys, "pareto", "small", "--storage", url)
    assert "calibration tpu-v4-jax" in " ".join(out.split())


def test_cli_search_resumes_a_study(searched, capsys) -> None:
    tmp_path, url = searched
    code, out, err = run_cli(
        capsys, "search", str(tmp_path / "spec.yaml"), "--storage", url, "--trials", "90", "--json"
    )
    assert code == 0, err
    data = json.loads(out)
    assert (data["trials_before"], data["trials_added"]) == (60, 30)
    assert sorted(t.number for t in stored("small", url)) == list(range(90))


def test_cli_default_storage_is_studies_dir(tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    spec = write_spec(tmp_path, spec_dict(name="default-place"))
    code, out, err = run_cli(capsys, "search", str(spec), "--trials", "30")
    assert code == 0, err
    assert (tmp_path / "studies" / "default-place.db").is_file()
    assert "30" in out
    code, out, _ = run_cli(capsys, "studies", "--json")
    assert code == 0
    rows = json.loads(out)
    assert [(r["study"], r["trials"]) for r in rows] == [("default-place", 30)]
    code, out, _ = run_cli(capsys, "pareto", "default-place", "--json")
    assert code == 0 and json.loads(out)
    code, out, _ = run_cli(capsys, "show", "default-place", "29")
    assert code == 0 and json.loads(out)["trial"] == 29


# --- the CLI on bad input: exit 2, one line, nothing written -----------------------------------


def files_under(path: Path) -> set[Path]:
    return {p for p in path.rglob("*")}


def test_cli_missing_spec_file(tmp_path: Path, capsys) -> None:
    url = url_of(tmp_path)
    code, out, err = run_cli(capsys, "search", str(tmp_path / "absent.yaml"), "--storage", url)
    assert_one_error_line(code, out, err, ("spec",))
    assert files_under(tmp_path) == set()


@pytest.mark.parametrize(
    "text",
    [
        "name: [unclosed\n",
        "- a list\n- not a mapping\n",
        '!!python/object/apply:os.system ["echo hi"]\n',
    ],
    ids=["malformed", "list", "tag"],
)
def test_cli_malformed_spec_writes_nothing(tmp_path: Path, capsys, text: str) -> None:
    spec = tmp_path / "bad.yaml"
    spec.write_text(text, encoding="utf-8")
    url = url_of(tmp_path)
    code, out, err = run_cli(capsys, "search", str(spec), "--storage", url)
    assert_one_error_line(code, out, err, ("spec", "bad.yaml"))
    assert files_under(tmp_path) == {spec}


@pytest.mark.parametrize(
    "change,field",
    [
        (lambda d: d["space"].update(chips=[12]), "space.chips"),
        (lambda d: d.update(model="bert-base"), "model"),
        (lambda d: d["space"].update(batch=[]), "space.batch"),
    ],
    ids=["chips", "encoder", "empty batch"],
)
def test_cli_invalid_spec_does_not_create_the_database(tmp_path: Path, capsys, change, field) -> None:
    data = spec_dict()
    change(data)
    spec = write_spec(tmp_path, data)
    code, out, err = run_cli(capsys, "search", str(spec), "--storage", url_of(tmp_path, "db/s.db"), "--json")
    assert_one_error_line(code, out, err, (field,))
    assert files_under(tmp_path) == {spec}


@pytest.mark.parametrize(
    "args,field",
    [
        (["--trials", "0"], "trials"),
        (["--trials", "-5"], "trials"),
        (["--sampler", "bogus"], "sampler"),
        (["--timeout", "0"], "timeout"),
    ],
    ids=["trials 0", "trials negative", "sampler", "timeout"],
)
def test_cli_bad_search_options_write_nothing(tmp_path: Path, capsys, args, field) -> None:
    spec = write_spec(tmp_path, spec_dict())
    code, out, err = run_cli(capsys, "search", str(spec), "--storage", url_of(tmp_path, "db/s.db"), "--json", *args)
    assert_one_error_line(code, out, err, (field,))
    assert files_under(tmp_path) == {spec}


def test_cli_changed_spec_is_refused_and_adds_nothing(searched, capsys) -> None:
    tmp_path, url = searched
    data = spec_dict()
    data["space"]["batch"] = [1, 16, 128]
    spec = write_spec(tmp_path, data, "changed.yaml")
    code, out, err = run_cli(capsys, "search", str(spec), "--storage", url, "--trials", "100", "--json")
    line = assert_one_error_line(code, out, err, ("spec",))
    assert "space.batch" in line
    assert len(stored("small", url)) == 60


def test_cli_changed_spec_names_each_changed_field_briefly(searched, capsys) -> None:
    """Adding a serving section and swapping an objective printed both objective lists and the
    section's eleven defaults in full (an 831-character line on the shipped l4 study). Now the
    line names each changed field once, its set values only, within a terminal's few lines."""
    tmp_path, url = searched
    data = spec_dict()
    data["serving"] = {"concurrency": [4, 32]}
    data["objectives"] = [{"metric": "decode.step_latency_s"}, {"metric": "serving.tokens_per_s_per_chip"}]
    spec = write_spec(tmp_path, data, "serving.yaml")
    code, out, err = run_cli(capsys, "search", str(spec), "--storage", url, "--trials", "100", "--json")
    line = assert_one_error_line(code, out, err, ("spec",))
    assert "serving.concurrency: <absent> -> [4, 32]" in line
    assert "objectives" in line
    assert "prefix_hit_rate" not in line and "memory_fraction" not in line  # defaults, not the change
    # Without the storage URL, whose temporary path varies with the runner (pytest-xdist adds a
    # folder): 316 characters when written.
    assert len(line.replace(url, "")) < 330, line
    assert len(stored("small", url)) == 60


def unopenable_urls(tmp_path: Path) -> list[str]:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory", encoding="utf-8")
    # A directory cannot be made under a plain file, even by root; /proc refuses new entries.
    return ["notaurl", f"sqlite:///{blocker}/x/y.db", "sqlite:////proc/nonexistent-dir/x/y.db"]


def test_cli_search_with_an_unopenable_storage(tmp_path: Path, capsys) -> None:
    spec = write_spec(tmp_path, spec_dict())
    for url in unopenable_urls(tmp_path):
        before = files_under(tmp_path)
        code, out, err = run_cli(capsys, "search", str(spec), "--storage", url, "--trials", "10", "--json")
        assert_one_error_line(code, out, err, ("storage",))
        assert files_under(tmp_path) == before


@pytest.mark.parametrize("case", ["trials 0", "storage", "chips", "changed spec"])
def test_cli_search_error_is_one_line_without_json(tmp_path: Path, url: str, capsys, case: str) -> None:
    """Without --json, search shows a progress bar on stderr; an error raised while it is up must
    still be the only line on stderr (scripts read it; stderr is not a terminal here)."""
    data = spec_dict()
    args = ["--storage", url, "--trials", "30"]
    field = "spec"
    if case == "trials 0":
        args[-1], field = "0", "trials"
    elif case == "storage":
        args[1], field = "notaurl", "storage"
    elif case == "chips":
        data["space"]["chips"], field = [12], "space.chips"
    else:
        run_search(spec_dict(), url, trials=20)
        data["space"]["batch"] = [2]
    code, out, err = run_cli(capsys, "search", str(write_spec(tmp_path, data)), *args)
    assert_one_error_line(code, out, err, (field,))


@pytest.mark.parametrize(
    "command",
    [["pareto", "small"], ["show", "small", "0"], ["export", "small", "--trial", "0"], ["studies"]],
    ids=["pareto", "show", "export", "studies"],
)
def test_cli_read_commands_with_an_unopenable_storage(tmp_path: Path, capsys, command) -> None:
    for url in unopenable_urls(tmp_path):
        before = files_under(tmp_path)
        code, out, err = run_cli(capsys, *command, "--storage", url)
        assert_one_error_line(code, out, err, ("storage",))
        assert files_under(tmp_path) == before


@pytest.mark.parametrize(
    "command",
    [["pareto", "nope"], ["pareto", "nope", "--json"], ["show", "nope", "0"], ["export", "nope", "--trial", "0"]],
    ids=["pareto", "pareto json", "show", "export"],
)
def test_cli_unknown_study(searched, capsys, command) -> None:
    tmp_path, url = searched
    before = {p: p.stat().st_mtime_ns for p in files_under(tmp_path)}
    code, out, err = run_cli(capsys, *command, "--storage", url)
    line = assert_one_error_line(code, out, err, ("study",))
    assert "nope" in line and "small" in line  # says which studies there are
    assert {p: p.stat().st_mtime_ns for p in files_under(tmp_path)} == before


@pytest.mark.parametrize(
    "command",
    [["pareto", "nope"], ["show", "nope", "0"], ["export", "nope", "--trial", "0"]],
    ids=["pareto", "show", "export"],
)
def test_cli_unknown_study_in_a_missing_database_creates_no_file(tmp_path: Path, capsys, command) -> None:
    """Reading commands must not create an empty database where there was none (it would then be
    listed by `tuner studies` and make a typo look like an empty study)."""
    url = url_of(tmp_path, "absent.db")
    code, out, err = run_cli(capsys, *command, "--storage", url)
    assert_one_error_line(code, out, err, ("study", "storage"))
    assert files_under(tmp_path) == set()


def test_cli_unknown_study_with_default_storage_creates_no_file(tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "studies").mkdir()
    code, out, err = run_cli(capsys, "pareto", "typo")
    assert_one_error_line(code, out, err, ("study", "storage"))
    assert files_under(tmp_path) == {tmp_path / "studies"}


@pytest.mark.parametrize("number", ["60", "1000"])
def test_cli_show_trial_out_of_range(searched, capsys, number: str) -> None:
    _, url = searched
    code, out, err = run_cli(capsys, "show", "small", number, "--storage", url)
    line = assert_one_error_line(code, out, err, ("trial",))
    assert "0..59" in line


def test_cli_show_negative_trial(searched, capsys) -> None:
    _, url = searched
    code, out, err = run_cli(capsys, "show", "small", "--storage", url, "--", "-1")
    assert_one_error_line(code, out, err, ("trial", "-1"))


def test_metrics_cover_every_objective_direction() -> None:
    """The objectives used here are minimized metrics."""
    assert all(METRICS[m].direction == "minimize" for m in OBJECTIVES)


def test_exhaustive_honours_an_explicit_trials_cap_and_resumes(url: str) -> None:
    """--trials caps an exhaustive enumeration; running it again without a cap adds the rest,
    none twice."""
    spec = parse_spec(spec_dict(TINY))
    first = run_search(spec, url, sampler="exhaustive", trials=7)
    assert (first.trials_before, first.trials_added) == (0, 7)
    rest = run_search(spec, url, sampler="exhaustive")
    trials = stored("tiny", url)
    keys = [tuple(sorted(t.params.items())) for t in trials]
    assert len(keys) == len(set(keys)) == 7 + rest.trials_added
    assert run_search(spec, url, sampler="exhaustive").trials_added == 0


def test_a_study_under_a_profile_file_names_the_file(tmp_path: Path, url: str, capsys) -> None:
    """A refit of tpu-v4 read 'calibration tpu-v4-jax', as the shipped profile does."""
    profile = tmp_path / "my-tpu.yaml"
    profile.write_text(load_profile("tpu-v4-jax").model_copy(update={"per_step_overhead_s": 1e-3}).to_yaml())
    spec = write_spec(tmp_path, spec_dict(TINY, calibration=str(profile)))
    code, out, err = run_cli(capsys, "search", str(spec), "--storage", url, "--trials", "4", "--json")
    assert code == 0, err
    assert json.loads(out)["calibration"] == f"tpu-v4-jax from {profile}"
    code, out, _ = run_cli(capsys, "pareto", "tiny", "--storage", url, "--json")
    assert code == 0 and {row["calibration"] for row in json.loads(out)} == {f"tpu-v4-jax from {profile}"}


def test_a_config_json_relative_to_the_spec_is_read_back_from_the_spec_directory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``model: config.json`` beside the spec, searched from another directory: the model is read
    from the spec's directory (docs/spec-reference.md), but the study stores a config.json by the
    path as written, and every read of the stored spec resolved it from the working directory: the
    search wrote its 6 trials, then printed 'model: no config.json at 'config.json'', exit 2, and
    pareto, show and export failed alike from anywhere but the spec's directory (qa-ops)."""
    specs = tmp_path / "specs"
    specs.mkdir()
    # Meta-Llama-3.1-8B's config.json (tests/fixtures/hf/llama.json): 32 layers, hidden 4096.
    shutil.copy(Path(__file__).parents[1] / "fixtures" / "hf" / "llama.json", specs / "config.json")
    data = spec_dict(name="relative", sampler="exhaustive")
    data["model"], data["hardware"] = "config.json", "h100-sxm"
    data["space"] = {"chips": [1, 2], "batch": [1, 2, 4]}
    spec = write_spec(specs, data)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    url = f"sqlite:///{tmp_path / 's.db'}"
    code, out, err = run_cli(capsys, "search", str(spec), "--storage", url, "--json")
    assert code == 0, err
    result = json.loads(out)
    assert result["trials_added"] > 0
    monkeypatch.chdir(tmp_path)  # a third directory, without config.json
    for args in (("pareto", "relative"), ("show", "relative", "0")):
        code, _, err = run_cli(capsys, *args, "--storage", url)
        assert code == 0, err
    code, out, err = run_cli(capsys, "export", "relative", "--trial", "0", "--storage", url)
    assert code == 0, err
    model = json.loads(out)["model"]
    assert (model["layers"], model["d_model"], model["kv_heads"]) == (32, 4096, 8)


def test_a_search_run_again_at_its_budget_says_why_it_added_nothing(tmp_path: Path, capsys) -> None:
    """README: `tuner search studies/llama-2-70b-h100.yaml --trials 5000  # run again to resume`.
    Run again after it finished, it printed only "0 trials added" (--trials is the total the study
    should hold, not trials to add), which reads as a failed resume."""
    url = f"sqlite:///{tmp_path / 'p.db'}"
    args = ("search", str(Path(__file__).resolve().parents[2] / "studies" / "palm-540b-tpu-v4.yaml"), "--storage", url)
    code, out, err = run_cli(capsys, *args, "--trials", "40", "--sampler", "random")
    assert code == 0, err
    code, out, err = run_cli(capsys, *args, "--trials", "40", "--sampler", "random")
    assert code == 0, err
    assert "0 trials added" in out
    assert "nothing to add: the study holds 40 trials, at least the 40 --trials asks for" in out
    assert "pass --trials above 40 to add more" in out
    # --json said nothing of it ("trials_added": 0, no note: session 48); now its first note.
    code, out, err = run_cli(capsys, *args, "--trials", "40", "--sampler", "random", "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["trials_added"] == 0
    assert report["notes"][0].startswith("nothing to add: the study holds 40 trials, at least the 40 --trials")


def test_cli_exhaustive_search_says_how_many_configurations_it_left_out(tmp_path: Path, capsys) -> None:
    """Mixtral at tp [2, 4] x dp [1, 3] on H100s: tp 4 x dp 3 is one MoE instance over 12 GPUs
    (its DP ranks share the expert layers; 8-GPU nodes), which no H100 deployment offers. The
    exhaustive search added 3 trials and said the study held "every configuration of the space";
    now it says 1 of the 4 was left out, and why in a line ("left_out" in --json)."""
    spec = {
        "name": "left-out",
        "model": "mixtral-8x7b",
        "hardware": "h100-sxm",
        "workload": {"prompt_len": 1024, "gen_len": 128},
        "space": {"tp": [2, 4], "dp": [1, 3], "weight_bits": [16]},
        "serving": {"mode": "aggregated", "request_rate": [4]},
        "objectives": [{"metric": "serving.tokens_per_s_per_chip"}, {"metric": "serving.tokens_per_s_per_user"}],
        "backend": "vllm",
        "sampler": "exhaustive",
        "trials": 100,
    }
    path = tmp_path / "left-out.yaml"
    path.write_text(yaml.safe_dump(spec), encoding="utf-8")
    url = f"sqlite:///{tmp_path / 'left-out.db'}"
    code, out, err = run_cli(capsys, "search", str(path), "--storage", url, "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["trials_added"] == 3 and report["left_out"] == 1
    assert any(
        n.startswith("1 of the space's 4 configurations were left out as structurally invalid") for n in report["notes"]
    )


# A timeout that has passed at the first check (a nanosecond): the search stops there, before any
# batch, whatever the sampler; each sampler and format checks the timeout in its own loop.
TIMEOUT_PASSED_S = 1e-9


@pytest.mark.parametrize(
    "sampler, compact_format",
    [("random", True), ("tpe", True), ("nsga2", True), ("exhaustive", True), ("tpe", False), ("exhaustive", False)],
)
def test_a_search_stopped_by_its_timeout_says_so(
    url: str, monkeypatch: pytest.MonkeyPatch, sampler: str, compact_format: bool
) -> None:
    """Before, a search cut by ``timeout_s`` returned what a finished one did (interrupted False,
    nothing else): a caller could not tell a budget done from a timeout."""
    if not compact_format:
        from tuner import compact

        monkeypatch.setattr(compact, "compact_possible", lambda sizes: False)  # the whole (older) format
    result = run_search(spec_dict(), url, trials=50, sampler=sampler, timeout_s=TIMEOUT_PASSED_S)
    assert result.timed_out is True
    assert result.interrupted is False  # a signal, not a timeout
    assert result.trials_added == 0


@pytest.mark.parametrize("sampler", ["random", "tpe", "nsga2", "exhaustive"])
def test_a_search_that_finishes_its_budget_within_the_timeout_did_not_time_out(url: str, sampler: str) -> None:
    result = run_search(spec_dict(), url, trials=30, sampler=sampler, timeout_s=600)
    assert result.trials_added == 30
    assert result.timed_out is False


def test_a_worker_done_with_its_share_within_the_timeout_did_not_time_out(url: str) -> None:
    result = run_worker(spec_dict(sampler="exhaustive"), url, share=20, timeout_s=600)
    assert result.trials_added >= 20
    assert result.timed_out is False


def test_search_says_it_stopped_at_the_timeout(tmp_path: Path, url: str, capsys) -> None:
    """Text: one line saying where it stopped and how to go on; JSON: ``timed_out``; exit 0 (the
    stop was asked for), ``interrupted`` stays False (that is a signal)."""
    spec_path = str(write_spec(tmp_path, spec_dict()))
    code, out, err = run_cli(capsys, "search", spec_path, "--storage", url, "--timeout", "1e-9")
    assert code == 0, err
    lines = [line for line in err.splitlines() if "--timeout" in line]
    assert lines == ["stopped at --timeout 1e-09 s: 0 trials added, the study holds 0; run the same command to resume"]
    code, out, err = run_cli(capsys, "search", spec_path, "--storage", url, "--timeout", "1e-9", "--json")
    assert code == 0, err
    data = json.loads(out)
    assert data["timed_out"] is True and data["interrupted"] is False
    # Resumed with time enough, the budget is done: no timeout said.
    code, out, err = run_cli(capsys, "search", spec_path, "--storage", url, "--trials", "20", "--timeout", "600")
    assert code == 0, err
    assert "--timeout" not in out + err
    code, out, err = run_cli(
        capsys, "search", spec_path, "--storage", url, "--trials", "25", "--timeout", "600", "--json"
    )
    assert code == 0, err
    data = json.loads(out)
    assert data["timed_out"] is False and data["trials_added"] == 5
