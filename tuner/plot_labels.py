"""Point labels on matplotlib charts that do not collide.

:func:`place_labels` puts labels one by one, most important first, each at the first of a few
offsets around its point where its text box overlaps no label already placed (nor the axes'
edge); a label that fits nowhere is left out, and the caller can say so (legend, title).
"""

from __future__ import annotations

from collections.abc import Sequence

from matplotlib.axes import Axes
from matplotlib.text import Annotation
from matplotlib.transforms import Bbox

#: Offsets (points) tried around a point, with the alignment that keeps the text off the point.
OFFSETS: tuple[tuple[float, float, str, str], ...] = (
    (5, 4, "left", "bottom"),
    (5, -4, "left", "top"),
    (-5, 4, "right", "bottom"),
    (-5, -4, "right", "top"),
    (0, 9, "center", "bottom"),
    (0, -9, "center", "top"),
    (12, 0, "left", "center"),
    (-12, 0, "right", "center"),
)


def place_labels(
    ax: Axes,
    points: Sequence[tuple[float, float]],
    texts: Sequence[str],
    *,
    fontsize: float = 7,
    avoid: Sequence[Bbox] = (),
    **style,
) -> list[Annotation]:
    """Annotate ``points`` (data coordinates) with ``texts`` in the given order (most important
    first) without overlaps; returns the labels placed. The figure is drawn once to measure text."""
    fig = ax.figure
    fig.canvas.draw()  # the layout the boxes are measured in
    renderer = fig.canvas.get_renderer()  # type: ignore[attr-defined]
    inside = ax.get_window_extent(renderer)
    taken: list[Bbox] = [box.padded(1) for box in avoid]
    placed: list[Annotation] = []
    for (x, y), text in zip(points, texts, strict=True):
        for dx, dy, ha, va in OFFSETS:
            label = ax.annotate(
                text,
                (x, y),
                textcoords="offset points",
                xytext=(dx, dy),
                ha=ha,
                va=va,
                fontsize=fontsize,
                **style,
            )
            box = label.get_window_extent(renderer)
            fits = inside.containsx(box.x0) and inside.containsx(box.x1)
            fits = fits and inside.containsy(box.y0) and inside.containsy(box.y1)
            if fits and not any(box.overlaps(other) for other in taken):
                taken.append(box.padded(1))
                placed.append(label)
                break
            label.remove()
    return placed


def overlapping_texts(ax: Axes) -> list[tuple[str, str]]:
    """Pairs of the axes' visible texts (annotations included) whose boxes overlap: what a test
    asserts is empty."""
    fig = ax.figure
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()  # type: ignore[attr-defined]
    texts = [t for t in ax.texts if t.get_visible() and t.get_text().strip()]
    boxes = [t.get_window_extent(renderer) for t in texts]
    return [
        (texts[i].get_text(), texts[j].get_text())
        for i in range(len(texts))
        for j in range(i + 1, len(texts))
        if boxes[i].overlaps(boxes[j])
    ]
