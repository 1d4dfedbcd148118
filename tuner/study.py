"""Searching a design space with Optuna and keeping the study in a database.

:func:`run_search` compiles a spec, opens (or resumes) its study, samples candidates in batches
from an in-memory Optuna study, scores each batch with one vectorized cost-model call, and hands
finished trials to a :class:`~tuner.storage.TrialWriter` that writes them in bulk. The stored
study is self-explanatory: the spec and its hash as study attributes, objective names through
``set_metric_names``, each trial's constraints (Optuna's ``set_constraint``, and Optuna's list for
optuna-dashboard) and full breakdown. A sampled search never spends a trial on a configuration
the study holds (:mod:`tuner.distinct`), and stops when the space is exhausted.
"""

from __future__ import annotations

import copy
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import optuna
from optuna.distributions import CategoricalDistribution
from optuna.trial import FrozenTrial, TrialState, create_trial
from sqlalchemy import exc as sa_exc

from cost_models.calibrated_times import dense_gemm_formats
from cost_models.calibration import calibration_report, gemm_borrowed_words
from cost_models.deployments import GPU_ENGINES
from cost_models.dtypes import BF16
from cost_models.errors import InvalidInputError
from search_spaces.space import (
    CompiledStudy,
    Evaluation,
    candidate_deployment,
    candidate_report,
    candidate_workload,
    compile_study,
    engine_act_dtype,
    evaluate,
    refuse_unscored_schedules,
    same_engine_rules,
    structurally_valid,
)
from search_spaces.spec import SAMPLERS, StudySpec, parse_spec, parse_stored_spec
from tuner import compact, optuna_internals
from tuner.constraints import CONSTRAINT_LIST_ATTR
from tuner.constraints import CONSTRAINT_NAMES_ATTR as CONSTRAINTS_ATTR
from tuner.distinct import DistinctConfigurations
from tuner.optuna_internals import create_study_with_attrs
from tuner.samplers import IncrementalNSGAIISampler
from tuner.storage import (
    StorageError,
    TrialWriter,
    default_storage_url,
    find_study_id,
    mask_password,
    open_storage,
    storage_errors,
    with_retries,
)

if TYPE_CHECKING:
    from tuner.pareto import KnownPoints

SPEC_ATTR, HASH_ATTR = "spec", "spec_hash"
DEPLOYMENT_ATTR, ESTIMATE_ATTR = "deployment", "estimate"
#: A serving study's trial: its workload and engine knobs (``ServingWorkloads.row``).
SERVING_ATTR = "serving"
#: The calibration profile the study's trials were scored under (resolved from the spec's choice).
CALIBRATION_ATTR = "calibration_profile"


def calibration_name(compiled: CompiledStudy) -> str:
    """The profile the study's reads name (search's last line, pareto, show, report, the front's
    chart): a default made from other chips' fits says so, as the one-deployment commands'
    ``fallback`` and note do (cost_models.calibration.calibration_report)."""
    profile = compiled.calibration
    if profile is None:
        return "none"
    if profile.fallback:
        name = f"{profile.name} (fallback: not fitted on {profile.chip})"
    else:
        # A user's fit carries the shipped profile's name: the file tells the two apart.
        name = f"{profile.name} from {profile.source_file}" if profile.source_file else profile.name
    return name + gemm_borrowed_words(calibration_report(profile, gemm_formats=_study_gemm_formats(compiled)))


#: The held-out error of the fits the study's kernels run (:func:`calibration_held_out`).
CALIBRATION_HELD_OUT_ATTR = "calibration_held_out"
#: The keys of :func:`cost_models.calibration.calibration_report` that hold held-out errors.
_HELD_OUT_KEYS = ("gemm_held_out_error", "end_to_end_held_out_error")


def calibration_held_out(compiled: CompiledStudy) -> dict:
    """How far the profile's fits of the kernels the space runs were from measurements they never
    saw (calibration_report's ``gemm_held_out_error`` per GEMM format and
    ``end_to_end_held_out_error`` per group of points; docs/accuracy.md per group): how far to
    trust a front's latencies (l40s bf16 GEMMs p90 21-30%, h200 TRT-LLM fp8 6%), which search,
    pareto and the front chart named only the profile of. Empty under ``none``, for a fallback
    profile (unmeasured) and a format only borrowed fits time."""
    profile = compiled.calibration
    if profile is None:
        return {}
    report = calibration_report(profile, gemm_formats=_study_gemm_formats(compiled))
    return {key: report[key] for key in _HELD_OUT_KEYS if key in report}


def _study_gemm_formats(compiled: CompiledStudy) -> tuple[str, ...]:
    """The dense GEMM kernels the space's weight formats run, with the activations evaluate gives
    them (fp8 weights W8A8 under a GPU engine: search_spaces.space.engine_act_dtype; else 16-bit)."""
    codes = compiled.space.values["weight_bits"].astype(np.int64)
    acts = engine_act_dtype(codes) if compiled.engine in GPU_ENGINES else np.full(len(codes), BF16)
    return tuple(
        dict.fromkeys(f for w, a in zip(codes, acts, strict=True) for f in dense_gemm_formats(compiled.model, w, a))
    )


optuna.logging.set_verbosity(optuna.logging.WARNING)


def run_worker(spec: StudySpec | dict, storage_url: str, share: int | None = None, **kwargs: Any) -> SearchResult:
    """One of many processes adding trials to one study (``tuner worker``): it joins the study
    (or creates it), adds trials until it has added ``share`` or the study holds its budget, and
    writes after every batch so the budget it sees is current. It waits for a database server
    that is restarting or not up yet when it starts, as it does later (:func:`open_storage`'s
    ``wait``)."""
    return run_search(spec, storage_url, share=share, flush_interval_s=0.0, wait_for_database=True, **kwargs)


@dataclass
class SearchResult:
    study_name: str
    storage_url: str
    trials_before: int
    trials_added: int
    interrupted: bool
    elapsed_s: float
    calibration: str = "none"  # the profile the trials were scored under
    #: The search stopped before its budget because the study holds every configuration of the
    #: space (a sampled study never repeats one; the exhaustive sampler's budget is the space).
    exhausted: bool = False
    #: Configurations left out of this run as structurally invalid (no engine runs them, or the
    #: hardware does not offer their chips: a 12-GPU MoE instance on 8-GPU nodes), of the space's
    #: ``space_size``: said, not dropped without a word. The exhaustive sampler's of its ranges,
    #: the random sampler's of its draws (:class:`tuner.samplers.DistinctFlatDraws`).
    left_out: int = 0
    space_size: int = 0
    #: The study's feasible points as the resume read them for TPE's history, kept for the front
    #: printed after the search (``study_front(..., known=)``): None where none were read.
    known_front: KnownPoints | None = None
    #: ``timeout_s`` passed before the budget (or share) was done: the search stopped there, and
    #: the same call resumes it. Not ``interrupted`` (a signal) nor ``exhausted`` (space done);
    #: False when the last batch finished the budget, however late.
    timed_out: bool = False
    #: :func:`calibration_held_out` of the profile named by ``calibration``.
    calibration_held_out: dict = field(default_factory=dict)


class _Deadline:
    """``timeout_s`` after ``start`` (``time.monotonic``); :meth:`passed` remembers that it was
    seen passed, so the result says the search stopped at the timeout only when a loop did."""

    def __init__(self, timeout_s: float | None, start: float) -> None:
        self.timeout_s, self.start = timeout_s, start
        self.reached = False

    def passed(self) -> bool:
        if self.timeout_s is not None and time.monotonic() - self.start >= self.timeout_s:
            self.reached = True
        return self.reached


