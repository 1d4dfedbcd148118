"""The analytical cost model of transformer inference: catalogs, operators, roofline.

Pure functions over numpy arrays; no Optuna, no database, no printing.
"""

from cost_models.analysis import Analysis, analysis_report, analyze, analyze_one, generation_totals
from cost_models.conventions import CONVENTIONS, DEFAULT, KIM2023, YUAN2024, CountingConvention
from cost_models.errors import InvalidInputError
from cost_models.hardware import HardwareSpec, get_hardware, hardware_catalog
from cost_models.inference_configs import InferenceConfigs, make_configs
from cost_models.models import ModelSpec, get_model, model_catalog
from cost_models.operators import OPERATOR_NAMES, OperatorCosts, operator_costs

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
