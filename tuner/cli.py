"""The ``tuner`` command line: a thin layer over the Python API.

Every command has ``--json`` for scripts. Bad input (the project's ``InvalidInputError`` or a
click usage error) becomes one line on stderr and exit code 2, never a traceback. A database that
cannot be used (:class:`tuner.storage.StorageError`) is one line naming its URL (password masked)
and the fix: exit code 2 for a wrong URL or path, 1 for the environment (server down, driver not
installed, file locked or read-only, disk full).
"""

from __future__ import annotations

# isort: off
# First: Ctrl-C or SIGTERM while the imports load is one line, not a traceback.
from tuner import early_signals  # noqa: F401

# isort: on
import json
import os
import re
import signal
import sys
from contextlib import ExitStack
from typing import TYPE_CHECKING, Any, Literal, NoReturn

import click

from cost_models.errors import InvalidInputError, refuse_bad_host
from tuner.cli_help import (
    INTERRUPTED_BEFORE_FINISH,
    INTERRUPTED_BEFORE_START,
    FullSummaryGroup,
    LazyChoice,
    WholeNumber,
    imports_loading,
)
from tuner.shown_text import printable
from tuner.signals import stop_on_signals

#: Where `tuner studies` looks without --storage: every SQLite study under studies/.
STUDIES_GLOB = "sqlite:///studies/*.db"

if TYPE_CHECKING:
    from cost_models.deployment import Overlap

# The cost model, Optuna, SQLAlchemy, pydantic, rich and the exporters are imported inside the
# commands that use them, and the choices of an option are read when that option is used
# (LazyChoice): `import tuner.cli` loaded all of them (1.2 s on a 2-core Xeon, `python -X
# importtime`) before `tuner studies` could read one row. tests/tuner/test_cli_imports.py keeps
# them out.

#: ``cost_models.calibration.AUTO_CALIBRATION`` and ``cost_models.capacity.DEFAULT_MAX_CHIPS``,
#: spelled out so that `--help` need not import those modules (test_cli_imports.py checks them).
AUTO_CALIBRATION = "auto"
DEFAULT_MAX_CHIPS = 64

EXIT_BAD_INPUT = 2

MODEL_OPTION = click.option(
    "--model",
    required=True,
    help="Catalog name (tuner models), path of a config.json, or a model YAML file (tuner models --template).",
)
HARDWARE_OPTION = click.option(
    "--hardware", required=True, help="Catalog name (tuner hardware) or a chip YAML file (tuner hardware --template)."
)


