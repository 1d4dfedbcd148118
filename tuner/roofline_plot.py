"""A roofline chart of one analysis: the chip's roofs and one point per operator (PNG)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # files only; no display is needed or wanted

import matplotlib.pyplot as plt
import numpy as np

from cost_models.errors import InvalidInputError
from cost_models.hardware import HardwareSpec, get_hardware
from tuner.plot_labels import place_labels

#: How many operators get a label at most: the largest by time, and the one nearest the ridge.
MAX_LABELS = 6
ROOF_STYLES = ("-", "--", "-.", ":")


def write_roofline_plot(report: dict, path: str, chip: HardwareSpec | None = None) -> None:
    """Log-log roofline: attainable ops/s against arithmetic intensity, for each compute format
    the chip has, with each present operator at (FLOPs/byte, FLOPs/time)."""
    fig = roofline_figure(report, chip)
    try:
        fig.savefig(path, dpi=120, format="png")
    except OSError as error:
        raise InvalidInputError("plot", f"cannot write {path}: {error.strerror}", "pass a writable file path") from None
    finally:
        plt.close(fig)


def roofline_figure(report: dict, chip: HardwareSpec | None = None):
    """The chart: one roof per compute format (formats with the same peak share a line drawn in
    interleaved dashes and one label at its right end), the memory slope, the operators as
    points sized by their share of the time; the few largest operators and the one nearest the
    ridge labelled where their labels do not collide, the rest listed in the legend."""
    chip = chip if chip is not None else get_hardware(report["hardware"])  # a chip from a file is passed
    bandwidth = chip.memory_bandwidth_bytes_per_s * chip.efficiency.memory
    ops = [op for op in report["operators"] if op["flops"] > 0 and op["time_s"] > 0]
    intensities = np.array([op["arithmetic_intensity"] for op in ops])
    achieved = np.array([op["flops"] / op["time_s"] for op in ops])
    peaks = {name: value * chip.efficiency.compute for name, value in chip.peak_ops_per_s.model_dump().items() if value}
    lo = min(0.1, intensities.min() / 2) if len(ops) else 0.1
    hi = max(max(peaks.values()) / bandwidth * 10, intensities.max() * 2 if len(ops) else 1.0)
    x = np.logspace(np.log10(lo), np.log10(hi), 256)

    fig, ax = plt.subplots(figsize=(10, 6.5), layout="constrained")
    ax.loglog(x, bandwidth * x, color="grey", linestyle="--", label=f"memory slope ({bandwidth / 1e9:.4g} GB/s)")
    # Formats with one peak (int8 and fp8 on most chips) are one roof: interleaved dashes, one label.
    roofs: dict[float, list[str]] = {}
    for name, peak in sorted(peaks.items(), key=lambda kv: kv[1]):
        same = next((p for p in roofs if abs(p - peak) <= 0.01 * peak), None)
        roofs.setdefault(same if same is not None else peak, []).append(name)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    end_labels = []
    for k, (peak, names) in enumerate(roofs.items()):
        knee = peak / bandwidth
        xs = x[x >= knee]
        color = colors[k % len(colors)]
        for j in range(len(names)):
            style = ROOF_STYLES[j % len(ROOF_STYLES)] if len(names) > 1 else "-"
            ax.loglog(xs, np.full(len(xs), peak), color=color, linestyle=style, linewidth=2.2 - 0.5 * j)
        text = f"{' = '.join(names)}: {peak / 1e12:.4g} Tops/s"
        end_labels.append(
            ax.annotate(
                _plain(text),
                (1.0, peak),
                xycoords=("axes fraction", "data"),
                textcoords="offset points",
                xytext=(-4, 3),
                ha="right",
                va="bottom",
                fontsize=8,
                color=color,
            )
        )
        ax.annotate(
            f"ridge {knee:.3g}", (knee, peak), textcoords="offset points", xytext=(-4, -3), ha="right", va="top",
            fontsize=7, color=color,
        )  # fmt: skip
    total = sum(op["time_s"] for op in ops) or 1.0
    shares = np.array([op["time_s"] / total for op in ops])
    ax.scatter(intensities, achieved, color="black", zorder=3, s=12 + 120 * shares, alpha=0.85)
    chosen = _interesting(ops, intensities, peaks, bandwidth)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()  # type: ignore[attr-defined]
    avoid = [t.get_window_extent(renderer) for t in ax.texts]
    placed = place_labels(
        ax,
        [(intensities[i], achieved[i]) for i in chosen],
        [_plain(f"{ops[i]['name']} ({shares[i]:.0%})") for i in chosen],
        avoid=avoid,
    )
    shown = {label.get_text() for label in placed}
    unlabelled = [
        f"{op['name']} {shares[i]:.0%}"
        for i, op in enumerate(ops)
        if _plain(f"{op['name']} ({shares[i]:.0%})") not in shown
    ]
    if unlabelled:  # named in the legend, largest first, so every point can be found
        order = sorted(range(len(unlabelled)), key=lambda i: -float(unlabelled[i].rsplit(" ", 1)[1].rstrip("%")))
        listed = [unlabelled[i] for i in order][:12]
        more = len(unlabelled) - len(listed)
        text = "unlabelled (share of time): " + ", ".join(listed) + (f", +{more} more" if more else "")
        ax.plot([], [], " ", label=_plain(_wrap(text, 60)))
    ax.set_xlabel("arithmetic intensity [ops/byte]")
    ax.set_ylabel("attainable performance [ops/s]")
    ax.set_title(
        _plain(
            f"{report['model']} on {chip.name}: {report['phase']}, batch {report['batch']}, "
            f"seq_len {report['seq_len']}, weights {report['weight_dtype']}\n"
            "point area: share of the time; labelled: the largest operators and the one nearest a ridge"
        ),
        fontsize=10,
    )
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="lower right", fontsize=7)
    return fig


def _interesting(ops: list[dict], intensities: np.ndarray, peaks: dict[str, float], bandwidth: float) -> list[int]:
    """Indices of the operators worth a label, most important first: the largest by time, then
    the one nearest (in log intensity) a ridge point."""
    by_time = sorted(range(len(ops)), key=lambda i: -ops[i]["time_s"])
    chosen = by_time[: MAX_LABELS - 1]
    if len(ops):
        ridges = np.log10(np.array([p / bandwidth for p in peaks.values()]))
        distance = np.min(np.abs(np.log10(intensities)[:, None] - ridges[None, :]), axis=1)
        nearest = int(np.argmin(distance))
        if nearest not in chosen:
            chosen.append(nearest)
    return chosen


def _wrap(text: str, width: int) -> str:
    import textwrap

    return "\n".join(textwrap.wrap(text, width))


def _plain(text: str) -> str:
    """Text shown literally: '$' would start matplotlib math mode (names come from config.json)."""
    return text.replace("$", r"\$")
