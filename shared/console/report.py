"""The funnel over a range of days: totals (conversion %, median time to verify) and a daily SVG chart."""

from __future__ import annotations

import re
from datetime import date, timedelta
from typing import Any
from xml.sax.saxutils import escape

from shared.db import reads
from shared.db.database import Database
from shared.handlers import analytics

_LAST_DAYS = re.compile(r"^(\d{1,3})d$")
SERIES = (("orders_received", "received", "#4f6d8f"), ("verified", "verified", "#2e7d4f"),
          ("expired", "expired", "#b5651d"), ("refunds_completed", "refunds done", "#7a4fa0"))


def parse_range(text: str, today: date) -> tuple[date, date]:
    """`today`, `7d` (the last 7 days), or `2026-11-01..2026-11-30`. ValueError for anything else."""
    text = (text or "7d").strip()
    if text == "today":
        return today, today
    match = _LAST_DAYS.match(text)
    if match and int(match.group(1)) > 0:
        return today - timedelta(days=int(match.group(1)) - 1), today
    first, sep, last = text.partition("..")
    try:
        start, end = date.fromisoformat(first), date.fromisoformat(last if sep else first)
    except ValueError:
        raise ValueError(f"{text!r} is not today, Nd or YYYY-MM-DD..YYYY-MM-DD") from None
    if end < start or (end - start).days > 366:
        raise ValueError("the range must run forwards and span at most a year")
    return start, end


def funnel_report(db: Database, start: date, end: date) -> dict[str, Any]:
    """`analytics.funnel`'s totals plus each day's counts."""
    report = analytics.funnel(db, start, end)
    with db.read() as conn:
        report["days"] = {day.isoformat(): counts for day, counts in reads.funnel_days(conn, start, end).items()}
    report["start"], report["end"] = start.isoformat(), end.isoformat()
    return report


def chart_svg(days: dict[str, dict[str, int]], width: int = 720, height: int = 240) -> str:
    """Grouped bars per day for the main metrics; plain SVG, no script, safe to inline."""
    left, bottom, top = 40, 40, 16
    plot_w, plot_h = width - left - 8, height - bottom - top
    peak = max([counts.get(m, 0) for counts in days.values() for m, _, _ in SERIES] + [1])
    slot = plot_w / max(len(days), 1)
    bar = max(slot / (len(SERIES) + 1), 1)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" role="img" '
             f'aria-label="daily funnel" class="chart">',
             f'<line x1="{left}" y1="{top + plot_h}" x2="{width - 8}" y2="{top + plot_h}" stroke="#999"/>',
             f'<text x="{left - 6}" y="{top + 4}" text-anchor="end" font-size="11">{peak}</text>',
             f'<text x="{left - 6}" y="{top + plot_h}" text-anchor="end" font-size="11">0</text>']
    for i, (day, counts) in enumerate(days.items()):
        x0 = left + i * slot + bar / 2
        for j, (metric, label, colour) in enumerate(SERIES):
            value = counts.get(metric, 0)
            h = plot_h * value / peak
            parts.append(f'<rect x="{x0 + j * bar:.1f}" y="{top + plot_h - h:.1f}" width="{bar:.1f}" '
                         f'height="{h:.1f}" fill="{colour}"><title>{escape(day)} {label}: {value}</title></rect>')
        if len(days) <= 16 or i % max(len(days) // 8, 1) == 0:
            parts.append(f'<text x="{left + i * slot + slot / 2:.1f}" y="{height - bottom + 16}" '
                         f'text-anchor="middle" font-size="10">{escape(day[5:])}</text>')
    for j, (_, label, colour) in enumerate(SERIES):
        parts.append(f'<rect x="{left + j * 120}" y="{height - 14}" width="10" height="10" fill="{colour}"/>'
                     f'<text x="{left + j * 120 + 14}" y="{height - 5}" font-size="11">{label}</text>')
    parts.append("</svg>")
    return "".join(parts)
