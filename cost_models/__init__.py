"""The analytical cost model of transformer inference: catalogs, operators, roofline.

Pure functions over numpy arrays; no Optuna, no database, no printing.

The names below are loaded on first use (PEP 562 ``__getattr__``): importing one submodule
(``cost_models.errors``, ``cost_models.dtypes``) does not import the whole model, so the command
line starts without the modules a command does not use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

#: Each public name and the submodule that defines it.
_SOURCES = {
    "Analysis": "analysis",
    "analysis_report": "analysis",
    "analyze": "analysis",
    "analyze_one": "analysis",
    "generation_totals": "analysis",
    "CONVENTIONS": "conventions",
    "DEFAULT": "conventions",
    "KIM2023": "conventions",
    "YUAN2024": "conventions",
    "CountingConvention": "conventions",
    "InvalidInputError": "errors",
    "HardwareSpec": "hardware",
    "get_hardware": "hardware",
    "hardware_catalog": "hardware",
    "InferenceConfigs": "inference_configs",
    "make_configs": "inference_configs",
    "ModelSpec": "models",
    "get_model": "models",
    "model_catalog": "models",
    "OPERATOR_NAMES": "operators",
    "OperatorCosts": "operators",
    "operator_costs": "operators",
}

__all__ = [
    "Analysis",
    "analysis_report",
    "analyze",
    "analyze_one",
    "generation_totals",
    "CONVENTIONS",
    "DEFAULT",
    "KIM2023",
    "YUAN2024",
    "CountingConvention",
    "InvalidInputError",
    "HardwareSpec",
    "get_hardware",
    "hardware_catalog",
    "InferenceConfigs",
    "make_configs",
    "ModelSpec",
    "get_model",
    "model_catalog",
    "OPERATOR_NAMES",
    "OperatorCosts",
    "operator_costs",
]

if TYPE_CHECKING:
    from cost_models.analysis import Analysis, analysis_report, analyze, analyze_one, generation_totals
    from cost_models.conventions import CONVENTIONS, DEFAULT, KIM2023, YUAN2024, CountingConvention
    from cost_models.errors import InvalidInputError
    from cost_models.hardware import HardwareSpec, get_hardware, hardware_catalog
    from cost_models.inference_configs import InferenceConfigs, make_configs
    from cost_models.models import ModelSpec, get_model, model_catalog
    from cost_models.operators import OPERATOR_NAMES, OperatorCosts, operator_costs


def __getattr__(name: str) -> Any:
    if name not in _SOURCES:
        raise AttributeError(f"module 'cost_models' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"cost_models.{_SOURCES[name]}"), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_SOURCES])
