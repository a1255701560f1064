"""Server-side SVG charts for the admin: no JavaScript, no external assets.

:func:`attribution_chart` turns an explanation payload into a horizontal bar chart of its top
feature attributions. Every label is escaped; the result is safe to embed in a page.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

__all__ = ["ATTRIBUTION_KEYS", "attribution_chart", "attributions"]

#: Keys of an explanation payload that may hold a ``{feature: number}`` mapping, tried in order.
#: A payload that is itself a flat mapping of numbers is used as is.
ATTRIBUTION_KEYS = ("feature_importances", "shap_values")

POSITIVE_COLOUR = "#d62728"
NEGATIVE_COLOUR = "#1f77b4"
WIDTH = 640
LABEL_WIDTH = 200
VALUE_WIDTH = 70
ROW_HEIGHT = 22
BAR_HEIGHT = 16
MARGIN = 6
MAX_LABEL = 32


def _number(value: Any) -> float | None:
    """``value`` as a finite float, or ``None`` (booleans and non-numbers are not attributions)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _numeric_items(mapping: Mapping[Any, Any]) -> list[tuple[str, float]]:
    items = []
    for key, value in mapping.items():
        number = _number(value)
        if number is not None:
            items.append((str(key), number))
    return items


def attributions(payload: Any, *, top: int = 10) -> list[tuple[str, float]]:
    """The ``top`` feature attributions of an explanation payload, largest magnitude first.

    Looks for a ``{feature: number}`` mapping under ``feature_importances`` or ``shap_values``,
    else (when neither key is present) the payload itself. Non-numeric, boolean and non-finite
    values are ignored. Ties keep the payload's order.
    """
    if not isinstance(payload, Mapping):
        return []
    named = [payload[key] for key in ATTRIBUTION_KEYS if key in payload]
    if named:
        mappings = [candidate for candidate in named if isinstance(candidate, Mapping)]
        items = _numeric_items(mappings[0]) if mappings else []
    else:
        items = _numeric_items(payload)
    items.sort(key=lambda item: abs(item[1]), reverse=True)
    return items[: max(top, 0)]


def _label(text: str) -> str:
    return text if len(text) <= MAX_LABEL else text[: MAX_LABEL - 1] + "\u2026"


def attribution_chart(payload: Any, *, top: int = 10) -> SafeString:
    """An inline SVG bar chart of the top attributions; an empty string when there are none.

    Bars grow right of the zero axis for positive values and left for negative ones, in
    different colours. Each bar carries a ``<title>`` with the full feature name and value.
    """
    items = attributions(payload, top=top)
    if not items:
        return mark_safe("")
    has_negative = any(value < 0 for _, value in items)
    has_positive = any(value > 0 for _, value in items)
    plot_left = LABEL_WIDTH + MARGIN
    plot_width = WIDTH - plot_left - VALUE_WIDTH - MARGIN
    if has_negative and has_positive:
        axis = plot_left + plot_width / 2
        half = plot_width / 2
    elif has_negative:
        axis = plot_left + plot_width
        half = plot_width
    else:
        axis = plot_left
        half = plot_width
    scale = max(abs(value) for _, value in items) or 1.0
    height = len(items) * ROW_HEIGHT + 2 * MARGIN
    parts = [
        f'<svg class="ml-audit-chart" xmlns="http://www.w3.org/2000/svg" role="img" '
        f'width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" '
        f'font-family="sans-serif" font-size="12">',
        "<title>Top feature attributions</title>",
    ]
    for index, (name, value) in enumerate(items):
        y = MARGIN + index * ROW_HEIGHT
        length = abs(value) / scale * half
        x = axis if value >= 0 else axis - length
        colour = POSITIVE_COLOUR if value >= 0 else NEGATIVE_COLOUR
        sign = "positive" if value >= 0 else "negative"
        text_y = y + ROW_HEIGHT / 2 + 4
        parts.append(
            f'<text class="ml-audit-label" x="{LABEL_WIDTH}" y="{text_y:.1f}" '
            f'text-anchor="end">{escape(_label(name))}</text>'
        )
        parts.append(
            f'<rect class="ml-audit-bar ml-audit-{sign}" x="{x:.1f}" '
            f'y="{y + (ROW_HEIGHT - BAR_HEIGHT) / 2:.1f}" width="{length:.1f}" '
            f'height="{BAR_HEIGHT}" fill="{colour}">'
            f"<title>{escape(name)}: {value:.6g}</title></rect>"
        )
        parts.append(
            f'<text class="ml-audit-value" x="{WIDTH - MARGIN}" y="{text_y:.1f}" '
            f'text-anchor="end">{value:.4g}</text>'
        )
    parts.append(
        f'<line x1="{axis:.1f}" y1="{MARGIN / 2}" x2="{axis:.1f}" y2="{height - MARGIN / 2}" '
        f'stroke="#333" stroke-width="1"/>'
    )
    parts.append("</svg>")
    return mark_safe("".join(parts))  # every interpolated label is escaped
