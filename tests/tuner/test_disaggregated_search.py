"""Disaggregated serving as a search mode: ``serving.mode: both`` makes aggregated vs
disaggregated a dimension, with a prefill instance's mesh and each pool's instances. A stored
disaggregated trial re-scored by calling ``serve_disaggregated`` directly on what it stored gives
its objective values; export writes one engine per pool."""

from __future__ import annotations

import json

import numpy as np
import optuna
import pytest

from cli_helpers import assert_one_error_line, run_cli
from cost_models.calibration import resolve_calibration
from cost_models.deployments import Deployment, Deployments
from cost_models.disaggregated import serve_disaggregated
from cost_models.serving import make_workloads
from search_spaces.space import compile_study, evaluate, structurally_valid
from search_spaces.spec import parse_spec
from tuner.constraints import is_feasible
from tuner.pareto import load_study
from tuner.study import run_search

pytestmark = pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")

STUDY: dict = {
    "name": "disagg-e2e",
    "model": "llama-3-70b",
    "hardware": "h100-sxm",
    "workload": {"prompt_len": 2048, "gen_len": 256},
    "space": {"chips": [4, 8], "mesh": ["4x1x1", "8x1x1"], "weight_bits": ["fp8"]},
    "serving": {
        "mode": "both",
        "request_rate": [2.0, 8.0],
        "prefill_chips": [4],
        "prefill_instances": [1, 2],
        "decode_instances": [1, 2],
    },
    "objectives": [{"metric": "serving.tokens_per_s_per_chip"}, {"metric": "serving.ttft_s"}],
    "constraints": {"fits": True, "max_tpot_s": 0.1},
    "backend": "trtllm",
    "sampler": "exhaustive",
    "trials": 10000,
}


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> tuple[str, optuna.Study]:
    url = f"sqlite:///{tmp_path_factory.mktemp('disagg')}/disagg.db"
    result = run_search(json.loads(json.dumps(STUDY)), url)
    compiled = compile_study(parse_spec(json.loads(json.dumps(STUDY))))
    space = compiled.space
    pool_choices = len(space.dimensions["prefill_mesh"]) * 2 * 2  # every legal mesh of 4 H100s x xP x yD
    assert space.dimensions["disaggregated"] == (False, True)
    # 2 decode meshes x 2 rates: every pool choice disaggregated, one (1P1D's slot) aggregated.
    assert int(structurally_valid(compiled, space.all_indices()).sum()) == 2 * 2 * (pool_choices + 1)
    assert result.trials_added == 2 * 2 * (pool_choices + 1)
    return url, load_study(STUDY["name"], url)


def _rescored(trial, profile):
    """A stored disaggregated trial scored again by calling serve_disaggregated on what it stored:
    the decode instance's deployment, the prefill instance's on its mesh, the engine knobs."""
    decode, row = Deployment.from_dict(trial.user_attrs["deployment"]), trial.user_attrs["serving"]
    prefill = Deployment.from_dict({**trial.user_attrs["deployment"], "mesh": row["prefill_mesh"]})
    pools = ("concurrency", "mode", "prefill_mesh", "prefill_instances", "decode_instances", "engine")
    return serve_disaggregated(
        Deployments.from_rows([prefill]),
        Deployments.from_rows([decode]),
        make_workloads(backend=row["engine"], **{k: v for k, v in row.items() if k not in pools}),
        prefill_instances=row["prefill_instances"],
        decode_instances=row["decode_instances"],
        calibration=profile,
    )


def test_aggregated_candidates_do_not_vary_pools_they_do_not_have(study) -> None:
    _, s = study
    aggregated = [t for t in s.get_trials(deepcopy=False) if not t.params["disaggregated"]]
    assert len(aggregated) == 2 * 2
    for trial in aggregated:
        assert trial.params["prefill_instances"] == 1 and trial.params["decode_instances"] == 1
        assert trial.user_attrs["serving"]["mode"] == "aggregated"


def test_a_disaggregated_trial_rescored_directly(study) -> None:
    _, s = study
    trials = [
        t for t in s.get_trials(deepcopy=False) if t.user_attrs["serving"]["mode"] == "disaggregated" and is_feasible(t)
    ]
    assert trials, "no feasible disaggregated trial"
    profile = resolve_calibration(s.user_attrs["calibration_profile"], "h100-sxm")
    for trial in trials[:4]:
        decode, row = Deployment.from_dict(trial.user_attrs["deployment"]), trial.user_attrs["serving"]
        est = _rescored(trial, profile)
        chips = row["prefill_instances"] * int(np.prod(row["prefill_mesh"])) + row["decode_instances"] * decode.chips
        assert est.chips[0] == chips
        assert trial.values == pytest.approx([est.tokens_per_s_per_chip[0], est.ttft_s[0]])
        assert trial.user_attrs["estimate"]["serving"]["mode"] == "disaggregated"
        assert trial.user_attrs["estimate"]["serving"]["prefill_instances"] == row["prefill_instances"]


