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
