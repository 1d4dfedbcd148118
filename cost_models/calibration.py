"""Calibration profiles: the fitted parameters of the efficiency model, as data.

One YAML file per (chip, serving engine) in ``cost_models/calibration_profiles/``, written by
``tuner calibrate`` (tuner/calibrate.py) and read here; the cost model reads profiles, it never
fits one. A profile holds, per operator class, the parameters of cost_models/efficiency.py, where
they came from (data files, row counts, fit date, tool version) and their cross-validated error
(median and p90 absolute relative error over held-out folds).

``profile_for(chip, backend)`` returns the shipped profile, or a DEFAULT for a chip without one:
every efficiency, fraction and fixed cost is the median over the shipped profiles of that backend
(over all backends when none has it), collectives use the chip's catalog interconnect (latency
and bandwidth of its fast domain), and ``fallback`` is True with the reason in
``fallback_reason``. A default's accuracy is unmeasured: its ``cv_error`` is empty.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any, get_args

import numpy as np
import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SerializerFunctionWrapHandler,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_serializer,
)

from cost_models.efficiency import (
    GEMM_FORMATS,
    CollectiveParams,
    DecodeAttentionParams,
    ElementwiseParams,
    GemmParams,
    PrefillAttentionParams,
)
from cost_models.errors import InvalidInputError, from_validation_error
from cost_models.hardware import HardwareSpec, ServingEngine, SwitchedInterconnect, get_hardware, is_catalog_chip
from cost_models.input_files import read_regular_text
from cost_models.moe_kernel_time import MOE_ONLY_FORMATS, MoeKernelParams, borrowed_moe_class

#: A chip as the calibration functions take it: a catalog name, or the spec (a chip from a file).
Chip = str | HardwareSpec


def _chip(chip: Chip) -> HardwareSpec:
    return chip if isinstance(chip, HardwareSpec) else get_hardware(chip)


def _shipped_name(chip: HardwareSpec, backend: str) -> str | None:
    """The shipped profile of a catalog chip under ``backend``; None for a chip from a file."""
    name = f"{chip.name}-{backend}"
    return name if is_catalog_chip(chip) and name in available_profiles() else None


#: Serving engines a profile can describe: the three GPU engines of the kernel database, and JAX
#: (Pope et al.'s own TPU implementation, fitted end to end on their measurements).
Backend = ServingEngine
BACKENDS: tuple[str, ...] = get_args(Backend)
_FROZEN = ConfigDict(frozen=True, extra="forbid")
_PROFILE_DIR = "calibration_profiles"


class DataFile(BaseModel):
    model_config = _FROZEN
    path: str
    rows_used: int = Field(ge=0)
    source: str = Field(description="The file's provenance (# lines), condensed.")


class Provenance(BaseModel):
    model_config = _FROZEN
    data_files: list[DataFile]
    fit_date: str
    tool_version: str
    seed: int
    folds: int
    notes: list[str] = []


class HeldOutError(BaseModel):
    """Absolute relative error |predicted/measured - 1| over held-out rows (k-fold CV)."""

    model_config = _FROZEN
    rows: int = Field(ge=0)
    median: float = Field(ge=0)
    p90: float = Field(ge=0)
    #: The rows median and p90 (and the roofline's) are measured on, where more than the ``rows``
    #: fitted: every row of the group the data holds, each predicted by a fold's fit that never
    #: saw its shape (tuner.fitting.cross_validate's fit_rows). Absent: the rows fitted.
    held_out_rows: int | None = Field(default=None, ge=0)
    roofline_median: float = Field(ge=0, description="The same rows, pure roofline (before).")
    roofline_p90: float = Field(ge=0)
    #: GEMM groups with a shape correction (cost_models/gemm_shape.py): the held-out error of the
    #: parametric fit alone on the same rows and folds (median and p90 are with the correction).
    fit_only_median: float | None = Field(default=None, ge=0)
    fit_only_p90: float | None = Field(default=None, ge=0)
    #: A fused-MoE class fitted on fewer expert shapes than folds (tuner.moe_kernels: a
    #: weight-only format refitted from the class it borrowed, held out by moe_tp slices): the
    #: shapes ("hidden/inter_size/experts/top-k") it saw, which the estimate names, since any other
    #: expert shape extrapolates from them.
    expert_shapes: list[str] | None = None
    warnings: list[str] = []

    @model_serializer(mode="wrap")
    def _without_absent_fit_only(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # Only groups fitted with tuner calibrate --shape-correction have them: the others are
        # written as before the fields existed, byte for byte (the shipped profiles).
        data = handler(self)
        for key in ("fit_only_median", "fit_only_p90", "expert_shapes", "held_out_rows"):
            if data.get(key, 0) is None:
                del data[key]
        return data


class CalibrationProfile(BaseModel):
    """Fitted efficiency parameters of one chip under one serving engine."""

    # Finite overheads only: per_step_overhead_s: .inf made every latency inf or NaN.
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    chip: str = Field(description="Hardware catalog name.")
    backend: Backend
    fallback: bool = Field(default=False, description="True: a DEFAULT, not fitted on this chip.")
    fallback_reason: str | None = None
    #: gemm_dtype of the kernel database -> parameters.
    gemm: dict[str, GemmParams] = {}
    #: "attn_dtype/kv_cache_dtype" (e.g. "bfloat16/fp8") -> parameters.
    prefill_attention: dict[str, PrefillAttentionParams] = {}
    #: kv_cache_dtype -> parameters.
    decode_attention: dict[str, DecodeAttentionParams] = {}
    elementwise: ElementwiseParams = ElementwiseParams()
    #: implementation ("nccl", "custom", "custom_graph", "custom_eager") -> kind -> group size.
    collectives: dict[str, dict[str, dict[int, CollectiveParams]]] = {}
    per_layer_overhead_s: float = Field(
        default=0.0,
        ge=0,
        description="Fixed engine cost per transformer layer per forward step "
        "(Python/scheduling glue between kernels). 0 until fitted from end-to-end runs.",
    )
    collective_step_s: float = Field(
        default=0.0,
        ge=0,
        description="Fixed latency of one synchronized step of a collective (a ring step along "
        "one torus axis: topology.Network.collective_steps), charged per block on top of the "
        "block's work, not hidden behind it: on TPUs, where one compiled program runs the whole "
        "step and no kernel is launched, what a fixed cost per layer is made of. 0 until fitted "
        "from end-to-end runs.",
    )
    per_step_overhead_s: float = Field(
        default=0.0,
        ge=0,
        description="Fixed engine cost per forward step (scheduler, sampling, "
        "batch assembly). 0 until fitted from end-to-end runs.",
    )
    #: MoE format of the kernel database (bfloat16, fp8, fp8_block, int4_wo) -> the fused MoE
    #: kernel's parameters (cost_models/moe_kernel_time.py). Optional: a format without them (or a
    #: profile written before they existed) times the experts as grouped dense GEMMs.
    moe: dict[str, MoeKernelParams] = {}
    #: "moe/<format>" -> held-out error of the MoE fit; apart from ``cv_error`` so that the engine
    #: chosen by :func:`default_backend` (mean of the kernel classes' errors) does not move.
    moe_cv_error: dict[str, HeldOutError] = {}
    network_eff: float = Field(
        default=1.0,
        gt=0,
        le=1,
        description="Fraction of the catalog's link bandwidth collectives reach on "
        "networks with no measured collectives (TPU tori). 1 until fitted from end-to-end runs.",
    )
    provenance: Provenance | None = None
    #: "gemm/bfloat16", "prefill_attention/bfloat16/bfloat16", "collectives/nccl/all_reduce", ...
    cv_error: dict[str, HeldOutError] = {}
    #: The file a profile was read from (None: shipped, or made in memory). Not a field: a file's
    #: numbers are the profile, but its name is the shipped one's ("h100-sxm-vllm"), so outputs
    #: name the file too, else a user's own fit and the shipped profile read the same.
    _file: str | None = PrivateAttr(default=None)

    @property
    def source_file(self) -> str | None:
        return self._file

    def gemm_params(self, gemm_format: str) -> GemmParams:
        return _pick(self.gemm, gemm_format, f"{self.name}.gemm")

    def prefill_params(self, attn_dtype: str = "bfloat16", kv_dtype: str = "bfloat16") -> PrefillAttentionParams:
        return _pick(self.prefill_attention, f"{attn_dtype}/{kv_dtype}", f"{self.name}.prefill_attention")

    def decode_params(self, kv_dtype: str = "bfloat16") -> DecodeAttentionParams:
        return _pick(self.decode_attention, kv_dtype, f"{self.name}.decode_attention")

    def collective_params(self, kind: str, implementation: str = "nccl") -> dict[int, CollectiveParams]:
        table = _pick(self.collectives, implementation, f"{self.name}.collectives")
        return _pick(table, kind, f"{self.name}.collectives.{implementation}")

    @field_validator("gemm", "moe")
    @classmethod
    def _known_formats(cls, table: dict, info: ValidationInfo) -> dict:
        # A misspelt format (bfloat_16) was never looked up: its GEMMs ran the bf16 fit or the roofline.
        # The moe table also keys classes no dense GEMM has (MOE_ONLY_FORMATS: w4a16_mxfp4).
        known = GEMM_FORMATS + (MOE_ONLY_FORMATS if info.field_name == "moe" else ())
        unknown = [k for k in table if k not in known]
        if unknown:
            raise ValueError(f"unknown {info.field_name} format {unknown[0]!r}; use one of {', '.join(known)}")
        if info.field_name == "gemm":
            # The padding is a CUDA-graph replay's (cuda_graph_replay sets it on decode steps only):
            # in a profile it would pad every eager call too.
            padded = [k for k, v in table.items() if isinstance(v, GemmParams) and v.cuda_graph_capture]
            if padded:
                raise ValueError(
                    f"gemm {padded[0]} sets cuda_graph_capture, which the engine's CUDA-graph replay sets on its own "
                    "decode steps; remove it"
                )
        return table

    @property
    def name(self) -> str:
        return f"{self.chip}-{self.backend}"

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json", exclude_none=False), sort_keys=False, width=100)


def _pick(table: dict, key, where: str):
    if key not in table:
        raise InvalidInputError(
            where, f"no entry {key!r}", f"use one of {', '.join(map(str, table)) or '(none fitted)'}"
        )
    return table[key]


def _profile_dir():
    return resources.files("cost_models").joinpath(_PROFILE_DIR)


def available_profiles() -> list[str]:
    """Names (``<chip>-<backend>``) of the shipped profiles."""
    return sorted(p.name[:-5] for p in _profile_dir().iterdir() if p.name.endswith(".yaml"))


def _parse(text: str, where: str) -> CalibrationProfile:
    try:
        # libyaml's parser when PyYAML has it: the same values, several times faster.
        raw = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except yaml.YAMLError as error:
        raise InvalidInputError(
            where, f"not valid YAML ({str(error).splitlines()[0]})", "regenerate it with tuner calibrate"
        ) from None
    if not isinstance(raw, dict):
        raise InvalidInputError(where, "not a mapping of profile fields", "regenerate it with tuner calibrate")
    try:
        return CalibrationProfile(**raw)
    except ValidationError as error:
        raise from_validation_error(error, where) from None
    except TypeError as error:
        raise InvalidInputError(where, f"bad field names ({error})", "regenerate it") from None


def load_profile(name_or_path: str | Path, chip: Chip | None = None) -> CalibrationProfile:
    """A shipped profile by name (``h100-sxm-trtllm``) or a profile file by path. With ``chip``,
    a profile of another chip is refused."""
    text_path = Path(name_or_path)
    if str(name_or_path) in available_profiles():
        where = f"{_PROFILE_DIR}/{name_or_path}.yaml"
        text = _profile_dir().joinpath(f"{name_or_path}.yaml").read_text()
    elif text_path.suffix in (".yaml", ".yml") or text_path.exists():
        where = str(text_path)
        try:
            text = read_regular_text(text_path, "profile", "pass a profile YAML file written by tuner calibrate")
        except OSError as error:
            raise InvalidInputError(where, f"cannot read: {error.strerror}", "check the path") from None
        except UnicodeDecodeError:
            raise InvalidInputError(
                where, "not a text (UTF-8) profile file", "pass a profile YAML written by tuner calibrate"
            ) from None
    else:
        raise InvalidInputError(
            "profile",
            f"unknown profile {str(name_or_path)!r}",
            f"use a file path or one of {', '.join(available_profiles())}",
        )
    profile = _parse(text, where)
    if where == str(text_path):
        profile._file = where
    chip_name = None if chip is None else _chip(chip).name
    if profile.chip != chip_name:
        try:
            get_hardware(profile.chip)  # the chip must exist in the catalog (or be the one given)
        except InvalidInputError as error:
            raise InvalidInputError(
                f"{where}.chip", error.problem, "use the catalog name of the chip it was fitted on"
            ) from None
    if chip_name is not None and profile.chip != chip_name:
        raise InvalidInputError(
            f"{where}.chip",
            f"profile is for {profile.chip}, not {chip_name}",
            f"use a profile calibrated on {chip_name}",
        )
    return profile


@cache
def _shipped(name: str) -> CalibrationProfile:
    return load_profile(name)


def profile_for(chip: Chip, backend: str) -> CalibrationProfile:
    """The shipped profile of ``chip`` under ``backend``, or the documented DEFAULT (always for a
    chip from a file: no profile was fitted on it)."""
    if backend not in BACKENDS:
        raise InvalidInputError("backend", f"unknown backend {backend!r}", f"use one of {', '.join(BACKENDS)}")
    spec = _chip(chip)
    name = _shipped_name(spec, backend)
    if name is not None:
        return _shipped(name)
    return default_profile(spec, backend)


def _median_params(cls, items: list):
    if not items:
        return cls()
    fields = {}
    for field in cls.model_fields:
        if field in ("shape_correction", "kernel_dispatch", "cuda_graph_capture") or field.startswith(
            "dispatch_factor_"
        ):
            # A table of one chip's measured GEMM shapes, one engine's kernel dispatch on one chip
            # (cost_models/gemm_dispatch.py) and its configurations' speeds: a chip without a
            # profile has none. (The CUDA-graph padding is a replay's view, never a profile's.)
            continue
        values = [getattr(p, field) for p in items if getattr(p, field) is not None]
        if values:
            fields[field] = float(np.median(values))
    return cls(**fields)


@cache
def default_profile(chip_name: Chip, backend: str) -> CalibrationProfile:
    """DEFAULT for a chip without a shipped profile (see the module docstring)."""
    chip = _chip(chip_name)
    own = "" if is_catalog_chip(chip) else " (a chip from a file: no shipped profile)"
    shipped = [_shipped(n) for n in available_profiles()]
    same = [p for p in shipped if p.backend == backend] or shipped
    gemm_keys = sorted({k for p in same for k in p.gemm})
    prefill_keys = sorted({k for p in same for k in p.prefill_attention})
    decode_keys = sorted({k for p in same for k in p.decode_attention})
    net = chip.interconnect
    if isinstance(net, SwitchedInterconnect):  # the fast domain (NVLink); a zero latency counts as 1 us
        latency, bandwidth = net.domain_latency_s or 1e-6, net.domain_bandwidth_bytes_per_s
    else:
        latency, bandwidth = net.hop_latency_s, net.link_bandwidth_bytes_per_s
    one = CollectiveParams(latency_s=latency, bandwidth_bytes_per_s=bandwidth)
    kinds = ("all_reduce", "all_gather", "reduce_scatter", "alltoall")
    return CalibrationProfile(
        chip=chip.name,
        backend=backend,
        fallback=True,
        fallback_reason=(
            f"no profile fitted on {chip.name}{own} under {backend}: median parameters of "
            f"{len(same)} shipped profiles; collectives from the catalog interconnect"
        ),
        gemm={k: _median_params(GemmParams, [p.gemm[k] for p in same if k in p.gemm]) for k in gemm_keys},
        prefill_attention={
            k: _median_params(
                PrefillAttentionParams, [p.prefill_attention[k] for p in same if k in p.prefill_attention]
            )
            for k in prefill_keys
        },
        decode_attention={
            k: _median_params(DecodeAttentionParams, [p.decode_attention[k] for p in same if k in p.decode_attention])
            for k in decode_keys
        },
        elementwise=_median_params(ElementwiseParams, [p.elementwise for p in same]),
        collectives={"nccl": {kind: {g: one for g in (2, 4, 8)} for kind in kinds}},
    )


def default_backend(chip: Chip) -> str:
    """The engine whose shipped profile of ``chip`` predicts its kernels best (lowest mean of
    the held-out median errors over operator classes). Where the chip has none: the first engine
    that runs on it (:meth:`HardwareSpec.serving_engines`): trtllm on an NVIDIA GPU, vllm on an
    AMD one (TensorRT-LLM is CUDA-only: its knobs and fits would describe an engine that cannot
    launch there), jax on a TPU."""
    spec = _chip(chip)
    engines = spec.serving_engines()
    scores = {}
    for backend in engines:
        name = _shipped_name(spec, backend)
        if name is not None:
            errors = [e.median for e in _shipped(name).cv_error.values()]
            scores[backend] = float(np.mean(errors)) if errors else np.inf
    return min(scores, key=lambda b: scores[b]) if scores else engines[0]


def check_engine_runs(backend: str, chip: Chip, fix: Callable[[tuple[str, ...]], str] | None = None) -> None:
    """Refuse ``backend`` on a chip it does not run on (TensorRT-LLM on an AMD GPU or a TPU):
    its knobs and export would describe a deployment no one can launch. ``fix`` words the remedy
    from the chip's engines (default: the commands' ``--backend`` flag; a spec says ``backend:``)."""
    spec = _chip(chip)
    engines = spec.serving_engines()
    if backend in BACKENDS and backend not in engines:
        if fix is None:
            others = f" (or one of {', '.join(engines[1:])})" if len(engines) > 1 else ""
            remedy = f"use --backend {engines[0]}{others}"
        else:
            remedy = fix(engines)
        raise InvalidInputError(
            "backend", f"{backend} does not run on {spec.name} (its engines: {', '.join(engines)})", remedy
        )


#: What ``--calibration`` takes besides a profile name or path.
NO_CALIBRATION, AUTO_CALIBRATION = "none", "auto"


def resolve_calibration(
    choice: str | CalibrationProfile | None, chip: Chip, backend: str | None = None
) -> CalibrationProfile | None:
    """The profile a command uses: ``none`` -> None (the pure roofline of the papers); ``auto``
    (or None) -> the shipped profile of the chip under ``backend`` (default: the best measured
    one), or the documented DEFAULT where none was fitted; otherwise a shipped profile's name or a
    profile file, which must describe the chip (a catalog name, or the spec of a chip from a file)."""
    chip_name = _chip(chip).name
    if isinstance(choice, CalibrationProfile):
        if choice.chip != chip_name:
            raise InvalidInputError(
                "calibration",
                f"profile {choice.name} is for {choice.chip}, not {chip_name}",
                f"use a profile of {chip_name}, or none",
            )
        return choice
    if choice == NO_CALIBRATION:
        return None
    if backend is not None and backend not in BACKENDS:
        raise InvalidInputError("backend", f"unknown backend {backend!r}", f"use one of {', '.join(BACKENDS)}")
    if backend is not None:
        check_engine_runs(backend, chip)
    if choice is None or choice == AUTO_CALIBRATION:
        return profile_for(chip, backend or default_backend(chip))
    profile = load_profile(choice, chip=chip)
    if backend is not None and profile.backend != backend:
        # The profile's kernels are one engine's; the engine's knobs would be another's.
        raise InvalidInputError(
            "backend",
            f"{backend} conflicts with calibration {choice} (a profile of {profile.backend}'s kernels)",
            f"drop --backend, pass --backend {profile.backend}, or use --calibration auto with --backend {backend}",
        )
    return profile


def serving_engine(backend: str | None, profile: CalibrationProfile | None, chip: Chip) -> str:
    """The engine an estimate runs (its knobs, the export's target): ``backend`` when given, else the
    calibration profile's, else the engine measured best on the chip (:func:`default_backend`).
    One rule for ``tuner estimate``, ``simulate``, ``recommend`` and a study."""
    if backend is not None:
        check_engine_runs(backend, chip)
        return backend
    return profile.backend if profile is not None else default_backend(chip)


#: Engines whose decode steps replay CUDA graphs by default: vLLM captures its decode batches
#: (CompilationConfig cudagraph_capture_sizes, up to 512; ``enforce_eager`` off by default) and
#: SGLang its decode batches up to ``cuda_graph_max_bs`` (``--disable-cuda-graph`` off by
#: default). A replay launches the captured kernels without the Python or C++ host work of each
#: call, so a GEMM's per-call host floor (GemmParams.host_floor_s, large_m_launch_s: the time
#: = max(kernel, floor) the kernel microbenchmarks of these engines measure one eager call at a
#: time, 50-320 us a call for vLLM's DeepGEMM fp8_block path on H100-GB200 and L40S) is not paid
#: in their decode steps. TensorRT-LLM's floors (4-12 us, fp8 and nvfp4) stay as fitted: its
#: serving overheads are fitted on measured runs with them (docs/accuracy.md).
CUDA_GRAPH_DECODE_BACKENDS = ("vllm", "sglang")
# Each profile's CUDA-graph view, by id (the original kept alive beside it, so no id is reused).
_GRAPH_REPLAY: dict[int, tuple[CalibrationProfile, CalibrationProfile]] = {}


def cuda_graph_replay(profile: CalibrationProfile | None) -> CalibrationProfile | None:
    """``profile`` as a CUDA-graph replay of an iteration sees it (:data:`CUDA_GRAPH_DECODE_BACKENDS`):
    the dense GEMMs at m padded to the engine's captured sizes (GemmParams.cuda_graph_capture,
    cost_models/cuda_graph_capture.py) and without their per-call host floor, and the
    block-scaled fp8 path without its host-side fixed costs (below); ``profile`` itself under
    other engines. Which iterations replay is :class:`CudaGraphs`' rule: under vLLM every iteration of
    up to its capture size in scheduled tokens (512 by default), under SGLang decode-only batches
    of up to ``cuda_graph_max_bs`` sequences; any other iteration runs eager and is timed with
    ``profile`` itself (its floors paid on every call, as the kernel database measured them) and
    the eager all-reduce (calibrated_times.CalibratedNetwork.eager). A static prefill is eager."""
    if profile is None or profile.backend not in CUDA_GRAPH_DECODE_BACKENDS:
        return profile
    known = _GRAPH_REPLAY.get(id(profile))
    if known is not None and known[0] is profile:
        return known[1]
    # The block-scaled path's fixed costs beyond the kernels are host work too: vLLM's fp8_block fits
    # put 18-103 us in launch_s and 3-134 us in unaligned_m_s (gb200: 103 and 134 us a call, where
    # its per-tensor fp8 GEMM, a CUTLASS kernel and its activation quantization, has 5.4 us and
    # none, and SGLang's DeepGEMM fp8_block 11 us and none). Replayed, a call's fixed cost is its
    # kernels' launch: at most the same profile's per-tensor fp8 launch (two kernels, 4-5 us).
    plain = profile.gemm.get("fp8")
    floored = {}
    for fmt, params in profile.gemm.items():
        # The replay runs the GEMMs at the engine's next captured size (cuda_graph_capture.py).
        update: dict[str, float | str] = {"cuda_graph_capture": profile.backend}
        if params.host_floor_s > 0 or params.large_m_launch_s > 0:
            update |= {"host_floor_s": 0.0, "large_m_launch_s": 0.0}
        if fmt == "fp8_block" and plain is not None:
            if params.launch_s > plain.launch_s:
                update["launch_s"] = plain.launch_s
            if params.unaligned_m_s > 0:
                update["unaligned_m_s"] = 0.0
        floored[fmt] = params.model_copy(update=update)
    replay = profile.model_copy(update={"gemm": {**profile.gemm, **floored}}) if floored else profile
    _GRAPH_REPLAY[id(profile)] = (profile, replay)
    return replay


def gemm_fit_format(profile: CalibrationProfile, fmt: str) -> str | None:
    """The format whose dense GEMM fit times ``fmt`` under ``profile``: its own, else the one it
    borrows (the block-scaled fp8 GEMM the per-tensor fp8 one's, the same tensor cores; any format
    the bf16 fit, at its own peak and bytes: calibrated_times._gemm_params); None where the profile
    has neither (the roofline times it)."""
    if fmt in profile.gemm:
        return fmt
    for name in (("fp8",) if fmt == "fp8_block" else ()) + ("bfloat16",):
        if name in profile.gemm:
            return name
    return None


def calibration_report(
    profile: CalibrationProfile | None,
    backend_chosen: bool = False,
    moe_format: str | None = None,
    gemm_formats: tuple[str, ...] = (),
) -> dict:
    """What every table and JSON output says about the calibration in force; ``backend_chosen``:
    the engine was picked as the one measured best (no --backend, --calibration auto);
    ``moe_format``: the GEMM format of an MoE model's experts (calibrated_times.gemm_format), whose
    fused-MoE class the ``moe_kernel`` line names where it is another format's; ``gemm_formats``:
    the dense GEMM kernels the deployment runs (calibrated_times.dense_gemm_format), each one the
    profile has no fit for named in ``gemm_borrowed`` with the fit that times it (or "roofline")."""
    if profile is None:
        note = "pure roofline (a lower bound but for its assumed collective latency): no calibration"
        return {"profile": NO_CALIBRATION, "note": note}
    report = {"profile": profile.name, "chip": profile.chip, "backend": profile.backend, "fallback": profile.fallback}
    if profile.source_file is not None:
        report["file"] = profile.source_file
    # A profile fitted from some kernel files (tuner measure --ops gemm, one --kernels file) times
    # the classes it has no fit for on the roofline, faster than any engine runs them.
    missing = [
        name
        for name, fitted in (
            ("gemm", profile.gemm),
            ("prefill attention", profile.prefill_attention),
            ("decode attention", profile.decode_attention),
            ("collectives", profile.collectives or profile.collective_step_s > 0 or profile.network_eff != 1.0),
        )
        if not fitted
    ]
    if missing:
        report["roofline_for"] = missing
    if profile.gemm:
        # An fp8 or weight-only GEMM timed by the bf16 fit (at its own peak and bytes, without the
        # bf16 kernels' shape correction) is not a measurement of that kernel: say so where the
        # deployment runs it (a100 profiles have no fp8 fit, most GPU profiles no int8_wo/int4_wo).
        sources = {f: gemm_fit_format(profile, f) or "roofline" for f in dict.fromkeys(gemm_formats)}
        gemm_borrowed = {f: source for f, source in sources.items() if source != f}
        if gemm_borrowed:
            report["gemm_borrowed"] = gemm_borrowed
        # How far the GEMM kernels this deployment runs are from the measurements, held out
        # (median and p90 of |predicted / measured - 1| over folds by weight shape: what
        # docs/accuracy.md lists per group): the spread a user should read the latencies with (l40s
        # bf16 GEMMs: p90 21-30%, h100/h200 TRT-LLM fp8: 6%).
        held_out = {
            f: {"median": error.median, "p90": error.p90}
            for f, source in sources.items()
            if source == f and (error := profile.cv_error.get(f"gemm/{f}")) is not None
        }
        if held_out:
            report["gemm_held_out_error"] = held_out
    # A profile fitted on end-to-end points (TPU v4 on Pope et al.'s tables; `tuner calibrate
    # --points`) stores its held-out error per group of points: the whole step's, which an
    # estimate on it should be read with (tpu-v4-jax: Figure 6 8.3%, Table 2 33% by its median).
    end_to_end = {
        key.removeprefix("end_to_end/"): {"median": error.median, "p90": error.p90, "rows": error.rows}
        for key, error in profile.cv_error.items()
        if key.startswith("end_to_end/")
    }
    if end_to_end:
        report["end_to_end_held_out_error"] = end_to_end
    moe_kernel = (
        f"fused-MoE kernel fitted ({', '.join(profile.moe)})"
        if profile.moe
        else "no fused-MoE kernel fitted: experts timed as grouped dense GEMMs"
    )
    borrowed = None if moe_format is None else borrowed_moe_class(profile.moe, moe_format)
    if borrowed is not None:
        moe_kernel += (
            f"; {moe_format} (weight-only) experts timed with the {borrowed} class at their own weight bytes "
            f"(no {moe_format} fit; "
            + (
                "weight-only kernels compute at the bf16 peak)"
                if borrowed == "bfloat16"
                else "one Marlin kernel runs 4- and 8-bit weight-only experts)"
            )
        )
    report["moe_kernel"] = moe_kernel
    if profile.fallback:
        report["note"] = profile.fallback_reason
    elif backend_chosen:
        report["note"] = f"backend {profile.backend}: the engine measured best on {profile.chip}"
    return report


def gemm_held_out_words(calibration: dict) -> str:
    """``; held-out error of gemm bfloat16: median 7.6%, p90 28%`` (:func:`calibration_report`'s
    ``gemm_held_out_error``), empty where there is none (no calibration, a fallback profile,
    only borrowed fits)."""
    errors = calibration.get("gemm_held_out_error") or {}
    return "".join(
        f"; held-out error of gemm {fmt}: median {e['median']:.1%}, p90 {e['p90']:.0%}" for fmt, e in errors.items()
    )


def end_to_end_held_out_words(calibration: dict) -> str:
    """``; held-out error end to end: figure6 median 8.3%, p90 16% (6 points), ...``
    (:func:`calibration_report`'s ``end_to_end_held_out_error``), empty where there is none."""
    errors = calibration.get("end_to_end_held_out_error") or {}
    if not errors:
        return ""
    groups = ", ".join(
        f"{group} median {e['median']:.1%}, p90 {e['p90']:.0%} ({e['rows']} points)" for group, e in errors.items()
    )
    return f"; held-out error end to end: {groups}"


def held_out_words(calibration: dict) -> str:
    """:func:`gemm_held_out_words` then :func:`end_to_end_held_out_words`: every held-out error
    :func:`calibration_report` gives, in words; empty where it gives none."""
    return gemm_held_out_words(calibration) + end_to_end_held_out_words(calibration)


def gemm_borrowed_words(calibration: dict) -> str:
    """``; gemm int8_wo: borrows bfloat16``: the deployment's GEMM formats the profile has no
    fit for (:func:`calibration_report`'s ``gemm_borrowed``), each with the fit
    that times it."""
    borrowed = calibration.get("gemm_borrowed") or {}
    return "".join(
        f"; gemm {fmt}: " + ("no fit, on the roofline" if source == "roofline" else f"borrows {source}")
        for fmt, source in borrowed.items()
    )


#: vLLM V1's largest CUDA-graph capture by default, in scheduled tokens: ``max_cudagraph_capture_size``
#: defaults to ``min(max_num_seqs * 2, 512)``, further capped at ``max_num_batched_tokens``
#: (vllm-project/vllm vllm/config/vllm.py ``_set_cudagraph_sizes``); an iteration of more
#: scheduled tokens runs with ``CUDAGraphMode.NONE``, eager (vllm/v1/cudagraph_dispatcher.py).
#: Piecewise graphs cover mixed batches, full graphs uniform decode batches: either way a
#: replay, so the rule is on the iteration's tokens alone.
VLLM_MAX_CAPTURE_TOKENS = 512.0
#: SGLang's default ``cuda_graph_max_bs`` by GPU memory (sgl-project/sglang
#: python/sglang/srt/server_args.py, ``_handle_gpu_memory_settings``; ``gpu_mem`` in MiB):
#: (memory below, sequences at tp_size < 4, at tp_size >= 4); 512 above the last (B200, GB200).
#: SGLang captures decode batches only: an iteration holding prefill (extend) tokens runs eager,
#: as does a decode batch of more sequences (model_executor/cuda_graph_runner.py ``can_run``).
_SGLANG_CUDA_GRAPH_MAX_BS: tuple[tuple[float, float, float], ...] = (
    (20 * 1024, 8, 8),  # T4, RTX 4080
    (35 * 1024, 24, 80),  # A10, RTX 4090
    (60 * 1024, 32, 160),  # A100-40GB, L40(S)
    (90 * 1024, 256, 512),  # H100, A100-80GB
    (160 * 1024, 256, 512),  # H20, H200
)
_SGLANG_CUDA_GRAPH_MAX_BS_ABOVE = 512.0


def sglang_cuda_graph_max_bs(memory_bytes: float, tensor_parallel: np.ndarray | float) -> np.ndarray:
    """SGLang's default ``cuda_graph_max_bs`` on a GPU of ``memory_bytes`` at ``tensor_parallel``
    (:data:`_SGLANG_CUDA_GRAPH_MAX_BS`)."""
    tp = np.asarray(tensor_parallel, dtype=np.float64)
    mib = float(memory_bytes) / 2**20
    for below, small, large in _SGLANG_CUDA_GRAPH_MAX_BS:
        if mib < below:
            return np.where(tp < 4, small, large).astype(np.float64)
    return np.full(tp.shape, _SGLANG_CUDA_GRAPH_MAX_BS_ABOVE)


class CudaGraphs:
    """Which serving iterations an engine replays from CUDA graphs, per deployment (n rows):
    those of at most ``max_tokens`` scheduled tokens (decode sequences + prefill tokens), and
    where ``decode_only``, only those without prefill tokens. TensorRT-LLM and JAX rows replay
    every iteration (``max_tokens`` inf): their fits and serving overheads were made so."""

    def __init__(self, max_tokens: np.ndarray, decode_only: np.ndarray) -> None:
        self.max_tokens = np.asarray(max_tokens, dtype=np.float64)
        self.decode_only = np.asarray(decode_only, dtype=bool)

    @classmethod
    def of(
        cls,
        engine: np.ndarray | str,
        *,
        max_batch_size: np.ndarray | float,
        max_num_tokens: np.ndarray | float,
        memory_bytes: float,
        tensor_parallel: np.ndarray | float,
    ) -> CudaGraphs:
        """The engines' default capture (``enforce_eager`` / ``--disable-cuda-graph`` off) for
        deployments run with these knobs: vLLM ``min(2 x max_batch_size, 512, max_num_tokens)``
        tokens (:data:`VLLM_MAX_CAPTURE_TOKENS`), SGLang :func:`sglang_cuda_graph_max_bs`
        decode sequences (its knobs do not set it)."""
        engine = np.asarray(engine)
        shape = np.broadcast_shapes(
            engine.shape, np.shape(max_batch_size), np.shape(max_num_tokens), np.shape(tensor_parallel)
        )
        seqs = np.broadcast_to(np.asarray(max_batch_size, dtype=np.float64), shape)
        budget = np.broadcast_to(np.asarray(max_num_tokens, dtype=np.float64), shape)
        vllm = np.minimum(np.minimum(2.0 * seqs, VLLM_MAX_CAPTURE_TOKENS), budget)
        sglang = np.broadcast_to(sglang_cuda_graph_max_bs(memory_bytes, tensor_parallel), shape)
        max_tokens = np.where(engine == "vllm", vllm, np.where(engine == "sglang", sglang, np.inf))
        return cls(np.broadcast_to(max_tokens, shape), np.broadcast_to(engine == "sglang", shape))

    def take(self, index: np.ndarray) -> CudaGraphs:
        """The rows ``index`` (a rule of one engine and knobs, 0-d, is every row's)."""
        if self.max_tokens.ndim == 0 and self.decode_only.ndim == 0:
            return self
        shape = np.broadcast_shapes(self.max_tokens.shape, self.decode_only.shape)
        return CudaGraphs(
            np.broadcast_to(self.max_tokens, shape)[index], np.broadcast_to(self.decode_only, shape)[index]
        )

    def replays(self, decode_seqs: np.ndarray, prefill_tokens: np.ndarray) -> np.ndarray:
        """(n,) bool: the iteration of these counts is a replay (fractional counts, the fluid
        averages, compared as they are)."""
        tokens = decode_seqs + prefill_tokens
        return (tokens <= self.max_tokens) & ~(self.decode_only & (prefill_tokens > 0))