def distributions(study: CompiledStudy) -> dict[str, CategoricalDistribution]:
    """Static categorical choices per dimension (Optuna rejects changing choice lists)."""
    return {name: CategoricalDistribution(list(choices)) for name, choices in study.space.dimensions.items()}


#: The trials TPE is fitted on, besides the study's feasible Pareto front: the latest this many
#: (``BatchTPESampler._tuner_history``). A resume reads these and the front, not the whole study,
#: so its cost does not grow with the study (issue 13 items 1 and 5); quality against the whole
#: history and the resume's cost: docs/benchmarks.md "Bounded TPE history (2026-12-05)".
TPE_HISTORY = 2000


def make_sampler(
    name: str, seed: int, study: CompiledStudy, tpe_history: int | None = TPE_HISTORY
) -> optuna.samplers.BaseSampler:
    """``tpe_history``: TPE's bounded history (:data:`TPE_HISTORY`; None fits on every trial)."""
    if name == "nsga2":
        return IncrementalNSGAIISampler(seed=seed)
    if name == "tpe":
        # Fitted once per batch (nothing completes within one); the batch's repeats are replaced.
        return optuna_internals.BatchTPESampler(seed=seed, multivariate=True, constant_liar=False, history=tpe_history)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    raise InvalidInputError("sampler", f"unknown sampler {name!r}", f"use one of {', '.join(SAMPLERS)}")


def _spec_differences(old: object, new: object, where: str = "") -> list[str]:
    """The fields where two stored specs differ, one ``field: old -> new`` each, down to the
    leaves: a section present in one spec only (``serving``) and a list of mappings
    (``objectives``) are compared field by field, and an added or removed section's unset (null)
    fields are not shown, so a changed objective reads ``objectives[0].metric: "a" -> "b"``, not
    both lists in full (adding a serving section to the l4 study printed an 831-character line,
    most of it the section's eleven defaults and both objective lists)."""
    absent = (_ABSENT, None)
    if isinstance(old, dict) or isinstance(new, dict):
        if not ((isinstance(old, dict) or old in absent) and (isinstance(new, dict) or new in absent)):
            return [f"{where}: {_shown(old)} -> {_shown(new)}"]
        a = old if isinstance(old, dict) else {}
        b = new if isinstance(new, dict) else {}
        if not (a and b):  # a section added or removed: its set fields
            a, b = ({k: v for k, v in d.items() if v is not None} for d in (a, b))
        keys = sorted(set(a) | set(b))
        return [c for k in keys for c in _spec_differences(a.get(k, _ABSENT), b.get(k, _ABSENT), _join(where, k))]
    if isinstance(old, list) and isinstance(new, list) and any(isinstance(v, dict) for v in old + new):
        changes = [] if len(old) == len(new) else [f"{where}: {len(old)} -> {len(new)} entries"]
        for i in range(max(len(old), len(new))):
            x = old[i] if i < len(old) else _ABSENT
            y = new[i] if i < len(new) else _ABSENT
            changes += _spec_differences(x, y, f"{where}[{i}]")
        return changes
    return [] if old == new else [f"{where}: {_shown(old)} -> {_shown(new)}"]


#: A field one of two specs does not have (shown ``<absent>``; a stored null is ``null``).
_ABSENT = object()


def _shown(value: object) -> str:
    return "<absent>" if value is _ABSENT else json.dumps(value)


def _first_of_each_section(changes: list[str]) -> list[str]:
    """``changes`` reordered so that the first few shown name every top-level field that changed
    (each field's first change, then each one's second, ...), not three entries of one list."""
    section = [re.split(r"[.\[:]", change, maxsplit=1)[0] for change in changes]
    rank = [section[:i].count(section[i]) for i in range(len(changes))]
    return [changes[i] for i in sorted(range(len(changes)), key=lambda i: (rank[i], i))]


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def open_study(
    spec: StudySpec,
    storage_url: str,
    compiled: CompiledStudy,
    *,
    wait: bool = False,
    stop: Callable[[], bool] | None = None,
):
    """Create the study, or resume it after checking its stored spec is the same (``wait`` and
    ``stop``: see :func:`tuner.storage.open_storage`)."""
    storage = open_storage(storage_url, wait=wait, stop=stop)
    with storage_errors(storage_url):
        # Workers keep going through a database restart (tuner.storage.with_retries).
        study = with_retries(lambda: _create_or_check(spec, storage, storage_url, compiled), storage_url, stop=stop)
    return storage, study


def _format_attrs(compiled: CompiledStudy) -> dict[str, str]:
    """New studies store compact trials (tuner.compact) where the space allows; the model version
    detects a breakdown recomputed under another model."""
    if not compact.compact_possible([len(c) for c in compiled.space.dimensions.values()]):
        return {}
    return {compact.FORMAT_ATTR: compact.COMPACT_FORMAT, compact.MODEL_VERSION_ATTR: compact.model_version()}


def _spec_dir_attr(spec: StudySpec) -> dict[str, str]:
    """The spec file's directory, for a study whose spec names a file relative to it: a
    config.json is stored by that path, and every later read (the search's own front, pareto
    from another directory) resolves it from there, as the search did."""
    base_dir = spec._base_dir
    return {compact.SPEC_DIR_ATTR: str(base_dir)} if base_dir is not None else {}


def _create_or_check(spec: StudySpec, storage, storage_url: str, compiled: CompiledStudy) -> optuna.Study:
    for attempt in range(_CREATE_ATTEMPTS):
        study_id = find_study_id(storage, spec.name)
        if study_id is None:
            # The study and its spec in one transaction: a worker starting at the same moment
            # finds both or neither (it found the study without its spec in 4 of 29 runs).
            created = create_study_with_attrs(
                storage,
                spec.name,
                [optuna.study.StudyDirection[d.upper()] for d in compiled.directions],
                {
                    SPEC_ATTR: json.loads(spec.canonical_json()),
                    HASH_ATTR: spec.spec_hash,
                    CONSTRAINTS_ATTR: compiled.constraint_names,
                    CALIBRATION_ATTR: calibration_name(compiled),
                    CALIBRATION_HELD_OUT_ATTR: calibration_held_out(compiled),
                    **_format_attrs(compiled),
                    **_spec_dir_attr(spec),
                },
                list(compiled.objective_names),
            )
            if created is None:  # another worker created it just now
                continue
            return optuna.load_study(study_name=spec.name, storage=storage)
        stored = storage.get_study_user_attrs(study_id)
        if HASH_ATTR not in stored and attempt + 1 < _CREATE_ATTEMPTS:
            # A study created by an older version, attribute by attribute, may still be
            # getting its spec: look again shortly.
            time.sleep(min(0.1 * 2**attempt, 2.0))
            continue
        if stored.get(HASH_ATTR) != spec.spec_hash and not _same_problem(stored, spec, compiled):
            changes = _first_of_each_section(
                _spec_differences(stored.get(SPEC_ATTR, {}), json.loads(spec.canonical_json()))
            )
            shown = "; ".join(changes[:3]) + (f"; and {len(changes) - 3} more" if len(changes) > 3 else "")
            # A study made by another version of the model may differ where the spec file does
            # not (a default that version stored otherwise): say so, or "restore the spec" puzzles.
            older = stored.get(compact.MODEL_VERSION_ATTR, compact.model_version()) != compact.model_version()
            fix = "restore the spec, give the study a new name, or use another --storage"
            if changes and all(c.split(":", 1)[0] in _RESOLVED_FIELDS for c in changes):
                # An override of backend/calibration that is another problem: say what the study
                # was scored under, so "drop --backend" is the obvious way back.
                names = [c.split(":", 1)[0] for c in changes]
                fix = (
                    f"drop {' and '.join(f'--{n}' for n in names)} or restore the spec's {' and '.join(names)} "
                    f"(the study was scored under {stored.get(CALIBRATION_ATTR, 'its spec')}), "
                    "give the study a new name, or use another --storage"
                )
            raise InvalidInputError(
                "spec",
                f"study {spec.name!r} in {storage_url} was made from a different spec ({shown or 'no spec stored'})"
                + (", by another version of the cost model" if older else ""),
                fix,
            )
        return optuna.load_study(study_name=spec.name, storage=storage)
    raise StorageError(
        f"study {spec.name!r} in {mask_password(storage_url)} is being created by another "
        "process but did not become readable",
        "run again",
        environment=True,
    )


