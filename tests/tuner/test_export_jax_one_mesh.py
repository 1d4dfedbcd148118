"""tuner export --format jax writes one x, y, z mesh's partition specs: a trial with pipeline
stages, expert or data parallelism has no axis there and is refused (one line naming the format
and the formats that express it). Before (session 39) a TP 4 x EP 16 x DP 4 trial of Qwen3-235B on
16 H200s came out as a 1x1x4 mesh, experts whole on every chip, with no word of the other 12."""

from __future__ import annotations

import json

import pytest

from cost_models.errors import InvalidInputError
from tuner.export import deployment_spec, export
from tuner.pareto import load_study
from tuner.study import run_search

pytestmark = pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")

SPEC = {
    "name": "jax-one-mesh",
    "model": "qwen3-235b-a22b",
    "hardware": "h200",
    "backend": "sglang",
    "workload": {"prompt_len": 512, "gen_len": 64},
    "space": {"tp": [4, 8], "ep": [1, 16], "dp": [1, 4], "batch": [64], "weight_bits": ["fp8"]},
    "objectives": [{"metric": "decode.step_latency_s"}, {"metric": "decode.cost_chip_s_per_token"}],
    "sampler": "exhaustive",
}


def test_jax_refuses_what_one_mesh_cannot_express_and_exports_the_rest(tmp_path) -> None:
    url = f"sqlite:///{tmp_path}/s.db"
    run_search(SPEC, url)
    study = load_study(SPEC["name"], url)
    by_degrees = {}
    for trial in study.get_trials(deepcopy=False):
        try:
            spec = deployment_spec(study, trial.number, allow_infeasible=True)
        except InvalidInputError:
            continue
        p = spec["parallel"]
        by_degrees.setdefault((p["tp"], p["ep"], p["dp"]), trial.number)
    refused = by_degrees[(4, 16, 4)]
    with pytest.raises(InvalidInputError) as info:
        export(study, refused, "jax", allow_infeasible=True)
    message = str(info.value)
    assert message.startswith("format:") and "EP 16 and DP 4 (16 chips)" in message and "--format json" in message
    plain = by_degrees[(4, 1, 1)]
    data = json.loads(export(study, plain, "jax", allow_infeasible=True))
    assert data["mesh_shape"] == [1, 1, 4]