def _refuse_empty_path(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """An empty path (``-o "$UNSET"``) is an error: it read as no option at all (the file printed,
    written to the default path, or the chart skipped, exit 0)."""
    if value == "":
        raise click.BadParameter("an empty path; pass a file path or drop the option", ctx=ctx, param=param)
    return value


def _request_rate(ctx: click.Context, param: click.Parameter, value: float | None) -> float | None:
    """``--request-rate`` within ``cost_models.metrics.REQUEST_RATE_PER_S_RANGE``: above 0 let
    1e-320 through (``tuner simulate``: "simulated inf s", NaN throughputs) and 1e300 (overflow)."""
    if value is not None:
        from cost_models.errors import refuse_outside
        from cost_models.input_ranges import REQUEST_RATE_PER_S_RANGE

        refuse_outside(
            "request_rate", value, REQUEST_RATE_PER_S_RANGE, "requests per second", "pass e.g. --request-rate 10"
        )
    return value


def _refuse_existing_output(option: str, path: str | None, force: bool) -> None:
    """A user-named output file that exists is kept unless ``--force`` (as ``tuner init`` and
    ``tuner export -o``), and one whose directory is missing is refused: checked before the work,
    so a refusal costs nothing. ``--force`` with no file to write is refused, not ignored."""
    from pathlib import Path

    if path is None:
        if force:
            raise InvalidInputError(
                "--force", f"only used with {option} (nothing is written)", f"add {option} PATH or drop --force"
            )
        return
    if _output_exists(option, path) and not force:
        raise InvalidInputError(option, f"{path} exists", f"pass --force to overwrite it, or another {option} PATH")
    parent = Path(path).parent
    if not _output_exists(option, str(parent)) or not parent.is_dir():
        # Found before the work, not after it (a fit, a report's charts).
        raise InvalidInputError(
            option, f"cannot write {path}: no directory {parent}", f"create it, or pass another {option} PATH"
        )


def _refuse_plot_not_png(path: str | None) -> None:
    """The charts are written as PNG whatever the name: `--plot front.svg` wrote PNG bytes into a
    .svg file (exit 0), which a browser or LaTeX then cannot read. A name without a suffix is kept."""
    from pathlib import Path

    suffix = Path(path).suffix if path else ""
    if suffix and suffix.lower() != ".png":
        raise InvalidInputError(
            "--plot",
            f"{path} names a {suffix} file; the chart is written as a PNG",
            "name the file .png, e.g. front.png",
        )


def _output_exists(option: str, path: str) -> bool:
    """Whether an output path exists; a path the system cannot even look up (a 5,000-character
    name: ENAMETOOLONG, which ``Path.exists`` raises rather than answers) is one line, exit 2."""
    from pathlib import Path

    from tuner.shown_text import shown_path, unusable_path_fix

    try:
        return Path(path).exists()
    except OSError as error:
        raise InvalidInputError(
            option,
            f"cannot write {shown_path(path)}: {error.strerror}",
            unusable_path_fix(error, f"pass another {option} PATH"),
        ) from None


def _refuse_the_database_as_output(option: str, path: str | None, url: str) -> None:
    """An output that is the SQLite file the study is read from is refused even with --force:
    writing it would destroy the study (a slip of tab completion, -o studies/x.db)."""
    from pathlib import Path

    from tuner.storage import database_file

    database = database_file(url)
    if path is None or database is None or not _output_exists(option, path) or not database.exists():
        return
    if Path(path).samefile(database):
        raise InvalidInputError(
            option, f"{path} is the database the study is read from ({url})", f"pass another {option} PATH"
        )


def _refuse_together(first: str, second: str, why: str, fix: str = "") -> NoReturn:
    """Two options given together where one would be silently dropped (an ignored option is a wrong
    answer): one line naming both, exit 2."""
    raise InvalidInputError(first, f"cannot be combined with {second}: {why}", fix or f"drop {first} or {second}")


def _refuse_backend_without_profile(calibration: str | None, backend: str | None) -> None:
    """In tuner analyze --backend only picks the engine whose measured kernels the profile holds: with
    --calibration none (the pure roofline) it was ignored. (tuner estimate keeps it: the named engine
    must launch the deployment, and a serving estimate runs that engine's knobs.)"""
    from cost_models.calibration import NO_CALIBRATION

    if backend is not None and calibration == NO_CALIBRATION:
        _refuse_together(
            "--backend",
            "--calibration none",
            "the pure roofline holds no engine's kernels",
            "drop --backend, or use --calibration auto",
        )


def ENGINE_KNOB_OPTIONS(command):
    """The serving engine's batching knobs, each defaulting to the engine's own
    (``cost_models.serving.ENGINE_DEFAULTS``)."""
    for option in reversed(
        (
            click.option(
                "--max-batch-size",
                type=int,
                default=None,
                help="Sequences running at once in the whole deployment; under --dp each rank runs ceil(this / "
                "DP), as tuner export writes it per rank [the engine's default in each --dp rank, as the engine "
                "launched with its defaults runs: DP x the default].",
            ),
            click.option(
                "--max-num-tokens",
                type=int,
                default=None,
                help="Token budget of an iteration, each --dp rank's own (SGLang with DP attention divides a "
                "chunked one by --dp) [engine's].",
            ),
            click.option(
                "--chunked-prefill/--no-chunked-prefill", default=None, help="Chunk long prompts [engine's default]."
            ),
            click.option("--kv-block-size", type=int, default=None, help="KV cache block (page), tokens [engine's]."),
        )
    ):
        command = option(command)
    return command


@click.group(cls=FullSummaryGroup)
@click.version_option(package_name="transformer-deploy-tuner")
def cli() -> None:
    """Autotuner for transformer inference deployments (analytical roofline cost model)."""


@cli.command("models")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.option(
    "--template", is_flag=True, help="Print a commented model YAML file to start from (--model my-model.yaml)."
)
def models_command(as_json: bool, template: bool) -> None:
    """List the model catalog."""
    from cost_models.models import model_catalog
    from tuner import tables

    if template and as_json:
        _refuse_together("--template", "--json", "the template is commented YAML, not JSON")
    if template:
        from cost_models.catalog_files import template_text

        click.echo(template_text("models"), nl=False)
        return
    specs = list(model_catalog().values())
    if as_json:
        _print_json(
            [
                {
                    **spec.model_dump(),
                    "params": spec.params,
                    "active_params": spec.active_params,
                    "attention_type": spec.attention_type,
                }
                for spec in specs
            ]
        )
    else:
        tables.print_models(specs)


@cli.command("hardware")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.option(
    "--template", is_flag=True, help="Print a commented chip YAML file to start from (--hardware my-chip.yaml)."
)
def hardware_command(as_json: bool, template: bool) -> None:
    """List the hardware catalog: the chips, and the chip counts and meshes each allows."""
    from cost_models.hardware import hardware_catalog
    from cost_models.topology import chip_offer
    from tuner import tables

    if template and as_json:
        _refuse_together("--template", "--json", "the template is commented YAML, not JSON")
    if template:
        from cost_models.catalog_files import template_text

        click.echo(template_text("hardware"), nl=False)
        return
    specs = list(hardware_catalog().values())
    offers = {spec.name: chip_offer(spec) for spec in specs}
    if as_json:
        _print_json(
            [
                {**spec.model_dump(), "engines": list(spec.serving_engines()), "chips": offers[spec.name]}
                for spec in specs
            ]
        )
    else:
        tables.print_hardware(specs)
        tables.print_chip_offers(offers)


@cli.command("metrics")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def metrics_command(as_json: bool) -> None:
    """List every metric a study may optimize: unit, better direction, meaning."""
    from cost_models.metrics import METRICS
    from tuner import tables

    if as_json:
        _print_json(
            [
                {
                    "name": m.name,
                    "unit": m.unit,
                    "direction": m.direction,
                    "description": m.description,
                    "needs_serving": m.needs_serving,
                    "needs_price": m.needs_price,
                }
                for m in METRICS.values()
            ]
        )
    else:
        tables.print_metrics(METRICS.values())


BITS = LazyChoice("cost_models.dtypes:BITS_CHOICES")


#: A quantized checkpoint (config.json quantization_config) runs in its stored format unless told
#: otherwise, in every command (as a study's space does: search_spaces.spec.Space.with_model_defaults).
WEIGHT_BITS_OPTION = click.option(
    "--weight-bits", type=BITS, default=None, help="[default: the checkpoint's format (quantization_config), else 16]"
)


def weight_bits_or_checkpoint(weight_bits: str | None, model: str, hardware: str | None = None) -> str:
    """``--weight-bits`` as given, else the model's checkpoint format (else 16). A checkpoint's
    fp8 on a chip without fp8 units is refused naming the checkpoint: the user passed no
    --weight-bits, so "weight_bits: a100-80gb has no fp8 support" named a flag they never gave."""
    from cost_models.dtypes import FP8, parse_dtype, weight_bits_default
    from cost_models.hardware import get_hardware
    from cost_models.models import get_model

    if weight_bits:
        return weight_bits
    spec = get_model(model)
    default = weight_bits_default(spec.checkpoint_format)
    if hardware is not None and parse_dtype(default, "weight_bits") == FP8:
        chip = get_hardware(hardware)
        if not chip.has_format(FP8):
            raise InvalidInputError(
                "weight_bits",
                f"{spec.name}'s checkpoint is {spec.checkpoint_format} (its quantization_config, the default "
                f"--weight-bits) and {chip.name} has no fp8 units",
                "pass --weight-bits 16, 8 or 4",
            )
    return default


CALIBRATION_OPTION = click.option(
    "--calibration",
    default=AUTO_CALIBRATION,
    show_default=True,
    help="Calibration profile: auto (the chip's shipped profile for --backend), none (the papers' pure "
    "roofline, a lower bound but for its assumed collective latency: docs/validation.md), a shipped "
    "profile name (CHIP-ENGINE, e.g. h100-sxm-trtllm: "
    "cost_models/calibration_profiles/) or a profile file.",
)
BACKEND_OPTION = click.option(
    "--backend",
    type=LazyChoice("cost_models.calibration:BACKENDS"),
    default=None,
    help="Serving engine whose measured kernels the profile holds [default: the one measured best for the chip; "
    "where none was, the first that runs on it: trtllm on NVIDIA GPUs, vllm on AMD, jax on TPUs (tuner hardware)].",
)


@cli.command("analyze")
@MODEL_OPTION
@HARDWARE_OPTION
@click.option("--phase", type=LazyChoice("cost_models.deployments:PHASE_NAMES"), required=True)
@click.option("--batch", type=int, required=True, help="Sequences processed together.")
@click.option(
    "--seq-len",
    type=int,
    required=True,
    help="Prefill: prompt tokens. Decode: KV-cache entries the new token attends to.",
)
@WEIGHT_BITS_OPTION
@click.option("--act-bits", type=BITS, default="16", show_default=True)
@click.option("--kv-bits", type=BITS, default="16", show_default=True)
@click.option("--kv-heads", type=int, default=None, help="Override the model's KV heads (MHA/GQA/MQA what-if).")
@click.option(
    "--flash-attention/--no-flash-attention",
    default=False,
    show_default=True,
    help="One fused attention operator; the score matrix never reaches memory.",
)
@click.option(
    "--causal/--no-causal",
    default=None,
    help="Count only the unmasked triangle in prefill (not with --phase decode) [default: on with flash attention].",
)
@click.option(
    "--convention",
    type=LazyChoice("cost_models.conventions:CONVENTIONS"),
    default="default",
    show_default=True,
    help="Counting convention (docs/validation.md).",
)
@CALIBRATION_OPTION
@BACKEND_OPTION
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of a table.")
@click.option(
    "--plot",
    type=click.Path(dir_okay=False, writable=True),
    default=None,
    callback=_refuse_empty_path,
    help="Write a roofline chart (PNG) with one point per operator.",
)
@click.option("--force", is_flag=True, help="With --plot: overwrite an existing file.")
def analyze_command(
    model: str,
    hardware: str,
    phase: str,
    batch: int,
    seq_len: int,
    weight_bits: str | None,
    act_bits: str,
    kv_bits: str,
    kv_heads: int | None,
    flash_attention: bool,
    causal: bool | None,
    convention: str,
    calibration: str,
    backend: str | None,
    as_json: bool,
    plot: str | None,
    force: bool,
) -> None:
    """Per-operator FLOPs, bytes, arithmetic intensity and roofline time of one model on one chip."""
    from cost_models.analysis import analyze_one
    from cost_models.hardware import get_hardware
    from tuner import tables

    _refuse_existing_output("--plot", plot, force)
    _refuse_plot_not_png(plot)

    if causal is not None and phase == "decode":
        _refuse_together(
            "--causal" if causal else "--no-causal",
            "--phase decode",
            "it counts the masked triangle of a prompt's attention; a decoded token attends to every cached key",
            "drop it, or use --phase prefill",
        )
    _refuse_backend_without_profile(calibration, backend)
    weight_bits = weight_bits_or_checkpoint(weight_bits, model, hardware)
    report = analyze_one(
        model,
        hardware,
        phase=phase,
        batch=batch,
        seq_len=seq_len,
        weight_bits=weight_bits,
        act_bits=act_bits,
        kv_bits=kv_bits,
        flash_attention=flash_attention,
        causal=causal,
        kv_heads=kv_heads,
        convention=convention,
        calibration=calibration,
        backend=backend,
    )
    if plot:
        from tuner.roofline_plot import write_roofline_plot

        write_roofline_plot(report, plot, get_hardware(hardware))
    if as_json:
        _print_json(report)
    else:
        tables.print_analysis(report)
        if plot:
            click.echo(f"roofline chart written to {plot}")


LAYOUT = LazyChoice("cost_models.partitioning:FFN_LAYOUTS")
SHARDING = LazyChoice("cost_models.partitioning:ATTENTION_SHARDINGS")
SPEC_CALIBRATION_OPTION = click.option(
    "--calibration",
    default=None,
    help="Override the spec's calibration (auto, none, a profile name or file); part of the study's problem.",
)
SPEC_BACKEND_OPTION = click.option(
    "--backend", type=LazyChoice("cost_models.calibration:BACKENDS"), default=None, help="Override the spec's backend."
)


@cli.command("estimate")
@MODEL_OPTION
@HARDWARE_OPTION
@click.option(
    "--chips", type=int, default=None, help="Chips in the deployment [default: tp x pp x dp; with --mesh, its chips]."
)
@click.option(
    "--mesh",
    default=None,
    help=(
        "Mesh XxYxZ, e.g. 4x4x4: Pope et al.'s layouts "
        "[default: GPUs as engines run them; TPUs the fastest legal mesh that fits]."
    ),
)
@click.option(
    "--tp", type=int, default=None, help="Tensor-parallel chips, dividing the heads [GPU default: one NVLink domain]."
)
@click.option("--pp", type=int, default=None, help="Pipeline stages [GPU default: the domains beyond one].")
@click.option("--ep", type=int, default=None, help="Expert-parallel ranks (MoE; divides tp x dp) [1].")
@click.option("--dp", type=int, default=None, help="Attention data-parallel ranks (replicas if dense) [1].")
@click.option("--micro-batches", type=int, default=None, help="Pipeline micro-batches (divide batch / dp) [1].")
@click.option(
    "--phase", type=LazyChoice("cost_models.deployments:PHASE_NAMES", "both"), default="both", show_default=True
)
@click.option(
    "--batch",
    type=int,
    default=None,
    help="Sequences served together (required without --concurrency/--request-rate; with them, the static "
    "sections' batch [default: the serving running batch]).",
)
@click.option("--prompt-len", type=int, required=True, help="Prompt tokens per sequence.")
@click.option("--gen-len", type=int, required=True, help="Generated tokens per sequence.")
@click.option(
    "--ffn-layout",
    type=LAYOUT,
    default=None,
    help="FFN layout of both phases (Pope et al. 3.2) [ws_2d; ws_1d, Megatron TP, on GPUs without --mesh].",
)
@click.option("--prefill-ffn-layout", type=LAYOUT, default=None, help="Override for prefill.")
@click.option("--decode-ffn-layout", type=LAYOUT, default=None, help="Override for decode.")
@click.option(
    "--attn-sharding",
    type=SHARDING,
    default=None,
    help="Attention split by heads or by batch (Pope et al. 3.3) [head].",
)
@click.option("--prefill-attn-sharding", type=SHARDING, default=None, help="Override for prefill.")
@click.option("--decode-attn-sharding", type=SHARDING, default=None, help="Override for decode.")
@WEIGHT_BITS_OPTION
@click.option("--act-bits", type=BITS, default="16", show_default=True)
@click.option("--kv-bits", type=BITS, default="16", show_default=True)
@click.option("--kv-heads", type=int, default=None, help="Override the model's KV heads (what-if).")
@click.option(
    "--block",
    type=click.Choice(["serial", "parallel"]),
    default=None,
    help="Transformer block what-if (a study's block choice) [default: the model's own].",
)
@click.option(
    "--flash-attention/--no-flash-attention",
    default=None,
    help="Fused attention [on for GPUs as engines run them, off with --mesh or on TPUs].",
)
@click.option(
    "--overlap",
    type=LazyChoice("cost_models.deployment:OVERLAPS"),
    default="overlapped",
    show_default=True,
    help="Collectives hidden behind compute, or added to it: a TPU torus's choice (on GPUs and CPUs, "
    "switched networks, collectives are on the critical path either way: refused there).",
)
@click.option(
    "--kv-memory-fraction",
    type=float,
    default=None,
    help="Share of HBM reserved for the KV cache when computing max_context_tokens, at most the "
    "memory the weights leave [default: all memory left after weights and activations].",
)
@click.option("--require-fit", is_flag=True, help="Exit 2 if the deployment does not fit in memory.")
@CALIBRATION_OPTION
@BACKEND_OPTION
@click.option("--concurrency", type=int, default=None, help="Serving: closed-loop clients (adds a serving section).")
@click.option(
    "--request-rate",
    type=float,
    callback=_request_rate,
    default=None,
    help="Serving: open-loop Poisson requests per second.",
)
@ENGINE_KNOB_OPTIONS
@click.option("--prefix-hit-rate", type=float, default=None, help="Serving: share of each prompt in the prefix cache.")
@click.option(
    "--memory-fraction",
    type=float,
    default=None,
    help="Serving: the engine's memory knob, read by its rule (TensorRT-LLM: of the memory weights and activations "
    "leave; vLLM: of all memory; SGLang: of all memory, for weights and KV cache) [engine's].",
)
@click.option("--prompt-len-std", type=float, default=None, help="Serving: standard deviation of the prompt length.")
@click.option(
    "--gen-len-std",
    type=float,
    default=None,
    help="Serving: standard deviation of the generated length [default: 5% of --gen-len, which "
    "desynchronizes a closed loop's clients; 0: every output exactly --gen-len, the first burst's groups kept].",
)
@click.option(
    "--prefill-instances",
    type=int,
    default=None,
    help="Disaggregated serving (with --decode-instances and a load): prefill instances (xP).",
)
@click.option(
    "--decode-instances",
    type=int,
    default=None,
    help="Disaggregated serving: decode instances (yD), each of --tp x --dp x --ep.",
)
@click.option("--prefill-tp", type=int, default=None, help="Disaggregated: a prefill instance's TP [--tp].")
@click.option("--prefill-dp", type=int, default=None, help="Disaggregated: a prefill instance's attention DP [--dp].")
@click.option("--prefill-ep", type=int, default=None, help="Disaggregated: a prefill instance's EP [--ep].")
@click.option(
    "--prefill-max-batch-size",
    type=int,
    default=None,
    help="Disaggregated: a prefill instance's batch limit, prompts at once (each DP rank ceil(this / DP)) "
    "[--max-batch-size, which sets both pools; else the engine's default a rank].",
)
@click.option(
    "--decode-max-batch-size",
    type=int,
    default=None,
    help="Disaggregated: a decode instance's batch limit, sequences at once (each DP rank ceil(this / DP)) "
    "[--max-batch-size, which sets both pools; else the engine's default a rank].",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of a table.")
def estimate_command(
    model: str,
    hardware: str,
    chips: int | None,
    mesh: str | None,
    tp: int | None,
    pp: int | None,
    ep: int | None,
    dp: int | None,
    micro_batches: int | None,
    phase: Literal["prefill", "decode", "both"],
    batch: int,
    prompt_len: int,
    gen_len: int,
    ffn_layout: str | None,
    prefill_ffn_layout: str | None,
    decode_ffn_layout: str | None,
    attn_sharding: str | None,
    prefill_attn_sharding: str | None,
    decode_attn_sharding: str | None,
    weight_bits: str | None,
    act_bits: str,
    kv_bits: str,
    kv_heads: int | None,
    block: str | None,
    flash_attention: bool | None,
    overlap: Overlap,
    kv_memory_fraction: float | None,
    require_fit: bool,
    calibration: str,
    backend: str | None,
    concurrency: int | None,
    request_rate: float | None,
    max_batch_size: int | None,
    max_num_tokens: int | None,
    chunked_prefill: bool | None,
    kv_block_size: int | None,
    prefix_hit_rate: float | None,
    memory_fraction: float | None,
    prompt_len_std: float | None,
    gen_len_std: float | None,
    prefill_instances: int | None,
    decode_instances: int | None,
    prefill_tp: int | None,
    prefill_dp: int | None,
    prefill_ep: int | None,
    prefill_max_batch_size: int | None,
    decode_max_batch_size: int | None,
    as_json: bool,
) -> None:
    """Latency, MFU, cost and memory per chip of one multi-chip deployment (Pope et al. 2022);
    with --concurrency or --request-rate, also the serving steady state under that load; with
    --prefill-instances and --decode-instances, that of disaggregated prefill and decode pools."""
    from cost_models.deployment import estimate_one
    from cost_models.hardware import get_hardware
    from cost_models.serving_one import engine_memory_notes, estimate_serving_one
    from tuner import tables

    # On a switched network (GPUs, CPUs) every collective is on the block's critical path, as the
    # engines run tensor parallelism (cost_models.topology.Network.engine_collectives): overlapped
    # and added give the same numbers. Given, the option changed only the table's "collectives
    # added" (an ignored option read as one in force); by default the table said "collectives
    # overlapped" of collectives it charged in full. Only a TPU torus hides some behind its matmuls.
    critical_path = get_hardware(hardware).interconnect.kind == "switched"
    overlap_given = click.get_current_context().get_parameter_source("overlap") != click.core.ParameterSource.DEFAULT
    if critical_path and overlap_given:
        raise InvalidInputError(
            "--overlap",
            f"changes nothing on {hardware}: its collectives are on the critical path either way, as the serving "
            "engines run them (the next matmul waits for the all-reduce)",
            "drop --overlap (it chooses how a TPU torus hides its collectives)",
        )
    knobs = {
        "max_batch_size": max_batch_size,
        "max_num_tokens": max_num_tokens,
        "chunked_prefill": chunked_prefill,
        "kv_block_size": kv_block_size,
        "prefix_hit_rate": prefix_hit_rate,
        "memory_fraction": memory_fraction,
        "prompt_len_std": prompt_len_std,
        "gen_len_std": gen_len_std,
    }
    weight_bits = weight_bits_or_checkpoint(weight_bits, model, hardware)
    given = {k: v for k, v in knobs.items() if v is not None}
    serving = concurrency is not None or request_rate is not None
    # A serving estimate runs both phases whatever --phase shows of the static ones.
    _refuse_unused_layouts(
        "both" if serving else phase,
        {
            "ffn-layout": {"": ffn_layout, "prefill": prefill_ffn_layout, "decode": decode_ffn_layout},
            "attn-sharding": {"": attn_sharding, "prefill": prefill_attn_sharding, "decode": decode_attn_sharding},
        },
    )
    if given and not serving:
        flag = "--" + next(iter(given)).replace("_", "-")
        raise InvalidInputError("serving", f"{flag} needs a load", "add --concurrency C or --request-rate R")
    pool_options = {
        "--prefill-instances": prefill_instances,
        "--decode-instances": decode_instances,
        "--prefill-tp": prefill_tp,
        "--prefill-dp": prefill_dp,
        "--prefill-ep": prefill_ep,
        "--prefill-max-batch-size": prefill_max_batch_size,
        "--decode-max-batch-size": decode_max_batch_size,
    }
    if any(value is not None for value in pool_options.values()):
        _estimate_disaggregated(
            pool_options,
            serving=serving,
            unused={
                "--chips": chips, "--mesh": mesh, "--pp": pp, "--micro-batches": micro_batches, "--batch": batch,
                "--ffn-layout": ffn_layout, "--prefill-ffn-layout": prefill_ffn_layout,
                "--decode-ffn-layout": decode_ffn_layout, "--attn-sharding": attn_sharding,
                "--prefill-attn-sharding": prefill_attn_sharding, "--decode-attn-sharding": decode_attn_sharding,
                "--kv-memory-fraction": kv_memory_fraction, "--require-fit": require_fit or None,
                "--phase": None if phase == "both" else phase,
            },
            model=model, hardware=hardware, tp=tp, dp=dp, ep=ep, prompt_len=prompt_len, gen_len=gen_len,
            concurrency=concurrency, request_rate=request_rate, backend=backend, calibration=calibration,
            overlap=overlap, knobs=given, weight_bits=weight_bits, act_bits=act_bits, kv_bits=kv_bits,
            kv_heads=kv_heads, block=block, flash_attention=flash_attention, as_json=as_json,
        )  # fmt: skip
        return
    static: dict[str, Any] = {
        "mesh": mesh,
        "phase": phase,
        "ffn_layout": ffn_layout,
        "prefill_ffn_layout": prefill_ffn_layout,
        "decode_ffn_layout": decode_ffn_layout,
        "attn_sharding": attn_sharding,
        "prefill_attn_sharding": prefill_attn_sharding,
        "decode_attn_sharding": decode_attn_sharding,
        "weight_bits": weight_bits,
        "act_bits": act_bits,
        "kv_bits": kv_bits,
        "kv_heads": kv_heads,
        "block": block,
        "flash_attention": flash_attention,
        "kv_memory_fraction": kv_memory_fraction,
        "require_fit": require_fit,
        **{
            name: value
            for name, value in zip(
                ("tp", "pp", "ep", "dp", "micro_batches"), (tp, pp, ep, dp, micro_batches), strict=True
            )
            if value is not None
        },
    }
    common: dict[str, Any] = {"chips": chips, "prompt_len": prompt_len, "gen_len": gen_len, "overlap": overlap}
    common |= {"calibration": calibration, "backend": backend}
    if serving:
        report = estimate_serving_one(
            model,
            hardware,
            concurrency=concurrency,
            request_rate=request_rate,
            batch=batch,
            serving=given,
            **common,
            **static,
        )
        if kv_memory_fraction is not None:
            # The serving sections size the KV cache by the engine's memory knob, as the engine does
            # (serving.kv_budget_bytes); this flag reserves HBM for the static sections' max context
            # only. Unsaid, --kv-memory-fraction 0.05 left a KV-bound deployment's max concurrency
            # at 110 sequences (Llama-3-70B fp8 on 2 H100s under vLLM), as it was without it.
            report["notes"].append(
                f"--kv-memory-fraction {kv_memory_fraction:g} sets the static sections' max context only; the serving "
                "KV cache is the engine's memory knob: pass --memory-fraction to size it"
            )
    elif batch is not None:
        report = estimate_one(model, hardware, batch=batch, **common, **static)
        report["notes"] += engine_memory_notes(model, hardware, report, backend)
    else:
        raise InvalidInputError(
            "batch", "missing", "pass --batch B (static estimate) or --concurrency C / --request-rate R (serving)"
        )
    if as_json:
        _print_json(report)
    else:
        tables.print_estimate(report, collectives="on the critical path" if critical_path else report["overlap"])


def _estimate_disaggregated(
    pool_options: dict[str, int | None],
    *,
    serving: bool,
    unused: dict[str, Any],
    tp: int | None,
    dp: int | None,
    ep: int | None,
    knobs: dict[str, Any],
    as_json: bool,
    **common: Any,
) -> None:
    """``tuner estimate --prefill-instances --decode-instances``: the disaggregated pools under
    the load (cost_models.disaggregated_one), a prefill instance of --prefill-tp/-dp/-ep and a
    decode instance of --tp/--dp/--ep."""
    from cost_models.disaggregated_one import estimate_disaggregated_one
    from tuner import tables

    for flag in ("--prefill-instances", "--decode-instances"):
        if pool_options[flag] is None:
            given = next(name for name, value in pool_options.items() if value is not None)
            raise InvalidInputError(flag, f"missing: {given} asks for disaggregated pools", f"add {flag} N")
    if not serving:
        raise InvalidInputError(
            "--prefill-instances", "disaggregated pools need a load", "add --concurrency C or --request-rate R"
        )
    for flag, value in unused.items():
        if value is not None:
            raise InvalidInputError(
                flag,
                "not read by a disaggregated estimate (each pool is the engines' TP x DP x EP groups)",
                f"drop {flag}, or drop --prefill-instances/--decode-instances",
            )
    report = estimate_disaggregated_one(
        prefill_instances=int(pool_options["--prefill-instances"] or 0),
        decode_instances=int(pool_options["--decode-instances"] or 0),
        prefill={
            "tp": pool_options["--prefill-tp"],
            "dp": pool_options["--prefill-dp"],
            "ep": pool_options["--prefill-ep"],
        },
        decode={"tp": tp, "dp": dp, "ep": ep},
        serving=knobs,
        prefill_max_batch_size=pool_options["--prefill-max-batch-size"],
        decode_max_batch_size=pool_options["--decode-max-batch-size"],
        **common,
    )
    if as_json:
        _print_json(report)
    else:
        tables.print_disaggregated_estimate(report)


def _refuse_unused_layouts(phase: str, options: dict[str, dict[str, str | None]]) -> None:
    """A layout that sets nothing estimated is an error, not a silent no-op (it changed only the
    echo of the options): --decode-ffn-layout with --phase prefill (and the other way round), or
    --ffn-layout with every estimated phase overridden."""
    phases = ("prefill", "decode") if phase == "both" else (phase,)
    for kind, given in options.items():
        for other in ("prefill", "decode"):
            if other not in phases and given[other] is not None:
                _refuse_together(
                    f"--{other}-{kind}",
                    f"--phase {phase}",
                    f"{other} is not estimated",
                    f"drop --{other}-{kind}, or use --phase {other} or both",
                )
        if given[""] is not None and all(given[p] is not None for p in phases):
            overrides = " and ".join(f"--{p}-{kind}" for p in phases)
            _refuse_together(f"--{kind}", overrides, "the estimated phases each have their own", f"drop --{kind}")


@cli.command("simulate")
@MODEL_OPTION
@HARDWARE_OPTION
@click.option(
    "--chips",
    type=int,
    default=None,
    help="Chips in the deployment [default: tp x pp x dp; with --mesh, its chips x dp].",
)
@click.option("--mesh", default=None, help="Mesh XxYxZ [default: 1x1xN tensor parallel if legal, else the best].")
@click.option(
    "--tp",
    type=int,
    default=None,
    help="Tensor-parallel chips of each --dp rank, dividing the heads, as tuner estimate --tp reads it "
    "(1x1xTP) [--chips / --dp].",
)
@click.option(
    "--pp",
    type=int,
    default=None,
    help="Pipeline stages, as tuner estimate --pp under a load: the serving model runs none, so 1 [1].",
)
@click.option("--concurrency", type=int, default=None, help="Closed loop: clients, each waiting for its answer.")
@click.option(
    "--request-rate",
    type=float,
    callback=_request_rate,
    default=None,
    help="Open loop: Poisson arrivals, requests per second.",
)
@click.option("--prompt-len", type=float, required=True, help="Mean prompt tokens.")
@click.option("--gen-len", type=float, required=True, help="Mean generated tokens.")
@click.option("--prompt-len-std", type=float, default=0.0, show_default=True, help="Spread (lognormal).")
@click.option(
    "--gen-len-std",
    type=float,
    default=None,
    help="Spread (lognormal) [default: 5% of --gen-len; 0: every output exactly --gen-len, and a "
    "closed loop keeps the first burst's groups].",
)
@click.option(
    "--requests", type=int, default=1000, show_default=True, help="Requests to simulate (under DP: one rank's)."
)
@click.option(
    "--dp", type=int, default=1, show_default=True, help="Attention data-parallel ranks (--chips counts all)."
)
@click.option("--ep", type=int, default=1, show_default=True, help="Expert-parallel ranks (dividing TP x DP).")
@ENGINE_KNOB_OPTIONS
@click.option(
    "--prefix-hit-rate", type=float, default=0.0, show_default=True, help="Share of each prompt in the prefix cache."
)
@click.option("--ffn-layout", type=LAYOUT, default="ws_1d", show_default=True, help="FFN layout (ws_1d: Megatron TP).")
@click.option(
    "--flash-attention/--no-flash-attention",
    default=True,
    show_default=True,
    help="Fused attention, as the engines run it (tuner estimate turns it off with --mesh or on TPUs).",
)
@WEIGHT_BITS_OPTION
@click.option("--act-bits", type=BITS, default="16", show_default=True)
@click.option("--kv-bits", type=BITS, default="16", show_default=True)
@click.option(
    "--memory-fraction",
    type=float,
    default=None,
    help="The engine's memory knob, read by its rule (TensorRT-LLM: of the memory weights and activations leave; "
    "vLLM: of all memory; SGLang: of all memory, for weights and KV cache) [engine's].",
)
@CALIBRATION_OPTION
@BACKEND_OPTION
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of arrivals and lengths.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of a table.")
def simulate_command(
    model: str,
    hardware: str,
    chips: int | None,
    mesh: str | None,
    tp: int | None,
    pp: int | None,
    concurrency: int | None,
    request_rate: float | None,
    prompt_len: float,
    gen_len: float,
    prompt_len_std: float,
    gen_len_std: float | None,
    requests: int,
    dp: int,
    ep: int,
    max_batch_size: int | None,
    max_num_tokens: int | None,
    chunked_prefill: bool | None,
    kv_block_size: int | None,
    prefix_hit_rate: float,
    ffn_layout: str,
    flash_attention: bool,
    weight_bits: str | None,
    act_bits: str,
    kv_bits: str,
    memory_fraction: float | None,
    calibration: str,
    backend: str | None,
    seed: int,
    as_json: bool,
) -> None:
    """Discrete-event simulation of serving REQUESTS requests: TTFT, TPOT, E2E (mean, P50, P90,
    P99) and throughput, beside the analytic steady state."""
    from cost_models.serving_simulation import simulate_one
    from tuner import simulation_report

    weight_bits = weight_bits_or_checkpoint(weight_bits, model, hardware)

    with simulation_report.simulation_progress(disable=as_json) as update:
        report = simulate_one(
            model,
            hardware,
            chips=chips,
            mesh=mesh,
            tp=tp,
            pp=pp,
            concurrency=concurrency,
            request_rate=request_rate,
            prompt_len=prompt_len,
            gen_len=gen_len,
            prompt_len_std=prompt_len_std,
            gen_len_std=gen_len_std,
            requests=requests,
            dp=dp,
            ep=ep,
            max_batch_size=max_batch_size,
            max_num_tokens=max_num_tokens,
            chunked_prefill=chunked_prefill,
            kv_block_size=kv_block_size,
            prefix_hit_rate=prefix_hit_rate,
            ffn_layout=ffn_layout,
            flash_attention=flash_attention,
            weight_bits=weight_bits,
            act_bits=act_bits,
            kv_bits=kv_bits,
            memory_fraction=memory_fraction,
            calibration=calibration,
            backend=backend,
            seed=seed,
            on_progress=update,
        )
    if as_json:
        _print_json(report)
    else:
        simulation_report.print_simulation(report)


@cli.command("search")
@click.argument("spec_path", metavar="SPEC.yaml", type=click.Path(dir_okay=False))
@click.option("--storage", default=None, help="SQLAlchemy URL [default: sqlite:///studies/<name>.db].")
@click.option("--trials", type=int, default=None, help="Trials the study should hold [default: the spec's].")
@click.option("--timeout", type=float, default=None, help="Stop after this many seconds.")
@click.option(
    "--sampler", type=LazyChoice("search_spaces.spec:SAMPLERS"), default=None, help="Override the spec's sampler."
)
@click.option("--seed", type=int, default=None, help="Override the spec's seed.")
@SPEC_CALIBRATION_OPTION
@SPEC_BACKEND_OPTION
@click.option(
    "--no-store-all",
    "no_store_all",
    is_flag=True,
    help="Exhaustive sampler: store only the exact front and a small sample, not every candidate.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the result and front as JSON.")
def search_command(
    spec_path: str,
    storage: str | None,
    trials: int | None,
    timeout: float | None,
    sampler: str | None,
    seed: int | None,
    calibration: str | None,
    backend: str | None,
    no_store_all: bool,
    as_json: bool,
) -> None:
    """Search a study's design space with Optuna; running it again resumes the study."""
    with imports_loading():
        from cost_models.calibration import held_out_words
        from search_spaces.spec import load_spec, with_calibration
        from tuner import tables
        from tuner.pareto import study_front
        from tuner.storage import default_storage_url, one_search_per_study, storage_errors
        from tuner.study import run_search

    spec = with_calibration(load_spec(spec_path), calibration, backend)
    _refuse_seed_if_exhaustive(seed, sampler, spec.sampler)
    url = storage or default_storage_url(spec.name)
    with storage_errors(url), ExitStack() as search_lock, stop_on_signals() as stop:

        def one_search() -> None:
            # Once the database is opened (a path refused leaves no lock file beside it), and
            # held until the search is done. The exhaustive sampler's searches share the space
            # by claiming ranges, as its workers do.
            if (sampler or spec.sampler) != "exhaustive":
                search_lock.enter_context(one_search_per_study(url, spec.name))

        # On stderr with --json too: stdout keeps the JSON alone (a script's `--json > out.json`
        # ran silent for the whole search).
        with tables.progress() as update:
            result = run_search(
                spec,
                storage,
                trials=trials,
                timeout_s=timeout,
                sampler=sampler,
                seed=seed,
                on_progress=update,
                should_stop=stop,
                store_all=not no_store_all,
                after_open=one_search,
            )
        from tuner.pareto import load_study

        # A TPE resume read the feasible points for its history: only the rows since are read.
        # Its count is the study's as read here, workers' trials included, where trials_before +
        # trials_added said "holds 15000" of a study a worker had taken to 20,000 meanwhile.
        front = study_front(load_study(result.study_name, result.storage_url), known=result.known_front)
    from cost_models.deployment import context_notes
    from search_spaces.spec import per_instance_metric_notes, pipeline_notes

    notes = context_notes(spec.resolved_model(), spec.workload.prompt_len + spec.workload.gen_len)
    notes += per_instance_metric_notes(spec)
    notes += pipeline_notes(spec)
    if result.left_out:
        # The exhaustive sampler skips what cannot exist; before, a space of 4 (Mixtral tp [2, 4] x
        # dp [1, 3] on H100s) added 3 trials and said it held "every configuration of the space".
        notes.append(
            f"{result.left_out:,} of the space's {result.space_size:,} configurations were left out as structurally "
            "invalid (search_spaces.space.structurally_valid: e.g. heads, KV heads or experts not dividing, an "
            "unchunked prompt over the token budget, an instance's chips the hardware does not offer, a TP group cut "
            "by a node's edge); tuner estimate with one's degrees says why"
        )
    budget = trials if trials is not None else spec.trials
    nothing_to_add = None
    if result.trials_added == 0 and result.trials_before >= budget and not result.exhausted:
        # "0 trials added" read as a failed resume: --trials is the study's total, not more.
        source = "--trials" if trials is not None else "the spec's trials:"
        nothing_to_add = (
            f"nothing to add: the study holds {result.trials_before} trials, at least the {budget} {source} asks "
            f"for (the total it should hold, not trials to add); pass --trials above {result.trials_before} to "
            "add more"
        )
    if as_json:
        # --json said nothing of it: "trials_added": 0 and no note, where the table says why.
        _print_json(
            {
                "study": result.study_name,
                "storage": result.storage_url,
                "trials_before": result.trials_before,
                "trials_added": result.trials_added,
                "interrupted": result.interrupted,
                # --timeout passed before the budget: stopped there, resumable (interrupted is a signal).
                "timed_out": result.timed_out,
                "exhausted": result.exhausted,
                "left_out": result.left_out,
                "elapsed_s": result.elapsed_s,
                "calibration": result.calibration,
                "calibration_held_out": result.calibration_held_out,
                "front": tables.front_rows(front),
                "notes": ([nothing_to_add] if nothing_to_add else []) + notes,
            }
        )
    else:
        tables.print_front(front)
        rate = result.trials_added / result.elapsed_s if result.elapsed_s > 0 else 0.0
        click.echo(
            f"{result.trials_added} trials added in {result.elapsed_s:.1f} s ({rate:.0f}/s); "
            f"study {result.study_name!r} in {result.storage_url} holds "
            f"{front.n_trials}; calibration {result.calibration}{held_out_words(result.calibration_held_out)}"
        )
        if nothing_to_add:
            click.echo(nothing_to_add)
        for note in notes:
            click.echo(f"note: {note}")
    _say_if_exhausted(result.exhausted, result.left_out)
    if result.timed_out:
        # Before, a search cut by --timeout printed the summary of one that finished its budget.
        click.echo(
            f"stopped at --timeout {timeout:g} s: {result.trials_added:,} trials added, the study holds "
            f"{front.n_trials:,}; run the same command to resume",
            err=True,
        )
    _stop_if_interrupted(result.interrupted, "run the same command to resume", stop.exit_code)


def _refuse_seed_if_exhaustive(seed: int | None, sampler: str | None, spec_sampler: str) -> None:
    """The exhaustive sampler scores every candidate and draws nothing at random: --seed was ignored."""
    if seed is not None and (sampler or spec_sampler) == "exhaustive":
        _refuse_together(
            "--seed",
            "--sampler exhaustive" if sampler else "the spec's sampler exhaustive",
            "it draws nothing at random",
            "drop --seed",
        )


@cli.command("worker")
@click.argument("spec_path", metavar="SPEC.yaml", type=click.Path(dir_okay=False))
@click.option("--storage", required=True, help="SQLAlchemy URL every worker shares, e.g. postgresql://user@host/db.")
@click.option(
    "--trials", type=int, default=None, help="This worker's share [default: until the study holds the spec's budget]."
)
@click.option(
    "--seed",
    type=int,
    default=None,
    help="Sampler seed [default: the spec's seed plus this process id]. Workers given the same --seed draw the "
    "same trials (3 workers, one seed: 1,464 distinct of 3,000): give each its own, or none.",
)
@SPEC_CALIBRATION_OPTION
@SPEC_BACKEND_OPTION
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def worker_command(
    spec_path: str,
    storage: str,
    trials: int | None,
    seed: int | None,
    calibration: str | None,
    backend: str | None,
    as_json: bool,
) -> None:
    """Join a study (or create it) and add trials until this worker's share or the study's
    budget is done. Run any number of workers, on any number of machines, on one database."""
    import os

    with imports_loading():
        from cost_models.calibration import held_out_words
        from search_spaces.spec import load_spec, with_calibration
        from tuner.storage import storage_errors
        from tuner.study import run_worker

    spec = with_calibration(load_spec(spec_path), calibration, backend)
    _refuse_seed_if_exhaustive(seed, None, spec.sampler)
    from cost_models.deployment import context_notes
    from search_spaces.spec import per_instance_metric_notes, pipeline_notes

    # As tuner search says (at its end), once here at the start: a worker may run for hours.
    notes = context_notes(spec.resolved_model(), spec.workload.prompt_len + spec.workload.gen_len)
    notes += per_instance_metric_notes(spec)
    notes += pipeline_notes(spec)
    if not as_json:
        for note in notes:
            click.echo(f"note: {note}")
    with storage_errors(storage), stop_on_signals() as stop:
        result = run_worker(
            spec,
            storage,
            share=trials,
            seed=seed if seed is not None else (spec.seed + os.getpid()) % 2**32,
            should_stop=stop,
        )
    summary = {
        "study": result.study_name,
        "storage": result.storage_url,
        "trials_added": result.trials_added,
        "interrupted": result.interrupted,
        "exhausted": result.exhausted,
        # As tuner search's --json: the configurations drawn that cannot exist, never stored.
        "left_out": result.left_out,
        "elapsed_s": result.elapsed_s,
        # As tuner search's --json: the profile the trials were scored under (a study keeps its own).
        "calibration": result.calibration,
        "calibration_held_out": result.calibration_held_out,
        "notes": notes,
    }
    if as_json:
        _print_json(summary)
    else:
        click.echo(
            f"worker added {result.trials_added} trials to {result.study_name!r} in {result.elapsed_s:.1f} s; "
            f"calibration {result.calibration}{held_out_words(result.calibration_held_out)}"
        )
        short = result.trials_added == 0 or (trials is not None and result.trials_added < trials)
        if short and not (result.interrupted or result.exhausted) and spec.sampler != "exhaustive":
            # A sampled worker stops short of its share only at a signal, with the space done, or
            # at the study's budget: "added 0" (or 550 of --trials 3000) said nothing of which.
            click.echo(
                f"stopped: the study has reached the spec's budget of {spec.trials} trials (trials:, the study's "
                "total, not this worker's); raise it in the spec to add more"
            )
    _say_if_exhausted(result.exhausted, result.left_out)
    _stop_if_interrupted(result.interrupted, "start the worker again to go on", stop.exit_code)


@cli.command("studies")
@click.option(
    "--storage",
    default=STUDIES_GLOB,
    show_default=True,
    help="SQLAlchemy URL; the default lists every SQLite study under studies/.",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table: each study's counts and profile.")
def studies_command(storage: str, as_json: bool) -> None:
    """List studies with their trial counts and front sizes."""
    from tuner import tables
    from tuner.pareto import list_studies
    from tuner.storage import storage_errors

    _refuse_missing_glob_directory(storage)
    with storage_errors(storage), tables.progress(disable=as_json, what="reading studies") as update:
        rows = list_studies(storage, on_progress=update)
    if as_json:
        _print_json(rows)
    else:
        tables.print_studies(rows, storage)


def _refuse_missing_glob_directory(storage: str) -> None:
    """A SQLite glob whose directory does not exist matches nothing: an empty list would read as
    "no studies" where the path has a typo. The default glob (studies/ of the directory tuner
    runs in) is exempt: no studies/ there means no studies yet."""
    from tuner.storage import sqlite_glob

    found = sqlite_glob(storage)
    if storage == STUDIES_GLOB or found is None:
        return
    pattern = found[0]
    fixed = re.split(r"[*?\[]", pattern, maxsplit=1)[0]
    directory = os.path.dirname(fixed) or "."
    if not os.path.isdir(directory):
        raise InvalidInputError(
            "--storage", f"no directory {directory} for the glob {pattern}", "check the path, or omit --storage"
        )


@cli.command("pareto")
@click.argument("study_name", metavar="STUDY")
@click.option("--storage", default=None, help="SQLAlchemy URL [default: sqlite:///studies/STUDY.db].")
@click.option("--json", "as_json", is_flag=True, help="Print the front as JSON (params, objectives, profile).")
@click.option("--csv", "as_csv", is_flag=True, help="Print the front as CSV: trial, params, objectives.")
@click.option(
    "--plot",
    type=click.Path(dir_okay=False),
    default=None,
    callback=_refuse_empty_path,
    help="Write a PNG of the first two objectives with the front marked (a serving study: tokens/s per "
    "chip against tokens/s per user, every trial, the TPOT limit drawn).",
)
@click.option("--force", is_flag=True, help="With --plot: overwrite an existing file.")
def pareto_command(
    study_name: str, storage: str | None, as_json: bool, as_csv: bool, plot: str | None, force: bool
) -> None:
    """Print a study's Pareto front (feasible trials only)."""
    from tuner import tables
    from tuner.pareto import load_study, study_front
    from tuner.storage import default_storage_url, storage_errors

    if as_json and as_csv:
        _refuse_together("--json", "--csv", "the front is printed in one format")
    _refuse_existing_output("--plot", plot, force)
    _refuse_plot_not_png(plot)
    url = storage or default_storage_url(study_name)
    with storage_errors(url), tables.progress(disable=as_json or as_csv, what="reading the front") as update:
        study = load_study(study_name, url)
        front = study_front(study, on_progress=update)
    if plot:
        from tuner.front_plot import write_front_plot

        write_front_plot(study, front, plot)
    if as_json:
        _print_json(tables.front_rows(front))
    elif as_csv:
        click.echo(tables.front_csv(front), nl=False)
    else:
        tables.print_front(front)
        if plot:
            click.echo(f"front chart written to {plot}")


@cli.command("report")
@click.argument("study_name", metavar="STUDY")
@click.option("--storage", default=None, help="SQLAlchemy URL [default: sqlite:///studies/STUDY.db].")
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False),
    default="report.html",
    show_default=True,
    callback=_refuse_empty_path,
)
@click.option("--max-points", type=int, default=None, help="Trials drawn per chart; the front always [default: 3000].")
@click.option("--force", is_flag=True, help="Overwrite an existing file.")
@click.option("--json", "as_json", is_flag=True, help="Print what was written as JSON.")
def report_command(
    study_name: str, storage: str | None, output: str, max_points: int | None, force: bool, as_json: bool
) -> None:
    """Write one offline HTML page of a study: Optuna's interactive charts, the front in units,
    each front trial's breakdown (needs plotly: pip install 'transformer-deploy-tuner[report]')."""
    from tuner.pareto import load_study
    from tuner.report import DEFAULT_MAX_POINTS, write_report
    from tuner.storage import default_storage_url, storage_errors
    from tuner.study import CALIBRATION_ATTR

    # Checked before the study is read, and not with `max_points or DEFAULT_MAX_POINTS`: that read
    # --max-points 0 as "not given" and drew 3,000 trials a chart, the value silently ignored.
    if max_points is not None and max_points < 1:
        raise InvalidInputError("--max-points", f"must be at least 1, got {max_points}", "pass a positive number")
    _refuse_existing_output("-o", output, force)
    url = storage or default_storage_url(study_name)
    _refuse_the_database_as_output("-o", output, url)
    with storage_errors(url):
        study = load_study(study_name, url)
        result = write_report(study, output, max_points=DEFAULT_MAX_POINTS if max_points is None else max_points)
    if as_json:
        _print_json(
            {
                "study": study_name,
                "storage": url,
                "output": result.path,
                "bytes": result.bytes,
                "charts": result.figures,
                "front_trials": result.n_front,
                "trials_drawn": result.n_drawn,
                "trials": result.n_trials,
                "elapsed_s": result.elapsed_s,
                "calibration": study.user_attrs.get(CALIBRATION_ATTR, "not recorded"),
            }
        )
        return
    click.echo(
        f"wrote {result.path} ({result.bytes / 1e6:.1f} MB, {result.figures} charts, {result.n_front} front trials, "
        f"{result.n_drawn} of {result.n_trials} trials drawn) in {result.elapsed_s:.1f} s"
    )


#: The most trials ``tuner dashboard`` serves of a study besides its whole front: a larger study
#: is served as every k-th trial (by number) and every trial of its front
#: (``tuner.optuna_internals._BoundedTrials``). optuna-dashboard 0.21 loads, recomputes and
#: sends every trial of a study for a page (about 8 kB of JSON a trial): 52 s and 1.7 GB for
#: 30,000 trials even with its front in numpy. 2,000: a first page in 1.8-3.6 s, 16 MB, a 210 MB
#: server at 30,000-200,000 trials; 5,000: 11 s, 40 MB, 350 MB (docs/benchmarks.md, 2026-12-05).
DASHBOARD_MAX_TRIALS = 2_000


@cli.command("dashboard")
@click.argument("study_name", metavar="STUDY")
@click.option("--storage", default=None, help="SQLAlchemy URL [default: sqlite:///studies/STUDY.db].")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port",
    type=WholeNumber(0, 65535, fix="pass a TCP port from 0 to 65535 (0: any free port)"),
    default=8080,
    show_default=True,
    help="0: any free port.",
)
@click.option(
    "--max-trials",
    type=WholeNumber(1),
    default=DASHBOARD_MAX_TRIALS,
    show_default=True,
    help="A larger study is served as every k-th trial plus its whole front.",
)
def dashboard_command(study_name: str, storage: str | None, host: str, port: int, max_trials: int) -> None:
    """Serve optuna-dashboard on a study, its best trials feasible ones only (needs
    optuna-dashboard: pip install 'transformer-deploy-tuner[dashboard]')."""
    from tuner.optuna_internals import (
        dashboard_database_errors_in_one_line,
        feasible_dashboard,
        rdb_storage,
        study_storage,
    )
    from tuner.pareto import load_study
    from tuner.storage import default_storage_url, storage_errors

    refuse_bad_host("--host", host)  # the check tuner export --host makes; binding it is below
    try:
        import optuna_dashboard  # noqa: F401
    except ImportError:
        raise click.ClickException(
            "optuna-dashboard is not installed; pip install 'transformer-deploy-tuner[dashboard]'"
        ) from None
    url = storage or default_storage_url(study_name)
    with storage_errors(url):
        study = load_study(study_name, url)
        app = feasible_dashboard(rdb_storage(study) or study_storage(study), max_trials)
    dashboard_database_errors_in_one_line(url)
    server = _listening_server(host, port, app)
    click.echo(
        f"optuna-dashboard for {study_name} on http://{host}:{server.server_port}/dashboard "
        "(best trials: feasible only); Ctrl-C stops it",
        err=True,
    )
    # wsgiref answers each request inside a bare ``except`` that prints any exception and serves
    # on, so a KeyboardInterrupt or Terminated raised by a signal during a request (on a big
    # study one hydrates every trial: a minute and more) was swallowed and only kill -9 ended
    # the server. Signals only set a flag here; the loop stops once the request in hand is
    # answered.
    from tuner.signals import Terminated

    server.timeout = 0.5  # how often an idle server looks at the flag
    try:
        with stop_on_signals() as stop:
            while not stop():
                server.handle_request()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    if stop.signum == signal.SIGTERM:
        raise Terminated  # main() prints its line, exit 143; Ctrl-C is the normal stop: exit 0