_CREATE_ATTEMPTS = 6


#: Spec fields that name a choice with a resolved default: ``backend`` left out resolves to the
#: chip's best-measured engine, ``calibration: auto`` to that engine's shipped profile.
_RESOLVED_FIELDS = ("backend", "calibration")


def _same_problem(stored: dict, spec: StudySpec, compiled: CompiledStudy) -> bool:
    """Whether ``spec``, whose hash is not the study's, differs from the stored spec only in
    ``backend``/``calibration`` and compiles to the same problem (the same profile, engine and
    candidates left out: :func:`search_spaces.space.same_engine_rules`). ``--backend vllm`` on a
    study whose ``backend: null`` resolved to vLLM was refused as another spec; so was
    ``--calibration h100-sxm-vllm`` for ``auto``. The study keeps its stored spec."""
    old = stored.get(SPEC_ATTR)
    new = json.loads(spec.canonical_json())
    if not isinstance(old, dict):
        return False
    if {k: v for k, v in old.items() if k not in _RESOLVED_FIELDS} != {
        k: v for k, v in new.items() if k not in _RESOLVED_FIELDS
    }:
        return False
    try:
        before = compile_study(parse_stored_spec(old, stored.get(compact.SPEC_DIR_ATTR)))
    except InvalidInputError:  # the stored spec no longer compiles: not the same problem
        return False
    return same_engine_rules(before, compiled)


def trial_attrs(compiled: CompiledStudy, evaluation: Evaluation, row: int) -> dict:
    """What a trial keeps beside Optuna's params: its deployment (``Deployment.to_dict()``, what
    export reads back), its full estimate (what ``show`` and dashboards display) and, in a serving
    study, its serving workload (with the deployment, what ``serve()`` scored)."""
    attrs = {
        DEPLOYMENT_ATTR: candidate_deployment(evaluation, row).to_dict(),
        ESTIMATE_ATTR: candidate_report(compiled, evaluation, row),
    }
    workload = candidate_workload(evaluation, row)
    if workload is not None:
        attrs[SERVING_ATTR] = workload
    return attrs


class TrialFormat:
    """How a study stores its trials: compact (:mod:`tuner.compact`: one configuration index,
    values and named constraints) or whole (per-dimension params and the breakdown, studies
    created before the compact format)."""

    def __init__(self, compiled: CompiledStudy, study_user_attrs: dict) -> None:
        self.compiled = compiled
        self.sizes = [len(c) for c in compiled.space.dimensions.values()]
        self.compact = study_user_attrs.get(compact.FORMAT_ATTR) == compact.COMPACT_FORMAT
        self.distribution = compact.configuration_distribution(self.sizes) if self.compact else None

    def held(self, trials: list[FrozenTrial]) -> np.ndarray:
        """Flat configuration indices of stored trials (either format)."""
        if not trials:
            return np.zeros(0, dtype=np.int64)
        if self.compact and compact.is_compact(trials[0]):
            return np.array([int(t.params[compact.CONFIGURATION_PARAM]) for t in trials], dtype=np.int64)
        return compact.flat_indices(self.compiled.space.indices_of([t.params for t in trials]), self.sizes)

    def stored(self, trial: FrozenTrial, evaluation: Evaluation, row: int, flat: int) -> FrozenTrial:
        """The trial as this study stores it (``trial`` holds its values and constraints)."""
        if not self.compact:
            for key, value in trial_attrs(self.compiled, evaluation, row).items():
                trial.set_user_attr(key, value)
            trial.system_attrs = _stored_system_attrs(trial.system_attrs, evaluation, row)
            return trial
        # Feasibility is in our points table (tuner.optuna_internals.POINTS_TABLE) and the named
        # constraints are recomputed on read (tuner.compact); Optuna's list of them is kept, one
        # row, so plain ``optuna.load_study(...).best_trials`` (and optuna-dashboard) leave the
        # infeasible trials out (issue 12 item 1; without it plain Optuna read every trial as
        # feasible).
        system_attrs = {
            (optuna_internals.UNSTORED_PREFIX + k if k.startswith("constraints:") else k): v
            for k, v in trial.system_attrs.items()
            if k not in ("fixed_params", CONSTRAINT_LIST_ATTR)
        }
        system_attrs[CONSTRAINT_LIST_ATTR] = [float(column[row]) for column in evaluation.constraint_columns.values()]
        distribution = self.distribution or compact.configuration_distribution(self.sizes)
        kept = FrozenTrial(
            number=trial.number,
            state=trial.state,
            value=None,
            values=trial.values,
            datetime_start=trial.datetime_start,
            datetime_complete=trial.datetime_complete,
            params={compact.CONFIGURATION_PARAM: flat},
            distributions={compact.CONFIGURATION_PARAM: distribution},
            user_attrs={},
            system_attrs=system_attrs,
            intermediate_values={},
            trial_id=optuna_internals.trial_id(trial),
        )
        return kept


def _frozen(compiled: CompiledStudy, evaluation, row: int, dists, number: int) -> FrozenTrial:
    trial = create_trial(
        params=compiled.space.params_of(evaluation.indices, row),
        distributions=dists,
        values=[float(v) for v in evaluation.values[row]],
        user_attrs=trial_attrs(compiled, evaluation, row),
        system_attrs=_stored_system_attrs({}, evaluation, row),
        constraints={name: float(column[row]) for name, column in evaluation.constraint_columns.items()},
    )
    trial.number = number
    return trial


class _OpenedStudy(NamedTuple):
    """What a run needs of its study, read once when it starts."""

    storage: Any  # optuna RDBStorage
    study: optuna.Study
    study_id: int
    fmt: TrialFormat
    existing: list[FrozenTrial]  # the stored trials a sampler learns from (none for compact draws)
    held: np.ndarray  # the configurations the study holds
    known_front: KnownPoints | None = None  # the feasible points read for TPE's history


