"""The quality page's charts, server-rendered SVG in the style of :mod:`ml_audit.charts` (no
JavaScript, no external assets, every text escaped).

:func:`rates_chart`: per ISO week, the share of the model's decisions that matched the outcome
(accuracy), the override rate and how often overrides were right, as lines on a 0-100 % axis,
over grey bars of the predictions with an outcome. :func:`error_chart`: the mean absolute
error of numeric outcomes per week, when there is any. Each point carries a ``<title>`` with
the week and its numbers.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

from ml_audit.charts import MARGIN, NEGATIVE_COLOUR, POSITIVE_COLOUR, WIDTH
from ml_audit.outcomes.quality import WeekQuality

__all__ = ["SERIES", "error_chart", "quality_charts", "rates_chart"]

RIGHT_COLOUR = "#2ca02c"
ERROR_COLOUR = "#9467bd"
BAR_COLOUR = "#d9d9d9"
HEIGHT = 240
LEFT = 52  # room for the y-axis labels
TOP = 30  # room for the legend
BOTTOM = 34  # room for the week labels
MAX_WEEK_LABELS = 8

Value = Callable[[WeekQuality], float | None]

#: The lines of the rates chart: (CSS name, legend, colour, value).
SERIES: tuple[tuple[str, str, str, Value], ...] = (
    ("accuracy", "model decision right", NEGATIVE_COLOUR, lambda w: w.accuracy),
    ("override-rate", "overridden", POSITIVE_COLOUR, lambda w: w.override_rate),
    ("override-right", "override right", RIGHT_COLOUR, lambda w: w.override_accuracy),
)


def quality_charts(weeks: Sequence[WeekQuality]) -> SafeString:
    """Both charts (the error chart only when a week has numeric outcomes)."""
    return mark_safe(rates_chart(weeks) + error_chart(weeks))  # both are escaped SVG


def _x(index: int, count: int) -> float:
    plot = WIDTH - LEFT - MARGIN
    step = plot / max(count, 1)
    return LEFT + step * index + step / 2


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def _open(title: str, css: str) -> list[str]:
    return [
        f'<svg class="ml-audit-chart ml-audit-{css}" xmlns="http://www.w3.org/2000/svg" '
        f'role="img" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'font-family="sans-serif" font-size="11">',
        f"<title>{escape(title)}</title>",
    ]


def _week_labels(weeks: Sequence[WeekQuality]) -> list[str]:
    every = max(1, math.ceil(len(weeks) / MAX_WEEK_LABELS))
    y = HEIGHT - BOTTOM + 16
    return [
        f'<text class="ml-audit-week" x="{_x(i, len(weeks)):.1f}" y="{y}" '
        f'text-anchor="middle">{escape(week.week)}</text>'
        for i, week in enumerate(weeks)
        if i % every == 0
    ]


def _axis(ticks: Sequence[tuple[float, str]], top: float, bottom: float) -> list[str]:
    """Horizontal grid lines with their labels: ``(share of the height, label)``."""
    parts = []
    for share, label in ticks:
        y = bottom - share * (bottom - top)
        parts.append(
            f'<line x1="{LEFT}" y1="{y:.1f}" x2="{WIDTH - MARGIN}" y2="{y:.1f}" '
            f'stroke="#ccc" stroke-width="1"/>'
        )
        parts.append(
            f'<text class="ml-audit-tick" x="{LEFT - 4}" y="{y + 4:.1f}" '
            f'text-anchor="end">{escape(label)}</text>'
        )
    return parts


def _line(
    weeks: Sequence[WeekQuality],
    value: Value,
    scale: Callable[[float], float],
    css: str,
    colour: str,
    describe: Callable[[WeekQuality, float], str],
) -> list[str]:
    """A line through the weeks that have a value (broken where one has none), with a point
    and its ``<title>`` per week."""
    parts: list[str] = []
    segment: list[str] = []
    points: list[str] = []

    def close() -> None:
        if len(segment) > 1:
            parts.append(
                f'<polyline class="ml-audit-line ml-audit-{css}" fill="none" stroke="{colour}" '
                f'stroke-width="2" points="{" ".join(segment)}"/>'
            )
        segment.clear()

    for index, week in enumerate(weeks):
        number = value(week)
        if number is None:
            close()
            continue
        x, y = _x(index, len(weeks)), scale(number)
        segment.append(f"{x:.1f},{y:.1f}")
        points.append(
            f'<circle class="ml-audit-point ml-audit-{css}" cx="{x:.1f}" cy="{y:.1f}" r="3" '
            f'fill="{colour}"><title>{escape(describe(week, number))}</title></circle>'
        )
    close()
    return parts + points


def _legend(entries: Sequence[tuple[str, str]]) -> list[str]:
    parts = []
    x = float(LEFT)
    for label, colour in entries:
        parts.append(f'<rect x="{x:.1f}" y="8" width="10" height="10" fill="{colour}"/>')
        parts.append(f'<text x="{x + 14:.1f}" y="17">{escape(label)}</text>')
        x += 24 + 6.5 * len(label)
    return parts


def rates_chart(weeks: Sequence[WeekQuality]) -> SafeString:
    """Accuracy, override rate and overrides right per week (see the module docstring); an
    empty string when there are no weeks."""
    if not weeks:
        return mark_safe("")
    top, bottom = TOP, HEIGHT - BOTTOM
    parts = _open("Decisions against outcomes, by week", "rates")
    parts += _legend(
        [(legend, colour) for _, legend, colour, _ in SERIES]
        + [("predictions with an outcome", BAR_COLOUR)]
    )
    most = max(week.with_outcome for week in weeks) or 1
    width = (WIDTH - LEFT - MARGIN) / len(weeks)
    for index, week in enumerate(weeks):
        height = week.with_outcome / most * (bottom - top)
        x = _x(index, len(weeks)) - width * 0.4
        parts.append(
            f'<rect class="ml-audit-bar ml-audit-with-outcome" x="{x:.1f}" '
            f'y="{bottom - height:.1f}" width="{width * 0.8:.1f}" height="{height:.1f}" '
            f'fill="{BAR_COLOUR}"><title>{escape(week.week)}: {week.predictions} predictions, '
            f"{week.with_outcome} with an outcome</title></rect>"
        )
    parts += _axis([(0.0, "0%"), (0.5, "50%"), (1.0, "100%")], top, bottom)

    def scale(share: float) -> float:
        return bottom - max(0.0, min(share, 1.0)) * (bottom - top)

    for css, legend, colour, value in SERIES:

        def describe(week: WeekQuality, number: float, legend: str = legend) -> str:
            return f"{week.week}: {legend} {_percent(number)}"

        parts += _line(weeks, value, scale, css, colour, describe)
    parts += _week_labels(weeks)
    parts.append("</svg>")
    return mark_safe("".join(parts))  # every text is escaped


def error_chart(weeks: Sequence[WeekQuality]) -> SafeString:
    """The mean absolute error of numeric outcomes per week; an empty string when no week has
    one."""
    errors = [week.mae for week in weeks if week.mae is not None]
    if not errors:
        return mark_safe("")
    top, bottom = TOP, HEIGHT - BOTTOM
    highest = max(errors) or 1.0
    parts = _open("Mean absolute error of numeric outcomes, by week", "error")
    parts += _legend([("mean absolute error", ERROR_COLOUR)])
    parts += _axis([(0.0, "0"), (0.5, f"{highest / 2:.3g}"), (1.0, f"{highest:.3g}")], top, bottom)

    def scale(error: float) -> float:
        return bottom - error / highest * (bottom - top)

    def describe(week: WeekQuality, number: float) -> str:
        return f"{week.week}: mean absolute error {number:.4g} over {week.numeric} outcomes"

    parts += _line(weeks, lambda w: w.mae, scale, "mae", ERROR_COLOUR, describe)
    parts += _week_labels(weeks)
    parts.append("</svg>")
    return mark_safe("".join(parts))  # every text is escaped