def _listening_server(host: str, port: int, app: Any) -> Any:
    """wsgiref's server on ``host:port``; an address that cannot be had (a port another program
    holds, a host name that does not resolve or is not this machine's) is one line naming the
    option, not the socket module's traceback."""
    import errno
    import socket
    from wsgiref.simple_server import make_server

    try:
        return make_server(host, port, app)
    except socket.gaierror as error:  # before OSError: it is one
        raise InvalidInputError("--host", f"cannot resolve {host!r} ({error.strerror})", _HOST_FIX) from None
    except OSError as error:
        if error.errno == errno.EADDRINUSE:
            raise InvalidInputError(
                "--port",
                f"{host}:{port} is in use by another program",
                "pick another --port, or --port 0 for any free one",
            ) from None
        if error.errno == errno.EACCES:
            raise InvalidInputError(
                "--port", f"not allowed to listen on {host}:{port} ({error.strerror})", "use a port above 1023"
            ) from None
        raise InvalidInputError("--host", f"cannot listen on {host}:{port} ({error.strerror})", _HOST_FIX) from None


_HOST_FIX = "use an address of this machine: 127.0.0.1 (this machine only) or 0.0.0.0 (every interface)"


class TrialNumber(WholeNumber):
    """A trial's number, 0 or more (at most the database's largest integer). click names an
    IntRange "integer range" in its message, so `--trial abc` read "'abc' is not a valid integer
    range" (no range was given)."""

    name = what = "trial number"

    def __init__(self) -> None:
        super().__init__(0, 2**63 - 1, fix="pass the number of a trial the study holds (tuner pareto lists them)")