def _open_and_read(
    spec: StudySpec,
    storage_url: str,
    compiled: CompiledStudy,
    sampler_name: str,
    wait: bool,
    stop: Callable[[], bool] | None,
    tpe_history: int | None = TPE_HISTORY,
    after_open: Callable[[], None] | None = None,
) -> _OpenedStudy:
    """The study opened (or created) and what a run needs of it. Each read is retried through a
    database restart until ``stop()``."""
    storage, stored = open_study(spec, storage_url, compiled, wait=wait, stop=stop)
    if after_open is not None:
        after_open()
    study_id = with_retries(lambda: storage.get_study_id_from_name(stored.study_name), storage_url, stop=stop)
    fmt = TrialFormat(compiled, stored.user_attrs)
    if fmt.compact:  # its stored indices are read in this space's order: the same space, or none
        size = with_retries(lambda: compact.stored_space_size(storage, study_id), storage_url, stop=stop)
        compact.check_space_size(stored.study_name, size, fmt.sizes)
    if fmt.compact and sampler_name in ("random", "exhaustive", "nsga2"):
        # Neither reads the history: the configurations held (one integer each) are all a
        # resume needs, read in one query whatever the study's size.
        held = with_retries(lambda: compact.held_configurations(storage, study_id), storage_url, stop=stop)
        compact.check_inside_space(held, int(np.prod(fmt.sizes, dtype=object)))
        return _OpenedStudy(storage, stored, study_id, fmt, [], held)
    hydrator = compact.hydrator_for(stored.user_attrs) if fmt.compact else None
    if hydrator is not None and sampler_name == "tpe" and tpe_history is not None:
        # TPE's bounded history (the front and the latest trials) read by trial, and the
        # configurations held (one integer each, for tuner.distinct): neither grows with the
        # study but by the one integer a trial.
        # The held ones first: an index overwritten in the file is one damaged line, as for the
        # other samplers (tests/tuner/test_hostile_regressions.py).
        held = with_retries(lambda: compact.held_configurations(storage, study_id), storage_url, stop=stop)
        compact.check_inside_space(held, int(np.prod(fmt.sizes, dtype=object)))
        bounded = with_retries(
            lambda: _bounded_history(storage, study_id, hydrator, compiled, tpe_history), storage_url, stop=stop
        )
        if bounded is not None:
            return _OpenedStudy(storage, stored, study_id, fmt, bounded[0], held, bounded[1])
    if hydrator is not None:
        # The sampler's history from two columns (configuration index, objective values), not
        # every trial read whole: see compact.Hydrator.sampler_history.
        history = with_retries(
            lambda: _compact_history(storage, study_id, hydrator, len(compiled.directions)), storage_url, stop=stop
        )
        if history is not None:
            existing, held = history
            return _OpenedStudy(storage, stored, study_id, fmt, existing, held)
    existing = with_retries(
        lambda: storage.get_all_trials(study_id, deepcopy=False, states=(TrialState.COMPLETE,)), storage_url, stop=stop
    )
    if hydrator is not None:  # the sampler learns from the categorical params
        existing = hydrator.hydrate(existing, breakdown=False)
    return _OpenedStudy(storage, stored, study_id, fmt, existing, fmt.held(existing))


def _compact_history(
    storage: Any, study_id: int, hydrator: compact.Hydrator, n_objectives: int
) -> tuple[list[FrozenTrial], np.ndarray] | None:
    """The COMPLETE trials of a compact study as a resumed sampler learns from them
    (:meth:`tuner.compact.Hydrator.sampler_history`), in trial-number order, and their flat
    configuration indices; None when a COMPLETE trial has no configuration index (not written
    by this project: then the trials are read whole). Two reads: the objective values (Optuna's
    ``trial_values``) and the index of each trial; a trial completed by another worker between
    the two is in one of them only, and left out (what was read first is what the run saw)."""
    points = optuna_internals.complete_points(storage, study_id, n_objectives)
    trial_ids, values = (
        points if points is not None else optuna_internals.complete_values(storage, study_id, n_objectives)
    )
    by_id, flat = optuna_internals.configuration_indices_by_trial(storage, study_id)
    position = dict(zip(by_id.tolist(), flat.tolist(), strict=True))
    ids = list(trial_ids.tolist() if isinstance(trial_ids, np.ndarray) else trial_ids)
    if not all(t in position for t in ids):
        return None
    ordered = np.array([position[t] for t in ids], dtype=np.int64)
    return hydrator.sampler_history(ordered, values), ordered


def _bounded_history(
    storage: Any, study_id: int, hydrator: compact.Hydrator, compiled: CompiledStudy, latest: int
) -> tuple[list[FrozenTrial], KnownPoints | None] | None:
    """What a resumed TPE is fitted on (``BatchTPESampler._tuner_history``), read from the
    database without the study's other trials: the feasible Pareto front of its COMPLETE trials
    (:func:`tuner.pareto.nondominated_trial_ids`'s, from the points table's feasible rows) and
    its ``latest`` COMPLETE trials of highest number, in trial-number order, as
    :meth:`tuner.compact.Hydrator.sampler_history` builds them; and the feasible points read, as
    the front printed after the search starts from them (:func:`tuner.pareto.known_points`).
    None when the points table does not hold the study (then every trial is read, and the
    sampler keeps the same ones)."""
    from tuner.pareto import feasible_snapshot, known_points, minimized, nondominated

    n_objectives = len(compiled.directions)
    points = feasible_snapshot(storage, study_id, n_objectives)  # None: no side table, or not all of the study
    recent = optuna_internals.latest_points(storage, study_id, n_objectives, latest) if points is not None else None
    if points is None or recent is None:
        return None
    feasible_ids, feasible_values = points.ids, points.values
    directions: list[str] = list(compiled.directions)
    on_front = nondominated(minimized(feasible_values, directions)) if len(feasible_ids) else np.zeros(0, dtype=bool)
    values_of = {int(t): v for t, v in zip(feasible_ids[on_front].tolist(), feasible_values[on_front], strict=True)}
    values_of.update({int(t): v for t, v in zip(recent[0].tolist(), recent[1], strict=True)})
    found = optuna_internals.configurations_by_id(storage, list(values_of))
    if len(found) != len(values_of):  # a trial without its configuration index: read them all
        return None
    ordered = sorted(found, key=lambda t: found[t][0])  # by trial number
    # As stored (a float), then cast as configuration_indices_by_trial casts them: a value
    # overwritten beyond int64 becomes one outside the space (DamagedData), not an OverflowError.
    flat = np.array([found[t][1] for t in ordered], dtype=np.float64).astype(np.int64)
    values = np.array([values_of[t] for t in ordered], dtype=np.float64).reshape(len(ordered), n_objectives)
    return hydrator.sampler_history(flat, values), known_points(study_id, points, on_front, directions)


