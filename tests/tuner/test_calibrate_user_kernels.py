"""tuner calibrate --kernels on a cluster owner's own files: the database's CSV format with a
few things written otherwise."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from cli_helpers import assert_one_error_line, run_cli

KERNELS = Path(__file__).resolve().parents[2] / "data" / "kernels"


def _own_file(tmp_path: Path, name: str, old: str, new: str) -> Path:
    """The database's h100_sxm vLLM rows of ``name`` as system mycluster_h100, every ``old``
    field written ``new``."""
    lines = gzip.open(KERNELS / f"{name}.csv.gz", "rt").read().splitlines()
    data = [line for line in lines if not line.startswith("#")]
    rows = [line for line in data[1:] if line.startswith("h100_sxm,VLLM,")]
    rows = [("mycluster_h100," + line.split(",", 1)[1]).replace(f",{old},", f",{new},") for line in rows]
    path = tmp_path / f"{name}.csv"
    path.write_text("\n".join([data[0], *rows]) + "\n")
    return path


@pytest.mark.parametrize(
    "name,old,new,field,fix",
    [
        ("gemm_perf", "bfloat16", "bf16", "gemm_perf.csv:2: gemm_dtype='bf16'", "write bfloat16"),
        # attn_dtype bf16 (the first of the row's two bfloat16 fields).
        ("context_attention_perf", "bfloat16", "bf16", "context_attention_perf.csv:2: attn_dtype='bf16'", "bfloat16"),
        ("generation_attention_perf", "fp8", "fp8_e4m3", "kv_cache_dtype='fp8_e4m3'", "write fp8"),
    ],
)
def test_a_format_the_cost_model_never_reads_is_refused_naming_file_row_and_name(
    capsys, tmp_path, name, old, new, field, fix
):
    """Rows of gemm_dtype bf16 (not the database's bfloat16) were fitted into a group 'gemm/bf16',
    and attention rows of attn_dtype bf16 into 'bf16/bfloat16', which no estimate reads
    (cost_models/calibrated_times.py reads 'bfloat16/<cache>'): every estimate under the profile
    kept the default parameters while the profile said the class was fitted, exit 0."""
    path = _own_file(tmp_path, name, old, new)
    args = ("--hardware", "h100-sxm", "--backend", "vllm", "--system", "mycluster_h100", "--kernels", str(path))
    code, out, err = run_cli(capsys, "calibrate", *args)
    line = assert_one_error_line(code, out, err, (field,))
    assert fix in line


H200_SMALL = Path(__file__).resolve().parents[2] / "data" / "measured" / "h200-jax" / "small"


def _summary(platform: str, system: str, kind: str, gemm: Path, rows: list[dict]):
    from tuner.measure import MeasureResult, OpResult

    return MeasureResult(
        out_dir=gemm.parent,
        system=system,
        device_kind=kind,
        device_count=1,
        platform=platform,
        jax_version="0",
        elapsed_s=1.0,
        dispatch_floor_ms=0.05,
        results=[OpResult("gemm", path=gemm, rows=rows)],
        notes=[],
    )


def test_tuner_measure_does_not_print_a_calibrate_command_its_gemm_file_cannot_fit(capsys, tmp_path):
    """The tiny sweep writes 30 GEMMs per format (bfloat16 and int8_wo: 60 rows). The summary
    checked the file's 60 rows against 21 and printed 'fit a profile from them: tuner calibrate
    ... --kernels gemm_perf.csv', which on an H200 exits 2: calibrate fits each format apart from
    3 rows per parameter, 13 bf16 parameters on a GPU with an SM count and an L2 (39 rows). On a
    CPU (7 parameters, 21 rows) the same 30 rows fit, and the command is printed."""
    from tuner.measure import print_summary

    header, *rows = [line for line in (H200_SMALL / "gemm_perf.csv").read_text().splitlines() if line[:1] != "#"]
    bf16 = [line for line in rows if ",bfloat16," in line][:30]
    gemm = tmp_path / "gemm_perf.csv"
    gemm.write_text("\n".join([header, *bf16]) + "\n")
    dicts = [{"gemm_dtype": "bfloat16"}] * 30
    args = ("--hardware", "h200", "--backend", "jax", "--system", "h200_sxm", "--kernels", str(gemm))
    code, out, err = run_cli(capsys, "calibrate", *args)
    assert_one_error_line(code, out, err, ("30 rows for 13 parameters",))  # what the command gave
    print_summary(_summary("gpu", "h200_sxm", "NVIDIA H200", gemm, dicts))
    out = capsys.readouterr().out
    assert "fit a profile from them" not in out
    assert "gemm_perf.csv (bfloat16 30 rows of 39)" in out
    print_summary(_summary("cpu", "cpu", "cpu", gemm, dicts))
    assert "fit a profile from them: tuner calibrate" in capsys.readouterr().out