@cli.command("show")
@click.argument("study_name", metavar="STUDY")
@click.argument("trial_number", metavar="TRIAL", type=TrialNumber())
@click.option("--storage", default=None, help="SQLAlchemy URL [default: sqlite:///studies/STUDY.db].")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (the breakdown is JSON either way).")
def show_command(study_name: str, trial_number: int, storage: str | None, as_json: bool) -> None:
    """Print one trial's full breakdown (JSON)."""
    # --json is taken as every command takes it: a script passing it to each command got
    # "No such option '--json'" here (exit 2), though the output is JSON already.
    del as_json
    from tuner.pareto import load_study, trial_breakdown
    from tuner.storage import default_storage_url, storage_errors

    url = storage or default_storage_url(study_name)
    with storage_errors(url):
        _print_json(trial_breakdown(load_study(study_name, url), trial_number))


@cli.command("export")
@click.argument("study_name", metavar="STUDY")
@click.option(
    "--trial", "trial_number", type=TrialNumber(), metavar="N", required=True, help="Trial number (tuner pareto)."
)
@click.option("--format", "fmt", type=LazyChoice("tuner.export:FORMATS"), default="json", show_default=True)
@click.option(
    "-o", "--output", type=click.Path(dir_okay=False), default=None, callback=_refuse_empty_path, help="Write to FILE."
)
@click.option("--storage", default=None, help="SQLAlchemy URL [default: sqlite:///studies/STUDY.db].")
@click.option(
    "--allow-infeasible", is_flag=True, help="Export a trial that violates a constraint (marked feasible: false)."
)
@click.option(
    "--out-dir",
    type=click.Path(file_okay=False),
    default=None,
    callback=_refuse_empty_path,
    help="With --format vllm|sglang|trtllm: write the launch files into DIR (engine_args.json, launch.sh, "
    "TensorRT-LLM's extra_llm_api_options.yaml; disaggregated: prefill/, decode/, router.sh), as tuner "
    "recommend --export writes a plan's.",
)
@click.option(
    "--force", is_flag=True, help="With -o: overwrite an existing file; with --out-dir: write into a non-empty DIR."
)
@click.option(
    "--host",
    default=None,
    help="With --format vllm|sglang|trtllm: the address the servers (and a disaggregated trial's router) listen "
    "on [every interface, 0.0.0.0, as vLLM's default: a load balancer or router on another host reaches them; "
    "127.0.0.1 keeps one local].",
)
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print one JSON object: the export (every --format but yaml), or with -o/--out-dir the files written.",
)
def export_command(
    study_name: str,
    trial_number: int,
    fmt: str,
    output: str | None,
    storage: str | None,
    allow_infeasible: bool,
    out_dir: str | None,
    force: bool,
    host: str | None,
    as_json: bool,
) -> None:
    """Turn a trial into a deployment spec (json/yaml) or a stack's settings (jax, vllm, sglang, trtllm)."""
    from tuner.export import export
    from tuner.init_spec import write_spec
    from tuner.pareto import load_study
    from tuner.storage import default_storage_url, storage_errors

    if force and not output and not out_dir:
        raise InvalidInputError(
            "--force", "only used with -o or --out-dir (the export is printed)", "add -o PATH or drop --force"
        )
    if as_json and fmt == "yaml" and not output and not out_dir:
        _refuse_together("--json", "--format yaml", "the export would print YAML", "drop --json or use --format json")
    if out_dir is not None:
        from tuner.export import ENGINES
        from tuner.recommend_export import refuse_out_dir

        if output is not None:
            raise InvalidInputError("--out-dir", "given with -o", "pass one: -o FILE (the JSON) or --out-dir DIR")
        if fmt not in ENGINES:
            raise InvalidInputError(
                "--out-dir", f"writes an engine's launch files, not --format {fmt}", "use --format vllm|sglang|trtllm"
            )
        refuse_out_dir(out_dir, force, "--out-dir")
    url = storage or default_storage_url(study_name)
    _refuse_the_database_as_output("-o", output, url)
    with storage_errors(url):
        text = export(load_study(study_name, url), trial_number, fmt, allow_infeasible=allow_infeasible, host=host)
    if out_dir is not None:
        import json

        from tuner.recommend_export import trial_files, write_exports

        written = [str(path) for path in write_exports(out_dir, trial_files(json.loads(text)), "--out-dir")]
    elif output:
        write_spec(output, text if text.endswith("\n") else text + "\n", force)
        written = [output]
    else:
        click.echo(text)  # every --format but yaml prints JSON (yaml with --json was refused above)
        return
    if as_json:
        _print_json({"study": study_name, "trial": trial_number, "format": fmt, "written": written})
    else:
        for path in written:
            click.echo(f"wrote {path}")