def run_search(
    spec: StudySpec | dict,
    storage_url: str | None = None,
    *,
    trials: int | None = None,
    timeout_s: float | None = None,
    sampler: str | None = None,
    seed: int | None = None,
    batch_size: int | None = None,
    flush_interval_s: float = 0.5,
    share: int | None = None,
    on_progress: Callable[[int, int], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    store_all: bool = True,
    wait_for_database: bool = False,
    tpe_history: int | None = TPE_HISTORY,
    after_open: Callable[[], None] | None = None,
) -> SearchResult:
    """Run (or resume) a study until it holds ``trials`` trials or ``timeout_s`` passes.

    ``trials`` defaults to the spec's budget; for the exhaustive sampler it is the whole space.
    The budget holds in the database whatever else writes to the study (see
    :func:`tuner.storage.write_trials`); ``share`` caps the trials this call adds (a worker's
    share). ``should_stop`` is checked between batches (:mod:`tuner.signals` sets it on SIGINT
    and SIGTERM); a ``KeyboardInterrupt`` stops too. Either way finished trials are written, and
    the result says it was interrupted. ``store_all=False`` (the exhaustive sampler only) stores
    the exact front and a small sample instead of every candidate (:mod:`tuner.exhaustive`).
    ``wait_for_database`` retries the first connection too (:func:`tuner.storage.open_storage`).
    ``tpe_history``: TPE is fitted on the study's front and its latest this many trials
    (:data:`TPE_HISTORY`); None: on every trial, as Optuna's TPE (its resume reads them all).
    ``after_open``: called once the study is opened, before its trials are read (``tuner search``
    takes :func:`tuner.storage.one_search_per_study` there).
    """
    stop = should_stop or (lambda: False)
    spec = spec if isinstance(spec, StudySpec) else parse_spec(spec)
    compiled = compile_study(spec)
    refuse_unscored_schedules(compiled)
    storage_url = storage_url or default_storage_url(spec.name)
    sampler_name = sampler or spec.sampler
    if sampler_name not in SAMPLERS:
        raise InvalidInputError("sampler", f"unknown sampler {sampler_name!r}", f"use one of {', '.join(SAMPLERS)}")
    if trials is not None and trials < 1:
        raise InvalidInputError("trials", f"must be at least 1, got {trials}", "pass a positive number")
    if timeout_s is not None and not timeout_s > 0:
        raise InvalidInputError("timeout", f"must be positive, got {timeout_s}", "pass seconds > 0")
    if seed is not None and not 0 <= seed < 2**32:
        raise InvalidInputError("seed", f"{seed} is out of range", "pass a seed from 0 to 4294967295")
    if tpe_history is not None and tpe_history < 10:
        raise InvalidInputError(
            "tpe_history", f"must be at least 10 trials (TPE's random start), got {tpe_history}",
            "pass 10 or more, or None for every trial",
        )  # fmt: skip
    if share is not None and share < 1:
        raise InvalidInputError("trials", f"a worker's share must be at least 1, got {share}", "pass a positive number")
    if not store_all and sampler_name != "exhaustive":
        raise InvalidInputError(
            "store-all", f"only the exhaustive sampler can skip storing candidates, not {sampler_name!r}",
            "drop --no-store-all, or use --sampler exhaustive",
        )  # fmt: skip
    budget = trials if trials is not None else spec.trials
    # A worker waiting for its database stops on a signal (it holds nothing to write then);
    # ``tuner search`` does not wait, and fails at once on a server it cannot reach. Either stops
    # waiting for a SQLite file's lock on a signal (tuner.storage._file_lock).
    waiting_stop = stop if wait_for_database else None
    try:
        storage, stored, study_id, fmt, existing, held, known_front = _open_and_read(
            spec, storage_url, compiled, sampler_name, wait_for_database, stop, tpe_history, after_open
        )
    except (StorageError, sa_exc.SQLAlchemyError, optuna.exceptions.StorageInternalError):
        if not stop():
            raise
        # A signal while the study was being opened or read: nothing was written, and the
        # command says how to go on as after any interrupted search.
        return SearchResult(
            spec.name,
            storage_url,
            0,
            0,
            True,
            0.0,
            calibration_name(compiled),
            calibration_held_out=calibration_held_out(compiled),
        )
    writer = TrialWriter(storage, study_id, flush_interval_s, budget=None if sampler_name == "exhaustive" else budget)
    dists = distributions(compiled)
    start = time.monotonic()
    deadline = _Deadline(timeout_s, start)
    interrupted = exhausted = timed_out = False
    added = left_out = 0
    random_run = _RandomRun()  # what a compact random search wrote, interrupted or not
    try:
        if sampler_name == "exhaustive" and fmt.compact:
            from tuner import exhaustive

            swept = exhaustive.run(
                compiled, storage, study_id, budget=trials, share=share, timeout_s=timeout_s, start=start,
                stop=stop, on_progress=on_progress, store_all=store_all, held=held, retry_url=storage_url,
                retry_stop=waiting_stop,
            )  # fmt: skip
            added = swept.written
            # Every range done, each candidate stored, before the budget: the study holds the whole
            # space, as a sampled search says when it runs out first (_sample: done < limit); not
            # with --no-store-all (a front and a sample).
            exhausted = swept.finished and store_all and (trials is None or len(held) + added < trials)
            left_out = swept.left_out
            timed_out = swept.timed_out
        elif sampler_name == "exhaustive":
            left_out = _exhaustive(compiled, fmt, held, writer, on_progress, trials, deadline, stop)
        elif sampler_name == "nsga2" and fmt.compact:
            _nsga2_compact(
                random_run, compiled, storage, study_id, storage_url, held, budget, share, deadline,
                seed if seed is not None else spec.seed, flush_interval_s, on_progress, stop,
            )  # fmt: skip
        elif sampler_name == "random" and fmt.compact:
            _random_compact(
                random_run, compiled, storage, study_id, storage_url, held, budget, share, deadline,
                seed if seed is not None else spec.seed, batch_size or _RANDOM_BATCH, flush_interval_s,
                on_progress, stop,
            )  # fmt: skip
        else:
            chosen = make_sampler(sampler_name, seed if seed is not None else spec.seed, compiled, tpe_history)
            # NSGA-II: one batch per generation, so each generation's children see all parents.
            batch = batch_size or getattr(chosen, "population_size", None) or 64
            seed_used = seed if seed is not None else spec.seed
            distinct = DistinctConfigurations(compiled.space.dimensions, seed_used, mutate=sampler_name != "random")
            exhausted = _sample(
                compiled, fmt, existing, held, writer, dists, budget, share, deadline, chosen, batch,
                on_progress, distinct, stop,
            )  # fmt: skip
    except KeyboardInterrupt:
        interrupted = True
    finally:
        writer.flush()
    interrupted = interrupted or stop()
    # A signal after the deadline passed stops the search as much as the timeout did: said once,
    # as interrupted (the command exits 128 + the signal).
    timed_out = (timed_out or deadline.reached) and not interrupted
    added += random_run.written
    exhausted = exhausted or random_run.exhausted
    left_out += random_run.left_out
    return SearchResult(
        spec.name,
        storage_url,
        len(held),
        writer.written + added,
        interrupted,
        time.monotonic() - start,
        calibration_name(compiled),
        exhausted,
        left_out,
        int(compiled.space.size),
        known_front,
        timed_out,
        calibration_held_out=calibration_held_out(compiled),
    )


def _sample(
    compiled,
    fmt,
    existing,
    held,
    writer,
    dists,
    budget,
    share,
    deadline,
    sampler,
    batch_size,
    on_progress,
    distinct,
    stop,
) -> bool:
    """Ask, score and store batches of distinct configurations; True when the space ran out
    (every configuration held) before the budget did."""
    memory = optuna.create_study(directions=compiled.directions, sampler=sampler)
    # The sampler learns from everything stored so far; the trials were read for this run alone,
    # so they are handed over, not deep-copied (optuna_internals.add_trials_in_place).
    optuna_internals.add_trials_in_place(memory, existing)
    distinct.add_flat(held)
    done = len(held)
    limit = budget if share is None else min(budget, done + share)
    while done < limit and not writer.budget_reached and not deadline.passed():
        if stop():
            return False
        if distinct.exhausted:
            return True
        asked = [_ask_distinct(memory, dists, distinct) for _ in range(min(batch_size, limit - done, distinct.unseen))]
        evaluation = evaluate(compiled, compiled.space.indices_of([t.params for t in asked]))
        flat = compact.flat_indices(evaluation.indices, fmt.sizes)
        finished = []
        for row, trial in enumerate(asked):
            for name, column in evaluation.constraint_columns.items():
                trial.set_constraint(name, float(column[row]))
            told = optuna_internals.tell_in_place(memory, trial, [float(v) for v in evaluation.values[row]])
            # The breakdown (whole format) goes to the database only: the in-memory study copies
            # its trials on every ask, and the sampler never reads it. A compact trial is a new
            # FrozenTrial built from the told one; the whole format sets attributes on a copy.
            finished.append(fmt.stored(told if fmt.compact else copy.deepcopy(told), evaluation, row, int(flat[row])))
        writer.add(finished)
        done += len(asked)
        if on_progress:
            on_progress(done, limit)
    return distinct.exhausted and done < limit


#: Candidates a compact random search scores per cost-model call (one call per batch; on_progress
#: and the stop check between batches). 256 amortizes the call's fixed cost (about 4 ms) while a
#: batch stays well under the flush interval.
_RANDOM_BATCH = 256


@dataclass
class _RandomRun:
    """What a compact random or NSGA-II search wrote (read even when it was interrupted)."""

    written: int = 0
    exhausted: bool = False
    #: Configurations drawn that cannot exist, not stored (structurally_valid): the random sampler's.
    left_out: int = 0


class _BulkTrials:
    """Scored candidates of a compact study, written every ``flush_interval_s`` in one
    transaction through the exhaustive sampler's bulk writer (:func:`tuner.exhaustive.write_chunk`:
    the rows Optuna writes, numbers continuing the study's, the budget kept exactly across
    workers), retried through a database restart like :class:`~tuner.storage.TrialWriter`.
    ``record``: called at each write with how many rows :meth:`add` was given so far; a dict it
    returns is stored as the study system attribute :data:`ELITE_ATTR` in the same transaction,
    with the number and id of the last trial written (``last_number``, ``last_trial_id``), when
    every row was written (a write cut by the budget keeps the record before it, whose watermark
    is then still below every row it did not see)."""

    def __init__(self, run, compiled, storage, study_id, storage_url, budget, flush_interval_s, record=None) -> None:
        from optuna.distributions import distribution_to_json

        self.run, self.storage, self.study_id, self.url = run, storage, study_id, storage_url
        self.budget, self.flush_interval_s = budget, flush_interval_s
        self.record: Callable[[int], dict | None] | None = record
        self.added = 0  # rows given to add, written or pending
        sizes = [len(c) for c in compiled.space.dimensions.values()]
        self.distribution_json = distribution_to_json(compact.configuration_distribution(sizes))
        self.pending: list[tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]] = []
        self.budget_reached = False
        self._last_flush = time.monotonic()

    def add(self, positions: np.ndarray, evaluation: Evaluation) -> None:
        self.pending.append((positions, evaluation.values, dict(evaluation.constraint_columns)))
        self.added += len(positions)
        if time.monotonic() - self._last_flush >= self.flush_interval_s:
            self.flush()

    def flush(self) -> None:
        from tuner.exhaustive import write_chunk

        self._last_flush = time.monotonic()  # the interval counts from the start of a flush
        if not self.pending:
            return
        positions = np.concatenate([p for p, _, _ in self.pending])
        values = np.concatenate([v for _, v, _ in self.pending])
        constraints = {k: np.concatenate([c[k] for _, _, c in self.pending]) for k in self.pending[0][2]}
        self.pending = []
        record = self.record(self.added) if self.record is not None else None
        also = None
        if record is not None:
            study_id = self.study_id

            def also(connection, number: int, trial_id: int) -> None:
                value = {**record, "last_number": int(number), "last_trial_id": int(trial_id)}
                optuna_internals.write_study_system_attr(connection, study_id, ELITE_ATTR, value)

        written = write_chunk(
            self.storage,
            self.study_id,
            positions,
            values,
            constraints,
            self.distribution_json,
            self.budget,
            None,
            retry_url=self.url,
            also=also,
        )
        self.run.written += written
        self.budget_reached = self.budget_reached or written < len(positions)


