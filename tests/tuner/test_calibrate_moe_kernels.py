"""tuner calibrate --kernels with a fused-MoE kernel file (collect_moe.py's CSV): the class is fitted
on the user's rows, on top of the GEMM fit of the same call, and bad MoE files are one line."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from cli_helpers import assert_one_error_line, run_cli
from tuner.calibrate import fit_profile
from tuner.kernel_data import read_kernel_table
from tuner.moe_kernels import moe_rows_of_table, with_moe

KERNELS = Path(__file__).resolve().parents[2] / "data" / "kernels"


def _rows_of(name: str, keep) -> tuple[str, list[str]]:
    lines = gzip.open(KERNELS / f"{name}.csv.gz", "rt").read().splitlines()
    data = [line for line in lines if not line.startswith("#")]
    return data[0], [line for line in data[1:] if keep(line)]


def _own_files(tmp_path: Path, moe_edit=lambda line: line) -> tuple[Path, Path]:
    """The database's h100_sxm vLLM bfloat16 GEMM rows (150) and bfloat16 fused-MoE rows, as
    system mycluster_h100 (a cluster owner's own runs of the collectors)."""
    header, gemm = _rows_of("gemm_perf", lambda line: line.startswith("h100_sxm,VLLM,") and ",bfloat16," in line)
    gemm_path = tmp_path / "gemm_perf.csv"
    gemm_path.write_text("\n".join([header, *("mycluster_h100," + r.split(",", 1)[1] for r in gemm[:150])]) + "\n")
    header, moe = _rows_of("moe_perf", lambda line: line.startswith("h100_sxm,VLLM,") and ",bfloat16," in line)
    moe_path = tmp_path / "moe_perf.csv"
    rows = [moe_edit("mycluster_h100," + r.split(",", 1)[1]) for r in moe]
    moe_path.write_text("\n".join(["# my cluster's collect_moe.py run", header, *rows]) + "\n")
    return gemm_path, moe_path


ARGS = ("--hardware", "h100-sxm", "--backend", "vllm", "--system", "mycluster_h100")


def test_a_moe_kernel_file_fits_the_class_on_its_own_rows(tmp_path) -> None:
    """Before, the file was refused ('cannot tell the kind of kernel table') and a profile from a
    user's kernels had no MoE class: its MoE models kept the grouped dense GEMMs."""
    gemm, moe = _own_files(tmp_path)
    profile, report = fit_profile([gemm, moe], "h100-sxm", "vllm", system="mycluster_h100")
    assert set(profile.moe) == {"bfloat16"}
    assert set(report.moe) == {"moe/bfloat16"} and report.moe == profile.moe_cv_error
    assert report.moe["moe/bfloat16"].rows > 300 and report.moe["moe/bfloat16"].median < 0.3
    assert any(f.path.endswith("moe_perf.csv") and f.rows_used > 300 for f in profile.provenance.data_files)
    # The same fit as the class fitted by hand on those rows over the GEMM fit alone.
    gemm_only, _ = fit_profile([gemm], "h100-sxm", "vllm", system="mycluster_h100")
    by_hand = with_moe(gemm_only, moe_rows_of_table(read_kernel_table(moe)), system="mycluster_h100")
    assert by_hand.moe == profile.moe


def _int4_file(tmp_path, keep_int4) -> object:
    """h100 vLLM's bfloat16 and int4_wo MoE rows (int4_wo: Kimi K2's expert shape alone, at
    moe_tp 1-32) renamed to a system of the user's own, int4_wo rows kept where ``keep_int4``."""
    header, moe = _rows_of(
        "moe_perf",
        lambda line: line.startswith("h100_sxm,VLLM,") and (",bfloat16," in line or (",int4_wo," in line)),
    )
    columns = header.split(",")
    tp = columns.index("moe_tp_size")
    rows = [r for r in moe if ",int4_wo," not in r or keep_int4(int(r.split(",")[tp]))]
    path = tmp_path / "moe_int4.csv"
    path.write_text("\n".join([header, *("mycluster_h100," + r.split(",", 1)[1] for r in rows)]) + "\n")
    return path


def test_a_format_not_fitted_says_which_class_times_it(tmp_path) -> None:
    """int4_wo rows of one expert shape at 3 moe_tp slices (a refit needs 4): not fitted; the cost
    model times them with the bfloat16 class (MOE_BORROWED), and the report says so with that
    class's error on them."""
    gemm, _ = _own_files(tmp_path)
    path = _int4_file(tmp_path, lambda tp: tp in (1, 2, 4))
    _, report = fit_profile([gemm, path], "h100-sxm", "vllm", system="mycluster_h100")
    assert "int4_wo" in report.moe_not_fitted and "moe/int4_wo" not in report.moe
    assert "timed by the bfloat16 class (held out on these rows: median" in report.moe_not_fitted["int4_wo"]


def test_a_weight_only_format_of_one_shape_is_refitted_and_says_so(capsys, tmp_path) -> None:
    """The same rows at all 6 moe_tp slices: int4_wo gets a class refitted from the bfloat16 one
    (tuner.moe_kernels.BORROWED_REFIT), and the report, its JSON and the profile name the one expert
    shape it saw."""
    gemm, _ = _own_files(tmp_path)
    path = _int4_file(tmp_path, lambda tp: True)
    profile, report = fit_profile([gemm, path], "h100-sxm", "vllm", system="mycluster_h100")
    assert "int4_wo" not in report.moe_not_fitted
    assert report.moe["moe/int4_wo"].expert_shapes == ["7168/2048/384/8"]
    assert profile.moe_cv_error["moe/int4_wo"].expert_shapes == ["7168/2048/384/8"]
    assert profile.moe["int4_wo"].permute_passes == profile.moe["bfloat16"].permute_passes
    assert report.to_json()["moe"]["moe/int4_wo"]["expert_shapes"] == ["7168/2048/384/8"]
    code, out, err = run_cli(capsys, "calibrate", *ARGS, "--kernels", str(gemm), "--kernels", str(path))
    assert code == 0, err
    line = next(line for line in out.splitlines() if line.startswith("moe/int4_wo"))
    assert "refitted from its borrowed class on 7168/2048/384/8 alone" in line, out


def test_the_cli_prints_the_moe_class_and_its_json(capsys, tmp_path) -> None:
    gemm, moe = _own_files(tmp_path)
    code, out, err = run_cli(capsys, "calibrate", *ARGS, "--kernels", str(gemm), "--kernels", str(moe))
    assert code == 0, err
    assert "fused-MoE kernel class (5-fold CV by expert shape):" in out
    assert any(line.startswith("moe/bfloat16 ") for line in out.splitlines())
    code, out, err = run_cli(capsys, "calibrate", *ARGS, "--kernels", str(gemm), "--kernels", str(moe), "--json")
    assert code == 0, err
    report = json.loads(out)
    assert set(report["moe"]) == {"moe/bfloat16"} and report["moe"]["moe/bfloat16"]["rows"] > 300


@pytest.mark.parametrize(
    "edit,with_gemm,words",
    [
        (lambda line: line, False, ("moe_perf.csv", "fitted on top of the chip's GEMM fit", "--kernels gemm_perf.csv")),
        (
            lambda line: line.replace(",balanced,", ",zipf,"),
            True,
            ("moe_perf.csv:", "distribution='zipf'", "power_law_"),
        ),
        (
            lambda line: line.replace(",power_law_1.2,", ",power_law_1,"),
            True,
            ("moe_perf.csv:", "distribution='power_law_1'", "other than 1"),
        ),
        # Every row at expert parallelism 2: none the class is fitted on.
        (lambda line: ",".join(v if i != 12 else "2" for i, v in enumerate(line.split(","))), True, ("moe_ep_size 1",)),
    ],
)
def test_a_moe_file_the_fit_cannot_use_is_one_line(capsys, tmp_path, edit, with_gemm, words) -> None:
    gemm, moe = _own_files(tmp_path, edit)
    files = ("--kernels", str(gemm), "--kernels", str(moe)) if with_gemm else ("--kernels", str(moe))
    code, out, err = run_cli(capsys, "calibrate", *ARGS, *files)
    # One line (exit 2), before any fit started: no 'fitted from' progress line before it.
    line = assert_one_error_line(code, out, err, words)
    assert all(word in line for word in words), line


def test_two_moe_files_are_refused(capsys, tmp_path) -> None:
    gemm, moe = _own_files(tmp_path)
    code, out, err = run_cli(
        capsys, "calibrate", *ARGS, "--kernels", str(gemm), "--kernels", str(moe), "--kernels", str(moe)
    )
    line = assert_one_error_line(code, out, err, ("a second fused-MoE kernel file",))
    assert "merge the rows into one file" in line