@cli.command("init")
@click.option(
    "--model",
    required=True,
    help="Catalog name (tuner models), path of a config.json, or a model YAML file (tuner models --template); "
    "a file is written into the spec relative to the spec's directory.",
)
@click.option(
    "--hardware",
    required=True,
    help="Catalog name (tuner hardware) or a chip YAML file (tuner hardware --template).",
)
@click.option(
    "--serving", is_flag=True, help="Add a serving: section: tokens/s/chip vs tokens/s/user under TTFT/TPOT SLAs."
)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False),
    default=None,
    callback=_refuse_empty_path,
    help="Write the spec here [default: studies/MODEL-HARDWARE[-serving].yaml].",
)
@click.option("--force", is_flag=True, help="Overwrite an existing file.")
@click.option("--json", "as_json", is_flag=True, help="Print what was written as JSON: the file and the profile.")
def init_command(model: str, hardware: str, serving: bool, output: str | None, force: bool, as_json: bool) -> None:
    """Write a commented study spec for a model on a chip, to edit and then search."""
    from pathlib import Path

    from tuner.init_spec import feasibility_note, spec_text, study_name, write_spec

    # First with the paths as given: it reads the model and the chip (a bad one is one line) and
    # is what gets scored, since the spec's directory may not exist yet.
    given = spec_text(model, hardware, serving)
    name, name_note = study_name(model, hardware, serving)
    path = output or f"studies/{name}.yaml"
    # The written SLA is kept (a default to edit); where no candidate of the space meets it, a
    # search found out only after its trials (deepseek-v3 on l4: TPOT 50 ms). Scored before the
    # file is written, so a spec that cannot be scored leaves no file behind.
    notes = [n for n in (name_note, feasibility_note(given)) if n]
    # The file's paths relative to the spec's directory, where a spec reads them from.
    text = spec_text(model, hardware, serving, spec_dir=Path(path).parent)
    write_spec(path, text, force)
    if as_json:
        from search_spaces.space import compile_study
        from search_spaces.spec import load_spec
        from tuner.study import calibration_name

        spec = load_spec(path)
        _print_json(
            {
                "output": path,
                "study": spec.name,
                "model": model,
                "hardware": hardware,
                "serving": serving,
                # The profile tuner search of this spec scores its trials under (its last line's).
                "calibration": calibration_name(compile_study(spec)),
                "notes": notes,
            }
        )
        return
    click.echo(f"wrote {path}; edit it, then: tuner search {path}")
    for note in notes:
        click.echo(f"note: {note}")