def _random_compact(
    run, compiled, storage, study_id, storage_url, held, budget, share, deadline, seed, batch_size,
    flush_interval_s, on_progress, stop,
) -> None:  # fmt: skip
    """Random search of a compact study without Optuna's ask and tell (which cost about 3 ms a
    trial, most of a search's time): distinct flat indices drawn in batches
    (:class:`tuner.samplers.DistinctFlatDraws`), each batch scored with one cost-model call and
    written in bulk (:class:`_BulkTrials`). ``KeyboardInterrupt`` propagates after the pending
    rows are written; ``run`` says what was written."""
    from tuner.samplers import DistinctFlatDraws

    names = list(compiled.space.dimensions)
    sizes = [len(c) for c in compiled.space.dimensions.values()]

    def valid(flat: np.ndarray) -> np.ndarray:
        return structurally_valid(compiled, compact.unflatten(flat, names, sizes))

    draws = DistinctFlatDraws(int(np.prod(sizes, dtype=np.int64)), seed, held, valid)
    writer = _BulkTrials(run, compiled, storage, study_id, storage_url, budget, flush_interval_s)
    scored = len(held)
    limit = budget if share is None else min(budget, scored + share)
    try:
        while scored < limit and not writer.budget_reached:
            if stop() or deadline.passed():
                break
            positions = draws.take(min(batch_size, limit - scored))
            run.left_out = draws.left_out
            if not len(positions):  # every configuration held or one that cannot exist
                run.exhausted = True
                break
            writer.add(positions, evaluate(compiled, compact.unflatten(positions, names, sizes)))
            scored += len(positions)
            if on_progress:
                on_progress(scored, limit)
    finally:
        writer.flush()


