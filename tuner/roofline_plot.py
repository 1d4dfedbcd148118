"""A roofline chart of one analysis: the chip's roofs and one point per operator (PNG)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # files only; no display is needed or wanted

import matplotlib.pyplot as plt
import numpy as np

from cost_models.errors import InvalidInputError
from cost_models.hardware import HardwareSpec, get_hardware


def write_roofline_plot(report: dict, path: str, chip: HardwareSpec | None = None) -> None:
    """Log-log roofline: attainable ops/s against arithmetic intensity, for each compute format
    the chip has, with each present operator at (FLOPs/byte, FLOPs/time). ``chip``: the analyzed
    chip (default: the catalog chip the report names)."""
    chip = chip if chip is not None else get_hardware(report["hardware"])
    bandwidth = chip.memory_bandwidth_bytes_per_s * chip.efficiency.memory
    ops = [op for op in report["operators"] if op["flops"] > 0 and op["time_s"] > 0]
    intensities = np.array([op["arithmetic_intensity"] for op in ops])
    achieved = np.array([op["flops"] / op["time_s"] for op in ops])
    peaks = {name: value for name, value in chip.peak_ops_per_s.model_dump().items() if value}
    lo = min(0.1, intensities.min() / 2) if len(ops) else 0.1
    hi = max(max(peaks.values()) / bandwidth * 10, intensities.max() * 2 if len(ops) else 1.0)
    x = np.logspace(np.log10(lo), np.log10(hi), 256)

    fig, ax = plt.subplots(figsize=(9, 6))
    ax.loglog(x, bandwidth * x, color="grey", linestyle="--", label=f"memory ({bandwidth / 1e9:.4g} GB/s)")
    for name, peak in sorted(peaks.items(), key=lambda kv: kv[1]):
        peak *= chip.efficiency.compute
        knee = peak / bandwidth
        ax.loglog(x[x >= knee], np.full(np.sum(x >= knee), peak), label=f"{name} roof ({peak / 1e12:.4g} Tops/s)")
    ax.scatter(intensities, achieved, color="black", zorder=3, s=18)
    # Operators within ~25% of each other on both axes (the projections, say) share one label.
    labels: dict[tuple[int, int], tuple[float, float, list[str]]] = {}
    for op, xi, yi in zip(ops, intensities, achieved, strict=True):
        key = (round(np.log10(xi) * 10), round(np.log10(yi) * 10))
        labels.setdefault(key, (xi, yi, []))[2].append(op["name"])
    for xi, yi, names in labels.values():
        ax.annotate(_plain(", ".join(names)), (xi, yi), textcoords="offset points", xytext=(6, -3), fontsize=7)
    ax.set_xlabel("arithmetic intensity (ops / byte)")
    ax.set_ylabel("attainable performance (ops / s)")
    ax.set_title(
        _plain(
            f"{report['model']} on {chip.name}: {report['phase']}, batch {report['batch']}, "
            f"seq_len {report['seq_len']}, weights {report['weight_dtype']}"
        )
    )
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    try:
        fig.tight_layout()
        fig.savefig(path, dpi=120, format="png")
    except OSError as error:
        raise InvalidInputError("plot", f"cannot write {path}: {error.strerror}", "pass a writable file path") from None
    finally:
        plt.close(fig)


def _plain(text: str) -> str:
    """Text shown literally: '$' would start matplotlib math mode (names come from config.json)."""
    return text.replace("$", r"\$")