def _refuse_unserved_benchmarks(model: str, backend: str, kv_code: int, tp_sizes: list[int]) -> None:
    """A --bench-json run is a server that ran: a KV cache --backend has no dtype for, or a
    --chips it cannot split the attention heads (and, vLLM and SGLang, the KV heads) over, was
    fitted as given (--chips 3 for Llama-3.1-8B's 32 heads, --kv-bits 4 under vLLM), as tuner
    estimate refuses them under a named backend."""
    from cost_models.deployments import engine_problem_mask, refuse_engine_kv_cache
    from cost_models.models import get_model

    refuse_engine_kv_cache(backend, kv_code)
    spec = get_model(model)
    kv_heads = 0 if spec.is_mla else spec.kv_heads
    for tp in (t for t in tp_sizes if t >= 1):  # below 1: the deployment's own check names --chips
        if engine_problem_mask(backend, spec.heads, 0, tp, 1, 1, kv_heads=kv_heads).any():
            runs = [
                t
                for t in (1, 2, 4, 8, 16, 32, 64)
                if not engine_problem_mask(backend, spec.heads, 0, t, 1, 1, kv_heads=kv_heads).any()
            ]
            raise InvalidInputError(
                "--chips",
                f"{backend} runs no tensor-parallel size {tp} of {spec.name} (it splits the {spec.heads} attention "
                "heads, and vLLM and SGLang the KV heads, evenly over the ranks)",
                f"pass the tensor-parallel size the benchmarked server ran, e.g. {', '.join(map(str, runs))}",
            )


@cli.command("spec")
@click.option("--schema", is_flag=True, help="Print the JSON Schema of study specs (editor completion).")
@click.option("--reference", is_flag=True, help="Print the Markdown reference of every field.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON: the JSON Schema, as --schema.")
def spec_command(schema: bool, reference: bool, as_json: bool) -> None:
    """Print the study spec's JSON Schema (--schema) or its field reference (--reference)."""
    from tuner.spec_docs import json_schema, reference_markdown

    if schema and reference:
        _refuse_together("--schema", "--reference", "one prints JSON, the other Markdown")
    if as_json and reference:
        _refuse_together("--json", "--reference", "the reference is Markdown", "drop --reference, or --json")
    schema = schema or as_json
    if not (schema or reference):
        raise InvalidInputError("spec", "nothing to print", "pass --schema or --reference")
    if schema:
        _print_json(json_schema())
    else:
        click.echo(reference_markdown(), nl=False)


def _say_if_exhausted(exhausted: bool, left_out: int = 0) -> None:
    """A sampled search never repeats a configuration: it stops when none is left (of those that
    can exist, where some were left out: the note says how many)."""
    if exhausted:
        can_exist = " that can exist" if left_out else ""
        click.echo(
            f"stopped early: the study holds every configuration of the space{can_exist} (no trial repeats one)",
            err=True,
        )


def _stop_if_interrupted(interrupted: bool, how_to_resume: str, exit_code: int = 130) -> None:
    """After Ctrl-C or SIGTERM: say that finished trials are saved and how to go on; exit 128 +
    the signal (130 for SIGINT, 143 for SIGTERM)."""
    if interrupted:
        click.echo(f"interrupted: every finished trial is saved; {how_to_resume}", err=True)
        raise SystemExit(exit_code)


@cli.command("calibrate")
@click.option("--hardware", default=None, help="Chip to calibrate: catalog name (tuner hardware) or a chip YAML file.")
@click.option(
    "--backend",
    type=LazyChoice("cost_models.calibration:BACKENDS"),
    default=None,
    help="Serving engine whose kernels the measurements time.",
)
@click.option(
    "--points",
    multiple=True,
    type=click.Path(dir_okay=False),
    help="End-to-end measurements (CSV or YAML: deployment + measured_prefill_latency_s and/or "
    "measured_decode_step_latency_s; see data/e2e); repeatable. Fits the profile's "
    "end-to-end terms on top of --base.",
)
@click.option(
    "--bench-json",
    multiple=True,
    type=click.Path(dir_okay=False),
    help="Result JSON of vllm bench serve / SGLang bench_serving, one run or one per line (.jsonl) "
    "(needs --model and --chips); repeatable.",
)
@click.option(
    "--system",
    default=None,
    help="The system name the --kernels files use for this chip [default: the kernel database's].",
)
@click.option("--model", default=None, help="With --bench-json: the model served.")
@click.option(
    "--chips",
    type=int,
    multiple=True,
    help="With --bench-json: tensor-parallel GPUs, once for every run or once per --bench-json (in their order).",
)
@click.option(
    "--weight-bits",
    type=BITS,
    default=None,
    help="With --bench-json: the served weights' format [default: the checkpoint's format, else 16].",
)
@click.option(
    "--kv-bits", type=BITS, default=None, help="With --bench-json: the served KV cache's format [default: 16]."
)
@click.option(
    "--base",
    default=None,
    help="With --points: the profile to start from: a shipped profile's name (e.g. h100-sxm-vllm), a profile "
    "file, or none: the kernel formulas at their default parameters (every efficiency 1, no fixed cost), "
    "which is not quite --calibration none's pure roofline: each chip's weight matmul is timed as one GEMM "
    "reading its whole m x k input and writing its m x n output, where the roofline charges the chip its "
    "layout's share of the activations and the K/V cache writes (0-6% apart per step on Pope et al.'s TPU v4 "
    "points; the report gives both) [default: the chip's shipped kernel profile, or none where no kernels "
    "were fitted].",
)
@click.option(
    "--fit",
    "fit_names",
    default=None,
    help="With --points: comma-separated parameters to fit [default: per-layer and per-step "
    "overheads over a kernel profile (per-step alone where every point has one layer count: the two "
    "are then one number); over the roofline compute_eff, memory_eff and the fixed cost "
    "of a layer: collective_step_s on a torus (TPU), per_layer_overhead_s elsewhere].",
)
@click.option(
    "--train",
    default=None,
    help="With --points: comma-separated groups to fit on; the others are held out [default: all, "
    "with leave-one-group-out error].",
)
@click.option(
    "--kernels",
    multiple=True,
    type=click.Path(dir_okay=False),
    help="Kernel measurement CSV (gzip or plain, '#' header lines); repeatable. A fused-MoE file "
    "(moe_dtype column) fits the MoE class on top of the GEMM file's fit. "
    "[default: the repo's data/kernels copies]",
)
@click.option(
    "-o",
    "--output",
    default=None,
    type=click.Path(dir_okay=False),
    callback=_refuse_empty_path,
    help="Write the profile YAML here.",
)
@click.option("--force", is_flag=True, help="With -o or --report: overwrite an existing file.")
@click.option(
    "--shape-correction/--no-shape-correction",
    default=None,
    help="Fit each GEMM group's measured shape correction: a grid in log2 (m, n, k) of the fit's log "
    "residuals over every row of the group, times which the GEMM time is taken near measured shapes "
    "(cost_models/gemm_shape.py); the held-out error is then of the fit and the correction together. "
    "[default: on with the repo's data (rows: data/kernels/gemm_perf_all_rows.csv.gz, as the shipped "
    "profiles) or --shape-rows; off with --kernels alone, where --shape-correction learns from the "
    "--kernels GEMM rows themselves]. For kernel files without a dispatch floor (not tuner measure's).",
)
@click.option(
    "--shape-rows",
    default=None,
    type=click.Path(dir_okay=False),
    help="GEMM kernel CSV whose rows the shape correction learns from (every row of each fitted GEMM "
    "group; the parametric fit still reads --kernels) [default: data/kernels/gemm_perf_all_rows.csv.gz "
    "with the repo's data].",
)
@click.option(
    "--all",
    "every_pair",
    is_flag=True,
    help="Fit every (chip, engine) in data/kernels into cost_models/calibration_profiles.",
)
@click.option(
    "--report",
    default=None,
    type=click.Path(dir_okay=False),
    callback=_refuse_empty_path,
    help="With --all: also write the accuracy report (docs/accuracy.md).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the fit report as JSON.")
def calibrate_command(
    hardware: str | None,
    backend: str | None,
    points: tuple[str, ...],
    bench_json: tuple[str, ...],
    system: str | None,
    model: str | None,
    chips: tuple[int, ...],
    weight_bits: str | None,
    kv_bits: str | None,
    base: str | None,
    fit_names: str | None,
    train: str | None,
    kernels: tuple[str, ...],
    output: str | None,
    every_pair: bool,
    report: str | None,
    as_json: bool,
    force: bool,
    shape_correction: bool | None,
    shape_rows: str | None,
) -> None:
    """Fit a calibration profile from kernel measurements (each operator class) or from end-to-end
    measurements (--points, --bench-json: the overheads a whole step shows), and print the
    held-out (cross-validated) error."""
    from tuner import accuracy_report, tables
    from tuner.calibrate import GroupReport, fit_profile, write_profile
    from tuner.progress_lines import ProgressLines

    _refuse_unused_calibrate_options(
        every_pair,
        bool(points or bench_json),
        {
            "--hardware": hardware is not None,
            "--backend": backend is not None,
            "--points": bool(points),
            "--bench-json": bool(bench_json),
            "--system": system is not None,
            "--model": model is not None,
            "--chips": bool(chips),
            "--weight-bits": weight_bits is not None,
            "--kv-bits": kv_bits is not None,
            "--base": base is not None,
            "--fit": fit_names is not None,
            "--train": train is not None,
            "--kernels": bool(kernels),
            "--output": output is not None,
            "--report": report is not None,
            "--json": as_json,  # only --all has no report to print as JSON
            "--force": force,
            "--shape-correction": shape_correction is not None,
            "--shape-rows": shape_rows is not None,
        },
    )
    if every_pair:  # (the shipped profiles are --all's to rewrite; the report is the user's file)
        _refuse_existing_output("--report", report, force)
    else:
        _refuse_existing_output("-o", output, force)
    if points or bench_json:
        _calibrate_end_to_end(
            hardware, backend, points, bench_json, model, chips, (weight_bits, kv_bits), base, fit_names, train,
            output, as_json,
        )  # fmt: skip
        return
    if every_pair:
        with tables.progress(what="fitting") as update:
            accuracy_report.main([report] if report else [], on_progress=update)
        return
    if hardware is None or backend is None:
        raise InvalidInputError(
            "calibrate",
            "--hardware and --backend are required",
            "e.g. tuner calibrate --hardware h100-sxm --backend trtllm (or --all)",
        )
    # One line per fitted group on stderr, terminal or not (a QA user's redirected run printed
    # nothing for 6 min 44 s); stdout keeps the result alone (--json: one JSON document). None
    # before the first group: input refused before any fit is one line, as every refusal.
    lines = ProgressLines("calibrate")

    def group_fitted(group: GroupReport) -> None:
        held_out = "" if group.held_out_rows is None else f" (on {group.held_out_rows:,} rows)"
        lines.say(
            f"{group.name} fitted from {group.rows:,} rows, held-out median error {group.cv_median:.1%}{held_out}"
        )

    profile, fit_report = fit_profile(
        list(kernels) or None,
        hardware,
        backend,
        system=system,
        on_group=group_fitted,
        shape_correction=shape_correction,
        shape_rows=shape_rows,
    )
    if output:
        write_profile(profile, output)
    if as_json:
        # The profile fitted, by name, as every other command's --json names the profile it used.
        _print_json({"profile": profile.name, "output": output, **fit_report.to_json()})
        return
    folds = profile.provenance.folds if profile.provenance is not None else "k"
    click.echo(
        f"{hardware} / {backend}: {len(fit_report.groups)} groups fitted in "
        f"{fit_report.seconds:.1f} s (held-out error = {folds}-fold CV)"
    )
    # rows: fitted; held out: the rows the error is measured on (every row of the group: the fit
    # reads at most MAX_ROWS_PER_GROUP of them; tuner.fitting.cross_validate's fit_rows).
    click.echo(f"{'group':42s} {'rows':>5s} {'held out':>8s} {'roofline med':>12s} {'held-out med':>12s} {'p90':>7s}")
    for g in fit_report.groups:
        click.echo(
            f"{g.name:42s} {g.rows:5d} {g.held_out_rows or g.rows:8d} {g.roofline_median:12.1%} {g.cv_median:12.1%} "
            f"{g.cv_p90:7.1%}" + (f"  ! {'; '.join(g.warnings)}" if g.warnings else "")
        )
    if fit_report.moe or fit_report.moe_not_fitted:
        # The fused-MoE class, on top of the GEMM fit above (its folds group rows by expert shape).
        click.echo(f"fused-MoE kernel class ({folds}-fold CV by expert shape):")
        for name, e in fit_report.moe.items():
            click.echo(
                f"{name:42s} {e.rows:5d} {e.rows:8d} {e.roofline_median:12.1%} {e.median:12.1%} {e.p90:7.1%}"
                # A weight-only format refitted from the class it borrowed (tuner.moe_kernels.BORROWED_REFIT).
                + (
                    f"  refitted from its borrowed class on {', '.join(e.expert_shapes)} alone (CV by moe_tp slice)"
                    if e.expert_shapes
                    else ""
                )
                + (f"  ! {'; '.join(e.warnings)}" if e.warnings else "")
            )
        for fmt, why in fit_report.moe_not_fitted.items():
            click.echo(f"{'moe/' + fmt:42s} not fitted: {why}")
    if output:
        click.echo(f"wrote {output}")