def test_static_sections_describe_the_pools_a_disaggregated_candidate_runs() -> None:
    """A disaggregated candidate's deployment is one decode instance's; its static prefill
    section was scored on that decode mesh at every client's prompt at once (llama-3-70b, 4
    decode + 8 prefill H100s, 128 clients: prefill 9.5 s where the prefill pool's iteration takes
    0.19 s). Now the prefill section is the prefill instance's at the prompts one of its iterations
    takes, and the decode section one decode instance's at its running sequences: each agrees with
    the steady state's own iteration of that pool (a separate model: serve_disaggregated)."""
    spec = {
        **STUDY,
        "space": {"chips": [4], "mesh": ["4x1x1"], "weight_bits": ["fp8"]},
        "serving": {
            "mode": "disaggregated",
            "concurrency": [64, 128],
            "prefill_chips": [8],
            "prefill_instances": [1],
            "decode_instances": [1, 2],
        },
    }
    compiled = compile_study(parse_spec(spec))
    evaluation = evaluate(compiled, compiled.space.all_indices())
    pools = evaluation.pools
    assert pools is not None and pools.estimate is not None
    rows = np.flatnonzero(pools.disaggregated & evaluation.valid)
    assert rows.size >= 4  # 2 loads x 2 decode pools x the prefill meshes of 8 GPUs
    where = np.searchsorted(np.flatnonzero(pools.disaggregated), rows)
    result = evaluation.result
    stable = pools.estimate.stable[where]
    assert stable.all()
    # The prefill pool's iteration (2048-token prompts, a token budget of several) and one of its
    # static prefills at that many prompts, rounded to whole ones (2.5 prompts -> 2 or 3): the
    # same work on the same 8 GPUs, up to the rounding.
    np.testing.assert_allclose(result.prefill.latency_s[rows], pools.estimate.prefill_iteration_s[where], rtol=0.25)
    step = result.decode_step_latency_s[rows]
    np.testing.assert_allclose(step, pools.estimate.decode_iteration_s[where], rtol=0.1)
    # One decode instance's running sequences, not every client's.
    per_instance = pools.estimate.running[where] / pools.decode_instances[rows]
    np.testing.assert_array_equal(evaluation.deployments.batch[rows], np.maximum(np.round(per_instance), 1.0))


def test_export_writes_one_engine_per_pool(study, capsys: pytest.CaptureFixture[str]) -> None:
    url, s = study
    trial = next(
        t for t in s.get_trials(deepcopy=False) if t.user_attrs["serving"]["mode"] == "disaggregated" and is_feasible(t)
    )
    code, out, err = run_cli(
        capsys, "export", STUDY["name"], "--storage", url, "--trial", str(trial.number), "--format", "vllm"
    )
    assert code == 0, err
    data = json.loads(out)
    assert data["mode"] == "disaggregated"
    assert data["prefill"]["instances"] == trial.user_attrs["serving"]["prefill_instances"]
    assert "--tensor-parallel-size 4" in data["prefill"]["cli"]
    assert data["decode"]["instances"] == trial.user_attrs["serving"]["decode_instances"]


def test_export_launches_each_pool_where_its_router_sends(study, capsys: pytest.CaptureFixture[str]) -> None:
    """The router of a disaggregated export names each pool's instances by host and port (vLLM's
    toy_proxy_server --prefiller-ports 8100 / --decoder-ports 8200; TensorRT-LLM's disagg_config
    urls PREFILL_i:8001 / DECODE_i:8002), so each pool's launch line must listen there: before,
    the lines had no --port (vLLM and trtllm-serve then listen on 8000, the router's own port) and
    trtllm-serve bound localhost (its --host default), which the router on another host cannot
    reach; only a note said to add them."""
    url, s, trial, args = _disaggregated_export(study)
    code, out, err = run_cli(capsys, *args, "--format", "vllm")
    assert code == 0, err
    data = json.loads(out)
    assert "--prefiller-ports 8100" in data["router"]["cli"] and "--decoder-ports 8200" in data["router"]["cli"]
    assert "--port 8100" in data["prefill"]["cli"] and data["prefill"]["engine_args"]["port"] == 8100
    assert "--port 8200" in data["decode"]["cli"] and data["decode"]["engine_args"]["port"] == 8200
    code, out, err = run_cli(capsys, *args, "--format", "trtllm")
    assert code == 0, err
    data = json.loads(out)
    config = data["router"]["disagg_config"]
    assert all(url.endswith(":8001") for url in config["context_servers"]["urls"])
    assert all(url.endswith(":8002") for url in config["generation_servers"]["urls"])
    assert "--host 0.0.0.0 --port 8001" in data["prefill"]["cli"]
    assert "--host 0.0.0.0 --port 8002" in data["decode"]["cli"]
    # SGLang's router names PREFILL_i:30000 / DECODE_i:30001 (its PD guide's ports: both pools
    # kept the default 30000 before, so a prefill and a decode instance could not share a host),
    # and SGLang binds 127.0.0.1 by default (server_args.py host): each pool listens on every interface.
    code, out, err = run_cli(capsys, *args, "--format", "sglang")
    assert code == 0, err
    data = json.loads(out)
    assert "http://PREFILL_0:30000" in data["router"]["cli"] and "http://DECODE_0:30001" in data["router"]["cli"]
    assert "--port 30000" in data["prefill"]["cli"] and data["prefill"]["engine_args"]["port"] == 30000
    assert "--port 30001" in data["decode"]["cli"] and data["decode"]["engine_args"]["port"] == 30001
    assert data["prefill"]["engine_args"]["host"] == data["decode"]["engine_args"]["host"] == "0.0.0.0"
    assert "--host 0.0.0.0" in data["prefill"]["cli"] and "--host 0.0.0.0" in data["decode"]["cli"]
    # An aggregated trial's engine keeps the engine's own port (no router of ours names one), and
    # listens on every interface (a replica behind a load balancer): vLLM by its own default.
    aggregated = next(t for t in s.get_trials(deepcopy=False) if t.user_attrs["serving"]["mode"] == "aggregated")
    args = ("export", STUDY["name"], "--storage", url, "--trial", str(aggregated.number), "--allow-infeasible")
    for fmt in ("vllm", "sglang", "trtllm"):
        code, out, err = run_cli(capsys, *args, "--format", fmt)
        assert code == 0, err
        cli = json.loads(out)["cli"]
        assert "--port" not in cli and ("--host 0.0.0.0" in cli) == (fmt != "vllm") and cli.count("--host") <= 1