def _nsga2_compact(
    run, compiled, storage, study_id, storage_url, held, budget, share, deadline, seed, flush_interval_s,
    on_progress, stop,
) -> None:  # fmt: skip
    """NSGA-II on a compact study, a generation at a time (:class:`tuner.samplers.GenerationalNSGAII`:
    Optuna's selection, crossover and mutation, without a ``Study.ask`` per child), each
    generation scored with one cost-model call and written in bulk (:class:`_BulkTrials`). A
    child the study holds is replaced as :mod:`tuner.distinct` replaces it (a single-dimension
    mutation first).

    Each write also stores the parents the next generation uses (:data:`ELITE_ATTR`, in the
    write's transaction) with a watermark, the last trial written. A resume re-scores those
    parents and the configurations stored after the watermark, and starts from them
    (:func:`_resume_parents`): about 50 configurations plus what was written after the last
    write of any run, whatever the study's size, and, resumed where a run stopped, exactly the
    parents that run would have gone on with. Without a usable record (a study written before
    2026-12-06 or by another sampler, another cost-model version) it re-scores every stored
    configuration and starts from their elite, as before. ``held`` is read whole either way (one
    integer a trial), for :mod:`tuner.distinct`.

    Several workers on one study each store their parents at each of their writes; the latest
    write's record wins. A resume then starts from that worker's parents and every trial stored
    after its watermark, whichever worker wrote it; trials other workers stored before that
    watermark are not among the resumed run's parents (they are among ``held``, so never stored
    again, and on the front), as a worker's population never held them either."""
    from tuner.samplers import GenerationalNSGAII

    names = list(compiled.space.dimensions)
    sizes = [len(c) for c in compiled.space.dimensions.values()]
    stream = resumed_seed(seed, len(held))
    nsga = GenerationalNSGAII(compiled.space.dimensions, compiled.directions, stream)
    distinct = DistinctConfigurations(compiled.space.dimensions, stream, mutate=True)
    distinct.add_flat(held)
    valid_for = _elite_key(compiled, nsga.population_size)
    # Stored configurations read after ``held`` (another worker's writes since): never asked again.
    distinct.add_flat(_resume_parents(nsga, compiled, storage, study_id, storage_url, held, valid_for, stop))
    told = 0  # children told to nsga (and given to the writer just after)

    def record(added: int) -> dict | None:
        # The parents are those of every row given to the writer only when each child told was
        # also added (an interruption between the two leaves the record as it was).
        return {**valid_for, "elite": nsga.elite_positions().tolist()} if added == told else None

    writer = _BulkTrials(run, compiled, storage, study_id, storage_url, budget, flush_interval_s, record)
    scored = len(held)
    limit = budget if share is None else min(budget, scored + share)
    try:
        while scored < limit and not writer.budget_reached:
            if stop() or deadline.passed():
                break
            if distinct.exhausted:
                run.exhausted = True
                break
            children = nsga.ask(min(nsga.population_size, limit - scored, distinct.unseen))
            _make_distinct(children, distinct)
            children, replaced = _repair_invalid(children, nsga, distinct, compiled)
            run.left_out += replaced
            if not len(children):  # the last proposals could neither exist nor be replaced
                run.exhausted = True
                break
            indices = dict(zip(names, children.T, strict=True))
            evaluation = evaluate(compiled, indices)
            nsga.tell(children, evaluation.values, _constraint_matrix(evaluation))
            told += len(children)
            writer.add(compact.flat_indices(indices, sizes), evaluation)
            scored += len(children)
            if on_progress:
                on_progress(scored, limit)
    finally:
        writer.flush()


#: Repair of a generation's children that cannot exist (:func:`_repair_invalid`): rounds of
#: :data:`_REPAIR_TRIES` attempts per child, checked in one ``structurally_valid`` call; what is
#: still invalid after them is stored as before (infeasible), so a space where nothing can exist
#: still ends. An attempt must be new too (a repeat is passed over), so late in a search few
#: attempts succeed: PaLM kv_heads [model, 5, 7] (2 of 3 cannot exist; 300 of its 528 valid
#: configurations searched, tests/tuner/test_random_valid_draws.py) kept 3 of 300 invalid after
#: 16 walk steps and 16 uniform draws a child, 2 after 8 uniform draws; 64 and 64: none.
_REPAIR_ROUNDS = 4
_REPAIR_TRIES = 32
#: Of those, the rounds that redraw one dimension; the rest draw uniformly: single-dimension walks
#: alone left 3 of 400 NSGA-II children of qwen3-235b-moe-gb200 invalid after 32 steps (where TP,
#: DP and EP must change together).
_REDRAW_ONE_ROUNDS = 2


def _make_distinct(children: np.ndarray, distinct: DistinctConfigurations, rows: np.ndarray | None = None) -> None:
    """Each of ``rows`` (all by default) of ``children`` a configuration ``distinct`` does not hold
    (a held one replaced as :mod:`tuner.distinct` replaces it), then added to it."""
    for row in range(len(children)) if rows is None else rows.tolist():
        key = tuple(children[row].tolist())
        if key in distinct:
            key = distinct.replacement(key)
            children[row] = key
        distinct.add(key)


def _repair_invalid(
    children: np.ndarray, nsga, distinct: DistinctConfigurations, compiled: CompiledStudy
) -> tuple[np.ndarray, int]:
    """Repair the children that cannot exist (``structurally_valid``), up to :data:`_REPAIR_ROUNDS`
    rounds of :data:`_REPAIR_TRIES` attempts, each round on the rows still invalid: in the first
    generation (no parents yet) uniform draws, i.e. rejection sampling; after it, for
    :data:`_REDRAW_ONE_ROUNDS` rounds, a walk of single-dimension redraws
    (:meth:`~tuner.samplers.GenerationalNSGAII.redraw_walk`), which keeps the child next to what
    Optuna's crossover and mutation proposed, as :mod:`tuner.distinct` repairs a repeat, then
    uniform draws. Returns the children (in place, less those still invalid once every
    configuration of the space is held: nothing is left to replace them with) and how many were
    replaced. The generation told is what is
    scored, so Optuna's selection ranks the children as stored. Asking fresh children of the
    parents instead (Optuna's tournament and crossover, ~0.2 ms each) cost 22-31% of NSGA-II's
    trials/s on qwen3-235b-moe-h200 and -gb200 (docs/benchmarks.md). Before, 89 of 400 NSGA-II
    trials of a Mixtral-8x7B ``mode: both`` study on H100s could not exist (seed 0); the dropped
    proposals stay in ``distinct`` (never proposed again)."""
    names = list(compiled.space.dimensions)

    def valid(rows: np.ndarray) -> np.ndarray:
        return structurally_valid(compiled, dict(zip(names, rows.T, strict=True)))

    pending = np.flatnonzero(~valid(children))  # rows still to repair (the invalid ones stay in distinct)
    replaced = len(pending)
    for round_ in range(_REPAIR_ROUNDS):
        if not len(pending):
            break
        walk = nsga.parents and round_ < _REDRAW_ONE_ROUNDS
        if walk:
            tries = nsga.redraw_walk(children[pending], _REPAIR_TRIES)
        else:
            tries = list(nsga.uniform(len(pending) * _REPAIR_TRIES).reshape(_REPAIR_TRIES, len(pending), -1))
        # One call for every attempt of the round: a call per attempt was 0.5 s of a 5,000-trial
        # qwen3-235b-moe-h200 search (2,112 calls of 0.24 ms).
        ok = valid(np.concatenate(tries)).reshape(_REPAIR_TRIES, len(pending))
        still = []
        for i, row in enumerate(pending.tolist()):
            # The first attempt that can exist and is new; a repeat is passed over, not replaced
            # by distinct.replacement (16 Python mutations each: 0.8 s of that search).
            for t in np.flatnonzero(ok[:, i]).tolist():
                key = tuple(tries[t][i].tolist())
                if key not in distinct:
                    children[row] = key
                    distinct.add(key)
                    break
            else:
                children[row] = tries[-1][i]  # the walk goes on from its last step
                still.append(row)
        pending = np.array(still, dtype=np.int64)
    # Still invalid: stored so, never a repeat. Near the end of a space every configuration may
    # already be held (each repaired child holds its proposal too): such a row is dropped, where
    # distinct.replacement raised ValueError (qwen3-235b-moe-gb200, 20,736 configurations, 30,000
    # NSGA-II trials asked).
    keep = np.ones(len(children), dtype=bool)
    for row in pending.tolist():
        if tuple(children[row].tolist()) in distinct and distinct.exhausted:
            keep[row] = False
        else:
            _make_distinct(children, distinct, np.array([row]))
    return (children if keep.all() else children[keep]), replaced