def _refuse_unused_calibrate_options(every_pair: bool, end_to_end: bool, given: dict[str, bool]) -> None:
    """An option the chosen kind of fit would ignore is an error, not a silent no-op: --all with
    --hardware refits (and rewrites) every shipped profile, --fit without --points fits kernels."""
    end_to_end_only = ("--base", "--fit", "--train")
    if every_pair:
        extra = [o for o, on in given.items() if on and o not in ("--report", "--force")]
        if extra:
            raise InvalidInputError(
                extra[0],
                "not used by --all (it refits every shipped chip and engine from data/kernels)",
                f"drop {extra[0]}, or drop --all to fit one chip",
            )
        return
    if given["--report"]:
        raise InvalidInputError("--report", "only written by --all", "add --all or drop --report")
    if end_to_end:
        extra = [o for o in ("--kernels", "--system", "--shape-correction", "--shape-rows") if given[o]]
        if extra:
            raise InvalidInputError(
                extra[0], "not used by an end-to-end fit (--points, --bench-json)", f"drop {extra[0]}"
            )
        if not given["--bench-json"]:
            extra = [o for o in ("--model", "--chips", "--weight-bits", "--kv-bits") if given[o]]
            if extra:
                raise InvalidInputError(
                    extra[0], "only used with --bench-json", f"add --bench-json FILE or drop {extra[0]}"
                )
        return
    bench_only = ("--model", "--chips", "--weight-bits", "--kv-bits")
    extra = [o for o in (*end_to_end_only, *bench_only) if given[o]]
    if extra:
        needs = "--bench-json" if extra[0] in bench_only else "--points or --bench-json"
        raise InvalidInputError(extra[0], f"only used with {needs}", f"add {needs.split()[0]} FILE or drop {extra[0]}")


def _calibrate_end_to_end(
    hardware: str | None,
    backend: str | None,
    points: tuple[str, ...],
    bench_json: tuple[str, ...],
    model: str | None,
    chips: tuple[int, ...],
    bits: tuple[str | None, str | None],
    base: str | None,
    fit_names: str | None,
    train: str | None,
    output: str | None,
    as_json: bool,
) -> None:
    from pathlib import Path

    from cost_models.calibration import NO_CALIBRATION, available_profiles, load_profile
    from cost_models.catalog_files import looks_like_path
    from cost_models.hardware import get_hardware, is_catalog_chip
    from tuner import calibrate_e2e as e2e
    from tuner.calibrate import _tool_version, write_profile

    if hardware is None or backend is None:
        # Named after the input given: a --bench-json fit without --backend was told "required with
        # --points", a flag it never gave, and shown a --points example.
        given, example = (
            ("--points", "tpu-v4 --backend jax --points data/e2e/pope2022_tpu_v4.csv")
            if points
            else ("--bench-json", "h100-sxm --backend vllm --bench-json result.json --model llama-3.1-8b --chips 1")
        )
        raise InvalidInputError(
            "calibrate",
            f"--hardware and --backend are required with {given}",
            f"e.g. tuner calibrate --hardware {example}",
        )
    by_file = {path: e2e.read_points(path) for path in points}
    if bench_json:
        if model is None or not chips:
            raise InvalidInputError("bench-json", "needs the deployment it measured", "add --model and --chips")
        # The benchmarks record no tensor-parallel size: runs of TP 1, 2 and 4 were one --chips
        # apart, so no fit could hold them together. --chips once per file pairs them by order.
        if len(chips) not in (1, len(bench_json)):
            raise InvalidInputError(
                "--chips",
                f"given {len(chips)} times for {len(bench_json)} --bench-json files",
                "give --chips once (every run), or once per --bench-json in their order",
            )
        chips_of = dict(zip(bench_json, chips * len(bench_json) if len(chips) == 1 else chips, strict=True))
        from cost_models.dtypes import dtype_name

        # The served formats: a run of fp8 weights read as bf16 had the fitted overheads take
        # the difference (a checkpoint's own format is the default, as in every command).
        codes = get_hardware(hardware).parse_formats(
            weight_bits=weight_bits_or_checkpoint(bits[0], model, hardware), kv_bits=bits[1] or "16"
        )
        formats = {"weight_dtype": dtype_name(codes["weight_bits"]), "kv_dtype": dtype_name(codes["kv_bits"])}
        _refuse_unserved_benchmarks(model, backend, codes["kv_bits"], sorted(set(chips_of.values())))
        by_file |= {
            path: e2e.read_benchmark_json(
                path, model=model, hardware=hardware, chips=chips_of[path], engine=backend, **formats
            )
            for path in bench_json
        }
    measured = [p for file_points in by_file.values() for p in file_points]
    chip = get_hardware(hardware)  # a catalog name or a chip YAML file
    if any(p.deployment.hardware.name != chip.name for p in measured):
        other = next(p.deployment.hardware.name for p in measured if p.deployment.hardware.name != chip.name)
        raise InvalidInputError(
            "points", f"a point was measured on {other}, not {chip.name}", "calibrate one chip at a time"
        )
    shipped = f"{chip.name}-{backend}" if is_catalog_chip(chip) else ""
    # What the report's base column is: the kernel formulas at their defaults (--base none, and
    # where no kernel profile ships), else the profile --base names or the chip's shipped one.
    base_label = e2e.DEFAULTS_LABEL
    if base == NO_CALIBRATION:
        # The default base where a chip has no kernel fit, asked for by name to fit end-to-end
        # terms on it where a kernel profile ships (before, 'none' was refused as an unknown
        # profile while the help named it the fallback). Not --calibration none's pure roofline:
        # e2e.roofline_profile says where the two differ.
        start = e2e.roofline_profile(chip.name, backend)
    elif base is not None:
        try:
            start = load_profile(base, chip=chip)
        except InvalidInputError as error:
            # A file (unreadable, not a regular file, another chip's) says what is wrong with it;
            # a name that is no profile gets the names there are.
            if error.field != "profile" or looks_like_path(base):
                raise
            ours = [name for name in available_profiles() if name.startswith(f"{chip.name}-")]
            raise InvalidInputError(
                "--base",
                f"unknown profile {base!r}",
                f"use {NO_CALIBRATION} (the kernel formulas at their defaults), a profile YAML file"
                + (f", or one of {', '.join(ours)}" if ours else f" (no profile of {chip.name} ships)"),
            ) from None
        if start.backend != backend:
            # The fit keeps the base's kernels and engine: a trtllm base under --backend vllm wrote
            # a trtllm profile, which --calibration FILE --backend vllm then refused.
            raise InvalidInputError(
                "--base",
                f"{base} is a profile of {start.backend}'s kernels, not {backend}'s",
                f"pass --backend {start.backend}, or a --base fitted under {backend}",
            )
        base_label = base
    elif shipped in available_profiles() and load_profile(shipped).gemm and load_profile(shipped).collectives:
        start = load_profile(shipped)
        base_label = shipped
    else:
        start = e2e.roofline_profile(chip.name, backend)
    kernel_fitted = bool(start.collectives)
    names = (
        tuple(n.strip() for n in fit_names.split(","))
        if fit_names
        else (
            e2e.default_overheads(measured)
            if kernel_fitted
            else (e2e.TORUS_CHIP_FIT if chip.interconnect.kind == "torus" else e2e.ROOFLINE_CHIP_FIT)
        )
    )
    result = e2e.fit_end_to_end(measured, start, names, train.split(",") if train else None)
    # Rows used: the measured times each file gave (a benchmark run: its TTFT and TPOT), not its lines.
    measurements = {
        Path(path): sum((q.prefill_latency_s is not None) + (q.decode_step_latency_s is not None) for q in file_points)
        for path, file_points in by_file.items()
    }
    profile = e2e.stamp(result, list(measurements), _tool_version(), measurements)
    if output:
        write_profile(profile, output)
    if as_json:
        _print_json(e2e.report_dict(result, base_label))
        return
    click.echo(
        f"{profile.name}: fitted {', '.join(f'{k} = {v:.4g}' for k, v in result.values.items())} "
        f"on {', '.join(result.train_groups)}"
    )
    # "roofline med" is --calibration none's pure roofline; the base's column is named after the
    # base (--base, the shipped kernel profile by default), which was labelled the roofline's, and
    # under --base none "base med", which read as the roofline's again (tpu-v4 figure8: 57.4% and
    # 56.4%, e2e.roofline_profile's formulas not being the roofline's).
    base_column = f"{base_label} med"
    width = max(9, len(base_column))
    click.echo(f"{'group':12s} {'rows':>5s} {'roofline med':>12s} {base_column:>{width}s} {'med':>7s} {'p90':>7s}  how")
    for group, e in result.held_out.items():
        click.echo(
            f"{group:12s} {int(e['rows']):5d} {e['roofline_median']:12.1%} {e['before_median']:{width}.1%} "
            f"{e['median']:7.1%} {e['p90']:7.1%}  {e['how']}"
        )
    for name, q in result.by_quantity.items():
        click.echo(
            f"{name} over every group ({q['rows']} rows): held out median {q['median']:.1%}, p90 {q['p90']:.1%}, "
            f"predicted / measured {q['median_ratio']:.2f}x ({base_label} median {q['before_median']:.1%})"
        )
    for warning in result.warnings:
        click.echo(f"! {warning}")
    if output:
        click.echo(f"wrote {output}")


