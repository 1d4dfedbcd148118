"""BERT-Base, BERT-Large and GPT-2 against Kim et al.'s workload analysis (arXiv 2302.14017, 2.2).

Convention KIM2023 (act-to-act matmuls cost m*k*(2n-1); no embedding or lm_head), 8-bit operands.
Reference numbers are typed from the paper in reference_data.py.
"""

from __future__ import annotations

import numpy as np
import pytest

from kim2023_model import figure_totals, table3_rows
from printed import printed_error, within_printed
from reference_data import KIM2023_FIGURES, KIM2023_SEQ_LENS, KIM2023_TABLE3, KIM2023_TABLE3_GROUPS

EXACT_ROWS = ("mha_projections", "mha_act_to_act", "ffn_projections")


@pytest.mark.parametrize(
    "seq,row,gflops,gmops,ai",
    [r for r in KIM2023_TABLE3 if r[1] in EXACT_ROWS],
    ids=[f"{r[0]}-{r[1]}" for r in KIM2023_TABLE3 if r[1] in EXACT_ROWS],
)
def test_table3_matmul_rows_to_printed_digits(seq, row, gflops, gmops, ai):
    """The projection and act-to-act rows reproduce every printed digit, but one: FFN intensity at
    l=512 is 558.5455 by hand and by us, printed 558.54 (last digit; 1e-5 relative)."""
    ours = table3_rows(seq, KIM2023_TABLE3_GROUPS)[row]
    assert within_printed(ours["gflops"], gflops), printed_error(ours["gflops"], gflops)
    assert within_printed(ours["gmops"], gmops), printed_error(ours["gmops"], gmops)
    assert within_printed(ours["ai"], ai, 2e-5), printed_error(ours["ai"], ai)


@pytest.mark.parametrize("seq", [128, 512, 4096])
def test_table3_totals_within_one_percent(seq):
    """Totals include softmax, norms, GELU and adds, whose formulas the paper does not print; our
    elementwise counts (conventions.py) keep the totals within 1% in FLOPs and bytes."""
    ours = table3_rows(seq, KIM2023_TABLE3_GROUPS)["total"]
    _, _, gflops, gmops, ai = next(r for r in KIM2023_TABLE3 if r[0] == seq and r[1] == "total")
    assert within_printed(ours["gflops"], gflops, 0.01), printed_error(ours["gflops"], gflops)
    assert within_printed(ours["gmops"], gmops, 0.01), printed_error(ours["gmops"], gmops)
    assert within_printed(ours["ai"], ai, 0.015), printed_error(ours["ai"], ai)


@pytest.mark.parametrize("seq", [512, 4096])
def test_table3_other_ops_bytes_within_two_percent(seq):
    """'Other' bytes (softmax read+write of the score matrix, norms, GELU, adds, each operand once)
    match where the printed digits allow a check; at l=128 '0.02' is too coarse to say more, but
    the printed intensity 3.14 implies 0.0255 GB there, which we also meet."""
    ours = table3_rows(seq, KIM2023_TABLE3_GROUPS)["other"]
    _, _, _, gmops, _ = next(r for r in KIM2023_TABLE3 if r[0] == seq and r[1] == "other")
    assert within_printed(ours["gmops"], gmops, 0.02), printed_error(ours["gmops"], gmops)


def test_table3_other_ops_bytes_at_128_from_printed_intensity():
    ours = table3_rows(128, KIM2023_TABLE3_GROUPS)["other"]
    implied_gmops = 0.08 / 3.14  # printed GFLOPs over printed FLOPs/byte
    assert ours["gmops"] == pytest.approx(implied_gmops, rel=0.05)


@pytest.mark.parametrize("seq", [128, 512, 4096])
def test_table3_other_ops_are_about_one_percent_of_flops(seq):
    """The paper's 'other' FLOPs are under 1% of the total, and so are ours: their unknown formulas
    cannot move the totals. (Their values differ from ours by up to 17%: docs/validation.md.)"""
    rows = table3_rows(seq, KIM2023_TABLE3_GROUPS)
    paper = {r[1]: float(r[2]) for r in KIM2023_TABLE3 if r[0] == seq}
    assert paper["other"] / paper["total"] < 0.01
    assert rows["other"]["gflops"] / rows["total"]["gflops"] < 0.0125


FIGURE_CASES = [(m, q) for m in ("bert-base", "gpt2") for q in ("gflops", "gmops", "ai")]


@pytest.mark.parametrize("model,quantity", FIGURE_CASES, ids=[f"{m}-{q}" for m, q in FIGURE_CASES])
def test_figures_4_to_6_within_three_percent(model, quantity):
    """Every point of Figures 4-6 for BERT-Base and GPT-2 within 3% of the printed value (or
    within its printed rounding: '0.1' GB stands for 0.05-0.15)."""
    ours = figure_totals(model, KIM2023_SEQ_LENS)[quantity]
    for value, printed in zip(ours, KIM2023_FIGURES[model][quantity], strict=True):
        assert within_printed(value, printed, 0.03), (value, printed, printed_error(value, printed))


def test_figures_bert_large_bytes_match_flops_do_not():
    """BERT-Large (24 layers, d=1024, h=16, d_ff=4096): memory operations match the figure within
    its printed rounding plus 3%, but the figure's FLOPs sit 5.4-8.4% below 2 x parameters x tokens
    plus attention, which the paper's own BERT-Base numbers satisfy exactly. We report the gap
    (docs/validation.md) rather than bend the model: it is the figure's, a consistent shortfall
    that shrinks as the (matching) attention share grows."""
    ours = figure_totals("bert-large", KIM2023_SEQ_LENS)
    for value, printed in zip(ours["gmops"], KIM2023_FIGURES["bert-large"]["gmops"], strict=True):
        assert within_printed(value, printed, 0.03), (value, printed)
    errors = [printed_error(v, p) for v, p in zip(ours["gflops"], KIM2023_FIGURES["bert-large"]["gflops"], strict=True)]
    assert all(0.0 < e < 0.09 for e in errors), errors
    assert errors[-1] < errors[0]  # the gap narrows as attention (which matches) takes over


def test_bert_intensity_peaks_at_512_and_gpt2_stays_near_2():
    """Paper: BERT arithmetic intensity rises until l = 512, then falls as act-to-act matmuls and
    softmax take over; GPT-2 stays near 2 (memory bound) at every length."""
    for model in ("bert-base", "bert-large"):
        ai = figure_totals(model, KIM2023_SEQ_LENS)["ai"]
        assert KIM2023_SEQ_LENS[int(np.argmax(ai))] == 512
    gpt2 = figure_totals("gpt2", KIM2023_SEQ_LENS)["ai"]
    assert np.all(np.abs(gpt2 - 2.0) < 0.1)
