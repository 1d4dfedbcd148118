"""A multimodal config's vision encoder (its ``vision_config``) is loaded by the engines beside
the language model unless they run text-only, so its parameters are counted in the weight memory
(16-bit, split over the tensor-parallel group as the engines shard it) and the estimate says so;
they are not timed (text requests). Expected counts by hand from the fixtures' vision_config
(tests/fixtures/hf/gemma3.json: google/gemma-3-27b-it; llama4.json: Llama-4-Scout-17B-16E),
matrices only (biases, norms and Llama 4's class token left out, as in every count here)."""

import json
from pathlib import Path

import pytest

from cost_models.analysis import analyze_one
from cost_models.deployment import estimate, estimate_one
from cost_models.deployments import tensor_parallel
from cost_models.dtypes import BF16
from cost_models.errors import InvalidInputError
from cost_models.hardware import get_hardware
from cost_models.hf_config import model_from_hf_config
from cost_models.serving_simulation import simulate_one

FIXTURES = Path(__file__).parent.parent / "fixtures" / "hf"
H100 = get_hardware("h100-sxm")

# Gemma 3 27B's SigLIP (so400m): 27 blocks of 4 x 1152^2 (q, k, v, o) + 2 x 1152 x 4304 (fc1,
# fc2), the patch embedding 3 x 14^2 x 1152, (896 / 14)^2 = 4096 position embeddings x 1152, and
# mm_input_projection 1152 x 5376 (the text hidden size): 0.4227e9.
SIGLIP = 27 * (4 * 1152**2 + 2 * 1152 * 4304) + 3 * 14**2 * 1152 + 64**2 * 1152 + 1152 * 5376
# Llama 4 Scout's encoder: 34 blocks of 4 x 1408^2 + 2 x 1408 x 5632, patch 3 x 14^2 x 1408,
# (336 / 14)^2 + 1 = 577 positions x 1408, the pixel-shuffle MLP 5632 x 4096 + 4096 x 4096
# (projector_input_dim, projector_output_dim) and multi_modal_projector 4096 x 5120: 0.8713e9.
LLAMA4_VISION = (
    34 * (4 * 1408**2 + 2 * 1408 * 5632) + 3 * 14**2 * 1408 + 577 * 1408 + 5632 * 4096 + 4096 * 4096 + 4096 * 5120
)


def test_hand_arithmetic():
    assert SIGLIP == 422_659_584 and LLAMA4_VISION == 871_303_040


@pytest.mark.parametrize(("fixture", "expected"), [("gemma3", SIGLIP), ("llama4", LLAMA4_VISION)])
def test_vision_encoder_parameters_from_vision_config(fixture, expected):
    assert model_from_hf_config(FIXTURES / f"{fixture}.json").vision_params == expected


@pytest.mark.parametrize("tp", [1, 2])
def test_estimate_counts_them_in_the_weight_memory(tp):
    model = model_from_hf_config(FIXTURES / "gemma3.json")
    text_only = model.model_copy(update={"vision_params": 0})
    weights = [
        estimate(
            tensor_parallel(m, H100, tp, batch=1, prompt_len=1024, gen_len=128, weight_dtype=BF16), calibration=None
        ).memory.weights_bytes_per_chip[0]
        for m in (model, text_only)
    ]
    # 0.845 GB at 2 bytes, split over the TP group (vLLM's SigLIP layers are tensor-parallel)
    assert weights[0] - weights[1] == pytest.approx(SIGLIP * 2 / tp, rel=1e-9)


def test_analyze_counts_them_and_both_say_so():
    model = model_from_hf_config(FIXTURES / "llama4.json")
    kwargs = dict(phase="decode", batch=1, seq_len=1, calibration="none")
    with_vision = analyze_one(model, "h200", **kwargs)
    without = analyze_one(model.model_copy(update={"vision_params": 0}), "h200", **kwargs)
    more = with_vision["totals"]["memory_bytes"]["weights"] - without["totals"]["memory_bytes"]["weights"]
    assert more == pytest.approx(LLAMA4_VISION * 2, rel=1e-9)
    assert with_vision["totals"]["memory_bytes"]["total"] - without["totals"]["memory_bytes"]["total"] == (
        pytest.approx(more, rel=1e-9)
    )
    (note,) = [n for n in with_vision["notes"] if "vision encoder" in n]
    assert "0.87e9 parameters, 1.74 GB" in note and "--language-model-only" in note and "\n" not in note
    notes = estimate_one(model, "h200", tp=1, batch=1, prompt_len=1024, gen_len=128, calibration=None)["notes"]
    assert any("vision encoder" in n for n in notes)


def test_a_bad_vision_config_is_refused_in_one_line(tmp_path):
    config = json.loads((FIXTURES / "gemma3.json").read_text())
    config["vision_config"]["hidden_size"] = "1152"
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    with pytest.raises(InvalidInputError) as raised:
        model_from_hf_config(path)
    assert raised.value.field == "config.json:vision_config.hidden_size"


def test_simulate_says_so_too():
    model = model_from_hf_config(FIXTURES / "gemma3.json")
    report = simulate_one(
        model, "h100-sxm", chips=1, prompt_len=512, gen_len=64, concurrency=2, calibration=None, requests=20
    )
    assert any("vision encoder" in note for note in report["notes"])