@cli.command("recommend")
@MODEL_OPTION
@click.option(
    "--hardware",
    required=True,
    multiple=True,
    help="Catalog name of a GPU (tuner hardware) or a chip YAML file (tuner hardware --template); repeat it to "
    "plan several chips (each under its own shipped profile) and compare them with --price.",
)
@click.option(
    "--price",
    "prices",
    multiple=True,
    metavar="CHIP=USD",
    help="Your price of one --hardware chip for an hour, dollars (e.g. --price h100-sxm=2.49; the catalog has "
    "none): adds dollars per hour and per million output tokens, and ranks several chips by them. One per "
    "--hardware, or none.",
)
@click.option(
    "--request-rate", type=float, callback=_request_rate, required=True, help="Poisson arrivals, requests per second."
)
@click.option("--prompt-len", type=int, required=True, help="Prompt tokens per request.")
@click.option("--gen-len", type=int, required=True, help="Generated tokens per request.")
@click.option("--max-ttft-s", type=float, required=True, help="SLA: mean time to first token, seconds.")
@click.option("--max-tpot-s", type=float, required=True, help="SLA: mean time per output token, seconds.")
@click.option(
    "--max-ttft-p90-s",
    type=float,
    default=None,
    help="SLA, in addition to the means: 90th percentile time to first token, seconds (the steady state's "
    "ttft_p90_s, validated against tuner simulate: docs/serving.md).",
)
@click.option("--max-ttft-p99-s", type=float, default=None, help="SLA: 99th percentile time to first token, seconds.")
@click.option("--max-tpot-p99-s", type=float, default=None, help="SLA: 99th percentile time per output token, seconds.")
@click.option("--max-chips", type=int, default=DEFAULT_MAX_CHIPS, show_default=True, help="Chip budget.")
@click.option(
    "--mode",
    type=LazyChoice("cost_models.capacity:MODES", "both"),
    default="both",
    show_default=True,
    help="Serving modes to plan.",
)
@click.option(
    "--kv-bits",
    type=BITS,
    default="16",
    show_default=True,
    help="KV cache format of every candidate (fp8: the engines' fp8 KV cache, half the bytes of 16-bit).",
)
@CALIBRATION_OPTION
@BACKEND_OPTION
@click.option(
    "--export",
    "export_engine",
    type=LazyChoice("tuner.export:ENGINES"),
    default=None,
    help="Write each mode's best plan as this engine's launch files (tuner export's flags, the knobs the plan was "
    "scored with) and a README of its predictions into --out; plans for that engine [--backend].",
)
@click.option(
    "--out",
    default=None,
    callback=_refuse_empty_path,
    help="With --export: the directory to write [recommend-MODEL-HARDWARE-ENGINE].",
)
@click.option("--force", is_flag=True, help="With --export: write into a --out directory that is not empty.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of tables.")
def recommend_command(
    model: str,
    hardware: tuple[str, ...],
    prices: tuple[str, ...],
    request_rate: float,
    prompt_len: int,
    gen_len: int,
    max_ttft_s: float,
    max_tpot_s: float,
    max_ttft_p90_s: float | None,
    max_ttft_p99_s: float | None,
    max_tpot_p99_s: float | None,
    max_chips: int,
    mode: str,
    kv_bits: str,
    calibration: str,
    backend: str | None,
    export_engine: str | None,
    out: str | None,
    force: bool,
    as_json: bool,
) -> None:
    """Fewest chips serving --request-rate within the TTFT and TPOT SLA: replicas or xPyD pools
    (an MoE model's instances, in either, also TP x DP x EP with attention DP); with several
    --hardware and --price, each chip's plan ranked by dollars; with --export, the best plans'
    launch files."""
    from cost_models.calibration import AUTO_CALIBRATION, NO_CALIBRATION
    from cost_models.capacity import MODES, problem, recommend
    from tuner.recommend_report import (
        chip_prices,
        comparison_dict,
        print_comparison,
        print_recommend,
        recommend_dict,
        with_price,
    )

    price_of = chip_prices(hardware, prices)
    if export_engine is None:
        for flag, value in (("--out", out), ("--force", force or None)):
            if value is not None:
                raise InvalidInputError(
                    flag, "only used with --export (nothing is written)", f"add --export ENGINE or drop {flag}"
                )
    else:
        from tuner.recommend_export import default_out_dir, refuse_out_dir

        if len(hardware) > 1:
            raise InvalidInputError(
                "--export",
                f"writes one chip's plan, and {len(hardware)} --hardware are compared",
                "pass one --hardware",
            )
        if backend is not None and backend != export_engine:
            # The flags carry the knobs the plan was scored with: those are --backend's engine's.
            raise InvalidInputError(
                "--export",
                f"{export_engine}'s flags for a plan scored as {backend}'s (its batch, token budget and memory knobs)",
                f"pass --export {backend}, or --backend {export_engine}",
            )
        # Without --backend the plan is scored for the engine exported (its knobs, its profile under auto).
        backend = export_engine
        out = out or default_out_dir(model, hardware[0], export_engine)
        refuse_out_dir(out, force)
    if len(hardware) > 1 and calibration not in (AUTO_CALIBRATION, NO_CALIBRATION):
        # A profile is fitted on one chip's kernels: each chip of a comparison takes its own.
        raise InvalidInputError(
            "--calibration",
            f"{calibration} is one chip's profile, and {len(hardware)} --hardware are compared",
            "use auto (each chip's shipped profile) or none, or plan one --hardware with that profile",
        )
    reports = []
    for chip in hardware:
        p = problem(
            model,
            chip,
            request_rate=request_rate,
            prompt_len=prompt_len,
            gen_len=gen_len,
            max_ttft_s=max_ttft_s,
            max_tpot_s=max_tpot_s,
            max_ttft_p90_s=max_ttft_p90_s,
            max_ttft_p99_s=max_ttft_p99_s,
            max_tpot_p99_s=max_tpot_p99_s,
            max_chips=max_chips,
            backend=backend,
            calibration=calibration,
            kv_bits=kv_bits,
        )
        report = recommend_dict(p, recommend(p, MODES if mode == "both" else (mode,)))
        reports.append(report if price_of is None else with_price(report, price_of[chip]))
    if len(reports) == 1:  # one chip: its plan, as before prices (the dollars added where priced)
        written = None
        if export_engine is not None:
            written = _recommend_export(p, reports[0], export_engine, str(out))
            reports[0] = {**reports[0], "export": {"engine": export_engine, "out": out, "files": written}}
        if as_json:
            _print_json(reports[0])
        else:
            print_recommend(reports[0])
            for path in written or []:
                click.echo(f"wrote {path}")
        if export_engine is not None and not written:
            raise InvalidInputError(
                "--export",
                "no plan meets the SLA within --max-chips: nothing written",
                "relax the SLA or raise --max-chips",
            )
        return
    comparison = comparison_dict(reports)
    if as_json:
        _print_json(comparison)
    else:
        print_comparison(comparison)


def _recommend_export(p: Any, report: dict, engine: str, out: str) -> list[str]:
    """The best plans' launch files under ``out`` (none where no mode has a plan)."""
    from tuner.recommend_export import export_files, plan_exports, write_exports

    exports = plan_exports(p, report, engine)
    return write_exports(out, export_files(report, exports)) if exports else []


def _print_json(data: object) -> None:
    # allow_nan=False: scripts get standard JSON or an error, never Infinity/NaN.
    click.echo(json.dumps(data, indent=2, allow_nan=False))


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the CLI, turning bad input into one line and exit code 2."""
    from tuner.allocator import reuse_freed_memory
    from tuner.signals import Terminated, commands_started

    early_exit = commands_started()
    if early_exit is not None:  # Ctrl-C or SIGTERM while the imports loaded
        click.echo(INTERRUPTED_BEFORE_START, err=True)
        return early_exit
    reuse_freed_memory()  # repeated cost-model calls reuse their memory (tuner/allocator.py)
    try:
        cli.main(args=argv, prog_name="tuner", standalone_mode=False)
    except InvalidInputError as error:
        click.echo(f"error: {printable(str(error))}", err=True)
        # tuner.storage.StorageError: 2 for a wrong URL or path, 1 for the server, driver or disk.
        return getattr(error, "exit_code", EXIT_BAD_INPUT)
    except click.exceptions.NoArgsIsHelpError as error:  # `tuner` alone: show help, not an error
        click.echo(error.ctx.get_help() if error.ctx else str(error))
        return 0
    except click.ClickException as error:
        # Click lays out a missing choice option's choices as ":\n\tprefill,\n\tdecode": one
        # line for them, before control characters are escaped.
        message = error.format_message().replace("\n\t", " ")
        click.echo(f"error: {printable(message)}", err=True)
        return EXIT_BAD_INPUT
    except click.exceptions.Abort:
        # A KeyboardInterrupt that escaped the command: the search loop catches its own (and
        # writes what is finished), so this one came before any trial was being written.
        click.echo(INTERRUPTED_BEFORE_FINISH, err=True)
        return 130
    except Terminated as error:  # SIGTERM outside a search (a search writes its own line)
        click.echo(INTERRUPTED_BEFORE_FINISH, err=True)
        return int(error.code)  # type: ignore[arg-type]
    return 0


@cli.command("measure")
@click.option(
    "--out",
    "out_dir",
    required=True,
    type=click.Path(file_okay=False),
    callback=_refuse_empty_path,
    help="Directory for the CSV files (created if missing).",
)
@click.option(
    "--system",
    default=None,
    help="Name for the `system` column, as in the kernel database (e.g. h100_sxm) "
    "[default: derived from the device kind].",
)
@click.option(
    "--sweep",
    type=click.Choice(["tiny", "small", "full"]),
    default="small",
    show_default=True,
    help="Grid size: tiny (seconds, a check), small (minutes), full (hours). With --shapes-from: "
    "the collectives' message sizes only.",
)
@click.option(
    "--ops",
    default="gemm,attention,collectives",
    show_default=True,
    help="Comma-separated operator classes to measure.",
)
@click.option(
    "--repeats",
    type=WholeNumber(1),
    default=10,
    show_default=True,
    help="Timed samples per point (each up to 200 calls queued back to back); the median is written.",
)
@click.option(
    "--warmup",
    type=WholeNumber(0),
    default=3,
    show_default=True,
    help="Untimed calls per point after compiling.",
)
@click.option(
    "--shapes-from",
    "shapes_from",
    multiple=True,
    type=click.Path(dir_okay=False),
    help="Kernel file (gemm_perf / *_attention_perf, e.g. data/kernels/gemm_perf.csv.gz); repeatable. "
    "Time its GEMM and attention points instead of the sweep's grids, to set this chip beside the rows.",
)
@click.option(
    "--shapes-system",
    default=None,
    help="With --shapes-from: only the rows of this system (e.g. h200_sxm) [default: every row].",
)
@click.option(
    "--resume",
    is_flag=True,
    help="Keep the rows already in --out's files (same system, jax version and point) and measure "
    "only the rest: after Ctrl-C, SIGTERM or a lost machine.",
)
@click.option(
    "--force",
    is_flag=True,
    help="Measure every point again over the files an earlier run left in --out (their rows are lost).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def measure_command(
    out_dir: str,
    system: str | None,
    sweep: str,
    ops: str,
    repeats: int,
    warmup: int,
    shapes_from: tuple[str, ...],
    shapes_system: str | None,
    resume: bool,
    force: bool,
    as_json: bool,
) -> None:
    """Microbenchmark the local accelerators with JAX into kernel-database CSVs (tuner calibrate).

    Ctrl-C or SIGTERM stops between points: the files hold every point measured so far, and the
    same command with --resume measures the rest (exit 130 / 143)."""
    from tuner.measure import earlier_files, parse_ops, print_summary, progress_bars, read_shapes, run_measurements
    from tuner.signals import stop_on_signals

    if shapes_system is not None and not shapes_from:
        raise InvalidInputError("--shapes-system", "given without --shapes-from", "add --shapes-from FILE or drop it")
    parsed_ops = parse_ops(ops)
    sweep_given = click.get_current_context().get_parameter_source("sweep") != click.core.ParameterSource.DEFAULT
    if shapes_from and sweep_given and "collectives" not in parsed_ops:
        # The files' points replace the sweep's GEMM and attention grids: --sweep was ignored.
        _refuse_together(
            "--sweep",
            "--shapes-from",
            "the files' points replace the sweep's GEMM and attention grids (it sizes only the collectives)",
            "drop --sweep, or drop --shapes-from to measure the sweep's grids",
        )
    if shapes_from and not {"gemm", "attention"} & set(parsed_ops):
        _refuse_together(
            "--shapes-from",
            f"--ops {','.join(parsed_ops)}",
            "its GEMM and attention points are all it replays; the collectives keep the sweep's sizes",
            "add gemm or attention to --ops, or drop --shapes-from",
        )
    if force and resume:
        _refuse_together("--force", "--resume", "--resume keeps the rows already measured, --force measures them again")
    earlier = earlier_files(out_dir, parsed_ops)
    if earlier and not (resume or force):
        # Without --resume a run replaced them whole: hours of measurements lost without a word.
        raise InvalidInputError(
            "--out",
            f"{earlier[0]} exists (an earlier run's)",
            "add --resume to keep its rows and measure the rest, --force to measure all again over it, "
            "or another --out",
        )
    shapes = read_shapes(shapes_from, shapes_system) if shapes_from else None
    resume_hint = f"the rows measured so far are in {out_dir}; add --resume to the same command to measure the rest"
    with stop_on_signals() as stop, progress_bars() as update:  # stderr, --json or not
        try:
            result = run_measurements(
                out_dir,
                system=system,
                sweep=sweep,
                ops=parse_ops(ops),
                repeats=repeats,
                warmup=warmup,
                on_progress=update,
                shapes=shapes,
                stop=stop,
                resume=resume,
            )
        except KeyboardInterrupt:  # a second Ctrl-C, inside a point: that class's rows are written
            click.echo(f"interrupted: {resume_hint}", err=True)
            raise SystemExit(130) from None
    if as_json:
        _print_json(result.summary())
    else:
        print_summary(result)
    if result.interrupted:
        click.echo(f"interrupted: {resume_hint}", err=True)
        raise SystemExit(stop.exit_code)
    if stop():  # the signal came with the last point: nothing is left to measure
        click.echo(f"interrupted as the run ended: every file in {out_dir} is complete", err=True)
        raise SystemExit(stop.exit_code)


if __name__ == "__main__":
    sys.exit(main())