def test_export_names_each_sglang_pools_role(study, capsys: pytest.CaptureFixture[str]) -> None:
    """SGLang serves a pool of a prefill/decode split only when told its role: --disaggregation-mode
    prefill or decode (python/sglang/srt/server_args.py; its default "null" is an ordinary server
    that prefills and decodes, which no PD router pairs). The pools were exported without it."""
    url, s = study
    trial = next(
        t for t in s.get_trials(deepcopy=False) if t.user_attrs["serving"]["mode"] == "disaggregated" and is_feasible(t)
    )
    code, out, err = run_cli(
        capsys, "export", STUDY["name"], "--storage", url, "--trial", str(trial.number), "--format", "sglang"
    )
    assert code == 0, err
    data = json.loads(out)
    assert "--disaggregation-mode prefill" in data["prefill"]["cli"]
    assert "--disaggregation-mode decode" in data["decode"]["cli"]
    aggregated = next(t for t in s.get_trials(deepcopy=False) if t.user_attrs["serving"]["mode"] == "aggregated")
    args = ("export", STUDY["name"], "--storage", url, "--trial", str(aggregated.number), "--allow-infeasible")
    code, out, err = run_cli(capsys, *args, "--format", "sglang")
    assert code == 0, err
    assert "--disaggregation-mode" not in json.loads(out)["cli"]