def resumed_seed(seed: int, held: int) -> int:
    """The seed of a search's random streams when its study already holds ``held`` trials: the
    seed itself for a new study (an uninterrupted run is unchanged), else one derived from the
    seed and ``held`` (numpy's SeedSequence with ``held`` as its spawn key). Restarted from the
    seed, every resume drew the random numbers of the first run's start again (tournaments,
    crossover masks, mutations, redraws), so its proposals repeated stored configurations more
    often: resumed every 50 trials, 22% more repeats proposed on llama-2-70b-h100 and 14% on
    llama-3-8b-l4 over 2,000 trials (docs/operations.md, bench/bench_nsga2_resume.py). Still
    deterministic: the same seed and study give the same trials."""
    if held == 0:
        return seed
    return int(np.random.SeedSequence(seed, spawn_key=(held,)).generate_state(1, dtype=np.uint32)[0])


#: The study system attribute in which an NSGA-II search keeps its parents (:func:`_nsga2_compact`).
ELITE_ATTR = "tuner:nsga2_parents"
#: Stored configurations re-scored per cost-model call on a resume (bounded memory).
_RESCORE_PART = 100_000


def _elite_key(compiled: CompiledStudy, population_size: int) -> dict:
    """What stored parents are valid for: their objective and constraint values are re-scored
    on resume, so the cost model and compiler (:func:`tuner.compact.model_version`), the space,
    the objectives and the population must be those that selected them."""
    sizes = [len(c) for c in compiled.space.dimensions.values()]
    return {
        "model_version": compact.model_version(),
        "space_size": int(np.prod(sizes, dtype=object)),
        "directions": list(compiled.directions),
        "constraints": list(compiled.constraint_names),
        "population_size": int(population_size),
    }


def _usable_elite(stored: Any, key: dict) -> tuple[np.ndarray, tuple[int, int]] | None:
    """``(parents' flat positions, (watermark trial id, its number))`` of a stored record made
    under ``key``; None for none, another key (stale), or anything malformed (the full re-score
    is always right, only slower)."""
    if not isinstance(stored, dict) or any(stored.get(k) != v for k, v in key.items()):
        return None
    elite, trial_id, number = stored.get("elite"), stored.get("last_trial_id"), stored.get("last_number")
    if not isinstance(elite, list) or not elite or not isinstance(trial_id, int) or not isinstance(number, int):
        return None
    if not all(isinstance(p, int) and 0 <= p < key["space_size"] for p in elite):
        return None
    return np.array(elite, dtype=np.int64), (trial_id, number)


def _resume_parents(nsga, compiled, storage, study_id, storage_url, held, key, stop) -> np.ndarray:
    """Seed ``nsga`` for a resume (see :func:`_nsga2_compact`): from the stored parents and the
    configurations stored after their watermark, or from every stored configuration. Returns
    the stored configurations it read besides ``held``: those are read after it, so with
    several workers they may include some ``held`` lacks (a copy of such a parent would
    otherwise be a child the study holds)."""
    names = list(compiled.space.dimensions)
    sizes = [len(c) for c in compiled.space.dimensions.values()]

    def scored(flat: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        indices = compact.unflatten(flat, names, sizes)
        evaluation = evaluate(compiled, indices)
        return np.stack(list(indices.values()), axis=1), evaluation.values, _constraint_matrix(evaluation)

    if not len(held):
        return np.zeros(0, dtype=np.int64)
    usable = _usable_elite(
        with_retries(lambda: optuna_internals.study_system_attr(storage, study_id, ELITE_ATTR), storage_url, stop=stop),
        key,
    )
    if usable is not None:
        elite, watermark = usable
        after = with_retries(
            lambda: optuna_internals.configurations_after(storage, study_id, *watermark), storage_url, stop=stop
        )
        compact.check_inside_space(after, key["space_size"])
        nsga.restore_parents(*scored(elite))
        read = np.concatenate([elite, after])
    else:
        after = np.sort(held)  # every stored configuration
        read = np.zeros(0, dtype=np.int64)
    for begin in range(0, len(after), _RESCORE_PART):
        nsga.seed_parents(*scored(after[begin : begin + _RESCORE_PART]))
    return read


def _constraint_matrix(evaluation: Evaluation) -> np.ndarray:
    """(n, constraints), also when the study has none."""
    if not evaluation.constraint_columns:
        return np.zeros((len(evaluation.values), 0))
    return evaluation.constraints


def _ask_distinct(memory: optuna.Study, dists, distinct: DistinctConfigurations) -> optuna.Trial:
    """The sampler's next trial, or, when it proposes a configuration the study holds, a trial
    of an unseen one (see :mod:`tuner.distinct`). The proposal is told as failed (the in-memory
    study only: samplers learn from complete trials) and the replacement is asked through
    ``enqueue_trial``, so the trial told to Optuna carries the params evaluated, and the sampler
    (NSGA-II's generation, TPE's constant liar) sees it as one of its own."""
    trial = optuna_internals.ask_categorical(memory, dists)
    key = distinct.key(trial.params)
    if key is not None and key in distinct:
        optuna_internals.tell_in_place(memory, trial, state=TrialState.FAIL)  # Study.tell without its copy
        memory.enqueue_trial(distinct.params(distinct.replacement(key)))
        trial = optuna_internals.ask_categorical(memory, dists)
        key = distinct.key(trial.params)
    if key is not None:
        distinct.add(key)
    return trial


def _stored_system_attrs(system_attrs: dict, evaluation: Evaluation, row: int) -> dict:
    """A trial's system attributes as stored: without ``fixed_params`` (the mark of a replaced
    proposal, internal to the in-memory study), and with the constraints also as Optuna's list
    (``constraints``, in the spec's order), which optuna-dashboard reads to mark infeasible trials."""
    attrs = {k: v for k, v in system_attrs.items() if k != "fixed_params"}
    attrs[CONSTRAINT_LIST_ATTR] = [float(column[row]) for column in evaluation.constraint_columns.values()]
    return attrs


def _exhaustive(compiled, fmt, held, writer, on_progress, trials=None, deadline=None, stop=None, chunk=5_000) -> int:
    """Every structurally possible candidate not yet stored, scored in vectorized chunks, in a
    fixed order; an explicit ``trials`` caps what the study holds and the ``deadline`` is checked
    between chunks, so an interrupted enumeration resumes where it stopped. Studies in the whole
    (pre-compact) format only: compact ones stream through :mod:`tuner.exhaustive`. Returns the
    configurations left out as structurally invalid."""
    dists = distributions(compiled)
    indices = compiled.space.all_indices()
    # KV head counts that do not divide the heads (or unchunked prompts over the token budget)
    # are not candidates at all here.
    keep = structurally_valid(compiled, indices)
    indices = {k: v[keep] for k, v in indices.items()}
    if len(held):
        # One integer per candidate (its position in the full product) finds the stored ones.
        fresh = ~np.isin(compact.flat_indices(indices, fmt.sizes), held)
        indices = {k: v[fresh] for k, v in indices.items()}
    total = len(next(iter(indices.values())))
    if trials is not None:
        total = max(0, min(total, trials - len(held)))
    number = len(held)
    for begin in range(0, total, chunk):
        if stop is not None and stop():
            break
        if deadline is not None and deadline.passed():
            break
        part = {k: v[begin : min(begin + chunk, total)] for k, v in indices.items()}
        evaluation = evaluate(compiled, part)
        trials = [_frozen(compiled, evaluation, row, dists, number + row) for row in range(len(evaluation))]
        number += len(trials)
        writer.add(trials)
        if on_progress:
            on_progress(min(begin + chunk, total), total)
    return int(np.count_nonzero(~keep))