def test_export_gives_the_prefill_pool_the_tp_it_was_scored_on(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    """A prefill instance is scored on the prefill mesh; its engine arguments run that TP, not the
    decode instances'. Decode on 1x1x4 (Megatron TP 4) with 2-chip prefill instances: the
    prefill pool was exported with --tensor-parallel-size 4 (tp_size 4), the decode mesh's."""
    spec = json.loads(json.dumps(STUDY))
    spec["name"] = "disagg-tp"
    spec["space"] = {
        "chips": [4],
        "mesh": ["1x1x4"],
        "prefill_ffn_layout": ["ws_1d"],
        "decode_ffn_layout": ["ws_1d"],
        "flash_attention": [True],
        "weight_bits": ["fp8"],
    }
    spec["serving"] = {"mode": "disaggregated", "request_rate": [2.0], "prefill_chips": [2]}
    url = f"sqlite:///{tmp_path}/tp.db"
    run_search(spec, url)
    s = load_study("disagg-tp", url)
    trial = next(t for t in s.get_trials(deepcopy=False) if t.user_attrs["serving"]["prefill_mesh"] == [1, 1, 2])
    args = ("export", "disagg-tp", "--storage", url, "--trial", str(trial.number), "--allow-infeasible")
    code, out, err = run_cli(capsys, *args, "--format", "vllm")
    assert code == 0, err
    data = json.loads(out)
    assert data["prefill"]["engine_args"]["tensor_parallel_size"] == 2
    assert data["decode"]["engine_args"]["tensor_parallel_size"] == 4
    code, out, err = run_cli(capsys, *args, "--format", "trtllm")
    assert code == 0, err
    data = json.loads(out)
    assert data["prefill"]["engine_args"]["tp_size"] == 2 and data["decode"]["engine_args"]["tp_size"] == 4


def test_pareto_shows_the_pools_its_per_chip_metrics_count(study, capsys: pytest.CaptureFixture[str]) -> None:
    """A disaggregated trial's tokens/s per chip counts every pool's chips; pareto's table and CSV
    name the pools (prefill mesh, xP, yD) beside a decode instance's mesh and the deployment's
    chips, so the row adds up (it showed chips 4 and 170.7 tokens/s/chip for 4 req/s x 256 tokens
    over 6 chips); an aggregated trial of mode both shows none (its stored pool choices are
    placeholders)."""
    url, s = study
    code, out, err = run_cli(capsys, "pareto", STUDY["name"], "--storage", url, "--csv")
    assert code == 0, err
    lines = out.strip().splitlines()
    header = lines[0].split(",")
    assert {"prefill_mesh", "prefill_instances", "decode_instances"} <= set(header)
    checked = 0
    for line in lines[1:]:
        row = dict(zip(header, line.split(","), strict=True))
        trial = s.trials[int(row["trial"])]
        pools = trial.user_attrs["serving"]
        if pools["mode"] != "disaggregated":  # mode both: an aggregated trial has no pools to show
            assert row["prefill_mesh"] == row["prefill_instances"] == row["decode_instances"] == ""
            continue
        checked += 1
        prefill_chips = int(np.prod(pools["prefill_mesh"]))
        decode_chips = int(np.prod([int(a) for a in row["mesh"].split("x")]))
        chips = prefill_chips * pools["prefill_instances"] + decode_chips * pools["decode_instances"]
        assert int(row["chips"]) == chips
        assert row["prefill_mesh"] == "x".join(map(str, pools["prefill_mesh"]))
        rate, gen = trial.params["request_rate"], STUDY["workload"]["gen_len"]
        assert float(row["serving.tokens_per_s_per_chip"]) == pytest.approx(rate * gen / chips)
    assert checked


@pytest.mark.parametrize(("fmt", "budget_arg"), [("trtllm", "max_num_tokens"), ("sglang", "max_prefill_tokens")])
def test_export_gives_the_decode_pool_the_token_budget_it_was_scored_with(
    study, capsys: pytest.CaptureFixture[str], fmt: str, budget_arg: str
) -> None:
    """A decode instance is scored with a decode-only iteration's activations, at most
    max_batch_size tokens (cost_models.disaggregated._DecodeModel); its engines size that
    reserve by their token budget, so the decode pool is exported with that budget (it was
    given the trial's 8,192-token prefill budget, whose larger reserve leaves less KV cache than
    scored); the prefill pool keeps the trial's. (vLLM without chunked prefill, as here, raises
    any budget below max_model_len, with a note: its own rule, tested in test_export.)"""
    url, s = study
    trial = next(
        t for t in s.get_trials(deepcopy=False) if t.user_attrs["serving"]["mode"] == "disaggregated" and is_feasible(t)
    )
    row = trial.user_attrs["serving"]
    assert row["max_batch_size"] < row["max_num_tokens"]  # else the two budgets are one
    code, out, err = run_cli(
        capsys, "export", STUDY["name"], "--storage", url, "--trial", str(trial.number), "--format", fmt
    )
    assert code == 0, err
    data = json.loads(out)
    assert data["prefill"]["engine_args"][budget_arg] == row["max_num_tokens"]
    assert data["decode"]["engine_args"][budget_arg] == row["max_batch_size"]


def test_export_does_not_say_trtllm_refuses_the_decode_pools_prompts(
    tmp_path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without chunked prefill (TensorRT-LLM's default) TensorRT-LLM refuses prompts over
    max_num_tokens, but not a decode pool's generation-only requests, whose prompt's KV cache
    arrives from the prefill pool (llmapi/llm.py, _check_arguments: "Skip check for gen-only
    requests"): the decode pool's 64-token budget gets no such note, the prefill pool's would."""
    spec = json.loads(json.dumps(STUDY))
    spec["name"] = "disagg-budget"
    spec["space"] = {"chips": [4], "mesh": ["1x1x4"], "weight_bits": ["fp8"]}
    spec["serving"] = {"mode": "disaggregated", "request_rate": [2.0], "prefill_chips": [4], "max_batch_size": [64]}
    url = f"sqlite:///{tmp_path}/budget.db"
    run_search(spec, url)
    trial = load_study("disagg-budget", url).trials[0]
    assert trial.user_attrs["serving"]["chunked_prefill"] is False
    args = ("export", "disagg-budget", "--storage", url, "--trial", str(trial.number), "--allow-infeasible")
    code, out, err = run_cli(capsys, *args, "--format", "trtllm")
    assert code == 0, err
    data = json.loads(out)
    assert data["decode"]["engine_args"]["max_num_tokens"] == 64
    assert not any("refuses prompts" in note for note in data["decode"]["notes"])


#: 1- and 2-chip decode instances of llama-3-8b with 1-chip prefill instances, 1 or 3 of them and
#: 1 or 4 decode instances: the chips objective ranked 3P + 4D as a 1-chip deployment.
CHIPS_STUDY: dict = {
    "name": "disagg-chips",
    "model": "llama-3-8b",
    "hardware": "h100-sxm",
    "workload": {"prompt_len": 2048, "gen_len": 256},
    "space": {
        "chips": [1, 2],
        "mesh": ["1x1x1", "1x1x2"],
        "prefill_ffn_layout": ["ws_1d"],
        "decode_ffn_layout": ["ws_1d"],
        "flash_attention": [True],
    },
    "serving": {
        "mode": "both",
        "prefill_chips": [1],
        "prefill_instances": [1, 3],
        "decode_instances": [1, 4],
        "request_rate": [4.0],
    },
    "objectives": [{"metric": "chips"}, {"metric": "serving.tokens_per_s_per_chip"}],
    "backend": "trtllm",
    "sampler": "exhaustive",
    "trials": 100,
}


@pytest.fixture(scope="module")
def chips_study(tmp_path_factory) -> tuple[str, optuna.Study]:
    url = f"sqlite:///{tmp_path_factory.mktemp('disagg-chips')}/chips.db"
    run_search(json.loads(json.dumps(CHIPS_STUDY)), url)
    return url, load_study(CHIPS_STUDY["name"], url)


def _pool_chips(trial) -> int:
    """Every chip a trial's deployment uses: a decode instance's (its mesh) alone when aggregated,
    else prefill instances x prefill chips + decode instances x decode chips."""
    decode = int(np.prod([int(a) for a in trial.params["mesh"].split("x")]))
    pools = trial.user_attrs["serving"]
    if pools["mode"] != "disaggregated":
        return decode
    return pools["prefill_instances"] * int(np.prod(pools["prefill_mesh"])) + pools["decode_instances"] * decode


def test_the_chips_objective_counts_every_pool(chips_study) -> None:
    """Trial 3 of the QA study (3 prefill + 4 decode instances of 1 chip) had objective chips 1
    beside estimate.serving.chips 7: the metric read one decode instance's mesh. Aggregated
    trials (mode both) keep their mesh's chips."""
    _, s = chips_study
    trials = s.get_trials(deepcopy=False)
    modes = {t.user_attrs["serving"]["mode"] for t in trials}
    assert modes == {"aggregated", "disaggregated"}
    seven = [t for t in trials if _pool_chips(t) == 7 and t.params["mesh"] == "1x1x1"]
    assert seven, "no 3P + 4D trial of 1-chip instances"
    for trial in trials:
        chips = _pool_chips(trial)
        assert trial.values[0] == chips, (trial.number, trial.params)
        serving = trial.user_attrs["estimate"]["serving"]
        if serving["mode"] == "disaggregated":
            assert serving["chips"] == chips
        assert trial.user_attrs["estimate"]["params"]["chips"] == chips  # what tuner show prints


def test_pareto_and_show_print_every_pools_chips(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    """pareto's table, CSV and JSON and show's estimate: the chips column is the deployment's
    (every pool), the mesh column a decode instance's, so a row adds up without another column.
    Disaggregated only, fewest chips against TTFT: the front is 1P1D (2 chips) and 3P1D (4 chips)
    of 1-chip instances, where it was 3P1D alone, as a 1-chip deployment."""
    spec = json.loads(json.dumps(CHIPS_STUDY))
    spec["name"] = "disagg-chips-front"
    spec["serving"]["mode"] = "disaggregated"
    spec["objectives"] = [{"metric": "chips"}, {"metric": "serving.ttft_s"}]
    url = f"sqlite:///{tmp_path}/front.db"
    run_search(spec, url)
    s = load_study(spec["name"], url)
    name = spec["name"]
    code, out, err = run_cli(capsys, "pareto", name, "--storage", url, "--csv")
    assert code == 0, err
    lines = out.strip().splitlines()
    header = lines[0].split(",")
    csv_chips = {}
    assert header.count("chips") == 2  # the configuration's column, then the objective's
    for line in lines[1:]:
        cells = line.split(",")
        row = dict(zip(header, cells, strict=True))
        trial = s.trials[int(row["trial"])]
        chips = [float(v) for h, v in zip(header, cells, strict=True) if h == "chips"]
        assert chips == [_pool_chips(trial)] * 2
        assert row["mesh"] == trial.params["mesh"]  # a decode instance's
        csv_chips[trial.number] = _pool_chips(trial)
    assert sorted(csv_chips.values()) == [2, 4]
    code, out, err = run_cli(capsys, "pareto", name, "--storage", url, "--json")
    assert code == 0, err
    assert {row["trial"]: row["params"]["chips"] for row in json.loads(out)} == csv_chips
    code, out, err = run_cli(capsys, "pareto", name, "--storage", url)
    assert code == 0, err
    table = [line.split() for line in out.splitlines() if line.split() and line.split()[0].isdigit()]
    assert {int(cells[0]): int(cells[1]) for cells in table} == csv_chips  # trial, chips, ...
    trial = next(t for t in s.trials if _pool_chips(t) == 4)
    code, out, err = run_cli(capsys, "show", name, str(trial.number), "--storage", url)
    assert code == 0, err
    shown = json.loads(out)
    assert shown["objectives"]["chips"] == 4
    assert shown["estimate"]["params"]["chips"] == 4 == shown["estimate"]["serving"]["chips"]


#: The space `tuner init --serving` writes (the engines' vocabulary, tp only), disaggregated.
TP_STUDY: dict = {
    "name": "disagg-tp-space",
    "model": "llama-3-8b",
    "hardware": "h100-sxm",
    "workload": {"prompt_len": 2048, "gen_len": 256},
    "space": {"tp": [1, 2], "weight_bits": ["fp8"]},
    "serving": {"mode": "both", "request_rate": [4.0], "prefill_instances": [1, 2]},
    "objectives": [{"metric": "chips"}, {"metric": "serving.ttft_s"}],
    "backend": "trtllm",
    "sampler": "exhaustive",
    "trials": 100,
}


def test_a_tp_space_searches_disaggregated_pools(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    """A tp space with serving.mode disaggregated or both was refused: "the serving model charges
    tensor parallelism only; search pp/ep/dp/micro_batches without a serving: section", though
    only tp was given. The pools are TP groups: a prefill instance is TP prefill_chips (default:
    the tp choices), a decode instance the trial's tp. 2 tp x (1 aggregated + 2 prefill TPs x 2
    xP) candidates; each disaggregated trial rescored directly, shown with every pool's chips and
    exported with each pool's TP."""
    spec = json.loads(json.dumps(TP_STUDY))
    url = f"sqlite:///{tmp_path}/tp.db"
    compiled = compile_study(parse_spec(json.loads(json.dumps(spec))))
    assert compiled.space.dimensions["prefill_mesh"] == ("1x1x1", "1x1x2")
    result = run_search(spec, url)
    assert result.trials_added == 2 * (1 + 2 * 2)
    s = load_study(spec["name"], url)
    profile = resolve_calibration(s.user_attrs["calibration_profile"], "h100-sxm")
    disaggregated = [t for t in s.trials if t.user_attrs["serving"]["mode"] == "disaggregated"]
    assert len(disaggregated) == 2 * 2 * 2
    for trial in disaggregated:
        row = trial.user_attrs["serving"]
        assert Deployment.from_dict(trial.user_attrs["deployment"]).mesh == (1, 1, trial.params["tp"])
        est = _rescored(trial, profile)
        chips = row["prefill_instances"] * row["prefill_mesh"][2] + trial.params["tp"]
        assert est.chips[0] == chips
        assert trial.values == pytest.approx([chips, est.ttft_s[0]])
    trial = next(t for t in disaggregated if t.params["tp"] == 1 and t.user_attrs["serving"]["prefill_mesh"][2] == 2)
    code, out, err = run_cli(capsys, "show", spec["name"], str(trial.number), "--storage", url)
    assert code == 0, err
    shown = json.loads(out)
    assert shown["estimate"]["params"]["chips"] == shown["estimate"]["serving"]["chips"] == trial.values[0]
    args = ("export", spec["name"], "--storage", url, "--trial", str(trial.number), "--allow-infeasible")
    code, out, err = run_cli(capsys, *args, "--format", "vllm")
    assert code == 0, err
    data = json.loads(out)
    assert data["mode"] == "disaggregated"
    assert data["prefill"]["engine_args"]["tensor_parallel_size"] == 2
    assert data["decode"]["engine_args"]["tensor_parallel_size"] == 1
    assert data["prefill"]["instances"] == trial.user_attrs["serving"]["prefill_instances"]


def test_a_tp_space_refuses_a_prefill_tp_the_heads_do_not_divide(tmp_path) -> None:
    """A prefill instance is a TP group as a decode instance is: a TP no GPU engine launches (32
    heads over 3 GPUs) is an infeasible trial, as the decode pool's tp 3 would be."""
    spec = json.loads(json.dumps(TP_STUDY))
    spec["serving"] = {"mode": "disaggregated", "request_rate": [4.0], "prefill_chips": [2, 3]}
    compiled = compile_study(parse_spec(spec))
    indices = compiled.space.all_indices()
    valid = structurally_valid(compiled, indices)
    prefill_tp = compiled.space.values["prefill_mesh"][indices["prefill_mesh"], 2]
    assert list(valid) == list(prefill_tp != 3)


@pytest.mark.parametrize("degree", ["pp", "micro_batches"])
def test_a_tp_space_under_load_names_the_degree_the_serving_model_does_not_charge(
    tmp_path, degree: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Beyond tp, ep and dp the serving model charges nothing, in either mode: the error names
    the degree (dp was refused here too before the pools had DP ranks: test_disaggregated_dp_ep_search)."""
    spec = json.loads(json.dumps(TP_STUDY))
    spec["space"][degree] = [1, 2]
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(spec))
    code, out, err = run_cli(capsys, "search", str(path), "--storage", f"sqlite:///{tmp_path}/x.db")
    line = assert_one_error_line(code, out, err, (f"space.{degree}",))
    assert "serving.mode" not in line


def _gpu_pools_spec(layouts: list[str], shardings: tuple[str, ...] = ("head",)) -> dict:
    """llama-3-8b decode instances on 1x1x2, 4-chip prefill instances on an H100 (a mesh space)."""
    return {
        "name": "disagg-prefill-mesh",
        "model": "llama-3-8b",
        "hardware": "h100-sxm",
        "workload": {"prompt_len": 2048, "gen_len": 256},
        "space": {
            "chips": [2],
            "mesh": ["1x1x2"],
            "prefill_ffn_layout": layouts,
            "decode_ffn_layout": ["ws_1d"],
            "prefill_attn_sharding": list(shardings),
            "flash_attention": [True],
        },
        "serving": {
            "mode": "disaggregated",
            "request_rate": [2.0, 8.0],
            "prefill_chips": [4],
            "prefill_instances": [1, 2],
        },
        "objectives": [{"metric": "chips"}, {"metric": "serving.ttft_s"}],
        "backend": "trtllm",
        "sampler": "exhaustive",
        "trials": 1000,
    }


def test_a_gpu_ws_1d_prefill_pool_is_one_tp_group_not_six_meshes(tmp_path) -> None:
    """prefill_chips [4] on an H100 gave every legal mesh of 4 chips (1x1x4, 1x2x2, 1x4x1, 2x1x2,
    2x2x1, 4x1x1): under ws_1d (Megatron TP) they score identically and all export as
    --tensor-parallel-size 4, six copies of one deployment on the front. Now 1x1x4 alone:
    2 rates x 2 xP = 4 candidates, not 24. Batch-sharded attention splits the KV cache by the
    mesh's axes (llama-3-70b's batch 16 on 32 H100s: 1.4 GB of KV per chip on 1x1x32, 0.36 GB on
    1x2x16), so a space with it keeps every mesh, and its head-sharded candidates on a mesh other
    than 1x1x4 are structurally invalid twins: 4 + 6 x 4 valid candidates of 48."""
    spec = _gpu_pools_spec(["ws_1d"])
    compiled = compile_study(parse_spec(json.loads(json.dumps(spec))))
    assert compiled.space.dimensions["prefill_mesh"] == ("1x1x4",)
    assert compiled.space.size == 2 * 2
    result = run_search(spec, f"sqlite:///{tmp_path}/ws1d.db")
    assert result.trials_added == 4
    both = compile_study(parse_spec(_gpu_pools_spec(["ws_1d"], ("head", "batch"))))
    assert len(both.space.dimensions["prefill_mesh"]) == 6
    valid = structurally_valid(both, both.space.all_indices())
    assert both.space.size == 48 and int(valid.sum()) == 4 + 6 * 4


def test_pope_prefill_layouts_keep_the_mesh_and_ws_1d_keeps_one_of_them() -> None:
    """Under ws_2d the prefill mesh changes the score (its 2D weight split follows the axes), so a
    space with ws_2d keeps every mesh of 4 chips; its ws_1d candidates on a mesh other than 1x1x4
    score exactly as on 1x1x4 (checked here, every steady-state column) and are structurally
    invalid twins where attention is head-sharded (batch-sharded attention keeps every mesh):
    2 rates x 2 xP x (6 ws_2d meshes x 2 shardings + 1 ws_1d head + 6 ws_1d batch) valid."""
    compiled = compile_study(parse_spec(_gpu_pools_spec(["ws_1d", "ws_2d"], ("head", "batch"))))
    space = compiled.space
    assert len(space.dimensions["prefill_mesh"]) == 6
    indices = space.all_indices()
    valid = structurally_valid(compiled, indices)
    assert int(valid.sum()) == 2 * 2 * (6 * 2 + 1 + 6)
    evaluation = evaluate(compiled, indices)
    est = evaluation.pools.estimate
    layout = np.array(space.dimensions["prefill_ffn_layout"])[indices["prefill_ffn_layout"]]
    mesh = np.array(space.dimensions["prefill_mesh"])[indices["prefill_mesh"]]
    sharding = np.array(space.dimensions["prefill_attn_sharding"])[indices["prefill_attn_sharding"]]
    assert list(valid) == list((layout == "ws_2d") | (mesh == "1x1x4") | (sharding == "batch"))
    others = [name for name in space.dimensions if name != "prefill_mesh"]
    keys = np.stack([indices[name] for name in others], axis=1)
    columns = ("ttft_s", "tpot_s", "tokens_per_s", "prefill_capacity_rps", "prefill_iteration_s", "kv_transfer_s")
    spread = {"ws_1d": 0.0, "ws_2d": 0.0}
    for key in np.unique(keys, axis=0):
        rows = np.flatnonzero(np.all(keys == key, axis=1))
        for name in columns:
            values = getattr(est, name)[rows]
            spread[str(layout[rows[0]])] = max(spread[str(layout[rows[0]])], float(np.ptp(values) / values.min()))
    assert spread["ws_1d"] == 0.0  # identical: one deployment
    assert spread["ws_2d"] > 0.01  # the mesh matters


def test_a_study_stored_under_the_six_mesh_space_is_refused_not_misread(
    tmp_path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A compact trial stores its position in the space's product: a study searched when a ws_1d
    GPU prefill pool had six meshes would have each position read as another configuration of
    the one-mesh space. Reading or resuming it is a one-line error (exit 2) instead."""
    from search_spaces import space as space_module
    from tuner import compact

    spec = _gpu_pools_spec(["ws_1d"])
    url = f"sqlite:///{tmp_path}/old.db"
    with monkeypatch.context() as patched:  # the compiler before this change: every mesh kept
        patched.setattr(space_module, "_tp_mesh_twins", lambda meshes, choices: np.zeros(len(meshes), bool))
        assert run_search(json.loads(json.dumps(spec)), url).trials_added == 4 * 6
    compact._HYDRATORS.clear()
    code, out, err = run_cli(capsys, "pareto", spec["name"], "--storage", url)
    line = assert_one_error_line(code, out, err, ("study",))
    assert "24 configurations" in line and "compiles its spec to 4" in line
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(spec))
    code, out, err = run_cli(capsys, "search", str(path), "--storage", url)
    assert_one_error_line(code, out, err, ("study",))


def test_export_connects_the_pools_with_each_engines_kv_transfer(study, capsys: pytest.CaptureFixture[str]) -> None:
    """A prefill/decode split is one only when the engines move the KV cache between the pools:
    vLLM with a KV connector (--kv-transfer-config, NixlConnector with kv_role kv_both on both
    pools: docs.vllm.ai, NixlConnector Usage Guide), TensorRT-LLM with a cache transceiver in
    each server's LLM API options (cache_transceiver_config, its buffer at least the longest
    prompt, 2048 tokens here; the context servers without the overlap scheduler: TensorRT-LLM
    docs, Disaggregated Serving) and a `trtllm-serve disaggregated` router. The pools were
    exported without any: each launched instance prefilled and decoded its own requests."""
    url, s, trial, args = _disaggregated_export(study)
    code, out, err = run_cli(capsys, *args, "--format", "vllm")
    assert code == 0, err
    data = json.loads(out)
    for pool in ("prefill", "decode"):
        assert """--kv-transfer-config '{"kv_connector":"NixlConnector","kv_role":"kv_both"}'""" in data[pool]["cli"]
    assert "--prefiller-hosts" in data["router"]["cli"] and "--decoder-hosts" in data["router"]["cli"]
    code, out, err = run_cli(capsys, *args, "--format", "trtllm")
    assert code == 0, err
    data = json.loads(out)
    for pool in ("prefill", "decode"):
        transceiver = data[pool]["extra_llm_api_options"]["cache_transceiver_config"]
        assert transceiver["backend"] == "DEFAULT" and transceiver["max_tokens_in_buffer"] >= 2048
    assert data["prefill"]["extra_llm_api_options"]["disable_overlap_scheduler"] is True
    assert "disable_overlap_scheduler" not in data["decode"]["extra_llm_api_options"]
    router = data["router"]
    assert router["cli"] == "trtllm-serve disaggregated -c disagg_config.yaml"
    assert (
        router["disagg_config"]["context_servers"]["num_instances"] == trial.user_attrs["serving"]["prefill_instances"]
    )
    assert (
        router["disagg_config"]["generation_servers"]["num_instances"]
        == (trial.user_attrs["serving"]["decode_instances"])
    )
    code, out, err = run_cli(capsys, *args, "--format", "sglang")
    assert code == 0, err
    assert json.loads(out)["router"]["cli"].startswith("python -m sglang_router.launch_router --pd-disaggregation")
    aggregated = next(t for t in s.get_trials(deepcopy=False) if t.user_attrs["serving"]["mode"] == "aggregated")
    agg = ("export", STUDY["name"], "--storage", url, "--trial", str(aggregated.number), "--allow-infeasible")
    code, out, err = run_cli(capsys, *agg, "--format", "vllm")
    assert code == 0, err
    assert "--kv-transfer-config" not in json.loads(out)["cli"]
    code, out, err = run_cli(capsys, *agg, "--format", "trtllm")
    assert code == 0, err
    assert "cache_transceiver_config" not in json.loads(out)["extra_llm_api_options"]


def test_the_decode_pools_memory_knob_holds_the_cache_it_was_scored_with(
    study, capsys: pytest.CaptureFixture[str]
) -> None:
    """The study is scored under TensorRT-LLM's rule: 0.9 of the memory weights and activations
    leave. vLLM's gpu_memory_utilization is a share of all memory with weights and activations in
    it, so the same 0.9 gave the decode pool's vLLM less cache than scored; it gets the knob that
    holds the scored cache, above 0.9 (the export of an aggregated trial does the same,
    test_export_engines). The prefill pool keeps the number, with a note."""
    url, s = study
    trial = next(
        t for t in s.get_trials(deepcopy=False) if t.user_attrs["serving"]["mode"] == "disaggregated" and is_feasible(t)
    )
    assert trial.user_attrs["serving"]["memory_fraction"] == 0.9
    code, out, err = run_cli(
        capsys, "export", STUDY["name"], "--storage", url, "--trial", str(trial.number), "--format", "vllm"
    )
    assert code == 0, err
    data = json.loads(out)
    assert data["decode"]["engine_args"]["gpu_memory_utilization"] > 0.9
    assert any("not the trial's 0.9" in note for note in data["decode"]["notes"])
    assert data["prefill"]["engine_args"]["gpu_memory_utilization"] == 0.9
    assert any("its KV cache differs from the estimate's" in note for note in data["prefill"]["notes"])


def _disaggregated_export(study) -> tuple:
    """The study's URL and study, its first feasible disaggregated trial and the ``tuner export``
    arguments of that trial."""
    url, s = study
    trial = next(
        t for t in s.get_trials(deepcopy=False) if t.user_attrs["serving"]["mode"] == "disaggregated" and is_feasible(t)
    )
    return url, s, trial, ("export", STUDY["name"], "--storage", url, "--trial", str(trial.number))
